//! Certificate serials: unique across restarts and across signer replicas
//! on one database, taken from the state store in blocks.
//!
//! A block of [`BLOCK`] serials costs one store transaction, so a signer
//! issuing thousands of certificates a second asks the store a few times a
//! second. Every block starts at or above a floor — the clock in
//! microseconds since the epoch, and one above the largest serial in the
//! local audit log — so serials also stay above anything a signer issued
//! before it had a store. A crash loses the unused rest of a block: serials
//! are unique, not contiguous.

use std::time::{SystemTime, UNIX_EPOCH};

use infrabroker_store::{Store, StoreError};
use tokio::sync::Mutex;

/// Serials taken from the store per transaction.
pub const BLOCK: u64 = 1024;

/// The serial allocator of one signer process.
#[derive(Debug)]
pub struct Serials {
    store: Store,
    /// Smallest serial ever handed out by this process's start (largest in
    /// the local audit log + 1).
    floor: u64,
    /// `[next, end)` of the current block.
    block: Mutex<(u64, u64)>,
}

fn clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Serials {
    /// Serials from `store`, all above `last_serial` (the largest the local
    /// audit log holds).
    pub fn new(store: Store, last_serial: u64) -> Serials {
        Serials {
            store,
            floor: last_serial.saturating_add(1),
            block: Mutex::new((0, 0)),
        }
    }

    /// The store behind the allocator (for readiness).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The next serial. Fails when the store cannot be used (nothing may
    /// then be issued) or the serial space is used up.
    pub async fn next(&self) -> Result<u64, StoreError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let floor = self.floor.max(clock_us());
            let first = self.store.serial_block(floor, BLOCK).await?;
            *block = (first, first + BLOCK);
        }
        let serial = block.0;
        block.0 += 1;
        Ok(serial)
    }
}

#[cfg(test)]
mod tests {
    use infrabroker_store::StoreConfig;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serials_stay_unique_across_restarts_and_above_the_log_and_clock() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig::Sqlite(dir.path().join("s.db"));
        let mut seen = std::collections::HashSet::new();
        let mut last = 0;
        for _ in 0..3 {
            // A new process each round, on the same file.
            let s = Serials::new(Store::open(&cfg).await.unwrap(), 5);
            for _ in 0..10 {
                let n = s.next().await.unwrap();
                assert!(n > clock_us() - 60_000_000 && n > 5, "{n}");
                assert!(seen.insert(n), "{n} twice");
                assert!(n > last, "serials only grow");
                last = n;
            }
        }
        // An audit log ahead of clock and store lifts the floor.
        let ahead = clock_us() + 10_000_000_000;
        let s = Serials::new(Store::open(&cfg).await.unwrap(), ahead);
        assert_eq!(s.next().await.unwrap(), ahead + 1);
    }
}
