//! The dev/test PKI behind `broker-ctl pki init`, and the certificate
//! builders tests use to make extra certificates at run time.
//!
//! [`init`] writes, into one directory: a TLS CA, server certificates for the
//! signer and the control plane, client certificates, an Ed25519 SSH user CA
//! and one audit signing seed per service. Nothing here is meant for
//! production: a real deployment brings its own CA.
//!
//! # Layout
//! - [`PkiOptions`], [`init`], [`PkiPaths`]: the whole dev PKI in one call.
//! - `tls`: [`TlsCa`], [`Leaf`], [`load_ca`]: lower-level builders, so tests can
//!   issue "a certificate from another CA" or "an expired client
//!   certificate" without touching disk.
//! - [`PkiError`]: everything that can go wrong.
//!
//! Every file is written to a temporary name in the target directory with its
//! final mode set at `open` time, then renamed into place, so a private key is
//! never readable by others, not even for an instant, and a crash never
//! leaves half a key behind.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rand::TryRng as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use ssh_key::LineEnding;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::public::Ed25519PublicKey;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// Common name of the CA made by [`init`].
pub const DEV_CA_CN: &str = "infrabroker dev CA";
/// Subject alternative names of the dev server certificates.
pub const DEV_SERVER_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Client certificates [`PkiOptions::new`] asks for.
pub const DEFAULT_CLIENTS: [&str; 2] = ["broker-1", "operator"];
/// Validity of generated certificates unless told otherwise.
pub const DEFAULT_VALID_DAYS: u32 = 365;
/// Comment of the SSH user CA public key.
pub const SSH_USER_CA_COMMENT: &str = "infrabroker-ssh-user-ca";
/// File stem of the SSH user CA (`ssh_user_ca`, `ssh_user_ca.pub`).
pub const SSH_USER_CA_STEM: &str = "ssh_user_ca";
/// Services that get an audit signing seed (`<stem>-audit.seed`).
pub const AUDIT_STEMS: [&str; 3] = ["signer", "broker", "control-plane"];

/// Stems of the server certificates, reserved as client names.
const SERVER_STEMS: [&str; 2] = ["signer", "control-plane"];
const MODE_PRIVATE: u32 = 0o600;
const MODE_PUBLIC: u32 = 0o644;
/// Certificates start a little in the past so a peer whose clock lags
/// slightly still accepts a certificate made a second ago.
const BACKDATE: Duration = Duration::minutes(5);

/// What went wrong while making, reading or writing the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Target files already exist and overwriting was not asked for.
    #[error("refusing to overwrite existing PKI files without --force: {}", display_paths(.0))]
    Exists(Vec<PathBuf>),
    /// A file or directory could not be read, written or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Key or certificate generation or encoding failed.
    #[error("key or certificate generation failed: {0}")]
    Generate(String),
    /// An option makes no sense (bad client name, zero validity, ...).
    #[error("invalid PKI option: {0}")]
    Invalid(String),
    /// A CA certificate or key read from disk is unusable.
    #[error("{}: {reason}", path.display())]
    BadCa {
        /// The file concerned.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

fn generate_err(err: impl std::fmt::Display) -> PkiError {
    PkiError::Generate(err.to_string())
}

/// Options of [`init`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiOptions {
    /// Directory to write into; created (mode 0700) if missing.
    pub out: PathBuf,
    /// Replace existing files instead of refusing.
    pub force: bool,
    /// Client certificate stems (and common names), besides `control-plane`.
    pub clients: Vec<String>,
    /// Validity of the CA and of every certificate, from now.
    pub valid_days: u32,
}

impl PkiOptions {
    /// Default options writing into `out`.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            force: false,
            clients: DEFAULT_CLIENTS.iter().map(|c| (*c).to_owned()).collect(),
            valid_days: DEFAULT_VALID_DAYS,
        }
    }
}

impl Default for PkiOptions {
    /// Writes into `pki`, the git-ignored directory at the workspace root.
    fn default() -> Self {
        Self::new("pki")
    }
}

/// One file written by [`init`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its permission bits (0600 for secrets).
    pub mode: u32,
    /// What it is for, in a few words.
    pub purpose: &'static str,
}

