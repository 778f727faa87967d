//! Shared pieces of the HTTP frontend tests: a real OpenID provider (Node
//! `oidc-provider`, installed with `npm ci --prefix broker/tests/oidc`), the
//! token forge, a signer with two teams of hosts, `broker mcp-http` as a
//! real process, and a tiny raw HTTP/1.1 client for loopback.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use infrabroker_testbed::stack::{SignerProc, signer_config};
use infrabroker_testbed::{ChildGuard, Sshd, bin_path, free_port, require, spawn_service};
use serde_json::{Value, json};

use crate::harness::{Bed, USER, sshd};

pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// `require`s Node and the installed provider package.
pub fn oidc_or_skip() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let installed = oidc_dir().join("node_modules/oidc-provider").is_dir();
    require(
        "Node.js and the test OpenID provider (npm ci --prefix broker/tests/oidc)",
        node && installed,
    )
}

pub fn python_mcp_or_skip() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import mcp.client.streamable_http, mcp.client.auth.extensions.client_credentials",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    require("the Python `mcp` package (pip install mcp)", ok)
}

/// Host entry in `groups`.
pub fn team_host(sshd: &Sshd, principal: &str, groups: &[&str]) -> Value {
    json!({
        "addr": sshd.addr().to_string(),
        "user": USER,
        "host_key": sshd.host_key_openssh(),
        "principal": principal,
        "groups": groups,
    })
}

/// A signer with `host-a` (group team-a) and `host-b` (group team-b);
/// broker-1 may reach both groups, end users only their own.
pub fn two_teams() -> (Bed, Sshd, Sshd) {
    let (dir, pki) = Bed::pki();
    let a = sshd(&pki, "a-principal");
    let b = sshd(&pki, "b-principal");
    let mut cfg = signer_config(&pki, &dir.path().join("signer-audit.log"));
    cfg["callers"] = json!({"broker-1": {"allowed_groups": ["team-a", "team-b"]}});
    cfg["hosts"] = json!({
        "host-a": team_host(&a, "a-principal", &["team-a"]),
        "host-b": team_host(&b, "b-principal", &["team-b"]),
    });
    let signer = SignerProc::start(dir.path(), &cfg).unwrap();
    (
        Bed {
            dir,
            pki,
            signer_cfg: cfg,
            signer,
        },
        a,
        b,
    )
}

/// The test OpenID provider.
pub struct Oidc {
    pub child: ChildGuard,
    pub issuer: String,
    pub keys: PathBuf,
    dir: PathBuf,
}

impl Oidc {
    /// Generates keys and starts the provider for `resource`.
    pub fn start(dir: &Path, resource: &str) -> Oidc {
        let keys = dir.join("oidc-keys.json");
        let out = Command::new("node")
            .arg(oidc_dir().join("forge.mjs"))
            .arg("keys")
            .arg(&keys)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = spawn_service(
            "node",
            [
                oidc_dir().join("provider.mjs").into_os_string(),
                "--port".into(),
                port.to_string().into(),
                "--resource".into(),
                resource.into(),
                "--keys".into(),
                keys.clone().into_os_string(),
            ],
            dir.join("oidc.log"),
        )
        .unwrap();
        assert!(
            child.wait_for_log("oidc provider listening", Duration::from_secs(20)),
            "provider did not start:\n{}",
            child.log()
        );
        Oidc {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
            keys,
            dir: dir.to_owned(),
        }
    }

