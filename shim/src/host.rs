//! What the shim reads from and tells the host it runs on: its command
//! line, the real uid, and syslog.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use crate::config;
use crate::error::Refusal;

/// The configuration path from the arguments after the program name:
/// none, or `--config PATH`.
pub fn config_path(mut args: impl Iterator<Item = String>) -> Result<PathBuf, Refusal> {
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, ..) => Ok(PathBuf::from(config::DEFAULT_PATH)),
        (Some("--config"), Some(path), None) => Ok(PathBuf::from(path)),
        _ => Err(Refusal::Config(
            "usage: infrabroker-shim [--config PATH]".into(),
        )),
    }
}

/// The real uid, from `/proc/self/status` (no `unsafe` libc call needed).
pub fn own_uid() -> Result<u32, Refusal> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next()?.parse().ok())
        })
        .ok_or_else(|| Refusal::Config("cannot read the uid from /proc/self/status".into()))
}

/// One RFC 3164 record to `/dev/log` (facility auth = 4), best effort: a
/// host without syslog still gets the stderr line.
pub fn syslog(severity: u8, message: &str) {
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let record = format!(
        "<{}>infrabroker-shim[{}]: {}",
        4 * 8 + severity,
        std::process::id(),
        message.replace(['\n', '\r'], " ")
    );
    let _ = socket.send_to(record.as_bytes(), "/dev/log");
}

#[cfg(test)]
mod tests {
    use super::config_path;

    #[test]
    fn only_no_arguments_or_one_config_flag_are_accepted() {
        let args = |a: &[&str]| {
            a.iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert!(config_path(args(&[])).is_ok());
        assert_eq!(
            config_path(args(&["--config", "/x"])).ok(),
            Some("/x".into())
        );
        assert!(config_path(args(&["--config"])).is_err());
        assert!(config_path(args(&["-c", "/x"])).is_err());
        assert!(config_path(args(&["--config", "/x", "y"])).is_err());
    }
}