/// Everything [`init`] wrote, in writing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    /// The output directory.
    pub out: PathBuf,
    /// The files, CA first.
    pub files: Vec<PkiFile>,
}

impl PkiPaths {
    /// Path of the written file called `name` (e.g. `"ca.crt"`), if any.
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|f| f.path.file_name().is_some_and(|n| n == name))
            .map(|f| f.path.as_path())
    }
}

/// A file made in memory, waiting to be written.
struct Planned {
    name: String,
    contents: Zeroizing<Vec<u8>>,
    mode: u32,
    purpose: &'static str,
}

impl Planned {
    fn public(name: String, contents: impl Into<Vec<u8>>, purpose: &'static str) -> Self {
        let contents = Zeroizing::new(contents.into());
        Self {
            name,
            contents,
            mode: MODE_PUBLIC,
            purpose,
        }
    }

    fn private(name: String, contents: Zeroizing<Vec<u8>>, purpose: &'static str) -> Self {
        Self {
            name,
            contents,
            mode: MODE_PRIVATE,
            purpose,
        }
    }
}

/// Makes the whole dev/test PKI in `opts.out`.
///
/// Refuses with [`PkiError::Exists`], before writing anything, if any target
/// file is already there and `opts.force` is false.
pub fn init(opts: &PkiOptions) -> Result<PkiPaths, PkiError> {
    validate(opts)?;
    // Generating first costs a few milliseconds on refusal but keeps one
    // list of file names instead of two that could drift apart.
    let planned = generate(opts)?;
    let existing: Vec<PathBuf> = planned
        .iter()
        .map(|f| opts.out.join(&f.name))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    if !existing.is_empty() && !opts.force {
        return Err(PkiError::Exists(existing));
    }

    create_dir(&opts.out)?;
    let mut files = Vec::with_capacity(planned.len());
    for file in planned {
        let path = opts.out.join(&file.name);
        write_atomic(&path, &file.contents, file.mode)?;
        files.push(PkiFile {
            path,
            mode: file.mode,
            purpose: file.purpose,
        });
    }
    Ok(PkiPaths {
        out: opts.out.clone(),
        files,
    })
}

fn validate(opts: &PkiOptions) -> Result<(), PkiError> {
    if opts.valid_days == 0 {
        return Err(PkiError::Invalid(
            "valid_days must be at least 1".to_owned(),
        ));
    }
    let reserved = ["ca", SSH_USER_CA_STEM].iter().chain(&SERVER_STEMS);
    let reserved: Vec<&str> = reserved.copied().collect();
    for (i, name) in opts.clients.iter().enumerate() {
        let well_formed = !name.is_empty()
            && !name.starts_with('.')
            && !name.ends_with("-audit")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !well_formed || reserved.contains(&name.as_str()) {
            return Err(PkiError::Invalid(format!(
                "client name {name:?} must be letters, digits, '.', '_' or '-' and not one of \
                 {reserved:?}"
            )));
        }
        if opts.clients[..i].contains(name) {
            return Err(PkiError::Invalid(format!(
                "client name {name:?} given twice"
            )));
        }
    }
    Ok(())
}

