//! Where approvals live: a small interface ([`ApprovalStore`]) so that a
//! shared database can replace the in-memory map for several control
//! planes (SPEC §12), and [`MemoryStore`], the single-process default.
//!
//! The store knows nothing of the rules; it only promises that
//! [`ApprovalStore::update`] runs its closure alone on the current record,
//! which makes every state transition a compare-and-set.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::approval::Approval;

/// Storage of approvals.
pub trait ApprovalStore: Send + Sync + fmt::Debug {
    /// Adds a new approval; false if its id is taken.
    fn insert(&self, approval: Approval) -> bool;

    /// A copy of one approval.
    fn get(&self, id: &str) -> Option<Approval>;

    /// Copies of every approval, oldest first.
    fn list(&self) -> Vec<Approval>;

    /// Runs `change` on the approval `id` with no other access in between
    /// and returns the result; `None` if there is no such approval.
    fn update(&self, id: &str, change: &mut dyn FnMut(&mut Approval)) -> Option<Approval>;

    /// Runs `change` on every approval (for deadlines) and removes those
    /// for which `purge` is true afterwards. Returns the approvals that
    /// `change` reported as changed, after the change.
    fn sweep(
        &self,
        change: &mut dyn FnMut(&mut Approval) -> bool,
        purge: &dyn Fn(&Approval) -> bool,
    ) -> Vec<Approval>;

    /// Number of approvals held.
    fn len(&self) -> usize;

    /// True when no approval is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Approvals in a map behind one mutex. Lost on restart: a pending request
/// then simply expires from the broker's point of view.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, Approval>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Approval>> {
        // A panic while holding the lock cannot leave a record half-written
        // (closures only assign fields), so a poisoned map is still sound.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ApprovalStore for MemoryStore {
    fn insert(&self, approval: Approval) -> bool {
        let mut map = self.lock();
        if map.contains_key(&approval.id) {
            return false;
        }
        map.insert(approval.id.clone(), approval);
        true
    }

    fn get(&self, id: &str) -> Option<Approval> {
        self.lock().get(id).cloned()
    }

    fn list(&self) -> Vec<Approval> {
        let mut all: Vec<Approval> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        all
    }

    fn update(&self, id: &str, change: &mut dyn FnMut(&mut Approval)) -> Option<Approval> {
        let mut map = self.lock();
        let a = map.get_mut(id)?;
        change(a);
        Some(a.clone())
    }

    fn sweep(
        &self,
        change: &mut dyn FnMut(&mut Approval) -> bool,
        purge: &dyn Fn(&Approval) -> bool,
    ) -> Vec<Approval> {
        let mut map = self.lock();
        let mut changed = Vec::new();
        for a in map.values_mut() {
            if change(a) {
                changed.push(a.clone());
            }
        }
        map.retain(|_, a| !purge(a));
        changed
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::Barrier;

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
            },
            tier: Tier::Human,
            reasons: Vec::new(),
            rule: None,
            learn: Vec::new(),
            status: Status::Pending,
            created_ms: 0,
            expires_ms: u64::MAX,
            decided_by: None,
            decided_ms: None,
            reason: None,
            escalation: None,
        }
    }

    #[test]
    fn racing_approve_and_deny_end_in_exactly_one_state() {
        for _ in 0..200 {
            let store = Arc::new(MemoryStore::new());
            let a = sample();
            let id = a.id.clone();
            assert!(store.insert(a));
            let barrier = Arc::new(Barrier::new(2));
            let racers: Vec<_> = [true, false]
                .into_iter()
                .map(|approve| {
                    let (store, barrier, id) = (store.clone(), barrier.clone(), id.clone());
                    std::thread::spawn(move || {
                        let who = Decider {
                            id: if approve { "op-a" } else { "op-b" }.into(),
                            via: Via::Operator,
                        };
                        barrier.wait();
                        let mut won = false;
                        store.update(&id, &mut |a| {
                            won = a.decide(&who, approve, "race", 1, 1_000).is_ok();
                        });
                        (approve, won)
                    })
                })
                .collect();
            let results: Vec<(bool, bool)> =
                racers.into_iter().map(|r| r.join().unwrap()).collect();
            let winners: Vec<_> = results.iter().filter(|r| r.1).collect();
            assert_eq!(winners.len(), 1, "{results:?}");
            let final_state = store.get(&id).unwrap().status;
            let expected = if winners[0].0 {
                Status::Approved
            } else {
                Status::Denied
            };
            assert_eq!(final_state, expected);
        }
    }

    #[test]
    fn insert_refuses_a_taken_id_and_sweep_purges() {
        let store = MemoryStore::new();
        let a = sample();
        assert!(store.insert(a.clone()));
        assert!(!store.insert(a.clone()));
        let changed = store.sweep(
            &mut |x| {
                x.status = Status::Denied;
                true
            },
            &|x| x.status == Status::Denied,
        );
        assert_eq!(changed.len(), 1);
        assert!(store.is_empty());
        assert!(store.update(&a.id, &mut |_| {}).is_none());
    }
}
