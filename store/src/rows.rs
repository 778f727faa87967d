//! The rows that cross the store interface. Their `body` is the service's
//! own JSON; the store only reads the indexed columns beside it.

/// One approval as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRow {
    /// The approval id (primary key).
    pub id: String,
    /// The broker CN that asked.
    pub caller: String,
    /// Not in a final state (counts against the caller's pending cap).
    pub open: bool,
    /// When the approval expires unless acted on; `None` when no deadline
    /// applies any more.
    pub deadline_ms: Option<u64>,
    /// When the row may be deleted; `None` while it is open.
    pub purge_at_ms: Option<u64>,
    /// Creation time, for ordering.
    pub created_ms: u64,
    /// The service's serialised approval.
    pub body: String,
    /// Bumped by the store on every replace; a replace names the version it
    /// read.
    pub version: u64,
}

/// A timed entry: a freeze or a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Primary key.
    pub id: String,
    /// When it was made.
    pub created_ms: u64,
    /// When it stops applying by itself; `None` for never.
    pub expires_ms: Option<u64>,
    /// When it was ended by hand; `None` while in force.
    pub ended_ms: Option<u64>,
    /// The service's serialised entry.
    pub body: String,
}

/// What the guardrail memory knows about one request of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardCheck {
    /// Requests counted in the rate window before this one.
    pub hits: u64,
    /// The oldest of them.
    pub oldest_hit_ms: Option<u64>,
    /// The host was seen for this subject before.
    pub host_known: bool,
    /// The command shapes asked about that were seen before, in the order
    /// asked.
    pub known_commands: Vec<String>,
}

/// Bounds of the guardrail memory (the control plane's `behavior` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// Length of the rate window.
    pub window_ms: u64,
    /// Requests per window; 0 = no limit.
    pub rate_limit: u64,
    /// Count a request in the window even when it is over the limit
    /// (observe mode); in enforce mode a refused request is not counted, so
    /// a throttled subject recovers.
    pub count_over: bool,
    /// Subjects remembered; the least recently active one goes first.
    pub max_subjects: u64,
    /// Hosts and command shapes remembered per subject, each; the least
    /// recently used goes first.
    pub max_items: u64,
}

impl GuardLimits {
    /// Whether a request with `hits` before it in the window is counted.
    pub fn counts(&self, hits: u64) -> bool {
        self.rate_limit == 0 || hits < self.rate_limit || self.count_over
    }
}

/// What a freeze names, for revoking the live certificates it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSubject {
    /// The broker CN that asked, or the forwarder that relayed it.
    Caller,
    /// The end user behind the broker.
    EndUser,
    /// The logical host the certificate is for.
    Host,
    /// One serial.
    Serial,
    /// The certificate's key id.
    KeyId,
}

impl CertSubject {
    /// The subject a freeze kind names (`caller`, `end_user`, `host`,
    /// `serial`, `key_id`).
    pub fn parse(kind: &str) -> Option<CertSubject> {
        Some(match kind {
            "caller" => CertSubject::Caller,
            "end_user" => CertSubject::EndUser,
            "host" => CertSubject::Host,
            "serial" => CertSubject::Serial,
            "key_id" => CertSubject::KeyId,
            _ => return None,
        })
    }

    /// The `WHERE` condition on `live_certs` with the value as parameter
    /// `p` (`?1` or `$1`); a serial is compared as an integer.
    pub(crate) fn condition(self, p: &str) -> String {
        match self {
            CertSubject::Caller => format!("(caller = {p} OR forwarder = {p})"),
            CertSubject::EndUser => format!("end_user = {p}"),
            CertSubject::Host => format!("host = {p}"),
            CertSubject::Serial => format!("serial = {p}"),
            CertSubject::KeyId => format!("key_id = {p}"),
        }
    }
}

/// One certificate in the index of live certificates (for the KRL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCert {
    /// Its serial (unique across CAs: one allocator).
    pub serial: u64,
    /// The signing CA's public key, `ssh-ed25519 AAAA…` without comment.
    pub ca: String,
    /// The certificate's key id.
    pub key_id: String,
    /// The broker CN it was issued to.
    pub caller: String,
    /// The forwarder that relayed the request; empty when none.
    pub forwarder: String,
    /// The end user behind the broker; empty when none.
    pub end_user: String,
    /// The logical host.
    pub host: String,
    /// When it stops being valid (its `valid_before`), Unix milliseconds.
    pub valid_before_ms: u64,
    /// The freeze that revoked it, once one has.
    pub revoked_by: Option<String>,
}

/// The published KRL's version, shared by every replica on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KrlState {
    /// `krl_version`: increases with every change of the content.
    pub version: u64,
    /// The digest of the content this version stands for.
    pub digest: String,
    /// When this version was made, Unix milliseconds.
    pub generated_ms: u64,
}
