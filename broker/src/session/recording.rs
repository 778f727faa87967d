//! asciicast v2 recordings of shell and pty sessions: a JSON header line,
//! then one `[seconds, kind, data]` line per event — `i` for what was sent,
//! `o` for stdout, `e` for stderr (`e` is our extension; players ignore it).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

/// One session's recording file (mode 0600).
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    start: Instant,
    file: Mutex<Option<File>>,
}

impl Recorder {
    /// Creates `<dir>/<session_id>.cast` and writes the header.
    pub fn create(
        dir: &Path,
        session_id: &str,
        cols: u32,
        rows: u32,
        title: &str,
    ) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{session_id}.cast"));
        let mut file = File::options()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = json!({
            "version": 2, "width": cols, "height": rows, "timestamp": timestamp,
            "title": title, "env": {"TERM": "xterm", "SHELL": "/bin/sh"},
        });
        writeln!(file, "{header}")?;
        Ok(Recorder {
            path,
            start: Instant::now(),
            file: Mutex::new(Some(file)),
        })
    }

    /// Where the recording is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event. A write failure is logged and stops the recording
    /// (the session itself goes on; the audit log still has every command).
    pub fn event(&self, kind: &str, data: &[u8]) {
        let line = json!([
            self.start.elapsed().as_secs_f64(),
            kind,
            String::from_utf8_lossy(data)
        ]);
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        if let Some(f) = guard.as_mut()
            && let Err(e) = writeln!(f, "{line}")
        {
            tracing::error!(path = %self.path.display(), error = %e, "session recording failed; stopping it");
            *guard = None;
        }
    }
}
