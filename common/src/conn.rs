//! What every listener bounds once a connection is accepted: how many
//! connections one key (a remote address, a client certificate's CN) may
//! hold, how long a connection may go without its first request, and how
//! long it may sit with no request in flight.
//!
//! Idleness is judged by requests, not bytes: HTTP/2 PINGs, window updates
//! or a peer that trickles nothing useful do not keep a connection open. A
//! request counts from the moment its head arrives until its response body
//! ends, so a long answer (an event stream) is not idle.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Connection slots per key (remote IP, client CN): one key cannot take
/// every slot of a listener.
#[derive(Debug, Clone)]
pub struct PerKey<K> {
    limit: usize,
    open: Arc<Mutex<HashMap<K, Arc<Semaphore>>>>,
}

impl<K: Hash + Eq + Clone> PerKey<K> {
    /// At most `limit` slots per key (at least one).
    pub fn new(limit: usize) -> Self {
        PerKey {
            limit: limit.max(1),
            open: Arc::default(),
        }
    }

    fn semaphore(&self, key: &K) -> Arc<Semaphore> {
        let mut map = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 4096 {
            let limit = self.limit;
            map.retain(|_, s| s.available_permits() < limit);
        }
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
            .clone()
    }

    /// A slot for `key` now, or `None` if it holds all of its slots.
    pub fn try_take(&self, key: &K) -> Option<OwnedSemaphorePermit> {
        self.semaphore(key).try_acquire_owned().ok()
    }

    /// A slot for `key`, or `None` if none frees up within `wait`.
    pub async fn take(&self, key: &K, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let sem = self.semaphore(key);
        tokio::time::timeout(wait, sem.acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

/// The requests of one connection: how many are in flight, and when the
/// last one ended.
#[derive(Debug)]
pub struct Requests {
    epoch: Instant,
    in_flight: AtomicUsize,
    started: AtomicBool,
    last_end_ms: AtomicU64,
}

/// Held while a request is in flight (move it into the response body).
#[derive(Debug)]
pub struct InFlight(Arc<Requests>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_end_ms.store(self.0.now_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Requests {
    /// A connection that has seen no request yet.
    pub fn new() -> Arc<Requests> {
        Arc::new(Requests {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            last_end_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request arrived.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.started.store(true, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// How long to wait before looking again, or `None` if the connection
    /// has been quiet past its limit.
    fn next_check(&self, first: Duration, idle: Duration) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Some(idle);
        }
        let limit = if self.started.load(Ordering::SeqCst) {
            idle
        } else {
            first
        };
        let last = Duration::from_millis(self.last_end_ms.load(Ordering::SeqCst));
        let quiet = self.epoch.elapsed().saturating_sub(last);
        (quiet < limit).then(|| limit - quiet)
    }
}

/// Why [`until_quiet`] stopped a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    /// No request within the first-request deadline.
    NoRequest,
    /// No request in flight for the idle timeout.
    Idle,
}

/// Drives `conn` until it ends, or until it had no request within `first`
/// of its start or none in flight for `idle`; then `conn` is dropped, which
/// closes the socket.
pub async fn until_quiet<F: Future>(
    conn: F,
    requests: &Requests,
    first: Duration,
    idle: Duration,
) -> Result<F::Output, Quiet> {
    tokio::pin!(conn);
    loop {
        let Some(wait) = requests.next_check(first, idle) else {
            return Err(if requests.started.load(Ordering::SeqCst) {
                Quiet::Idle
            } else {
                Quiet::NoRequest
            });
        };
        tokio::select! {
            out = &mut conn => return Ok(out),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_bounded_per_key_and_released() {
        let p = PerKey::new(2);
        let short = Duration::from_millis(20);
        let a = p.take(&"a", short).await.unwrap();
        let _b = p.try_take(&"a").unwrap();
        assert!(p.take(&"a", short).await.is_none());
        assert!(p.try_take(&"b").is_some());
        drop(a);
        assert!(p.try_take(&"a").is_some());
    }

    #[tokio::test]
    async fn only_requests_keep_a_connection_open() {
        let ms = Duration::from_millis;
        let (first, idle) = (ms(200), ms(300));
        let r = Requests::new();
        let t0 = Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(
            until_quiet(never, &r, first, idle).await,
            Err(Quiet::NoRequest)
        );
        assert!((ms(190)..ms(600)).contains(&t0.elapsed()));
        let r = Requests::new();
        let held = r.start();
        tokio::spawn(async move {
            tokio::time::sleep(ms(600)).await;
            drop(held);
        });
        let t0 = Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(until_quiet(never, &r, first, idle).await, Err(Quiet::Idle));
        let waited = t0.elapsed();
        assert!((ms(850)..ms(1500)).contains(&waited), "{waited:?}");
    }
}
