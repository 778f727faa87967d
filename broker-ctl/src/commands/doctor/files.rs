//! Checks on files: certificates (readable, not expiring, matching their
//! key), secret modes, and audit logs (writable, verifying).

use std::path::Path;

use infrabroker_broker::config::BrokerConfig;
use infrabroker_ca::{CaSpec, PinSource};
use infrabroker_common::audit::{AuditKey, VerifyOptions, verify_file};
use infrabroker_common::tls;
use infrabroker_control_plane::config::ControlPlaneConfig;
use infrabroker_signer::config::SignerConfig;

use super::{Finding, Report, set, shown};

/// Certificates expiring sooner than this are reported.
const EXPIRY_WARNING_DAYS: i64 = 14;

pub fn signer(cfg: &SignerConfig, report: &mut Report) {
    server_identity(&cfg.server_cert, &cfg.server_key, &cfg.client_ca, report);
    let entries = std::iter::once(&cfg.ca_default).chain(cfg.ca_groups.values());
    for spec in entries.flat_map(|e| std::iter::once(&e.spec).chain(e.next.as_ref())) {
        // A key file, or a token's PIN file, must be the signer's alone.
        match spec {
            CaSpec::File { path }
            | CaSpec::Pkcs11 {
                pin: PinSource::File(path),
                ..
            } => report.check(secret_mode(path)),
            CaSpec::Pkcs11 { .. } | CaSpec::Agent { .. } => {}
        }
    }
    audit(&cfg.audit_log, &cfg.audit_key, report);
}

pub fn control_plane(cfg: &ControlPlaneConfig, report: &mut Report) {
    server_identity(&cfg.server_cert, &cfg.server_key, &cfg.client_ca, report);
    client_identity(&cfg.signer.client_cert, &cfg.signer.client_key, report);
    audit(&cfg.audit_log, &cfg.audit_key, report);
}

pub fn broker(cfg: &BrokerConfig, report: &mut Report) {
    client_identity(&cfg.signer.client_cert, &cfg.signer.client_key, report);
    audit(&cfg.audit_log, &cfg.audit_key, report);
}

fn server_identity(cert: &Path, key: &Path, client_ca: &Path, report: &mut Report) {
    report.check(expiry(cert));
    report.check(expiry(client_ca));
    report.check(secret_mode(key));
    report.check(
        tls::server_config(cert, key, client_ca)
            .err()
            .map(|e| tls_unusable(cert, e)),
    );
    report.check(key_matches(cert, key));
}

fn client_identity(cert: &Path, key: &Path, report: &mut Report) {
    report.check(expiry(cert));
    report.check(secret_mode(key));
    report.check(key_matches(cert, key));
}

fn tls_unusable(cert: &Path, e: tls::TlsError) -> Finding {
    Finding::new(
        "tls_unusable",
        shown(cert),
        format!("the TLS identity cannot be loaded: {e}"),
        "check the certificate, key and CA paths and their PEM contents",
    )
}

/// Days until the first certificate in `path` expires, or a finding.
fn expiry(path: &Path) -> Option<Finding> {
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) => return Some(unreadable(path, &e.to_string())),
    };
    let parsed = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| e.to_string())
        .and_then(|(_, pem)| {
            pem.parse_x509()
                .map(|c| c.validity().not_after.timestamp())
                .map_err(|e| e.to_string())
        });
    let not_after = match parsed {
        Ok(t) => t,
        Err(e) => return Some(unreadable(path, &format!("not a PEM certificate: {e}"))),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let days = (not_after - now).div_euclid(86_400);
    if not_after <= now {
        Some(Finding::new(
            "cert_expired",
            shown(path),
            format!("the certificate expired {} days ago", -days),
            "issue a new certificate and reload the service",
        ))
    } else if days < EXPIRY_WARNING_DAYS {
        Some(Finding::new(
            "cert_expiring",
            shown(path),
            format!("the certificate expires in {days} days"),
            "issue a new certificate before it expires",
        ))
    } else {
        None
    }
}

/// The certificate's public key is the private key's.
fn key_matches(cert: &Path, key: &Path) -> Option<Finding> {
    let key_pem = match std::fs::read_to_string(key) {
        Ok(k) => zeroize::Zeroizing::new(k),
        Err(e) => return Some(unreadable(key, &e.to_string())),
    };
    let pair = match rcgen::KeyPair::from_pem(&key_pem) {
        Ok(p) => p,
        Err(e) => return Some(unreadable(key, &format!("not a PEM private key: {e}"))),
    };
    let cert_pem = std::fs::read(cert).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&cert_pem).ok()?;
    let parsed = pem.parse_x509().ok()?;
    (parsed.public_key().subject_public_key.data.as_ref() != pair.public_key_raw()).then(|| {
        Finding::new(
            "key_mismatch",
            shown(key),
            format!("this key does not belong to {}", cert.display()),
            "point the key setting at the key the certificate was issued for",
        )
    })
}

fn secret_mode(path: &Path) -> Option<Finding> {
    match tls::check_private_mode(path) {
        Ok(()) => None,
        Err(tls::TlsError::KeyPermissions { mode, .. }) => Some(Finding::new(
            "key_mode",
            shown(path),
            format!("secret file has mode {mode:04o}: group or others can read it"),
            "chmod 600 it (owned by the service's user)",
        )),
        Err(e) => Some(unreadable(path, &e.to_string())),
    }
}

fn unreadable(path: &Path, why: &str) -> Finding {
    Finding::new(
        "file_unreadable",
        shown(path),
        format!("cannot use the file: {why}"),
        "check that the path exists and the service's user can read it",
    )
}

/// The audit key loads, the log is writable and, if it exists, verifies.
fn audit(log: &Path, key: &Path, report: &mut Report) {
    let (Some(log), Some(key)) = (set(log), set(key)) else {
        return;
    };
    report.check(secret_mode(&key));
    let audit_key = match AuditKey::from_seed_file(&key) {
        Ok(k) => k,
        Err(e) => return report.check(Some(unreadable(&key, &e.to_string()))),
    };
    report.check(writable(&log));
    if !log.exists() {
        return;
    }
    let verdict = verify_file(&log, &audit_key.verifying_key(), VerifyOptions::default());
    report.check(verdict.err().map(|e| {
        Finding::new(
            "audit_broken",
            shown(&log),
            format!("the audit log does not verify: {e}"),
            "run `broker-ctl audit verify --all-signatures`; move the log aside before restarting",
        )
    }));
}

fn writable(log: &Path) -> Option<Finding> {
    let result = if log.exists() {
        std::fs::OpenOptions::new().append(true).open(log).map(drop)
    } else {
        let dir = log.parent().filter(|d| !d.as_os_str().is_empty());
        tempfile::tempfile_in(dir.unwrap_or(Path::new("."))).map(drop)
    };
    result.err().map(|e| {
        Finding::new(
            "audit_unwritable",
            shown(log),
            format!("the audit log cannot be written: {e}"),
            "give the service's user write access to the log and its directory",
        )
    })
}
