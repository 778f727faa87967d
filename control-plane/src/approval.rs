//! Approvals: the record of one held sign request and the rules of its
//! state machine.
//!
//! ```text
//!            approve                collect               signer answers
//! Pending ─────────────▶ Approved ─────────▶ Issuing ───────────────────▶ Used
//!    │ deny                 │ timeout            │ signer unreachable
//!    ▼                      ▼                    ▼
//! Denied     Expired ◀── (Pending or Approved past their deadline)   Approved
//! ```
//!
//! Every transition is a method on [`Approval`] that checks the current
//! state first; the store runs it under its lock, so each one is a
//! compare-and-set and two racing decisions end in exactly one state.

use infrabroker_common::wire::SignRequest;
use serde::{Deserialize, Serialize};

use crate::identity::IdentityMap;

pub use crate::view::{ApprovalView, rfc3339};

/// Who may decide a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Granted by the control plane itself, audited.
    Auto,
    /// The person using the MCP client confirms the exact request in the
    /// conversation (or an operator approves it). Only as strong as the
    /// broker that asks; never enough for `ai_review` or `human`.
    UserConfirm,
    /// The AI reviewer (or an operator) may approve.
    AiReview,
    /// Only an operator may approve.
    Human,
}

impl Tier {
    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "auto" => Some(Tier::Auto),
            "user_confirm" => Some(Tier::UserConfirm),
            "ai_review" => Some(Tier::AiReview),
            "human" => Some(Tier::Human),
            _ => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Auto => "auto",
            Tier::UserConfirm => "user_confirm",
            Tier::AiReview => "ai_review",
            Tier::Human => "human",
        }
    }
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a decision.
    Pending,
    /// Approved, not yet collected by the broker.
    Approved,
    /// The broker is collecting it; the signer is being asked.
    Issuing,
    /// Collected: the certificate was issued. Never usable again.
    Used,
    /// Denied.
    Denied,
    /// No decision (or no collection) in time.
    Expired,
}

impl Status {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Issuing => "issuing",
            Status::Used => "used",
            Status::Denied => "denied",
            Status::Expired => "expired",
        }
    }

    /// Final states, purged some time after they are reached.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Used | Status::Denied | Status::Expired)
    }
}

/// How a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// An operator with `broker-ctl approval`.
    Operator,
    /// The AI reviewer over MCP.
    AiReviewer,
    /// The `auto` tier.
    Auto,
    /// An operator on the approval web page (`/ui/approvals`).
    Web,
    /// The person using the MCP client, asked by the broker.
    UserConfirm,
}

impl Via {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Operator => "operator",
            Via::AiReviewer => "ai_reviewer",
            Via::Auto => "auto",
            Via::Web => "web",
            Via::UserConfirm => "user_confirm",
        }
    }
}

/// Someone deciding: an identity and the channel used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decider {
    /// Operator CN or the reviewer's configured name.
    pub id: String,
    /// Channel.
    pub via: Via,
}

/// Something a guardrail has not seen before for a subject, learned once
/// the approval it caused is collected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Novelty {
    /// A host never reached by the subject.
    Host(String),
    /// A command shape (program, subcommand, option set) never run by the
    /// subject; see [`crate::guard::command_shapes`].
    Command(String),
}

impl Novelty {
    /// `novel host web1` / `novel command systemctl`.
    pub fn describe(&self) -> String {
        match self {
            Novelty::Host(h) => format!("novel host {h}"),
            Novelty::Command(c) => format!("novel command {c}"),
        }
    }
}