fn generate(opts: &PkiOptions) -> Result<Vec<Planned>, PkiError> {
    let ca = TlsCa::generate_valid_for(DEV_CA_CN, opts.valid_days)?;
    let mut out = vec![
        Planned::public(
            "ca.crt".to_owned(),
            ca.cert_pem(),
            "TLS CA certificate (trust anchor)",
        ),
        Planned::private(
            "ca.key".to_owned(),
            pem_bytes(ca.key_pem()),
            "TLS CA private key",
        ),
    ];
    let signer = ca.issue_server("signer", &DEV_SERVER_SANS)?;
    push_leaf(&mut out, "signer", signer, "TLS server certificate");
    let control_plane = ca.issue_server_client("control-plane", &DEV_SERVER_SANS)?;
    push_leaf(
        &mut out,
        "control-plane",
        control_plane,
        "TLS server and client certificate",
    );
    for stem in &opts.clients {
        push_leaf(
            &mut out,
            stem,
            ca.issue_client(stem)?,
            "TLS client certificate",
        );
    }

    let (private, public) = ssh_user_ca()?;
    out.push(Planned::private(
        SSH_USER_CA_STEM.to_owned(),
        private,
        "SSH user CA private key",
    ));
    out.push(Planned::public(
        format!("{SSH_USER_CA_STEM}.pub"),
        public,
        "SSH user CA public key",
    ));

    for stem in AUDIT_STEMS {
        let seed = random_seed()?;
        let public = audit_public_line(&seed, &format!("{stem}-audit"))?;
        let seed_bytes = Zeroizing::new(seed.to_vec());
        out.push(Planned::private(
            format!("{stem}-audit.seed"),
            seed_bytes,
            "audit signing seed",
        ));
        out.push(Planned::public(
            format!("{stem}-audit.pub"),
            public,
            "audit verifying key",
        ));
    }
    Ok(out)
}

fn push_leaf(out: &mut Vec<Planned>, stem: &str, leaf: Leaf, purpose: &'static str) {
    out.push(Planned::public(
        format!("{stem}.crt"),
        leaf.cert_pem,
        purpose,
    ));
    out.push(Planned::private(
        format!("{stem}.key"),
        pem_bytes(leaf.key_pem),
        "TLS private key",
    ));
}

fn pem_bytes(pem: Zeroizing<String>) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(pem.as_bytes().to_vec())
}

/// 32 bytes from the operating system's generator.
fn random_seed() -> Result<Zeroizing<[u8; 32]>, PkiError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::SysRng
        .try_fill_bytes(seed.as_mut())
        .map_err(|e| PkiError::Generate(format!("system random generator: {e}")))?;
    Ok(seed)
}

/// The SSH user CA as (OpenSSH private key, `ssh-ed25519 ...` line).
fn ssh_user_ca() -> Result<(Zeroizing<Vec<u8>>, String), PkiError> {
    let seed = random_seed()?;
    let keypair = KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed));
    let key = ssh_key::PrivateKey::new(keypair, SSH_USER_CA_COMMENT).map_err(generate_err)?;
    let private = key.to_openssh(LineEnding::LF).map_err(generate_err)?;
    let public = key.public_key().to_openssh().map_err(generate_err)?;
    Ok((pem_bytes(private), format!("{public}\n")))
}

/// The `ssh-ed25519 AAAA... <comment>` line of the audit key behind `seed`.
///
/// Derived through ed25519-dalek, the library that signs audit records, so
/// the published key is by construction the one that verifies them.
fn audit_public_line(seed: &[u8; 32], comment: &str) -> Result<String, PkiError> {
    let verifying = ed25519_dalek::SigningKey::from_bytes(seed).verifying_key();
    let key = ssh_key::PublicKey::new(Ed25519PublicKey(verifying.to_bytes()).into(), comment);
    let line = key.to_openssh().map_err(generate_err)?;
    Ok(format!("{line}\n"))
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    let io_err = |source| PkiError::Io {
        path: dir.to_owned(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err)?;
    // Someone who can write the directory can swap a key file between
    // our writes and its first use.
    use std::os::unix::fs::MetadataExt;
    let meta = dir.metadata().map_err(io_err)?;
    let me = std::fs::metadata("/proc/self").map_err(io_err)?.uid();
    if meta.mode() & 0o022 != 0 {
        return Err(PkiError::Invalid(format!(
            "{} is writable by group or others (mode {:o}): use a directory only you can write",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    if meta.uid() != me {
        return Err(PkiError::Invalid(format!(
            "{} belongs to uid {}, not to you (uid {me})",
            dir.display(),
            meta.uid()
        )));
    }
    Ok(())
}

/// Writes `contents` to `path` through a temporary file created with `mode`,
/// replacing any existing file.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no file name",
        ))
    })?;
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}-{unique}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: the temporary file is useless now, and the error that
        // matters is the one returned below.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

mod tls;

pub use tls::{Leaf, TlsCa, load_ca};

#[cfg(test)]
mod tests;
