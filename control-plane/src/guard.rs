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

use std::time::Duration;

use infrabroker_store::{GuardLimits, Store};

use crate::approval::Novelty;
use crate::config::{BehaviorConfig, GuardMode};
use crate::error::ApiError;
use crate::store::unavailable;

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

/// The guardrail state of every subject, in the state store (one history
/// for every control plane on a shared database).
#[derive(Debug)]
pub struct Guardrails {
    cfg: BehaviorConfig,
    store: Store,
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
    /// Guardrails configured by `behavior`, remembering in `store`.
    pub fn new(cfg: BehaviorConfig, store: Store) -> Self {
        Guardrails { cfg, store }
    }

    /// The configured mode.
    pub fn mode(&self) -> GuardMode {
        self.cfg.mode
    }

    fn limits(&self) -> GuardLimits {
        GuardLimits {
            window_ms: WINDOW_MS,
            rate_limit: u64::from(self.cfg.rate_limit_per_min),
            count_over: self.cfg.mode == GuardMode::Observe,
            max_subjects: u64::try_from(self.cfg.max_subjects).unwrap_or(u64::MAX),
            max_items: u64::try_from(self.cfg.max_distinct_per_subject).unwrap_or(u64::MAX),
        }
    }

    /// Checks one request of `subject` for `host` and `command` at `now_ms`
    /// and counts it in the rate window (except a request refused for its
    /// rate in enforce mode, so a throttled subject recovers). A store that
    /// cannot be used is an error: nothing is forwarded on a history that
    /// could not be read.
    pub async fn check(
        &self,
        subject: &str,
        host: &str,
        command: &str,
        now_ms: u64,
    ) -> Result<Findings, ApiError> {
        if self.cfg.mode == GuardMode::Off {
            return Ok(Findings::default());
        }
        let shapes = command_shapes(command);
        let seen = self
            .store
            .guard_check(subject, host, &shapes, now_ms, self.limits())
            .await
            .map_err(|e| unavailable(&e))?;
        let limit = u64::from(self.cfg.rate_limit_per_min);
        let mut findings = Findings::default();
        if limit > 0 && seen.hits >= limit {
            let oldest = seen.oldest_hit_ms.unwrap_or(now_ms);
            let wait_ms = oldest.saturating_add(WINDOW_MS).saturating_sub(now_ms);
            findings.rate_exceeded = Some(Duration::from_secs(wait_ms.div_ceil(1000).max(1)));
        }
        if !seen.host_known {
            findings.novelties.push(Novelty::Host(host.to_owned()));
        }
        for shape in shapes {
            if !seen.known_commands.contains(&shape) {
                findings.novelties.push(Novelty::Command(shape));
            }
        }
        Ok(findings)
    }

    /// Remembers `items` for `subject`: called once a request carrying them
    /// was issued (observe mode) or its approval was collected (enforce).
    pub async fn learn(
        &self,
        subject: &str,
        items: &[Novelty],
        now_ms: u64,
    ) -> Result<(), ApiError> {
        if self.cfg.mode == GuardMode::Off || items.is_empty() {
            return Ok(());
        }
        let items: Vec<(String, String)> = items.iter().map(item).collect();
        self.store
            .guard_learn(subject, &items, now_ms, self.limits())
            .await
            .map_err(|e| unavailable(&e))
    }

    /// Marks `host` and `command` as used now (keeps them from being the
    /// least recently used when the per-subject bound is reached).
    pub async fn touch(
        &self,
        subject: &str,
        host: &str,
        command: &str,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        if self.cfg.mode == GuardMode::Off {
            return Ok(());
        }
        let mut items = vec![item(&Novelty::Host(host.to_owned()))];
        items.extend(
            command_shapes(command)
                .into_iter()
                .map(|c| item(&Novelty::Command(c))),
        );
        self.store
            .guard_touch(subject, &items, now_ms)
            .await
            .map_err(|e| unavailable(&e))
    }

