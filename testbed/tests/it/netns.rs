use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use infrabroker_testbed::netns::bash_in;
use infrabroker_testbed::{
    SshClient, SshTarget, Sshd, SshdOptions, TestNet, ensure_user, netns_or_skip,
};

use crate::support::{Ca, PRINCIPAL, USER, ed25519};

fn sshd_in(ca: &Ca, ns: &str, ip: std::net::Ipv4Addr) -> Sshd {
    let mut opts = SshdOptions::new(ca.pubkey()).with_principals(USER, [PRINCIPAL]);
    opts.netns = Some(ns.to_owned());
    opts.listen = IpAddr::V4(ip);
    opts.port = Some(22);
    Sshd::start(opts).unwrap()
}

fn netns_names() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

#[test]
fn target_is_reachable_only_through_the_bastion() {
    if !netns_or_skip() {
        return;
    }
    ensure_user(USER).unwrap();
    let chain = TestNet::bastion_chain(1).unwrap();
    let bastion = &chain.bastions[0];
    let target = &chain.target;
    assert_eq!(bastion.next, Some(chain.net.ip(2, 1).unwrap()));
    assert_eq!(target.next, None);

    // The safety route is in place before anything else.
    let routes = Command::new("ip")
        .args(["route", "show", "10.200.0.0/16"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&routes.stdout).contains("unreachable 10.200.0.0/16"));

    let ca = Ca::new();
    let target_sshd = sshd_in(&ca, &target.netns, target.addr);

    // The root namespace hits the unreachable route at once.
    let from_root = TcpStream::connect_timeout(
        &SocketAddr::new(IpAddr::V4(target.addr), 22),
        Duration::from_secs(2),
    );
    assert!(from_root.is_err());
    let probe = format!("</dev/tcp/{}/22", target.addr);
    assert!(bash_in(&bastion.netns, &probe).unwrap().status.success());
    // The client reaches the bastion's near side but nothing beyond.
    assert!(
        TcpStream::connect_timeout(
            &SocketAddr::new(IpAddr::V4(bastion.addr), 9),
            Duration::from_secs(2)
        )
        .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    );
    drop(target_sshd);

    let names: Vec<String> = [&bastion.netns, &target.netns]
        .into_iter()
        .cloned()
        .collect();
    assert!(names.iter().all(|n| netns_names().contains(n.as_str())));
    drop(chain);
    let after = netns_names();
    assert!(names.iter().all(|n| !after.contains(n.as_str())), "{after}");
}

#[test]
fn openssh_jumps_through_two_bastions() {
    if !netns_or_skip() {
        return;
    }
    ensure_user(USER).unwrap();
    let chain = TestNet::bastion_chain(2).unwrap();
    let (b1, b2, target) = (&chain.bastions[0], &chain.bastions[1], &chain.target);
    // Only neighbours reach each other.
    assert!(
        !bash_in(&b1.netns, &format!("</dev/tcp/{}/22", target.addr))
            .unwrap()
            .status
            .success()
    );

    let ca = Ca::new();
    let sshd_b1 = sshd_in(&ca, &b1.netns, b1.addr);
    let sshd_b2 = sshd_in(&ca, &b2.netns, b2.addr);
    let sshd_t = sshd_in(&ca, &target.netns, target.addr);

    let key = ed25519();
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.user_cert(&key, &[PRINCIPAL], &["permit-port-forwarding"]);
    let client = SshClient::create(dir.path(), &key, &cert).unwrap();
    let hop = |sshd: &Sshd| sshd.target().from_netns(None);
    for sshd in [&sshd_b1, &sshd_b2, &sshd_t] {
        client.trust(&hop(sshd)).unwrap();
    }
    // Nested ProxyCommands with explicit `-W host:port` (no `%h` tokens,
    // which the outer ssh would expand for the inner one too).
    let proxy = |via: &Sshd, next: SocketAddr, inner: Option<String>| {
        let next = next.to_string();
        let inner = inner.map(|p| format!("ProxyCommand={p}"));
        let mut extra = vec!["-W", next.as_str()];
        if let Some(p) = &inner {
            extra.extend(["-o", p.as_str()]);
        }
        shell_line(&client.command(&hop(via), USER, "", &extra))
    };
    let proxy1 = proxy(&sshd_b1, sshd_b2.addr(), None);
    let proxy2 = proxy(&sshd_b2, sshd_t.addr(), Some(proxy1));
    let out = client
        .run(
            &hop(&sshd_t),
            USER,
            "id -un",
            &["-o", &format!("ProxyCommand={proxy2}")],
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ibtest\n",
        "{out:?}\nb1:\n{}\nb2:\n{}\ntarget:\n{}",
        sshd_b1.log(),
        sshd_b2.log(),
        sshd_t.log()
    );
    // The target sees the last bastion's far-side address as the source.
    let from = format!("from {} port", b2.next.unwrap());
    assert!(
        sshd_t.wait_for_log(&from, Duration::from_secs(5)),
        "{}",
        sshd_t.log()
    );
    let _ = SshTarget::from(&sshd_t);
}

#[test]
fn addresses_outside_the_block_are_refused() {
    if !netns_or_skip() {
        return;
    }
    let mut net = TestNet::new().unwrap();
    let ns = net.add_netns("x").unwrap();
    let inside = net.ip(1, 2).unwrap();
    for bad in ["192.0.2.10/24", "10.200.0.1/24", "10.201.1.1/24"] {
        let err = net
            .veth(None, bad, &ns, &format!("{inside}/24"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("outside") || err.contains("prefix"),
            "{bad}: {err}"
        );
    }
    let too_wide = format!("{}/16", net.ip(1, 1).unwrap());
    assert!(
        net.veth(None, &too_wide, &ns, &format!("{inside}/24"))
            .is_err()
    );
    assert!(net.ip(8, 1).is_err());
}

/// `cmd` as one `sh` line: empty arguments dropped, arguments with spaces
/// single-quoted (they hold no single quotes here).
fn shell_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| !a.is_empty())
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ")
}
