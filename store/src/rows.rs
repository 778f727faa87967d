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