/// One held sign request (stored as JSON in the state store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// 128-bit random id, lowercase hex.
    pub id: String,
    /// The broker CN that asked (only it may collect).
    pub caller: String,
    /// The guardrail subject (`caller` or `caller/end_user`).
    pub subject: String,
    /// The exact request, signed as is on collection.
    pub request: SignRequest,
    /// Who may approve.
    pub tier: Tier,
    /// Why it is held, one sentence each.
    pub reasons: Vec<String>,
    /// The signer's matched rule, if the policy asked for the approval.
    pub rule: Option<String>,
    /// Learned for the subject once collected.
    pub learn: Vec<Novelty>,
    /// Current state.
    pub status: Status,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// Pending: decision deadline. Approved: collection deadline.
    pub expires_ms: u64,
    /// Who decided.
    pub decided_by: Option<Decider>,
    /// When the final or approved state was reached.
    pub decided_ms: Option<u64>,
    /// The decider's reason.
    pub reason: Option<String>,
    /// Who moved it to the human queue, and why.
    pub escalation: Option<(String, String)>,
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is not pending any more.
    #[error("approval {id} is already {}", status.as_str())]
    NotPending {
        /// The approval.
        id: String,
        /// Its state.
        status: Status,
    },
    /// The decider is the requester.
    #[error("{who} made this request (or it was made for {who}) and cannot decide it")]
    SelfApproval {
        /// The decider.
        who: String,
    },
    /// The identity map ties the decider to the requester or end user.
    #[error(
        "{who} is {person} in the identity map, who made this request (or it was made for {person}), and cannot decide it"
    )]
    TiedIdentity {
        /// The decider.
        who: String,
        /// The person the map names.
        person: String,
    },
    /// The AI reviewer tried to approve a request reserved for humans.
    #[error("approval {id} is in the human tier: only an operator can approve it")]
    TierForbidden {
        /// The approval.
        id: String,
    },
    /// The user was asked to confirm a request of another tier.
    #[error("approval {id} is in the {} tier: the user cannot confirm it", tier.as_str())]
    NotUserConfirm {
        /// The approval.
        id: String,
        /// Its tier.
        tier: Tier,
    },
    /// Escalating something already in the human queue.
    #[error("approval {id} is already in the human queue")]
    AlreadyHuman {
        /// The approval.
        id: String,
    },
}

/// What polling `GET /v1/sign/result/{id}` finds.
#[derive(Debug, Clone, PartialEq)]
pub enum Collect {
    /// Still waiting (`pending` or `issuing`).
    Wait(Status),
    /// Approved: the caller now owns the issuing step.
    Issue(Box<Approval>),
    /// Denied, with who and why.
    Denied {
        /// Decider id.
        by: String,
        /// Decider's reason.
        reason: String,
    },
    /// Expired.
    Expired,
    /// Already collected once.
    Used,
}

impl Approval {
    fn ensure_pending(&self) -> Result<(), Refusal> {
        if self.status == Status::Pending {
            Ok(())
        } else {
            Err(Refusal::NotPending {
                id: self.id.clone(),
                status: self.status,
            })
        }
    }

    fn is_requester(&self, who: &str) -> bool {
        who == self.caller || self.request.end_user.as_deref() == Some(who)
    }

    /// When an open request expires unless acted on: its deadline while
    /// pending or approved; for an issuing step, the deadline plus
    /// [`ISSUING_GRACE_MS`] (a replica that crashed mid-collection leaves
    /// the step open; it is then spent as expired, never issued twice).
    /// `None` once final.
    pub fn deadline_ms(&self) -> Option<u64> {
        match self.status {
            Status::Pending | Status::Approved => Some(self.expires_ms),
            Status::Issuing => Some(self.expires_ms.saturating_add(ISSUING_GRACE_MS)),
            Status::Used | Status::Denied | Status::Expired => None,
        }
    }

    /// Moves an open request past its [`Approval::deadline_ms`] to
    /// `Expired`. True if it did (the caller audits the timeout).
    pub fn expire_if_due(&mut self, now_ms: u64) -> bool {
        if self.deadline_ms().is_some_and(|d| now_ms >= d) {
            self.status = Status::Expired;
            self.decided_ms = Some(now_ms);
            true
        } else {
            false
        }
    }

