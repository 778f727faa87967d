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
