//! `broker-ctl pki init`: the dev/test PKI.

use std::path::PathBuf;
use std::process::ExitCode;

use infrabroker_common::pki::{PkiError, PkiOptions, init as make};

use super::{Failure, Outcome};

pub fn init(out: PathBuf, force: bool) -> Outcome {
    let mut opts = PkiOptions::new(out);
    opts.force = force;
    match make(&opts) {
        Ok(paths) => {
            println!("wrote the dev PKI to {}:", paths.out.display());
            for f in &paths.files {
                println!("  {:04o}  {:<28} {}", f.mode, file_name(&f.path), f.purpose);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ PkiError::Exists(_)) => Err(Failure::bad(format!("{e} (use --force to replace)"))),
        Err(e) => Err(Failure::other(e.to_string())),
    }
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// SoftHSM2's PKCS#11 module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// `broker-ctl pki init --hsm DIR`: a SoftHSM2 token `ca` in `DIR` with an
/// Ed25519 CA key `ca` generated on it, for local trials. The PINs are
/// random and written 0600; the key is made by a child process whose
/// environment points SoftHSM2 at `DIR` (the module reads that variable
/// when it initialises, and a process cannot change its own environment
/// safely once threads run).
pub fn init_hsm(dir: PathBuf, module: PathBuf, force: bool) -> Outcome {
    let conf = dir.join("softhsm2.conf");
    if conf.exists() && !force {
        return Err(Failure::bad(format!(
            "{} exists already (use --force to replace the token)",
            conf.display()
        )));
    }
    let io = |what: &str, e: std::io::Error| Failure::other(format!("{what}: {e}"));
    let tokens = dir.join("tokens");
    if tokens.exists() {
        std::fs::remove_dir_all(&tokens).map_err(|e| io("removing the old token", e))?;
    }
    std::fs::create_dir_all(&tokens).map_err(|e| io("creating the token directory", e))?;
    let abs = std::fs::canonicalize(&tokens).map_err(|e| io("resolving the token directory", e))?;
    set_private(&dir, 0o700)?;
    set_private(&tokens, 0o700)?;
    let text = format!(
        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
        abs.display()
    );
    std::fs::write(&conf, text).map_err(|e| io("writing softhsm2.conf", e))?;
    for name in ["pin", "so-pin"] {
        let pin: [u8; 12] = rand::random();
        let path = dir.join(name);
        std::fs::write(&path, format!("{}\n", hex::encode(pin)))
            .map_err(|e| io("writing a PIN", e))?;
        set_private(&path, 0o600)?;
    }
    let exe = std::env::current_exe().map_err(|e| io("finding broker-ctl", e))?;
    let out = std::process::Command::new(exe)
        .args(["pki", "hsm-provision", "--module"])
        .arg(&module)
        .arg("--dir")
        .arg(&dir)
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .map_err(|e| io("running the provisioning step", e))?;
    if !out.status.success() {
        return Err(Failure::other(format!(
            "the token could not be made: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    std::fs::write(dir.join("ca.pub"), format!("{public}\n"))
        .map_err(|e| io("writing ca.pub", e))?;
    let pin_file = std::fs::canonicalize(dir.join("pin")).unwrap_or_else(|_| dir.join("pin"));
    let conf_abs = std::fs::canonicalize(&conf).unwrap_or(conf);
    let entry = serde_json::json!({"_default": {
        "type": "pkcs11", "module": module, "token_label": "ca",
        "key_label": "ca", "pin_file": pin_file,
    }});
    println!(
        "made a SoftHSM2 token \"ca\" with an Ed25519 CA key \"ca\" in {}:",
        dir.display()
    );
    println!("  ca.pub          {public}");
    println!("  pin, so-pin     0600, random");
    println!("run the signer with SOFTHSM2_CONF={}", conf_abs.display());
    println!("and in signer.json:");
    println!(
        "  \"ca_keys\": {}",
        serde_json::to_string_pretty(&entry)
            .unwrap_or_default()
            .replace('\n', "\n  ")
    );
    Ok(ExitCode::SUCCESS)
}

fn set_private(path: &std::path::Path, mode: u32) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Failure::other(format!("chmod {}: {e}", path.display())))
}

/// The hidden second half of [`init_hsm`], run with `SOFTHSM2_CONF` set:
/// initialise the token, generate the key, print its public line.
pub fn hsm_provision(dir: PathBuf, module: PathBuf) -> Outcome {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|s| zeroize::Zeroizing::new(s.trim().to_owned()))
            .map_err(|e| Failure::other(format!("reading {name}: {e}")))
    };
    let (pin, so_pin) = (read("pin")?, read("so-pin")?);
    let token = infrabroker_ca::provision_softhsm(&module, "ca", "ca", &pin, &so_pin)
        .map_err(|e| Failure::other(e.to_string()))?;
    println!("{}", token.public_key);
    Ok(ExitCode::SUCCESS)
}

/// The signer's CA keys, opened as the signer opens them.
fn open_cas(config: &std::path::Path) -> Result<infrabroker_signer::issuance::Runtime, Failure> {
    infrabroker_signer::check(config)
        .map_err(|e| Failure::config(format!("{}: {e}", config.display())))
}

/// `broker-ctl pki show-ca --config signer.json`: every CA entry, where
/// its key lives and its public key (read from the token or the agent).
pub fn show_ca(config: &std::path::Path, json: bool) -> Outcome {
    let rt = open_cas(config)?;
    let mut rows = Vec::new();
    for (name, slot) in rt.slots() {
        let cas = std::iter::once(("current", &slot.current))
            .chain(slot.next.as_ref().map(|n| ("next", n)));
        for (role, ca) in cas {
            rows.push(serde_json::json!({
                "entry": name, "role": role, "type": ca.kind(),
                "fingerprint": ca.fingerprint(), "public_key": ca.public_openssh(),
            }));
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        println!(
            "{:<12} {:<8} {:<7} {}",
            s("entry"),
            s("role"),
            s("type"),
            s("fingerprint")
        );
        println!("    {}", s("public_key"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `broker-ctl pki ssh-ca-pubs --config signer.json [--group G]`: the
/// lines hosts put in `TrustedUserCAKeys` — every current and next CA
/// key, each once, so a rotation's overlap is one copy of this output.
pub fn ssh_ca_pubs(config: &std::path::Path, group: Option<&str>) -> Outcome {
    let rt = open_cas(config)?;
    if let Some(g) = group
        && !rt.slots().any(|(name, _)| name == g)
    {
        return Err(Failure::usage(format!("no ca_keys entry named {g:?}")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (name, slot) in rt.slots() {
        if group.is_some_and(|g| g != name) {
            continue;
        }
        for ca in std::iter::once(&slot.current).chain(slot.next.as_ref()) {
            if seen.insert(ca.public_line()) {
                println!("{}", ca.public_openssh());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `broker-ctl pki envelope-pub --config signer.json`: the OpenSSH line of
/// the key that signs sealed-exec envelopes, for each sealed host's
/// `keys.pub` (during a rotation, the old and the new line both).
pub fn envelope_pub(config: &std::path::Path) -> Outcome {
    let rt = open_cas(config)?;
    let key = rt.envelope_key().ok_or_else(|| {
        Failure::usage(format!(
            "{} has no envelope_key (needed once a host is sealed_exec)",
            config.display()
        ))
    })?;
    let line = infrabroker_shim::config::openssh_line(&key.verifying_key(), "infrabroker-envelope");
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}