    /// A real access token for client `user` (client_credentials).
    pub fn token(&self, user: &str, resource: &str) -> String {
        let body = format!(
            "grant_type=client_credentials&scope=mcp&resource={}",
            encode(resource)
        );
        let basic = base64_basic(user, &format!("{user}-secret"));
        let r = request(
            &self.issuer,
            "POST",
            "/token",
            &[
                ("authorization", &format!("Basic {basic}")),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "token for {user}: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// Forged tokens by name (see `forge.mjs` for the modes).
    pub fn forge(&self, specs: &Value) -> HashMap<String, String> {
        let spec = self
            .dir
            .join(format!("forge-{}.json", rand::random::<u32>()));
        std::fs::write(&spec, serde_json::to_vec(specs).unwrap()).unwrap();
        let out = Command::new("node")
            .arg(oidc_dir().join("forge.mjs"))
            .arg("sign")
            .arg(&self.keys)
            .arg(&spec)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// How many times the JWKS was served.
    pub fn jwks_fetches(&self) -> usize {
        self.child.log().matches("GET /jwks 200").count()
    }
}

/// `broker mcp-http` as a real process.
pub struct McpHttp {
    pub child: ChildGuard,
    /// The MCP endpoint (= resource URL, the tokens' audience).
    pub url: String,
    pub base: String,
}

/// A free port and the MCP URL on it.
pub fn mcp_url() -> (u16, String) {
    let port = free_port();
    (port, format!("http://127.0.0.1:{port}/mcp"))
}

impl McpHttp {
    /// Starts the broker on `port` with `oauth` (merged over the defaults
    /// for `oidc`) and `extra` top-level settings.
    pub fn start(bed: &Bed, oidc: &Oidc, port: u16, oauth: Value, extra: Value) -> McpHttp {
        let url = format!("http://127.0.0.1:{port}/mcp");
        let mut o = json!({"issuer": oidc.issuer, "groups_claim": "groups"});
        for (k, v) in oauth.as_object().unwrap() {
            o[k] = v.clone();
        }
        let mut settings = json!({
            "listen": format!("127.0.0.1:{port}"),
            "resource_url": url,
            "oauth": o,
        });
        for (k, v) in extra.as_object().unwrap() {
            settings[k] = v.clone();
        }
        let config = bed.broker_json(settings);
        let mut cmd = Command::new(bin_path("broker").unwrap());
        cmd.args(["mcp-http", "--config"])
            .arg(&config)
            .env("BROKER_LOG", "info");
        let child = infrabroker_testbed::spawn_logged(
            &mut cmd,
            bed.dir.path().join(format!("mcp-http-{port}.log")),
        )
        .unwrap();
        assert!(
            child.wait_for_log("listening on", Duration::from_secs(20)),
            "broker mcp-http did not start:\n{}",
            child.log()
        );
        McpHttp {
            child,
            url,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// Runs `tests/mcp_http_client.py` for `user`; returns its JSON summary.
pub fn python_client(mcp: &McpHttp, oidc: &Oidc, user: &str, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_http_client.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--url", &mcp.url, "--issuer", &oidc.issuer])
        .args([
            "--client-id",
            user,
            "--client-secret",
            &format!("{user}-secret"),
        ])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client as {user} failed:\n{stdout}\n{}\nbroker log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        mcp.child.log()
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON-RPC message in a JSON or SSE body.
    pub fn rpc(&self) -> Value {
        let text = self.text();
        if let Ok(v) = serde_json::from_str(&text) {
            return v;
        }
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("jsonrpc").is_some())
            .unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request to `base` (`http://127.0.0.1:PORT`), read to the
/// end (`Connection: close`).
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let authority = base.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(authority).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw);
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
    out
}

/// An MCP POST with an optional bearer token and session id.
pub fn mcp_post(mcp: &McpHttp, token: Option<&str>, session: Option<&str>, body: &Value) -> Answer {
    mcp_post_to(&mcp.base, token, session, body)
}

/// [`mcp_post`] to a base URL (for use from another thread).
pub fn mcp_post_to(base: &str, token: Option<&str>, session: Option<&str>, body: &Value) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if let Some(s) = session {
        headers.push(("mcp-session-id", s));
        headers.push(("mcp-protocol-version", "2025-06-18"));
    }
    request(
        base,
        "POST",
        "/mcp",
        &headers,
        &serde_json::to_vec(body).unwrap(),
    )
}

pub fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"}}})
}

pub fn call_body(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": args}})
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn base64_basic(user: &str, secret: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
}
