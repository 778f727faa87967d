//! Checkpoint notes: round trip, forgery, and a cross-check with an
//! independent implementation (Python's `cryptography` Ed25519 and
//! `hashlib`), run as a real process.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::*;
use crate::audit::merkle;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[3u8; 32])
}

fn cp() -> Checkpoint {
    let leaves: Vec<Hash> = (0..5u8).map(|i| merkle::leaf_hash(&[i])).collect();
    Checkpoint {
        origin: "infrabroker.test/signer".to_owned(),
        size: 5,
        root: merkle::root(&leaves),
    }
}

#[test]
fn signed_note_round_trips_and_has_the_c2sp_layout() {
    let note = cp().sign("infrabroker.test/signer", &key());
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(lines[0], "infrabroker.test/signer");
    assert_eq!(lines[1], "5");
    assert_eq!(lines[3], "");
    assert!(lines[4].starts_with("\u{2014} infrabroker.test/signer "));
    let opened = Checkpoint::open(&note, "infrabroker.test/signer", &key().verifying_key());
    assert_eq!(opened.unwrap(), cp());
}

#[test]
fn forged_or_foreign_checkpoints_are_refused() {
    let name = "infrabroker.test/signer";
    let public = key().verifying_key();
    let note = cp().sign(name, &key());
    let bigger = note.replacen("\n5\n", "\n6\n", 1);
    assert!(matches!(
        Checkpoint::open(&bigger, name, &public),
        Err(CheckpointError::BadSignature(_))
    ));
    let other = SigningKey::from_bytes(&[4u8; 32]);
    let foreign = cp().sign(name, &other);
    assert!(Checkpoint::open(&foreign, name, &public).is_err());
    let renamed = cp().sign("someone-else", &key());
    assert!(Checkpoint::open(&renamed, name, &public).is_err());
    assert!(matches!(
        Checkpoint::open("no note", name, &public),
        Err(CheckpointError::Malformed(_))
    ));
}

const PY_VERIFY: &str = r#"
import base64, hashlib, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
name, pub = sys.argv[1], bytes.fromhex(sys.argv[2])
text = sys.stdin.buffer.read().decode()
body, sigs = text.split("\n\n", 1)
body = (body + "\n").encode()
kid = hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4]
for line in sigs.splitlines():
    dash, who, b64 = line.split(" ")
    assert dash == "\u2014" and who == name, line
    blob = base64.b64decode(b64)
    assert blob[:4] == kid, "key id"
    Ed25519PublicKey.from_public_bytes(pub).verify(blob[4:], body)
origin, size, root = body.decode().splitlines()
print(origin, size, base64.b64decode(root).hex())
"#;

/// Runs the Python verifier on `note`; `None` if python3 cannot start.
fn py_verify(name: &str, note: &str) -> Option<std::process::Output> {
    let mut child = Command::new("python3")
        .args(["-c", PY_VERIFY, name])
        .arg(hex::encode(key().verifying_key().as_bytes()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    stdin.write_all(note.as_bytes()).ok()?;
    drop(stdin);
    child.wait_with_output().ok()
}

/// The note verifies with an implementation that shares no code with
/// ours. Needs `python3` with `cryptography`; fails when `CI=true` if absent.
#[test]
fn checkpoint_verifies_with_an_independent_implementation() {
    let name = "infrabroker.test/signer";
    let note = cp().sign(name, &key());
    let Some(out) = py_verify(name, &note) else {
        assert!(std::env::var_os("CI").is_none(), "python3 is required");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'cryptography'") {
        assert!(std::env::var_os("CI").is_none(), "{stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let want = format!("{name} 5 {}\n", hex::encode(cp().root));
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    // And it rejects what ours rejects.
    let tampered = note.replacen("\n5\n", "\n6\n", 1);
    assert!(!py_verify(name, &tampered).unwrap().status.success());
}
