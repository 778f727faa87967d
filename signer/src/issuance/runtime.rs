//! The running configuration with its CA keys opened ([`Runtime`]): what
//! one request is judged against and which CA signs for which host.

use std::collections::BTreeMap;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use infrabroker_ca::{Ca, CaSpec};
use infrabroker_common::config::{ConfigErrors, ConfigIssue};

use crate::config::{CaKeySource, Host, SignerConfig};

/// A `ca_keys` entry opened: the key that signs and the announced next
/// one.
#[derive(Debug, Clone)]
pub struct CaSlot {
    /// Signs this entry's certificates.
    pub current: Arc<Ca>,
    /// Published ahead of a rotation; never signs.
    pub next: Option<Arc<Ca>>,
}

/// The configuration with its CA keys opened: what one request is judged
/// against. Swapped whole on reload.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub config: SignerConfig,
    ca_default: CaSlot,
    ca_groups: BTreeMap<String, CaSlot>,
    /// Signs sealed-exec envelopes (`envelope_key`); wiped on drop.
    envelope: Option<SigningKey>,
}

fn open_slot(src: &CaKeySource, problems: &mut Vec<ConfigIssue>) -> Option<CaSlot> {
    let mut open = |spec: &CaSpec, at: String| match Ca::open(spec) {
        Ok(ca) => Some(Arc::new(ca)),
        Err(e) => {
            problems.push(ConfigIssue {
                path: at,
                message: e.to_string(),
            });
            None
        }
    };
    let current = open(&src.spec, src.at.clone());
    let next = match &src.next {
        Some(spec) => Some(open(spec, format!("{}.next", src.at))?),
        None => None,
    };
    Some(CaSlot {
        current: current?,
        next,
    })
}

impl Runtime {
    /// Opens the CA keys named by `config` (each proven by a test
    /// signature when it lives in a token or an agent).
    pub fn new(config: SignerConfig) -> Result<Runtime, ConfigErrors> {
        let mut problems = Vec::new();
        let ca_default = open_slot(&config.ca_default, &mut problems);
        let mut ca_groups = BTreeMap::new();
        for (group, src) in &config.ca_groups {
            if let Some(slot) = open_slot(src, &mut problems) {
                ca_groups.insert(group.clone(), slot);
            }
        }
        let envelope = config.envelope_key.as_deref().and_then(|path| {
            match infrabroker_common::audit::seed_file(path) {
                Ok(seed) => Some(SigningKey::from_bytes(&seed)),
                Err(e) => {
                    problems.push(ConfigIssue {
                        path: "envelope_key".into(),
                        message: e.to_string(),
                    });
                    None
                }
            }
        });
        match ca_default {
            Some(ca_default) if problems.is_empty() => Ok(Runtime {
                config,
                ca_default,
                ca_groups,
                envelope,
            }),
            _ => Err(ConfigErrors(problems)),
        }
    }

    /// The CA that signs certificates for `host`.
    pub fn ca_for(&self, host: &Host) -> &Arc<Ca> {
        &self.slot_for(host).current
    }

    /// The `ca_keys` entry of `host` (its first declared group that has
    /// one, else the default) and that entry's name.
    pub fn slot_for(&self, host: &Host) -> &CaSlot {
        host.ca_group
            .as_ref()
            .and_then(|g| self.ca_groups.get(g))
            .unwrap_or(&self.ca_default)
    }

    /// The key that signs sealed-exec envelopes, when configured.
    pub fn envelope_key(&self) -> Option<&SigningKey> {
        self.envelope.as_ref()
    }

    /// The default CA.
    pub fn default_ca(&self) -> &Arc<Ca> {
        &self.ca_default.current
    }

    /// Every CA entry by name (`_default` first), for `signer check` and
    /// `broker-ctl pki ssh-ca-pubs`.
    pub fn slots(&self) -> impl Iterator<Item = (&str, &CaSlot)> {
        std::iter::once(("_default", &self.ca_default))
            .chain(self.ca_groups.iter().map(|(g, s)| (g.as_str(), s)))
    }

    /// Every CA this configuration signs with or announces, the default
    /// first.
    pub fn cas(&self) -> impl Iterator<Item = &Arc<Ca>> {
        self.slots()
            .flat_map(|(_, s)| std::iter::once(&s.current).chain(s.next.as_ref()))
    }
}