    /// Forgets subjects idle longer than `subject_ttl_minutes`; a store
    /// failure is logged and retried on the next sweep.
    pub async fn sweep(&self, now_ms: u64) {
        let Some(ttl) = self.cfg.subject_ttl else {
            return;
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let _ = self.store.guard_sweep(now_ms, ttl_ms).await;
    }

    /// Subjects currently remembered (0 when the store does not answer).
    pub async fn subjects(&self) -> u64 {
        self.store.guard_subjects().await.unwrap_or(0)
    }
}

/// A novelty as the store keeps it: `("host" | "command", value)`.
fn item(n: &Novelty) -> (String, String) {
    match n {
        Novelty::Host(h) => ("host".to_owned(), h.clone()),
        Novelty::Command(c) => ("command".to_owned(), c.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::Tier;

    /// Guardrails on a fresh SQLite store (kept alive by the returned dir).
    async fn guard(mode: GuardMode, rate: u32) -> (Guardrails, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&infrabroker_store::StoreConfig::Sqlite(
            dir.path().join("g.db"),
        ))
        .await
        .unwrap();
        let g = Guardrails::new(
            BehaviorConfig {
                mode,
                rate_limit_per_min: rate,
                novelty_tier: Tier::Human,
                max_subjects: 2,
                subject_ttl: Some(Duration::from_secs(60)),
                max_distinct_per_subject: 2,
            },
            store,
        );
        (g, dir)
    }

    #[tokio::test]
    async fn off_finds_nothing() {
        let (g, _dir) = guard(GuardMode::Off, 1).await;
        for _ in 0..5 {
            assert!(g.check("b", "web", "rm -rf /", 0).await.unwrap().is_clean());
        }
    }

    #[tokio::test]
    async fn novelties_are_reported_until_learned() {
        let (g, _dir) = guard(GuardMode::Enforce, 0).await;
        let f = g.check("b", "web", "systemctl status x", 0).await.unwrap();
        assert_eq!(
            f.novelties,
            vec![
                Novelty::Host("web".into()),
                Novelty::Command("systemctl status".into())
            ]
        );
        g.learn("b", &f.novelties, 2).await.unwrap();
        assert!(
            g.check("b", "web", "systemctl status y", 3)
                .await
                .unwrap()
                .is_clean()
        );
        assert_eq!(
            g.check("b", "web", "systemctl restart x", 3)
                .await
                .unwrap()
                .novelties,
            vec![Novelty::Command("systemctl restart".into())]
        );
        assert_eq!(
            g.check("b", "db", "systemctl status", 4)
                .await
                .unwrap()
                .novelties,
            vec![Novelty::Host("db".into())]
        );
        assert_eq!(
            g.check("other", "web", "systemctl status x", 5)
                .await
                .unwrap()
                .novelties
                .len(),
            2,
            "history is per subject"
        );
    }

    #[tokio::test]
    async fn every_simple_command_counts_not_the_first_word() {
        let (g, _dir) = guard(GuardMode::Enforce, 0).await;
        let f = g.check("b", "web", "ls /tmp", 0).await.unwrap();
        g.learn("b", &f.novelties, 1).await.unwrap();
        for same in ["ls /etc", "ls", "ls -- -la"] {
            assert!(
                g.check("b", "web", same, 2).await.unwrap().is_clean(),
                "{same}"
            );
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
            assert_eq!(
                g.check("b", "web", cmd, 3).await.unwrap().novelties,
                want,
                "{cmd}"
            );
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

    #[tokio::test]
    async fn rate_window_slides_and_enforce_does_not_count_refusals() {
        let (g, _dir) = guard(GuardMode::Enforce, 2).await;
        assert!(
            g.check("b", "h", "", 0)
                .await
                .unwrap()
                .rate_exceeded
                .is_none()
        );
        assert!(
            g.check("b", "h", "", 10_000)
                .await
                .unwrap()
                .rate_exceeded
                .is_none()
        );
        assert_eq!(
            g.check("b", "h", "", 20_000).await.unwrap().rate_exceeded,
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            g.check("b", "h", "", 59_500).await.unwrap().rate_exceeded,
            Some(Duration::from_secs(1))
        );
        assert!(
            g.check("b", "h", "", 60_000)
                .await
                .unwrap()
                .rate_exceeded
                .is_none()
        );
    }

    #[tokio::test]
    async fn bounds_and_ttl_keep_memory_small() {
        let (g, _dir) = guard(GuardMode::Observe, 0).await;
        g.learn("a", &[Novelty::Host("1".into())], 0).await.unwrap();
        g.learn("b", &[Novelty::Host("1".into())], 1).await.unwrap();
        g.learn("c", &[Novelty::Host("1".into())], 2).await.unwrap();
        assert_eq!(
            g.subjects().await,
            2,
            "the least recently active subject went"
        );
        for (t, word) in [(3, "x"), (4, "y"), (5, "z")] {
            g.learn("c", &[Novelty::Command(word.into())], t)
                .await
                .unwrap();
        }
        let f = g.check("c", "1", "x", 6).await.unwrap();
        assert_eq!(f.novelties, vec![Novelty::Command("x".into())]);
        g.sweep(100_000).await;
        assert_eq!(g.subjects().await, 0);
    }

    #[test]
    fn subject_is_qualified_only_for_trusted_forwarders() {
        assert_eq!(subject("b", Some("alice"), true), "b/alice");
        assert_eq!(subject("b", Some("alice"), false), "b");
        assert_eq!(subject("b", None, true), "b");
    }
}
