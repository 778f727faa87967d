//! `infrabroker-shim`: the host-side enforcer of sealed exec.
//!
//! On a host marked `sealed_exec`, the signer's session certificates carry
//! `force-command=/usr/local/bin/infrabroker-shim`, so sshd runs the shim for
//! every exec request of a session, with the request in
//! `SSH_ORIGINAL_COMMAND`. A legitimate broker sends an *envelope* there: a
//! line the signer signed after judging the command (see [`envelope`]). The
//! shim runs the command only if the signature verifies against a pinned
//! key, the envelope names this host (and an accepted principal), has not
//! expired, and its nonce was never used; then it `exec`s exactly
//! `/bin/sh -c <command>` (behind `sudo -n [-u USER] --` when the envelope
//! says so). Anything else — a bare command from a compromised broker, a
//! forged, modified, expired, replayed or other-host envelope, a broken
//! nonce store — is refused with one line on stderr, a syslog record, and
//! exit status 126.
//!
//! The crate is small on purpose (no async runtime, no TLS, no ssh-key): it
//! is installed on every sealed host and runs on every session command.
//!
//! # Layout
//! - [`envelope`]: the signed line, sealing (used by the signer) and opening.
//! - [`config`]: `shim.conf` and the pinned key file.
//! - [`nonce`]: the per-account store of used nonces.
//! - [`error`]: [`Refusal`], every reason with a stable code.
//! - [`host`]: the command line, the real uid and syslog.
//! - [`decide`] (here): the whole check, from the request to the argv to run.

pub mod config;
pub mod envelope;
pub mod error;
pub mod host;
pub mod nonce;

use std::path::PathBuf;

use ed25519_dalek::VerifyingKey;

pub use config::Config;
pub use envelope::Claims;
pub use error::Refusal;

/// What the shim will `exec`: a program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The program (the configured shell or sudo).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The claims it came from (for the syslog line).
    pub claims: Claims,
}

/// The full check of one request. `request` is `SSH_ORIGINAL_COMMAND`
/// (`None` when sshd set none), `uid` the account running the shim, `now`
/// unix seconds. Records the nonce as used before returning the plan.
pub fn decide(
    config: &Config,
    keys: &[VerifyingKey],
    request: Option<&str>,
    uid: u32,
    now: u64,
) -> Result<Plan, Refusal> {
    let request = request
        .filter(|r| !r.is_empty())
        .ok_or(Refusal::NoCommand)?;
    let claims = envelope::open(request, keys)?;
    if claims.host != config.host {
        return Err(Refusal::WrongHost(claims.host));
    }
    if !config.principals.is_empty() && !config.principals.contains(&claims.principal) {
        return Err(Refusal::WrongPrincipal(claims.principal));
    }
    if claims.expires < now {
        return Err(Refusal::Expired(format!("{} s ago", now - claims.expires)));
    }
    if claims.expires - now > config.max_lifetime_seconds {
        return Err(Refusal::Expired(format!(
            "{} s ahead, more than max_lifetime_seconds {}",
            claims.expires - now,
            config.max_lifetime_seconds
        )));
    }
    if let Some(user) = &claims.sudo_user
        && !valid_sudo_user(user)
    {
        return Err(Refusal::BadSudoUser);
    }
    nonce::NonceStore::new(&config.state_dir, uid).claim(&claims.nonce, claims.expires, now)?;
    Ok(plan(config, claims))
}

fn plan(config: &Config, claims: Claims) -> Plan {
    let shell = config.shell.display().to_string();
    let (program, mut args) = if claims.sudo {
        let mut args = vec!["-n".to_owned()];
        if let Some(user) = &claims.sudo_user {
            args.extend(["-u".to_owned(), user.clone()]);
        }
        args.extend(["--".to_owned(), shell]);
        (config.sudo.clone(), args)
    } else {
        (config.shell.clone(), Vec::new())
    };
    args.extend(["-c".to_owned(), claims.command.clone()]);
    let (program, args) = match claims.timeout {
        // TERM at the deadline, KILL 2 s later, as for one-shot commands.
        Some(t) => {
            let mut wrapped = vec!["-k".to_owned(), "2".to_owned(), t.to_string()];
            wrapped.push(program.display().to_string());
            wrapped.extend(args);
            (config.timeout.clone(), wrapped)
        }
        None => (program, args),
    };
    Plan {
        program,
        args,
        claims,
    }
}

