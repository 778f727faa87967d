//! One-shot commands in flight, so a freeze can cut them (issue 18 item
//! 3): each running `ssh_execute` registers its serial, host and owner; the
//! revocation poll cuts those a freeze covers ([`covering`] decides, for
//! open sessions too). A cut command's connection is closed (sshd then
//! ends the command; its force-command deadline ends it anyway) and the
//! call answers `frozen`, audited with the freeze id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use infrabroker_common::wire::{Freeze, RevocationsResponse};
use tokio::sync::watch;

/// What a running one-shot is, for matching freezes.
#[derive(Debug)]
struct Running {
    serials: Vec<u64>,
    host: String,
    end_user: Option<String>,
    cut: watch::Sender<Option<Freeze>>,
}

/// Every one-shot in flight on this engine.
#[derive(Debug, Default)]
pub(crate) struct OneShots {
    map: Mutex<HashMap<u64, Running>>,
    next: std::sync::atomic::AtomicU64,
}

/// A registration; dropping it ends it.
#[derive(Debug)]
pub(crate) struct Registration {
    table: Arc<OneShots>,
    key: u64,
    /// Fires with the freeze that cut the command.
    rx: watch::Receiver<Option<Freeze>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.lock().remove(&self.key);
    }
}

impl OneShots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Running>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a command whose certificates have `serials`.
    pub(crate) fn register(
        self: &Arc<Self>,
        serials: Vec<u64>,
        host: &str,
        end_user: Option<&str>,
    ) -> Registration {
        let key = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        self.lock().insert(
            key,
            Running {
                serials,
                host: host.to_owned(),
                end_user: end_user.map(str::to_owned),
                cut: tx,
            },
        );
        Registration {
            table: self.clone(),
            key,
            rx,
        }
    }

    /// Cuts every registered command a freeze in `r` covers.
    pub(crate) fn cut_frozen(&self, r: &RevocationsResponse) {
        for run in self.lock().values() {
            if let Some(f) = covering(r, run.end_user.as_deref(), &run.host, &run.serials) {
                let _ = run.cut.send(Some(f.clone()));
            }
        }
    }
}

/// The first freeze in `r` that covers what a broker holds for `end_user`
/// on `host` under certificate `serials`: the broker's own CN (as the
/// signer saw it), the end user, the host, or one of the serials. Key-id
/// freezes are the signer's business (new certificates); serial freezes
/// exist for what is already issued.
pub(crate) fn covering<'a>(
    r: &'a RevocationsResponse,
    end_user: Option<&str>,
    host: &str,
    serials: &[u64],
) -> Option<&'a Freeze> {
    r.freezes.iter().find(|f| match f.kind.as_str() {
        "caller" => f.value == r.caller,
        "end_user" => end_user == Some(f.value.as_str()),
        "host" => f.value == host,
        "serial" => serials.iter().any(|s| s.to_string() == f.value),
        _ => false,
    })
}

impl Registration {
    /// Waits until a freeze cuts the command (never returns otherwise).
    pub(crate) async fn cut(&mut self) -> Freeze {
        loop {
            if let Some(f) = self.rx.borrow_and_update().clone() {
                return f;
            }
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
