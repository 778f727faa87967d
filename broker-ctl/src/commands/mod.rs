//! One module per subcommand; this file holds the argument grammar and the
//! error-to-exit-code mapping.

mod approval;
mod audit;
mod audit_pg;
mod audit_proofs;
mod audit_rotated;
mod audit_tail;
mod audit_witness;
mod doctor;
mod freeze;
mod krl;
mod pki;
mod policy;
mod recording;
mod reload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A failed command: the exit code and one line for stderr.
#[derive(Debug)]
pub struct Failure {
    /// Process exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// Exit 1: the checked object is bad.
    pub fn bad(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
    /// Exit 2: a usage error clap cannot express.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
    /// Exit 64: invalid configuration.
    pub fn config(message: impl Into<String>) -> Self {
        Failure {
            code: 64,
            message: message.into(),
        }
    }
    /// Exit 69: a service is unreachable or refused.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Failure {
            code: 69,
            message: message.into(),
        }
    }
    /// Exit 70: anything else.
    pub fn other(message: impl Into<String>) -> Self {
        Failure {
            code: 70,
            message: message.into(),
        }
    }
}

/// Result of a subcommand.
pub type Outcome = Result<ExitCode, Failure>;

#[derive(Parser)]
#[command(version, about = "infrabroker operator CLI")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dev/test PKI.
    #[command(subcommand)]
    Pki(PkiCmd),
    /// Audit logs.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Session recordings (asciicast) checked against the broker's audit chain.
    #[command(subcommand)]
    Recording(RecordingCmd),
    /// The command firewall.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Ask a running signer to reload its configuration.
    Reload(ServiceArgs),
    /// Requests held by the control plane for approval.
    #[command(subcommand)]
    Approval(approval::ApprovalCmd),
    /// Key revocation lists for hosts' `RevokedKeys`.
    #[command(subcommand)]
    Krl(KrlCmd),
    /// The signer's index of live certificates.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// The signer's kill switch: freeze a caller, end user, host, serial or key id.
    #[command(subcommand)]
    Freeze(FreezeCmd),
    /// Check a signer, broker or control-plane configuration and what it points at.
    Doctor {
        /// The configuration file (its kind is detected).
        #[arg(long)]
        config: PathBuf,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RecordingCmd {
    /// Prove a recording byte-exact from the chunk hashes in the broker's
    /// audit log, or name the first chunk modified, removed, reordered or
    /// appended.
    Verify {
        /// The recording (`<session id>.cast`).
        file: PathBuf,
        /// The broker's audit log.
        #[arg(long)]
        audit: PathBuf,
        /// The broker's audit public key (`broker-audit.pub`).
        #[arg(long)]
        pubkey: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PkiCmd {
    /// Make a TLS CA, server and client certificates, the SSH user CA and
    /// audit keys; with --hsm, a SoftHSM2 token holding an Ed25519 CA instead.
    Init {
        /// Output directory.
        #[arg(long, default_value = "pki")]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
        /// Make a SoftHSM2 token "ca" with an Ed25519 CA key "ca" in this
        /// directory (configuration, token store, random 0600 PINs,
        /// ca.pub) for local trials, instead of the file PKI.
        #[arg(long, value_name = "DIR")]
        hsm: Option<PathBuf>,
        /// The PKCS#11 module for --hsm.
        #[arg(long, default_value = pki::SOFTHSM_MODULE, requires = "hsm")]
        module: PathBuf,
    },
    /// Second half of `init --hsm`, run with SOFTHSM2_CONF set.
    #[command(hide = true)]
    HsmProvision {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        module: PathBuf,
    },
    /// The signer's CA keys: each ca_keys entry (current and next), where
    /// it lives and its public key, read from the file, token or agent.
    /// Run it as the signer's user: it opens the keys as the signer does.
    ShowCa {
        /// The signer's configuration.
        #[arg(long, default_value = "signer.json")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The lines hosts put in TrustedUserCAKeys: every current and next CA
    /// key of signer.json, each once.
    SshCaPubs {
        /// The signer's configuration.
        #[arg(long, default_value = "signer.json")]
        config: PathBuf,
        /// Only this ca_keys entry (a group name or _default).
        #[arg(long)]
        group: Option<String>,
    },
    /// The line sealed hosts pin in /etc/infrabroker-shim/keys.pub: the
    /// public half of signer.json's envelope_key.
    EnvelopePub {
        /// The signer's configuration.
        #[arg(long, default_value = "signer.json")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Verify a log's hash chain and signatures; names the first bad record.
    Verify {
        /// The audit log (JSON lines); several files oldest first for a
        /// rotated log (the links between them are checked too); or
        /// `--postgres` for the signer replicas' global chain.
        #[arg(required_unless_present = "postgres", conflicts_with = "postgres")]
        files: Vec<PathBuf>,
        /// Verify the global chain in this PostgreSQL database instead of a file.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// CA of the database server's certificate (TLS required when set).
        #[arg(long, value_name = "PEM", requires = "postgres")]
        postgres_ca: Option<PathBuf>,
        /// The service's audit public key (`*-audit.pub`).
        #[arg(long)]
        pubkey: PathBuf,
        /// Check every record's signature, not only the head's.
        #[arg(long)]
        all_signatures: bool,
        /// A signed checkpoint (C2SP tlog-checkpoint) the log must extend:
        /// detects truncation and rewrites.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a signed checkpoint (C2SP tlog-checkpoint note) of the log's
    /// current records, signed with the service's audit key; ship it
    /// off the host to detect later truncation or rewrites.
    Checkpoint {
        /// The audit log.
        file: PathBuf,
        /// The service's audit key seed file (`*-audit.seed`).
        #[arg(long)]
        key: PathBuf,
        /// The log's origin line, also the note's signer name.
        #[arg(long)]
        origin: String,
    },
    /// Check that checkpoint NEW extends checkpoint OLD (same origin, both
    /// signed by the audit key) with a consistency proof built from LOG.
    Consistency {
        /// The older checkpoint.
        old: PathBuf,
        /// The newer checkpoint.
        new: PathBuf,
        /// The service's audit public key (`*-audit.pub`).
        #[arg(long)]
        pubkey: PathBuf,
        /// The audit log both checkpoints were taken from.
        #[arg(long)]
        log: PathBuf,
        /// Print the result and the proof as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the log's signed-note verifier key (`<origin>+<id>+<key>`),
    /// what a witness is given (e.g. `aics-witness add-log --vkey`).
    Vkey {
        /// The service's audit public key (`*-audit.pub`).
        #[arg(long)]
        pubkey: PathBuf,
        /// The log's origin (`audit_checkpoint.origin`).
        #[arg(long)]
        origin: String,
    },
    /// Check the witness cosignatures of a checkpoint (`<path>.cosigned`):
    /// the log's signature and one valid cosignature per `--witness`.
    Cosignatures {
        /// The cosigned checkpoint.
        file: PathBuf,
        /// The service's audit public key (`*-audit.pub`).
        #[arg(long)]
        pubkey: PathBuf,
        /// A witness's verifier key; repeat for each witness that must
        /// have cosigned.
        #[arg(long = "witness", value_name = "VKEY", required = true)]
        witnesses: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the Merkle inclusion proof of record `seq` in the whole log.
    Prove {
        /// The audit log.
        file: PathBuf,
        /// The record's seq.
        #[arg(long)]
        seq: u64,
        /// Print the proof as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the signer replicas' global chain from PostgreSQL to stdout as
    /// JSON lines (a file `audit verify` checks like any log).
    Export {
        /// The database (`postgresql://user@host/db`).
        #[arg(long, value_name = "URL")]
        postgres: String,
        /// CA of the database server's certificate (TLS required when set).
        #[arg(long, value_name = "PEM")]
        postgres_ca: Option<PathBuf>,
    },
    /// Print the last records of a log, one JSON object per line; with
    /// --follow keep printing records as they are sealed (across rotation).
    Tail {
        /// The audit log.
        file: PathBuf,
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing new records until stopped (or stdout closes).
        #[arg(short = 'f', long)]
        follow: bool,
        /// One JSON object per line (the only format; accepted so a
        /// pipeline can say so).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KrlCmd {
    /// Download the signer's KRL and replace OUT atomically, keeping the old
    /// file when the answer is not a usable, newer KRL.
    Fetch {
        #[command(flatten)]
        service: ServiceArgs,
        /// The file sshd's `RevokedKeys` names.
        #[arg(long)]
        out: PathBuf,
        /// When the installed list is current, wait up to this many seconds
        /// (at most 55) for the signer's next change before answering
        /// unchanged (a long poll).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=55))]
        wait: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CertsCmd {
    /// List the live certificates of one subject (or all): what a frozen
    /// caller, end user or host still holds, revoked ones marked.
    List {
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        subject: freeze::Subject,
        /// Most entries (default and ceiling 1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum FreezeCmd {
    /// Freeze one subject: every sign and dry run for it gets 403 frozen.
    Add {
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        subject: freeze::Subject,
        /// Why (required; recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// Lift it by itself after this long (`10m`, `2h`, `1d`, seconds).
        #[arg(long, value_parser = freeze::parse_ttl)]
        ttl: Option<std::time::Duration>,
        /// Print the freeze as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The freezes in force.
    List {
        #[command(flatten)]
        service: ServiceArgs,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift a freeze by id.
    Lift {
        #[command(flatten)]
        service: ServiceArgs,
        /// The freeze id (from `freeze list`).
        id: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Show a host's composed command policy and, with --command, the decision.
    Explain {
        /// signer.json.
        #[arg(long, default_value = "signer.json")]
        config: PathBuf,
        /// Logical host name.
        #[arg(long)]
        host: String,
        /// A command to judge offline.
        #[arg(long)]
        command: Option<String>,
        /// Judge it as a PTY request (pager rows of the exec-option table apply).
        #[arg(long)]
        pty: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How to reach a service with the operator's client certificate.
#[derive(clap::Args)]
pub struct ServiceArgs {
    /// Service URL.
    #[arg(long, default_value = "https://127.0.0.1:9443")]
    pub url: String,
    /// CA certificate of the service.
    #[arg(long, default_value = "pki/ca.crt")]
    pub ca: PathBuf,
    /// Operator client certificate.
    #[arg(long, default_value = "pki/operator.crt")]
    pub cert: PathBuf,
    /// Operator client key.
    #[arg(long, default_value = "pki/operator.key")]
    pub key: PathBuf,
}

impl ServiceArgs {
    /// An mTLS client for the service with the operator's identity.
    pub fn client(
        &self,
    ) -> Result<infrabroker_common::client::MtlsClient, infrabroker_common::client::ClientError>
    {
        infrabroker_common::client::MtlsClient::new(
            &self.url,
            &self.ca,
            &self.cert,
            &self.key,
            std::time::Duration::from_secs(15),
        )
    }

    /// Like [`ServiceArgs::client`], but an `http://` URL (the signer's
    /// plain `krl_listen`) gets a plain client and needs no `--ca`,
    /// `--cert` or `--key`.
    /// Each call must finish within `timeout`.
    pub fn client_or_plain(
        &self,
        timeout: std::time::Duration,
    ) -> Result<infrabroker_common::client::MtlsClient, infrabroker_common::client::ClientError>
    {
        use infrabroker_common::client::MtlsClient;
        if self.url.starts_with("http://") {
            MtlsClient::plain(&self.url, timeout)
        } else {
            MtlsClient::new(&self.url, &self.ca, &self.cert, &self.key, timeout)
        }
    }
}

/// A single-threaded runtime for one command's network calls.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::other(format!("cannot start a runtime: {e}")))
}

/// `broker-ctl audit …`.
fn run_audit(cmd: AuditCmd) -> Outcome {
    match cmd {
        AuditCmd::Verify {
            files,
            postgres,
            postgres_ca,
            pubkey,
            all_signatures,
            checkpoint,
            json,
        } => match (files.as_slice(), postgres) {
            (_, Some(url)) => audit_pg::verify(
                &url,
                postgres_ca.as_deref(),
                &pubkey,
                all_signatures,
                checkpoint.as_deref(),
                json,
            ),
            ([file], None) => {
                audit::verify(file, &pubkey, all_signatures, checkpoint.as_deref(), json)
            }
            ([], None) => Err(Failure::bad("name a log file or --postgres URL")),
            (files, None) => {
                audit_rotated::verify(files, &pubkey, all_signatures, checkpoint.as_deref(), json)
            }
        },
        AuditCmd::Export {
            postgres,
            postgres_ca,
        } => audit_pg::export(&postgres, postgres_ca.as_deref()),
        AuditCmd::Prove { file, seq, json } => audit::prove(&file, seq, json),
        AuditCmd::Vkey { pubkey, origin } => audit_witness::vkey(&pubkey, &origin),
        AuditCmd::Cosignatures {
            file,
            pubkey,
            witnesses,
            json,
        } => audit_witness::cosignatures(&file, &pubkey, &witnesses, json),
        AuditCmd::Consistency {
            old,
            new,
            pubkey,
            log,
            json,
        } => audit_proofs::consistency(&old, &new, &pubkey, &log, json),
        AuditCmd::Checkpoint { file, key, origin } => audit::checkpoint(&file, &key, &origin),
        AuditCmd::Tail {
            file,
            lines,
            follow,
            json: _,
        } => audit_tail::tail(&file, lines, follow),
    }
}

fn run_pki(cmd: PkiCmd) -> Outcome {
    match cmd {
        PkiCmd::Init {
            hsm: Some(dir),
            module,
            force,
            ..
        } => pki::init_hsm(dir, module, force),
        PkiCmd::Init { out, force, .. } => pki::init(out, force),
        PkiCmd::HsmProvision { dir, module } => pki::hsm_provision(dir, module),
        PkiCmd::ShowCa { config, json } => pki::show_ca(&config, json),
        PkiCmd::SshCaPubs { config, group } => pki::ssh_ca_pubs(&config, group.as_deref()),
        PkiCmd::EnvelopePub { config } => pki::envelope_pub(&config),
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Pki(cmd) => run_pki(cmd),
        Command::Audit(cmd) => run_audit(cmd),
        Command::Policy(PolicyCmd::Explain {
            config,
            host,
            command,
            pty,
            json,
        }) => policy::explain(&config, &host, command.as_deref(), pty, json),
        Command::Reload(args) => reload::run(&args),
        Command::Freeze(FreezeCmd::Add {
            service,
            subject,
            reason,
            ttl,
            json,
        }) => freeze::add(&service, &subject, &reason, ttl, json),
        Command::Freeze(FreezeCmd::List { service, json }) => freeze::list(&service, json),
        Command::Freeze(FreezeCmd::Lift { service, id, json }) => freeze::lift(&service, &id, json),
        Command::Certs(CertsCmd::List {
            service,
            subject,
            limit,
            json,
        }) => freeze::certs(&service, &subject, limit, json),
        Command::Approval(cmd) => approval::run(cmd),
        Command::Doctor { config, json } => doctor::run(&config, json),
        Command::Recording(RecordingCmd::Verify {
            file,
            audit,
            pubkey,
            json,
        }) => recording::verify(&file, &audit, &pubkey, json),
        Command::Krl(KrlCmd::Fetch {
            service,
            out,
            wait,
            json,
        }) => krl::fetch(&service, &out, wait, json),
    }
}