/// The signer's rule for `sudo_user`: `^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}$`.
fn valid_sudo_user(user: &str) -> bool {
    let bytes = user.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        config: Config,
        key: SigningKey,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse("host = web01\nprincipals = web01-deploy").unwrap();
        config.state_dir = dir.path().to_path_buf();
        Fixture {
            _dir: dir,
            config,
            key: SigningKey::from_bytes(&rand::random()),
        }
    }

    fn claims(command: &str) -> Claims {
        Claims {
            nonce: Claims::new_nonce(),
            host: "web01".into(),
            principal: "web01-deploy".into(),
            command: command.into(),
            sudo: false,
            sudo_user: None,
            expires: NOW + 30,
            timeout: None,
        }
    }

    impl Fixture {
        fn decide(&self, line: &str) -> Result<Plan, Refusal> {
            decide(
                &self.config,
                &[self.key.verifying_key()],
                Some(line),
                1000,
                NOW,
            )
        }
    }

    #[test]
    fn a_good_envelope_runs_exactly_its_command_in_sh() {
        let f = fixture();
        let plan = f
            .decide(&claims("echo 'a b' | wc -c").seal(&f.key))
            .unwrap();
        assert_eq!(plan.program, PathBuf::from("/bin/sh"));
        assert_eq!(plan.args, ["-c", "echo 'a b' | wc -c"]);
    }

    #[test]
    fn sudo_envelopes_run_through_sudo_n() {
        let f = fixture();
        let mut c = claims("id -u");
        c.sudo = true;
        let plan = f.decide(&c.seal(&f.key)).unwrap();
        assert_eq!(plan.program, PathBuf::from("/usr/bin/sudo"));
        assert_eq!(plan.args, ["-n", "--", "/bin/sh", "-c", "id -u"]);
        let mut c = claims("id -u");
        c.sudo = true;
        c.sudo_user = Some("postgres".into());
        let plan = f.decide(&c.seal(&f.key)).unwrap();
        assert_eq!(
            plan.args,
            ["-n", "-u", "postgres", "--", "/bin/sh", "-c", "id -u"]
        );
        c.nonce = Claims::new_nonce();
        c.sudo_user = Some("-oops".into());
        assert_eq!(f.decide(&c.seal(&f.key)), Err(Refusal::BadSudoUser));
    }

    #[test]
    fn every_rule_refuses_with_its_code() {
        let f = fixture();
        let other_key = SigningKey::from_bytes(&rand::random());
        let expired = Claims {
            expires: NOW - 1,
            ..claims("id")
        };
        let far = Claims {
            expires: NOW + 301,
            ..claims("id")
        };
        let other_host = Claims {
            host: "db01".into(),
            ..claims("id")
        };
        let other_principal = Claims {
            principal: "root".into(),
            ..claims("id")
        };
        for (line, code) in [
            ("id".to_owned(), "not_envelope"),
            (claims("id").seal(&other_key), "bad_signature"),
            (expired.seal(&f.key), "expired"),
            (far.seal(&f.key), "expired"),
            (other_host.seal(&f.key), "wrong_host"),
            (other_principal.seal(&f.key), "wrong_principal"),
        ] {
            assert_eq!(f.decide(&line).unwrap_err().code(), code, "{line}");
        }
        let none = decide(&f.config, &[f.key.verifying_key()], None, 1000, NOW);
        assert_eq!(none.unwrap_err().code(), "no_command");
        let empty = decide(&f.config, &[f.key.verifying_key()], Some(""), 1000, NOW);
        assert_eq!(empty.unwrap_err().code(), "no_command");
    }

    #[test]
    fn an_envelope_with_a_deadline_runs_under_timeout() {
        let f = fixture();
        let mut c = claims("sleep 9");
        c.timeout = Some(5);
        c.sudo = true;
        let plan = f.decide(&c.seal(&f.key)).unwrap();
        assert_eq!(plan.program, PathBuf::from("/usr/bin/timeout"));
        assert_eq!(
            plan.args,
            [
                "-k",
                "2",
                "5",
                "/usr/bin/sudo",
                "-n",
                "--",
                "/bin/sh",
                "-c",
                "sleep 9"
            ]
        );
    }

    #[test]
    fn an_envelope_runs_once() {
        let f = fixture();
        let line = claims("true").seal(&f.key);
        f.decide(&line).unwrap();
        assert_eq!(f.decide(&line), Err(Refusal::Replayed));
    }

    #[test]
    fn a_refused_envelope_does_not_spend_its_nonce() {
        let mut f = fixture();
        let line = claims("true").seal(&f.key);
        f.config.host = "elsewhere".into();
        assert!(f.decide(&line).is_err());
        f.config.host = "web01".into();
        assert!(f.decide(&line).is_ok());
    }

    #[test]
    fn without_a_principal_list_any_principal_is_accepted() {
        let mut f = fixture();
        f.config.principals.clear();
        let c = Claims {
            principal: "anything".into(),
            ..claims("true")
        };
        assert!(f.decide(&c.seal(&f.key)).is_ok());
    }
}
