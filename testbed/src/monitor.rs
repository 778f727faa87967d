//! Reading a service's monitor listener from tests: a plain HTTP GET, and
//! the `/metrics` text checked by an independent parser (Python's
//! `prometheus_client` OpenMetrics parser, the one Prometheus tooling uses).

use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// `GET path` on `127.0.0.1:port`: (status, body).
pub fn get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    c.write_all(req.as_bytes())?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Whether `python3 -c 'import prometheus_client'` works.
pub fn have_prometheus_parser() -> bool {
    Command::new("python3")
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Parses `text` (a chunked or plain `/metrics` body) with the OpenMetrics
/// parser; `Ok(metric family names)` or the parser's error.
pub fn parse_openmetrics(text: &str) -> Result<Vec<String>, String> {
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
        for f in p(sys.stdin.read()):\n    print(f.name)\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(dechunk(text).as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Undoes HTTP/1.1 chunked transfer encoding if `body` uses it.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 {
            return out;
        }
        let Some(chunk) = after.get(..n) else {
            return body.to_owned();
        };
        out.push_str(chunk);
        rest = after.get(n + 2..).unwrap_or("");
    }
}

/// Polls `/readyz` on `port` until it answers 200, for at most `secs`.
pub fn wait_ready(port: u16, secs: u64) -> bool {
    crate::wait_until(std::time::Duration::from_secs(secs), || {
        get(port, "/readyz").is_ok_and(|(status, _)| status == 200)
    })
}
