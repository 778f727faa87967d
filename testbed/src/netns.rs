//! Network namespaces and veth links for multi-host tests.
//!
//! Safety rule: an address the namespaces do not route would leave the
//! machine through its default route. [`TestNet`] therefore installs
//! `unreachable 10.200.0.0/16` in the root namespace *before* it creates
//! anything, only accepts addresses inside its own block of that range, and
//! removes the route when the last `TestNet` on the machine is gone.
//!
//! Every `TestNet` reserves one of 32 blocks of eight /24s
//! (`10.200.8k+1.0/24` … `10.200.8k+7.0/24`) through a lock file, so tests
//! running in parallel, in one process or several, never share a subnet.
//! Block 0 gives the addresses of the notes: client 10.200.1.1, bastion
//! 10.200.1.2 | 10.200.2.1, target 10.200.2.2.

use std::ffi::OsStr;
use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, anyhow, bail};

use crate::sys;

/// The whole range test namespaces may use.
pub const RANGE: &str = "10.200.0.0/16";
const BLOCKS: u8 = 32;
/// /24s per block usable as links (index 1..=7).
const LINKS_PER_BLOCK: u8 = 7;
/// Marks that the unreachable route was added by a `TestNet`, so teardown
/// never removes a route an administrator installed.
const ROUTE_MARKER: &str = "/run/infrabroker-testbed/unreachable-route-added";

/// A named network namespace (`ip netns add`), with `lo` up; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (a stale one of that name, left by a crashed
    /// run, is replaced).
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            bail!("invalid namespace name {name:?} (use [A-Za-z0-9_-], at most 64 characters)");
        }
        if sys::run_args("ip", &["netns", "add", name]).is_err() {
            let _ = sys::run_args("ip", &["netns", "del", name]);
            sys::run_args("ip", &["netns", "add", name])
                .with_context(|| format!("cannot create network namespace {name}"))?;
        }
        let ns = Netns {
            name: name.to_owned(),
        };
        sys::run_args("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`, ready for arguments.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `bash -c script` in the namespace and returns its output,
    /// whatever the exit code.
    pub fn bash(&self, script: &str) -> anyhow::Result<Output> {
        bash_in(&self.name, script)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sys::run_args("ip", &["netns", "del", &self.name]);
    }
}

/// Runs `bash -c script` in namespace `ns`, whatever the exit code.
pub fn bash_in(ns: &str, script: &str) -> anyhow::Result<Output> {
    Command::new("ip")
        .args(["netns", "exec", ns, "bash", "-c", script])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run bash in namespace {ns}"))
}

/// One host of a [`BastionChain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// Its namespace.
    pub netns: String,
    /// Its address on the link towards the client; listen here.
    pub addr: Ipv4Addr,
    /// Its address on the link towards the next hop (the source address the
    /// next hop sees); `None` for the target.
    pub next: Option<Ipv4Addr>,
}

/// client (root namespace) ↔ bastion 1 ↔ … ↔ bastion n ↔ target, each host in
/// its own namespace, each reachable only from its neighbours.
#[derive(Debug)]
pub struct BastionChain {
    /// The root namespace's address on the first link.
    pub client: Ipv4Addr,
    /// The bastions, nearest to the client first.
    pub bastions: Vec<Hop>,
    /// The target host.
    pub target: Hop,
    /// The namespaces and links; torn down on drop.
    pub net: TestNet,
}

/// A set of namespaces and veth links inside one reserved address block,
/// torn down on drop.
#[derive(Debug)]
pub struct TestNet {
    prefix: String,
    block: u8,
    links: u32,
    root_links: Vec<String>,
    namespaces: Vec<Netns>,
    slot: Option<File>,
}

