//! Forwarding sealed records to syslog (config `audit_syslog`), for a SIEM
//! that cannot read the file. The local chain stays the source of truth:
//! forwarding never blocks or fails an append.
//!
//! ```jsonc
//! "audit_syslog": {"address": "127.0.0.1:514", "protocol": "udp", "format": "rfc5424"}
//! // "tcp"; or "tls" with "ca": "pki/syslog-ca.pem" and optionally "server_name"
//! ```
//!
//! Each record (the exact line the chain holds) becomes one RFC 5424
//! message, facility *log audit* (13), severity *info*: `<110>1 TIMESTAMP
//! HOSTNAME APP-NAME PROCID audit - LINE`. UDP sends one datagram per
//! message; TCP and TLS frame each by octet counting (RFC 6587 §3.4.1,
//! RFC 5425). The writer thread hands lines to a bounded queue
//! (`queue`, default 10,000); one forwarding thread sends them,
//! reconnecting with a growing pause after a failure. A line that finds
//! the queue full or the receiver unreachable is dropped and counted
//! (`infrabroker_audit_syslog_dropped_total`), and the writer seals an
//! `audit_syslog_dropped` record with the running total, at most once a
//! minute, so the chain says what the receiver lacks.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use crate::config::Obj;

const DEFAULT_QUEUE: u64 = 10_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// The largest UDP payload; a longer message is dropped, not cut.
const MAX_DATAGRAM: usize = 65_507;
/// `<PRI>` for facility 13 (log audit), severity 6 (info).
const PRI: u8 = 13 * 8 + 6;

/// How a service forwards its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogSettings {
    /// `host:port` of the receiver.
    pub address: String,
    /// Transport.
    pub protocol: Protocol,
    /// Lines that may wait for the forwarding thread.
    pub queue: usize,
}

/// The syslog transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// One datagram per message.
    Udp,
    /// Octet-counted frames over TCP.
    Tcp,
    /// Octet-counted frames over TLS, the receiver checked against `ca`.
    Tls {
        /// CA of the receiver's certificate (PEM).
        ca: PathBuf,
        /// Name the certificate must carry (default: the address's host).
        server_name: String,
    },
}

impl SyslogSettings {
    /// Reads `audit_syslog` from a service's config object (errors reported
    /// there); `None` when absent or invalid.
    pub fn read(o: &Obj<'_>, base: &Path) -> Option<SyslogSettings> {
        let c = o.opt_obj("audit_syslog")?;
        let address = c.str("address");
        let protocol = c.opt_str("protocol");
        let format = c.opt_str("format");
        let ca = c.raw("ca").and_then(|_| c.file_path("ca", base));
        let server_name = c.opt_str("server_name");
        let queue = c.opt_u64("queue").unwrap_or(DEFAULT_QUEUE);
        let host = address.as_deref().and_then(|a| match a.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
                Some(h.trim_matches(['[', ']']).to_owned())
            }
            _ => {
                c.error("address", format!("{a:?} is not host:port"));
                None
            }
        });
        if format.as_deref().is_some_and(|f| f != "rfc5424") {
            c.error("format", "only \"rfc5424\" is supported");
        }
        if !(1..=1_000_000).contains(&queue) {
            c.error("queue", "must be between 1 and 1000000");
        }
        let protocol = match (protocol.as_deref(), ca) {
            (None | Some("udp"), None) => Some(Protocol::Udp),
            (Some("tcp"), None) => Some(Protocol::Tcp),
            (Some("tls"), Some(ca)) => host.clone().map(|h| Protocol::Tls {
                ca,
                server_name: server_name.clone().unwrap_or(h),
            }),
            (Some("tls"), None) => {
                c.error("ca", "is required with protocol \"tls\"");
                None
            }
            (Some("udp" | "tcp") | None, Some(_)) => {
                c.error("ca", "is only for protocol \"tls\"");
                None
            }
            (Some(other), _) => {
                c.error(
                    "protocol",
                    format!("{other:?} is not \"udp\", \"tcp\" or \"tls\""),
                );
                None
            }
        };
        if server_name.is_some() && !matches!(protocol, Some(Protocol::Tls { .. })) {
            c.error("server_name", "is only for protocol \"tls\"");
        }
        c.finish();
        host?;
        Some(SyslogSettings {
            address: address?,
            protocol: protocol?,
            queue: usize::try_from(queue).unwrap_or(usize::MAX),
        })
    }
}

/// The writer's side: a bounded queue to the forwarding thread.
#[derive(Debug)]
pub(crate) struct Forwarder {
    tx: SyncSender<String>,
    dropped: Counter,
    /// The total the chain was last told, and when.
    recorded: (u64, Option<Instant>),
}

