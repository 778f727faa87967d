//! Why the shim refused to run something.

/// Every way a request can be refused. The shim prints [`Refusal::code`]
/// and the message on one stderr line, logs them to syslog, and exits 126.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No exec request at all (an interactive login or a subsystem).
    #[error("no command: this account only runs signed session commands")]
    NoCommand,
    /// A bare command, not an envelope: what a broker that skipped the
    /// signer would send.
    #[error("the command is not a signed envelope")]
    NotAnEnvelope,
    /// An envelope whose encoding is broken.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    /// No pinned key verifies the signature.
    #[error("the envelope's signature does not verify against any pinned key")]
    BadSignature,
    /// Signed for another host.
    #[error("the envelope is for host {0:?}, this is another host")]
    WrongHost(String),
    /// Signed for a principal this host's shim does not serve.
    #[error("the envelope is for principal {0:?}, which this host does not accept")]
    WrongPrincipal(String),
    /// Past its expiry (or too far in the future to be one of ours).
    #[error("the envelope expired or has an implausible expiry ({0})")]
    Expired(String),
    /// The nonce was used before.
    #[error("the envelope was already used (replay)")]
    Replayed,
    /// The nonce store could not be read or written: refuse rather than
    /// risk a replay.
    #[error("the nonce store is unusable: {0}")]
    NonceStore(String),
    /// The shim's own configuration or key file is unusable.
    #[error("the shim is misconfigured: {0}")]
    Config(String),
    /// The sudo user in the envelope fails the character rule.
    #[error("invalid sudo user in the envelope")]
    BadSudoUser,
    /// The command could not be started.
    #[error("cannot run the command: {0}")]
    Exec(String),
}

impl Refusal {
    /// A stable code for logs and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoCommand => "no_command",
            Refusal::NotAnEnvelope => "not_envelope",
            Refusal::Malformed(_) => "malformed",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongHost(_) => "wrong_host",
            Refusal::WrongPrincipal(_) => "wrong_principal",
            Refusal::Expired(_) => "expired",
            Refusal::Replayed => "replayed",
            Refusal::NonceStore(_) => "nonce_store",
            Refusal::Config(_) => "config",
            Refusal::BadSudoUser => "bad_sudo_user",
            Refusal::Exec(_) => "exec_failed",
        }
    }
}
