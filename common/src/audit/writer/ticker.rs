//! The `every_seconds` checkpoint clock of the writer thread.

use tokio::sync::mpsc;

use super::Msg;

/// Wakes the writer every `every` with a [`Msg::Tick`]; ends once the log
/// is closed (it holds only a weak sender, so it never keeps it open).
pub(super) fn spawn_ticker(
    tx: &mpsc::Sender<Msg>,
    every: std::time::Duration,
) -> std::io::Result<()> {
    let weak = tx.downgrade();
    std::thread::Builder::new()
        .name("audit-checkpoint-tick".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(tx) = weak.upgrade() else { return };
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Msg::Tick) {
                    return;
                }
            }
        })
        .map(drop)
}