impl Forwarder {
    /// Starts the forwarding thread; `app` is the APP-NAME field.
    pub(crate) fn start(
        settings: SyslogSettings,
        app: &str,
        dropped: Counter,
    ) -> io::Result<Forwarder> {
        let (tx, rx) = sync_channel(settings.queue);
        let header = Header {
            hostname: hostname(),
            app: app.to_owned(),
            procid: std::process::id(),
        };
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("audit-syslog".to_owned())
            .spawn(move || forward(settings, header, rx, counter))?;
        Ok(Forwarder {
            tx,
            dropped,
            recorded: (0, None),
        })
    }

    /// Queues the records in `lines` (newline-separated); never blocks.
    pub(crate) fn offer(&self, lines: &[u8]) {
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = String::from_utf8_lossy(line).into_owned();
            match self.tx.try_send(line) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.dropped.inc();
                }
            }
        }
    }

    /// The running drop total when the chain should be told (it grew and
    /// the last telling is a minute old); remembers it as told.
    pub(crate) fn drops_to_record(&mut self) -> Option<u64> {
        let total = self.dropped.get();
        let due = self
            .recorded
            .1
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
        (total > self.recorded.0 && due).then(|| {
            self.recorded = (total, Some(Instant::now()));
            total
        })
    }
}

struct Header {
    hostname: String,
    app: String,
    procid: u32,
}

impl Header {
    /// One RFC 5424 message carrying `line`.
    fn message(&self, line: &str) -> String {
        let ts = time::OffsetDateTime::now_utc()
            .format(super::writer::TS_FORMAT)
            .unwrap_or_else(|_| "-".to_owned());
        format!(
            "<{PRI}>1 {ts} {} {} {} audit - {line}",
            self.hostname, self.app, self.procid
        )
    }
}

/// The host name as RFC 5424 wants it: printable ASCII, no spaces, ≤ 255.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() {
        "-".to_owned()
    } else {
        name
    }
}

/// An open connection to the receiver.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn open(s: &SyslogSettings) -> io::Result<Conn> {
        let addr = s
            .address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{} resolves to nothing", s.address)))?;
        match &s.protocol {
            Protocol::Udp => {
                let local = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let sock = UdpSocket::bind(local)?;
                sock.connect(addr)?;
                Ok(Conn::Udp(sock))
            }
            Protocol::Tcp => Ok(Conn::Tcp(TcpStream::connect_timeout(
                &addr,
                CONNECT_TIMEOUT,
            )?)),
            Protocol::Tls { ca, server_name } => {
                let config = crate::tls::server_auth_config(ca).map_err(io::Error::other)?;
                let name = rustls::pki_types::ServerName::try_from(server_name.clone())
                    .map_err(|e| io::Error::other(format!("server_name {server_name:?}: {e}")))?;
                let conn = rustls::ClientConnection::new(Arc::new(config), name)
                    .map_err(io::Error::other)?;
                let sock = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
                sock.set_write_timeout(Some(CONNECT_TIMEOUT))?;
                Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, sock))))
            }
        }
    }

    fn send(&mut self, msg: &str) -> io::Result<()> {
        match self {
            Conn::Udp(sock) => {
                if msg.len() > MAX_DATAGRAM {
                    return Err(io::Error::other("message longer than a UDP datagram"));
                }
                sock.send(msg.as_bytes()).map(drop)
            }
            Conn::Tcp(stream) => write!(stream, "{} {msg}", msg.len()),
            Conn::Tls(stream) => {
                write!(stream, "{} {msg}", msg.len())?;
                stream.flush()
            }
        }
    }
}

/// The forwarding thread: sends each queued line, reconnecting after a
/// failure with a pause that doubles up to [`MAX_PAUSE`]; lines that
/// arrive while it cannot send are dropped and counted.
fn forward(settings: SyslogSettings, header: Header, rx: Receiver<String>, dropped: Counter) {
    let mut conn: Option<Conn> = None;
    let mut pause = Duration::from_millis(100);
    let mut retry_at = Instant::now();
    for line in rx {
        if conn.is_none() && Instant::now() >= retry_at {
            match Conn::open(&settings) {
                Ok(c) => {
                    conn = Some(c);
                    pause = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(address = %settings.address, error = %e, "audit syslog receiver unreachable; dropping records until it is back");
                    retry_at = Instant::now() + pause;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            dropped.inc();
            continue;
        };
        if let Err(e) = c.send(&header.message(&line)) {
            tracing::warn!(address = %settings.address, error = %e, "audit syslog send failed");
            dropped.inc();
            conn = None;
            retry_at = Instant::now() + pause;
        }
    }
}

#[cfg(test)]
mod tests;
