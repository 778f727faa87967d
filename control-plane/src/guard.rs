//! Behaviour guardrails per subject: a sliding one-minute window of sign
//! requests, and the hosts and command shapes the subject has used before.
//!
//! A command's shapes are what "never-seen command" compares: the command
//! is split into its simple commands by the firewall's shell parser (the
//! same split the signer judges), and each one becomes
//! `program [subcommand] [sorted option set]` — `ls -la /tmp` is
//! `ls -a -l`, `git push --force origin` is `git push --force`. So once
//! `ls` is learned, `ls && reboot` is still novel (`reboot`), and so is
//! `ls -R` (a new option set). Positional arguments do not count, except the
//! subcommand of programs that have them ([`SUBCOMMAND_PROGRAMS`]). A
//! command the parser refuses is one shape: its whole text, so it is novel
//! unless exactly that text was learned.
//!
//! A subject is the broker's CN, or `CN/end_user` for a broker listed in
//! `trusted_forwarders` (one broker serving many people must not let one
//! person's history vouch for another's). What the guardrails find is only
//! reported here; the server decides what to do with it per `mode`.
//! Memory is bounded by `max_subjects` (least recently active dropped) and
//! `max_distinct_per_subject` (least recently used item dropped).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::approval::Novelty;
use crate::config::{BehaviorConfig, GuardMode};

const WINDOW_MS: u64 = 60_000;

/// What the guardrails found about one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// The subject is over its rate; retry after this long.
    pub rate_exceeded: Option<Duration>,
    /// Things never seen for this subject.
    pub novelties: Vec<Novelty>,
}

impl Findings {
    /// Nothing found.
    pub fn is_clean(&self) -> bool {
        self.rate_exceeded.is_none() && self.novelties.is_empty()
    }

    /// One sentence per finding, for audit records.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self.novelties.iter().map(Novelty::describe).collect();
        if let Some(d) = self.rate_exceeded {
            out.push(format!(
                "rate limit exceeded (retry after {} s)",
                d.as_secs()
            ));
        }
        out
    }
}

#[derive(Debug, Default)]
struct Subject {
    window: VecDeque<u64>,
    hosts: HashMap<String, u64>,
    commands: HashMap<String, u64>,
    last_active: u64,
}

/// The guardrail state of every subject.
#[derive(Debug)]
pub struct Guardrails {
    cfg: BehaviorConfig,
    subjects: Mutex<HashMap<String, Subject>>,
}

/// The subject of a request.
pub fn subject(caller: &str, end_user: Option<&str>, caller_is_forwarder: bool) -> String {
    match end_user {
        Some(u) if caller_is_forwarder => format!("{caller}/{u}"),
        _ => caller.to_owned(),
    }
}

/// Programs whose first positional argument names what they do.
pub const SUBCOMMAND_PROGRAMS: &[&str] = &[
    "apt",
    "apt-cache",
    "apt-get",
    "aws",
    "az",
    "busctl",
    "cargo",
    "crictl",
    "ctr",
    "dnf",
    "docker",
    "etcdctl",
    "flatpak",
    "gcloud",
    "git",
    "go",
    "helm",
    "hostnamectl",
    "ip",
    "kubectl",
    "loginctl",
    "machinectl",
    "networkctl",
    "nmcli",
    "nft",
    "npm",
    "openssl",
    "pip",
    "pip3",
    "podman",
    "resolvectl",
    "snap",
    "systemctl",
    "terraform",
    "timedatectl",
    "ufw",
    "vault",
    "virsh",
    "yarn",
    "yum",
    "zfs",
    "zpool",
    "zypper",
];

/// The normalised shape of one simple command (see the module docs).
fn shape(argv: &[String]) -> String {
    let Some((program, args)) = argv.split_first() else {
        return String::new();
    };
    let wants_sub = SUBCOMMAND_PROGRAMS.contains(&program.as_str());
    let mut sub: Option<&str> = None;
    let mut options = std::collections::BTreeSet::new();
    for arg in args.iter().take_while(|a| *a != "--") {
        if let Some(long) = arg.strip_prefix("--") {
            options.insert(format!("--{}", long.split('=').next().unwrap_or(long)));
        } else if let Some(short) = arg.strip_prefix('-')
            && short.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            // `-n5` is `-n` with a value: letters up to the first other one.
            for c in short.chars().take_while(char::is_ascii_alphabetic) {
                options.insert(format!("-{c}"));
            }
        } else if wants_sub && sub.is_none() {
            sub = Some(arg.as_str());
        }
    }
    let mut out = program.clone();
    for part in sub.into_iter().map(str::to_owned).chain(options) {
        out.push(' ');
        out.push_str(&part);
    }
    out
}

