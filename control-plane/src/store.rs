//! Where approvals live: [`Approvals`], the control plane's view of the
//! shared [`infrabroker_store::Store`] (SQLite by default, PostgreSQL for
//! several control planes on one database).
//!
//! The store knows nothing of the rules. A state change is read → run the
//! transition of [`crate::approval`] here → compare-and-set on the row's
//! version; when another replica changed the row in between, the whole
//! step runs again on the fresh row. So [`Approvals::update`]'s closure
//! may run more than once and must only assign (never accumulate), and two
//! racing decisions — on one replica or on two — end in exactly one state.
//!
//! Any store failure is `503 store_unavailable`: nothing is decided, held
//! or issued on a state that could not be read or written.

use std::time::Duration;

use infrabroker_store::{ApprovalRow, Store, StoreError};

use crate::approval::Approval;
use crate::error::{ApiError, Code};

/// How many times a compare-and-set is retried before giving up (each
/// retry means another replica changed the row in between).
const MAX_CAS_ATTEMPTS: usize = 16;

/// Expired rows handled per sweep query.
const DUE_BATCH: u32 = 256;

/// Approvals in the state store.
#[derive(Debug, Clone)]
pub struct Approvals {
    store: Store,
    purge_after_ms: u64,
}

/// The refusal for a store that cannot be used.
pub fn unavailable(e: &StoreError) -> ApiError {
    tracing::error!(error = %e, "state store failed");
    ApiError::new(
        Code::StoreUnavailable,
        format!("the state store cannot be used ({e}); nothing was decided or issued, retry"),
    )
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Approvals {
    /// Approvals in `store`; final ones are purged `purge_after` after
    /// their decision.
    pub fn new(store: Store, purge_after: Duration) -> Self {
        Approvals {
            store,
            purge_after_ms: ms(purge_after),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn encode(&self, a: &Approval, version: u64) -> Result<ApprovalRow, ApiError> {
        let body = serde_json::to_string(a).map_err(|e| {
            ApiError::new(
                Code::StoreUnavailable,
                format!("approval {} not storable: {e}", a.id),
            )
        })?;
        let purge_at_ms = a.status.is_final().then(|| {
            a.decided_ms
                .unwrap_or(a.created_ms)
                .saturating_add(self.purge_after_ms)
        });
        Ok(ApprovalRow {
            id: a.id.clone(),
            caller: a.caller.clone(),
            open: !a.status.is_final(),
            deadline_ms: a.deadline_ms(),
            purge_at_ms,
            created_ms: a.created_ms,
            body,
            version,
        })
    }

    fn decode(row: &ApprovalRow) -> Result<Approval, ApiError> {
        serde_json::from_str(&row.body)
            .map_err(|e| unavailable(&StoreError::Corrupt(format!("approval {}: {e}", row.id))))
    }

    /// Adds a new approval; false if its id is taken.
    pub async fn insert(&self, a: &Approval) -> Result<bool, ApiError> {
        let row = self.encode(a, 0)?;
        self.store
            .approval_insert(&row)
            .await
            .map_err(|e| unavailable(&e))
    }

    /// One approval.
    pub async fn get(&self, id: &str) -> Result<Option<Approval>, ApiError> {
        match self
            .store
            .approval_get(id)
            .await
            .map_err(|e| unavailable(&e))?
        {
            Some(row) => Self::decode(&row).map(Some),
            None => Ok(None),
        }
    }

    /// Every approval, oldest first.
    pub async fn list(&self) -> Result<Vec<Approval>, ApiError> {
        let rows = self
            .store
            .approval_list()
            .await
            .map_err(|e| unavailable(&e))?;
        rows.iter().map(Self::decode).collect()
    }

    /// Runs `change` on approval `id` and stores the result as one
    /// compare-and-set (see the module docs); returns the approval after
    /// the change, `None` if there is no such approval. An unchanged
    /// approval is not written.
    pub async fn update(
        &self,
        id: &str,
        mut change: impl FnMut(&mut Approval) + Send,
    ) -> Result<Option<Approval>, ApiError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some(row) = self
                .store
                .approval_get(id)
                .await
                .map_err(|e| unavailable(&e))?
            else {
                return Ok(None);
            };
            let mut a = Self::decode(&row)?;
            let before = a.clone();
            change(&mut a);
            if a == before {
                return Ok(Some(a));
            }
            let next = self.encode(&a, row.version)?;
            if self
                .store
                .approval_replace(&next)
                .await
                .map_err(|e| unavailable(&e))?
            {
                return Ok(Some(a));
            }
        }
        Err(ApiError::new(
            Code::StoreUnavailable,
            format!("approval {id} kept changing while it was being updated; retry"),
        ))
    }

    /// Open approvals past their deadline, at most one batch.
    pub async fn due(&self, now_ms: u64) -> Result<Vec<Approval>, ApiError> {
        let rows = self
            .store
            .approval_due(now_ms, DUE_BATCH)
            .await
            .map_err(|e| unavailable(&e))?;
        rows.iter().map(Self::decode).collect()
    }

    /// Deletes final approvals whose purge time has come.
    pub async fn purge(&self, now_ms: u64) -> Result<u64, ApiError> {
        self.store
            .approval_purge(now_ms)
            .await
            .map_err(|e| unavailable(&e))
    }

    /// Open approvals of `caller`.
    pub async fn open_count(&self, caller: &str) -> Result<u64, ApiError> {
        self.store
            .approval_open_count(caller)
            .await
            .map_err(|e| unavailable(&e))
    }

    /// Approvals held.
    pub async fn count(&self) -> Result<u64, ApiError> {
        self.store
            .approval_count()
            .await
            .map_err(|e| unavailable(&e))
    }

    /// True for the first replica to claim announcing approval `id`.
    pub async fn claim_announcement(
        &self,
        id: &str,
        owner: &str,
        now_ms: u64,
    ) -> Result<bool, ApiError> {
        self.store
            .claim("notify", id, owner, now_ms)
            .await
            .map_err(|e| unavailable(&e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use infrabroker_store::StoreConfig;

    use super::*;
    use crate::approval::{Decider, Status, Tier, Via};

    fn sample() -> Approval {
        use infrabroker_common::wire::{Purpose, Role, SignRequest};
        Approval {
            id: crate::approval::new_id(),
            caller: "broker-1".into(),
            subject: "broker-1".into(),
            request: SignRequest {
                host: "web".into(),
                role: Role::Target,
                purpose: Purpose::Oneshot,
                command: "id".into(),
                pubkey: String::new(),
                sudo: false,
                sudo_user: None,
                pty: false,
                session_mode: None,
                ttl_seconds: None,
                timeout_seconds: None,
                end_user: None,
                end_user_groups: None,
                dry_run: false,
                on_behalf_of: None,
                approved: false,
                file: None,
            },
            tier: Tier::Human,
            reasons: Vec::new(),
            rule: None,
            learn: vec![crate::approval::Novelty::Host("web".into())],
            status: Status::Pending,
            created_ms: 0,
            expires_ms: 10_000,
            decided_by: None,
            decided_ms: None,
            reason: None,
            escalation: Some(("rev".into(), "why".into())),
        }
    }

    async fn open(dir: &tempfile::TempDir) -> Approvals {
        let store = Store::open(&StoreConfig::Sqlite(dir.path().join("cp.db")))
            .await
            .unwrap();
        Approvals::new(store, Duration::from_secs(60))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_approve_and_deny_end_in_exactly_one_state() {
        let dir = tempfile::tempdir().unwrap();
        // Two handles on one file: two replicas deciding at once.
        let (one, two) = (Arc::new(open(&dir).await), Arc::new(open(&dir).await));
        for _ in 0..30 {
            let a = sample();
            let id = a.id.clone();
            assert!(one.insert(&a).await.unwrap());
            let racers: Vec<_> = [true, false]
                .into_iter()
                .map(|approve| {
                    let (store, id) = (if approve { one.clone() } else { two.clone() }, id.clone());
                    tokio::spawn(async move {
                        let who = Decider {
                            id: if approve { "op-a" } else { "op-b" }.into(),
                            via: Via::Operator,
                        };
                        let mut won = false;
                        store
                            .update(&id, |a| {
                                won = a.decide(&who, approve, "race", 1, 1_000).is_ok()
                            })
                            .await
                            .unwrap();
                        (approve, won)
                    })
                })
                .collect();
            let mut results = Vec::new();
            for r in racers {
                results.push(r.await.unwrap());
            }
            let winners: Vec<_> = results.iter().filter(|r| r.1).collect();
            assert_eq!(winners.len(), 1, "{results:?}");
            let final_state = two.get(&id).await.unwrap().unwrap().status;
            let expected = if winners[0].0 {
                Status::Approved
            } else {
                Status::Denied
            };
            assert_eq!(final_state, expected);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trips_and_deadlines_are_queries() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir).await;
        let a = sample();
        assert!(s.insert(&a).await.unwrap());
        assert!(!s.insert(&a).await.unwrap());
        assert_eq!(
            s.get(&a.id).await.unwrap().as_ref(),
            Some(&a),
            "every field survives"
        );
        assert!(s.due(9_999).await.unwrap().is_empty());
        assert_eq!(s.due(10_000).await.unwrap().len(), 1);
        assert_eq!(s.open_count("broker-1").await.unwrap(), 1);
        let done = s.update(&a.id, |x| {
            x.expire_if_due(10_000);
        });
        assert_eq!(done.await.unwrap().unwrap().status, Status::Expired);
        assert_eq!(s.open_count("broker-1").await.unwrap(), 0);
        assert!(
            s.due(20_000).await.unwrap().is_empty(),
            "final rows have no deadline"
        );
        assert_eq!(s.purge(69_999).await.unwrap(), 0);
        assert_eq!(
            s.purge(70_000).await.unwrap(),
            1,
            "purged purge_after after the decision"
        );
        assert!(s.update(&a.id, |_| {}).await.unwrap().is_none());
    }
}