    /// Refuses an operator whom `identities` ties to this request's caller
    /// or end user (the same person under another name). Checked before
    /// [`Approval::decide`], which compares the names themselves.
    pub fn refuse_tied(&self, who: &Decider, identities: &IdentityMap) -> Result<(), Refusal> {
        if who.via != Via::Operator {
            return Ok(());
        }
        match identities.tie(&who.id, &self.caller, self.request.end_user.as_deref()) {
            Some(person) => Err(Refusal::TiedIdentity {
                who: who.id.clone(),
                person: person.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Approves or denies. `collect_window_ms` is how long an approved
    /// request waits for its broker.
    pub fn decide(
        &mut self,
        who: &Decider,
        approve: bool,
        reason: &str,
        now_ms: u64,
        collect_window_ms: u64,
    ) -> Result<(), Refusal> {
        self.ensure_pending()?;
        if self.is_requester(&who.id) {
            return Err(Refusal::SelfApproval {
                who: who.id.clone(),
            });
        }
        if approve && who.via == Via::AiReviewer && self.tier != Tier::AiReview {
            return Err(Refusal::TierForbidden {
                id: self.id.clone(),
            });
        }
        self.settle(who.clone(), approve, reason, now_ms, collect_window_ms);
        Ok(())
    }

    /// Records a decision: approved (to be collected within
    /// `collect_window_ms`) or denied.
    fn settle(
        &mut self,
        who: Decider,
        approve: bool,
        reason: &str,
        now_ms: u64,
        collect_window_ms: u64,
    ) {
        self.status = if approve {
            self.expires_ms = now_ms.saturating_add(collect_window_ms);
            Status::Approved
        } else {
            Status::Denied
        };
        self.decided_by = Some(who);
        self.decided_ms = Some(now_ms);
        self.reason = Some(reason.to_owned());
    }

    /// The user's answer, relayed by the broker that asked (the caller
    /// checks that): `accept` approves, anything else denies. Only for the
    /// `user_confirm` tier; the decider is the end user (else the broker).
    pub fn confirm(
        &mut self,
        accept: bool,
        reason: &str,
        now_ms: u64,
        collect_window_ms: u64,
    ) -> Result<Decider, Refusal> {
        self.ensure_pending()?;
        if self.tier != Tier::UserConfirm {
            return Err(Refusal::NotUserConfirm {
                id: self.id.clone(),
                tier: self.tier,
            });
        }
        let who = Decider {
            id: self
                .request
                .end_user
                .clone()
                .unwrap_or_else(|| self.caller.clone()),
            via: Via::UserConfirm,
        };
        self.settle(who.clone(), accept, reason, now_ms, collect_window_ms);
        Ok(who)
    }

    /// Moves an `ai_review` request to the human queue.
    pub fn escalate(&mut self, who: &Decider, reason: &str) -> Result<(), Refusal> {
        self.ensure_pending()?;
        if self.tier == Tier::Human {
            return Err(Refusal::AlreadyHuman {
                id: self.id.clone(),
            });
        }
        self.tier = Tier::Human;
        self.escalation = Some((who.id.clone(), reason.to_owned()));
        Ok(())
    }

    /// The broker polls. An approved request moves to `Issuing` here, so
    /// only one poll ever gets [`Collect::Issue`].
    pub fn collect(&mut self) -> Collect {
        match self.status {
            Status::Pending | Status::Issuing => Collect::Wait(self.status),
            Status::Approved => {
                self.status = Status::Issuing;
                Collect::Issue(Box::new(self.clone()))
            }
            Status::Denied => Collect::Denied {
                by: self
                    .decided_by
                    .as_ref()
                    .map(|d| d.id.clone())
                    .unwrap_or_default(),
                reason: self.reason.clone().unwrap_or_default(),
            },
            Status::Expired => Collect::Expired,
            Status::Used => Collect::Used,
        }
    }

    /// Ends the issuing step: `Used` once the signer answered, back to
    /// `Approved` when it could not be reached (the broker polls again).
    pub fn finish_issuing(&mut self, answered: bool, now_ms: u64) {
        if self.status == Status::Issuing {
            if answered {
                self.status = Status::Used;
                self.decided_ms = Some(now_ms);
            } else {
                self.status = Status::Approved;
            }
        }
    }
}

/// How long past its collection deadline an issuing step may stay open
/// before it is taken for abandoned (far longer than any signer call).
pub const ISSUING_GRACE_MS: u64 = 5 * 60 * 1000;

/// A fresh approval id: 128 random bits in lowercase hex.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// True for strings [`new_id`] can produce.
pub fn is_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests;