/// The shapes of `command`, one per distinct simple command; none for an
/// empty command (a session certificate).
pub fn command_shapes(command: &str) -> Vec<String> {
    if command.trim().is_empty() {
        return Vec::new();
    }
    let mut shapes: Vec<String> = match infrabroker_firewall::parse_simple_commands(command) {
        Ok(parts) if !parts.is_empty() => parts.iter().map(|argv| shape(argv)).collect(),
        _ => vec![format!("(unparsed) {command}")],
    };
    shapes.sort();
    shapes.dedup();
    shapes
}

impl Guardrails {
    /// Guardrails configured by `behavior`.
    pub fn new(cfg: BehaviorConfig) -> Self {
        Guardrails {
            cfg,
            subjects: Mutex::new(HashMap::new()),
        }
    }

    /// The configured mode.
    pub fn mode(&self) -> GuardMode {
        self.cfg.mode
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Subject>> {
        self.subjects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks one request of `subject` for `host` and `command` at `now_ms`
    /// and counts it in the rate window (except a request refused for its
    /// rate in enforce mode, so a throttled subject recovers).
    pub fn check(&self, subject: &str, host: &str, command: &str, now_ms: u64) -> Findings {
        if self.cfg.mode == GuardMode::Off {
            return Findings::default();
        }
        let mut map = self.lock();
        if !map.contains_key(subject) && map.len() >= self.cfg.max_subjects {
            evict_oldest(&mut map, |s| s.last_active);
        }
        let s = map.entry(subject.to_owned()).or_default();
        s.last_active = now_ms;
        while s
            .window
            .front()
            .is_some_and(|t| t.saturating_add(WINDOW_MS) <= now_ms)
        {
            s.window.pop_front();
        }
        let limit = usize::try_from(self.cfg.rate_limit_per_min).unwrap_or(usize::MAX);
        let mut findings = Findings::default();
        if limit > 0 && s.window.len() >= limit {
            let oldest = s.window.front().copied().unwrap_or(now_ms);
            let wait_ms = oldest.saturating_add(WINDOW_MS).saturating_sub(now_ms);
            findings.rate_exceeded = Some(Duration::from_secs(wait_ms.div_ceil(1000).max(1)));
        }
        if findings.rate_exceeded.is_none() || self.cfg.mode == GuardMode::Observe {
            s.window.push_back(now_ms);
        }
        if !s.hosts.contains_key(host) {
            findings.novelties.push(Novelty::Host(host.to_owned()));
        }
        for shape in command_shapes(command) {
            if !s.commands.contains_key(&shape) {
                findings.novelties.push(Novelty::Command(shape));
            }
        }
        findings
    }

    /// Remembers `items` for `subject`: called once a request carrying them
    /// was issued (observe mode) or its approval was collected (enforce).
    pub fn learn(&self, subject: &str, items: &[Novelty], now_ms: u64) {
        if self.cfg.mode == GuardMode::Off || items.is_empty() {
            return;
        }
        let max = self.cfg.max_distinct_per_subject;
        let mut map = self.lock();
        if !map.contains_key(subject) && map.len() >= self.cfg.max_subjects {
            evict_oldest(&mut map, |s| s.last_active);
        }
        let s = map.entry(subject.to_owned()).or_default();
        s.last_active = now_ms;
        for item in items {
            let (set, key) = match item {
                Novelty::Host(h) => (&mut s.hosts, h),
                Novelty::Command(c) => (&mut s.commands, c),
            };
            if !set.contains_key(key) && set.len() >= max {
                evict_oldest(set, |t| *t);
            }
            set.insert(key.clone(), now_ms);
        }
    }

    /// Marks `host` and `command` as used now (keeps them from being the
    /// least recently used when the per-subject bound is reached).
    pub fn touch(&self, subject: &str, host: &str, command: &str, now_ms: u64) {
        let mut map = self.lock();
        if let Some(s) = map.get_mut(subject) {
            if let Some(t) = s.hosts.get_mut(host) {
                *t = now_ms;
            }
            for shape in command_shapes(command) {
                if let Some(t) = s.commands.get_mut(&shape) {
                    *t = now_ms;
                }
            }
        }
    }

    /// Forgets subjects idle longer than `subject_ttl_minutes`.
    pub fn sweep(&self, now_ms: u64) {
        let Some(ttl) = self.cfg.subject_ttl else {
            return;
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.lock()
            .retain(|_, s| s.last_active.saturating_add(ttl_ms) > now_ms);
    }

    /// Subjects currently tracked.
    pub fn subjects(&self) -> usize {
        self.lock().len()
    }
}

fn evict_oldest<V>(map: &mut HashMap<String, V>, age: impl Fn(&V) -> u64) {
    if let Some(k) = map
        .iter()
        .min_by_key(|(_, v)| age(v))
        .map(|(k, _)| k.clone())
    {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::Tier;

    fn guard(mode: GuardMode, rate: u32) -> Guardrails {
        Guardrails::new(BehaviorConfig {
            mode,
            rate_limit_per_min: rate,
            novelty_tier: Tier::Human,
            max_subjects: 2,
            subject_ttl: Some(Duration::from_secs(60)),
            max_distinct_per_subject: 2,
        })
    }

    #[test]
    fn off_finds_nothing() {
        let g = guard(GuardMode::Off, 1);
        for _ in 0..5 {
            assert!(g.check("b", "web", "rm -rf /", 0).is_clean());
        }
    }

    #[test]
    fn novelties_are_reported_until_learned() {
        let g = guard(GuardMode::Enforce, 0);
        let f = g.check("b", "web", "systemctl status x", 0);
        assert_eq!(
            f.novelties,
            vec![
                Novelty::Host("web".into()),
                Novelty::Command("systemctl status".into())
            ]
        );
        g.learn("b", &f.novelties, 2);
        assert!(g.check("b", "web", "systemctl status y", 3).is_clean());
        assert_eq!(
            g.check("b", "web", "systemctl restart x", 3).novelties,
            vec![Novelty::Command("systemctl restart".into())]
        );
        assert_eq!(
            g.check("b", "db", "systemctl status", 4).novelties,
            vec![Novelty::Host("db".into())]
        );
        assert_eq!(
            g.check("other", "web", "systemctl status x", 5)
                .novelties
                .len(),
            2,
            "history is per subject"
        );
    }

    #[test]
    fn every_simple_command_counts_not_the_first_word() {
        let g = guard(GuardMode::Enforce, 0);
        let f = g.check("b", "web", "ls /tmp", 0);
        g.learn("b", &f.novelties, 1);
        for same in ["ls /etc", "ls", "ls -- -la"] {
            assert!(g.check("b", "web", same, 2).is_clean(), "{same}");
        }
        for (cmd, novel) in [
            ("ls && reboot", vec!["reboot"]),
            ("ls; rm -rf /", vec!["rm -f -r"]),
            ("ls | wc -l", vec!["wc -l"]),
            ("ls | sh", vec!["(unparsed) ls | sh"]),
            ("ls -la", vec!["ls -a -l"]),
            ("ls $(reboot)", vec!["(unparsed) ls $(reboot)"]),
        ] {
            let want: Vec<Novelty> = novel
                .into_iter()
                .map(|n| Novelty::Command(n.into()))
                .collect();
            assert_eq!(g.check("b", "web", cmd, 3).novelties, want, "{cmd}");
        }
    }

    #[test]
    fn shapes_normalise_options_and_keep_subcommands() {
        for (cmd, want) in [
            ("ls -la /tmp", vec!["ls -a -l"]),
            ("ls -l -a", vec!["ls -a -l"]),
            ("head -n5 f", vec!["head -n"]),
            ("git push --force=yes origin", vec!["git push --force"]),
            (
                "git status && git status -s",
                vec!["git status", "git status -s"],
            ),
            ("systemctl restart nginx", vec!["systemctl restart"]),
            ("cat a b", vec!["cat"]),
            ("", vec![]),
        ] {
            assert_eq!(command_shapes(cmd), want, "{cmd}");
        }
    }

    #[test]
    fn rate_window_slides_and_enforce_does_not_count_refusals() {
        let g = guard(GuardMode::Enforce, 2);
        assert!(g.check("b", "h", "", 0).rate_exceeded.is_none());
        assert!(g.check("b", "h", "", 10_000).rate_exceeded.is_none());
        assert_eq!(
            g.check("b", "h", "", 20_000).rate_exceeded,
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            g.check("b", "h", "", 59_500).rate_exceeded,
            Some(Duration::from_secs(1))
        );
        assert!(g.check("b", "h", "", 60_000).rate_exceeded.is_none());
    }

    #[test]
    fn bounds_and_ttl_keep_memory_small() {
        let g = guard(GuardMode::Observe, 0);
        g.learn("a", &[Novelty::Host("1".into())], 0);
        g.learn("b", &[Novelty::Host("1".into())], 1);
        g.learn("c", &[Novelty::Host("1".into())], 2);
        assert_eq!(g.subjects(), 2, "the least recently active subject went");
        for (t, word) in [(3, "x"), (4, "y"), (5, "z")] {
            g.learn("c", &[Novelty::Command(word.into())], t);
        }
        let f = g.check("c", "1", "x", 6);
        assert_eq!(f.novelties, vec![Novelty::Command("x".into())]);
        g.sweep(100_000);
        assert_eq!(g.subjects(), 0);
    }

    #[test]
    fn subject_is_qualified_only_for_trusted_forwarders() {
        assert_eq!(subject("b", Some("alice"), true), "b/alice");
        assert_eq!(subject("b", Some("alice"), false), "b");
        assert_eq!(subject("b", None, true), "b");
    }
}