impl TestNet {
    /// Installs the `unreachable` safety route (if missing) and reserves an
    /// address block. Needs root.
    pub fn new() -> anyhow::Result<TestNet> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let global = sys::lock_file("testnet.lock")?;
        global.lock().context("cannot lock testnet.lock")?;
        ensure_unreachable_route()?;
        let (block, slot) = reserve_block()?;
        drop(global);
        // Interface names are limited to 15 bytes: "ib" + pid (≤ 5) +
        // counter (2) + link (1) + side (1).
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % (36 * 36);
        let prefix = format!("ib{}{:0>2}", base36(std::process::id()), base36(n));
        Ok(TestNet {
            prefix,
            block,
            links: 0,
            root_links: Vec::new(),
            namespaces: Vec::new(),
            slot: Some(slot),
        })
    }

    /// `10.200.X.host` on link `link` (1..=7) of this net's block.
    pub fn ip(&self, link: u8, host: u8) -> anyhow::Result<Ipv4Addr> {
        if !(1..=LINKS_PER_BLOCK).contains(&link) {
            bail!("link index {link} out of 1..={LINKS_PER_BLOCK}");
        }
        Ok(Ipv4Addr::new(10, 200, self.block * 8 + link, host))
    }

    /// Creates a namespace named `<unique prefix>-<label>`; returns its name.
    pub fn add_netns(&mut self, label: &str) -> anyhow::Result<String> {
        let ns = Netns::create(&format!("{}-{label}", self.prefix))?;
        let name = ns.name().to_owned();
        self.namespaces.push(ns);
        Ok(name)
    }

    /// Links namespace `a` (`None`: the root namespace) and namespace `b`
    /// with a veth pair, addresses `addr_a` and `addr_b` (`10.200.x.y/24`
    /// style, inside this net's block, prefix ≥ 24) and brings both ends up.
    pub fn veth(
        &mut self,
        a: Option<&str>,
        addr_a: &str,
        b: &str,
        addr_b: &str,
    ) -> anyhow::Result<()> {
        self.check_cidr(addr_a)?;
        self.check_cidr(addr_b)?;
        if self.links >= 36 {
            bail!("too many veth links in one TestNet");
        }
        let index = base36(self.links);
        self.links += 1;
        let end_a = format!("{}{index}a", self.prefix);
        let end_b = format!("{}{index}b", self.prefix);
        let add = [
            "link", "add", &end_a, "type", "veth", "peer", "name", &end_b,
        ];
        if sys::run_args("ip", &add).is_err() {
            // A stale pair from a crashed run with the same pid.
            let _ = sys::run_args("ip", &["link", "del", &end_a]);
            sys::run_args("ip", &add)?;
        }
        match a {
            None => self.root_links.push(end_a.clone()),
            Some(ns) => {
                sys::run_args("ip", &["link", "set", &end_a, "netns", ns])?;
            }
        }
        sys::run_args("ip", &["link", "set", &end_b, "netns", b])?;
        ip_in(a, &["addr", "add", addr_a, "dev", &end_a])?;
        ip_in(a, &["link", "set", &end_a, "up"])?;
        ip_in(Some(b), &["addr", "add", addr_b, "dev", &end_b])?;
        ip_in(Some(b), &["link", "set", &end_b, "up"])?;
        Ok(())
    }

    /// `ip route add dest via via` inside namespace `ns`; both must lie in
    /// this net's block.
    pub fn route(&self, ns: &str, dest: &str, via: Ipv4Addr) -> anyhow::Result<()> {
        self.check_cidr(dest)?;
        self.check_ip(via)?;
        ip_in(Some(ns), &["route", "add", dest, "via", &via.to_string()])?;
        Ok(())
    }

    /// client ↔ `n_bastions` bastions ↔ target (0..=6 bastions). Link `i`
    /// (1-based) is `10.200.(8k+i).0/24`, the side nearer the client has
    /// `.1`, the other `.2`. No routes: each host only reaches neighbours.
    pub fn bastion_chain(n_bastions: usize) -> anyhow::Result<BastionChain> {
        if n_bastions >= usize::from(LINKS_PER_BLOCK) {
            bail!("at most {} bastions", LINKS_PER_BLOCK - 1);
        }
        let mut net = TestNet::new()?;
        let mut hops: Vec<Hop> = Vec::new();
        for i in 0..=n_bastions {
            let link = u8::try_from(i + 1).context("link index")?;
            let label = if i < n_bastions {
                format!("b{}", i + 1)
            } else {
                "target".to_owned()
            };
            let ns = net.add_netns(&label)?;
            let near = net.ip(link, 1)?;
            let far = net.ip(link, 2)?;
            let prev = hops.last().map(|h| h.netns.clone());
            net.veth(
                prev.as_deref(),
                &format!("{near}/24"),
                &ns,
                &format!("{far}/24"),
            )?;
            if let Some(last) = hops.last_mut() {
                last.next = Some(near);
            }
            hops.push(Hop {
                netns: ns,
                addr: far,
                next: None,
            });
        }
        let client = net.ip(1, 1)?;
        let target = hops.pop().ok_or_else(|| anyhow!("empty chain"))?;
        Ok(BastionChain {
            client,
            bastions: hops,
            target,
            net,
        })
    }

    fn check_cidr(&self, cidr: &str) -> anyhow::Result<()> {
        let (ip, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| anyhow!("{cidr:?} is not ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .with_context(|| format!("bad address in {cidr:?}"))?;
        let prefix: u8 = prefix
            .parse()
            .with_context(|| format!("bad prefix in {cidr:?}"))?;
        if !(24..=32).contains(&prefix) {
            bail!("{cidr}: prefix must be /24../32 so it stays inside one link");
        }
        self.check_ip(ip)
    }

    fn check_ip(&self, ip: Ipv4Addr) -> anyhow::Result<()> {
        let [a, b, c, _] = ip.octets();
        let first = self.block * 8 + 1;
        if a != 10 || b != 200 || !(first..first + LINKS_PER_BLOCK).contains(&c) {
            bail!(
                "{ip} is outside this TestNet's block 10.200.{first}.0 – 10.200.{}.255",
                first + LINKS_PER_BLOCK - 1
            );
        }
        Ok(())
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for link in &self.root_links {
            let _ = sys::run_args("ip", &["link", "del", link]);
        }
        self.namespaces.clear();
        let Ok(global) = sys::lock_file("testnet.lock") else {
            return;
        };
        if global.lock().is_err() {
            return;
        }
        self.slot = None;
        if !any_block_in_use() && std::fs::remove_file(ROUTE_MARKER).is_ok() {
            let _ = sys::run_args("ip", &["route", "del", "unreachable", RANGE]);
        }
    }
}

/// Adds `unreachable 10.200.0.0/16` unless present; refuses to go on if the
/// machine routes any part of the range itself. Caller holds the global lock.
fn ensure_unreachable_route() -> anyhow::Result<()> {
    let out = sys::run_args("ip", &["-4", "route", "show", "root", RANGE])?;
    let routes = String::from_utf8_lossy(&out.stdout);
    let mut present = false;
    for line in routes.lines() {
        if line.trim() == format!("unreachable {RANGE}") {
            present = true;
        } else if !line.contains(" dev ib") {
            // Not ours: dialling that part of the range would leave the
            // machine or reach a real network.
            bail!(
                "{RANGE} is (partly) routed on this machine ({line}); refusing to use it for tests"
            );
        }
    }
    if !present {
        sys::run_args("ip", &["route", "add", "unreachable", RANGE])
            .context("cannot add the safety route")?;
        std::fs::write(ROUTE_MARKER, b"").context("cannot write the route marker")?;
    }
    Ok(())
}

/// Takes the first free block lock. Caller holds the global lock.
fn reserve_block() -> anyhow::Result<(u8, File)> {
    for block in 0..BLOCKS {
        let file = sys::lock_file(&format!("testnet-block-{block}.lock"))?;
        if file.try_lock().is_ok() {
            return Ok((block, file));
        }
    }
    bail!("all {BLOCKS} TestNet address blocks are in use")
}

fn any_block_in_use() -> bool {
    (0..BLOCKS).any(|block| {
        sys::lock_file(&format!("testnet-block-{block}.lock"))
            .map(|f| f.try_lock().is_err())
            .unwrap_or(false)
    })
}

/// `ip [-n ns] args…`.
fn ip_in(ns: Option<&str>, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    sys::run(cmd.args(args))
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}
