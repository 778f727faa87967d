//! A private `rsyslogd` for tests: receives syslog on loopback UDP, TCP
//! and (with a certificate) TLS ports and writes every message's raw text
//! to a file, one per line. The real receiver `audit_syslog` talks to.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::process::{ChildGuard, free_port, spawn_logged, wait_until};

/// Where Debian installs it (package `rsyslog`; TLS needs `rsyslog-gnutls`).
pub const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// Whether `rsyslogd` and its TLS driver are installed.
pub fn have_rsyslogd() -> bool {
    Path::new(RSYSLOGD).is_file()
        && Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").is_file()
}

/// A running receiver; stopped on drop.
#[derive(Debug)]
pub struct Rsyslog {
    _child: ChildGuard,
    out: PathBuf,
    /// UDP port on 127.0.0.1.
    pub udp: u16,
    /// Plain TCP port (octet-counted frames).
    pub tcp: u16,
    /// TLS port (`tls` was given).
    pub tls: Option<u16>,
}

/// The certificate files of a TLS listener (PEM).
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// CA the certificate chains to.
    pub ca: &'a Path,
    /// Server certificate.
    pub cert: &'a Path,
    /// Its key.
    pub key: &'a Path,
}

impl Rsyslog {
    /// Starts one in `dir` (its config, work directory, log and output go
    /// there) and waits until its TCP listeners accept.
    pub fn start(dir: &Path, tls: Option<TlsFiles<'_>>) -> anyhow::Result<Rsyslog> {
        let work = dir.join("rsyslog");
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let out = work.join("messages");
        let (udp, tcp) = (free_port(), free_port());
        let tls_port = tls.map(|_| free_port());
        let mut conf = String::new();
        match tls {
            Some(t) => conf.push_str(&format!(
                "global(workDirectory=\"{}\" defaultNetstreamDriverCAFile=\"{}\" \
                 defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\")\n",
                work.display(),
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            )),
            None => conf.push_str(&format!("global(workDirectory=\"{}\")\n", work.display())),
        }
        conf.push_str(&format!(
            "module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\")\n\
             module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\")\n"
        ));
        if let Some(port) = tls_port {
            conf.push_str(&format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" \
                 streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n"
            ));
        }
        conf.push_str(&format!(
            "template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{}\" template=\"raw\")\n",
            out.display()
        ));
        let conf_path = work.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).context("writing rsyslog.conf")?;
        let child = spawn_logged(
            Command::new(RSYSLOGD)
                .arg("-n")
                .arg("-f")
                .arg(&conf_path)
                .arg("-i")
                .arg(work.join("rsyslogd.pid")),
            work.join("rsyslogd.log"),
        )?;
        let ports: Vec<u16> = [Some(tcp), tls_port].into_iter().flatten().collect();
        let up = wait_until(Duration::from_secs(10), || {
            ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        anyhow::ensure!(
            up,
            "rsyslogd did not listen on {ports:?}; see {}",
            work.join("rsyslogd.log").display()
        );
        Ok(Rsyslog {
            _child: child,
            out,
            udp,
            tcp,
            tls: tls_port,
        })
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}
