//! The identity map: which operator CNs, OIDC subjects and REST caller CNs
//! belong to the same person.
//!
//! Requester ≠ approver compares strings, and the strings come from three
//! namespaces: an operator decides with a client certificate (CN), a request
//! names its end user by OIDC subject (`mcp-http`) or by the REST caller's
//! CN (`broker serve`). Without a map, `alice-ops` approving what
//! `alice@example.com` asked for looks like two people. With
//! `identities: {"alice": {"operator_cns": [...], "oidc_subjects": [...],
//! "rest_cns": [...]}}` the control plane refuses a decision by an operator
//! CN whose person also owns the request's caller or end user.
//!
//! A request's `end_user` does not say which namespace it is from, so it is
//! compared with every identity of the person (subjects, REST CNs and
//! operator CNs alike): a tie in any namespace refuses.

use std::collections::{BTreeMap, BTreeSet};

use infrabroker_common::config::{Obj, index};
use infrabroker_common::names;

/// One person's identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// Client-certificate CNs the person decides approvals with.
    pub operator_cns: BTreeSet<String>,
    /// OIDC subjects (the broker's `oauth.user_claim`) the person has.
    pub oidc_subjects: BTreeSet<String>,
    /// Client-certificate CNs the person calls `broker serve` with.
    pub rest_cns: BTreeSet<String>,
}

impl Person {
    fn owns(&self, id: &str) -> bool {
        self.operator_cns.contains(id)
            || self.oidc_subjects.contains(id)
            || self.rest_cns.contains(id)
    }
}

/// `identities`: person name → identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityMap {
    people: BTreeMap<String, Person>,
}

impl IdentityMap {
    /// The person (name) the map ties operator `decider` to, if that person
    /// also owns `caller` or `end_user`.
    pub fn tie(&self, decider: &str, caller: &str, end_user: Option<&str>) -> Option<&str> {
        self.people
            .iter()
            .find(|(_, p)| {
                p.operator_cns.contains(decider)
                    && (p.owns(caller) || end_user.is_some_and(|u| p.owns(u)))
            })
            .map(|(name, _)| name.as_str())
    }

    /// People listed.
    pub fn len(&self) -> usize {
        self.people.len()
    }

    /// No one listed.
    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }
}

/// Reads `identities` from `root`; each identity may belong to one person
/// only (per namespace), or the map would be ambiguous.
pub fn read(root: &Obj<'_>) -> IdentityMap {
    let mut people = BTreeMap::new();
    let mut owner: BTreeMap<(&'static str, String), String> = BTreeMap::new();
    for (name, path, value) in root.map_entries("identities") {
        let Some(entry) = Obj::new(value, &path, root.errors()) else {
            continue;
        };
        if !names::is_name(&name) {
            root.errors()
                .push(path.clone(), format!("{name:?} is not a valid name"));
        }
        let mut list = |key: &'static str| {
            let list_path = entry.path_of(key);
            let mut out = BTreeSet::new();
            for (i, id) in entry.str_list(key).into_iter().enumerate() {
                let at = index(&list_path, i);
                if !names::is_identity(&id) {
                    root.errors()
                        .push(at, format!("{id:?} is not a valid identity"));
                } else if let Some(other) = owner.insert((key, id.clone()), name.clone()) {
                    root.errors()
                        .push(at, format!("{id:?} is already listed for {other:?}"));
                } else {
                    out.insert(id);
                }
            }
            out
        };
        let person = Person {
            operator_cns: list("operator_cns"),
            oidc_subjects: list("oidc_subjects"),
            rest_cns: list("rest_cns"),
        };
        if person.operator_cns.is_empty() {
            entry.error(
                "operator_cns",
                "must list at least one operator CN (the map ties deciders to requesters)",
            );
        }
        entry.finish();
        people.insert(name, person);
    }
    IdentityMap { people }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrabroker_common::config::Errors;
    use serde_json::json;

    fn map(v: serde_json::Value) -> (IdentityMap, String) {
        let errs = Errors::new();
        let root_value = json!({ "identities": v });
        let m = read(&Obj::new(&root_value, "", &errs).unwrap());
        let text = match errs.finish(()) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        };
        (m, text)
    }

    #[test]
    fn ties_cross_every_namespace() {
        let (m, errs) = map(json!({
            "alice": {"operator_cns": ["alice-ops"], "oidc_subjects": ["00u-alice"],
                      "rest_cns": ["alice-laptop"]},
            "bob": {"operator_cns": ["bob-ops"]},
        }));
        assert_eq!(errs, "");
        assert_eq!(
            m.tie("alice-ops", "broker-1", Some("00u-alice")),
            Some("alice")
        );
        assert_eq!(
            m.tie("alice-ops", "broker-1", Some("alice-laptop")),
            Some("alice")
        );
        assert_eq!(m.tie("alice-ops", "alice-laptop", None), Some("alice"));
        assert_eq!(m.tie("bob-ops", "broker-1", Some("00u-alice")), None);
        assert_eq!(m.tie("alice-ops", "broker-1", Some("someone")), None);
        assert_eq!(
            m.tie("00u-alice", "broker-1", Some("00u-alice")),
            None,
            "deciders are operator CNs"
        );
    }

    #[test]
    fn ambiguous_or_bad_entries_are_refused() {
        let (_, errs) = map(json!({
            "alice": {"operator_cns": ["ops"], "oidc_subjects": ["a b"]},
            "bob": {"operator_cns": ["ops"], "emails": []},
            "carol": {"rest_cns": ["c"]},
        }));
        for needle in [
            "identities.alice.oidc_subjects[0]: \"a b\" is not a valid identity",
            "identities.bob.operator_cns[0]: \"ops\" is already listed for \"alice\"",
            "identities.bob.emails: unknown field",
            "identities.carol.operator_cns: must list at least one operator CN",
        ] {
            assert!(errs.contains(needle), "{needle} missing in:\n{errs}");
        }
    }
}
