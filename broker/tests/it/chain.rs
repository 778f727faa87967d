//! Bastion chains across network namespaces the test creates itself. The
//! testbed adds an `unreachable` route for 10.200.0.0/16 in the root
//! namespace before any namespace exists, so nothing leaks out.

use std::time::Duration;

use infrabroker_testbed::{
    BastionChain, SshClient, Sshd, SshdOptions, TestNet, ensure_user, netns_or_skip,
};
use serde_json::json;

use crate::harness::{Bed, USER, run};

const PORT: u16 = 2222;

fn netns_sshd(
    pki: &infrabroker_testbed::stack::Pki,
    ns: &str,
    addr: std::net::Ipv4Addr,
    principal: &str,
) -> Sshd {
    let mut o = SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, [principal]);
    o.netns = Some(ns.to_owned());
    o.listen = addr.into();
    o.port = Some(PORT);
    Sshd::start(o).unwrap()
}

fn entry(sshd: &Sshd, principal: &str) -> serde_json::Value {
    json!({
        "addr": sshd.addr().to_string(), "user": USER, "host_key": sshd.host_key_openssh(),
        "principal": principal, "groups": ["web"],
    })
}

#[tokio::test]
async fn one_bastion_chain_works_and_the_pinned_target_cert_fails_elsewhere() {
    if !netns_or_skip() {
        return;
    }
    ensure_user(USER).unwrap();
    let chain: BastionChain = TestNet::bastion_chain(1).unwrap();
    let (dir, pki) = Bed::pki();
    let b = &chain.bastions[0];
    let bastion = netns_sshd(&pki, &b.netns, b.addr, "bastion-p");
    let target = netns_sshd(&pki, &chain.target.netns, chain.target.addr, "target-p");
    let egress = b.next.unwrap();
    let mut t = entry(&target, "target-p");
    t["jump"] = json!("bastion");
    t["source_address"] = json!(egress.to_string());
    let bed = Bed::start(
        dir,
        pki,
        json!({"bastion": entry(&bastion, "bastion-p"), "target": t}),
    );
    let engine = bed.engine(json!({})).await;

    // The target is not reachable from the root namespace at all.
    assert!(
        std::net::TcpStream::connect_timeout(&target.addr(), Duration::from_millis(300)).is_err()
    );

    let r = run(&engine, "target", "echo via-bastion; echo $SSH_CLIENT")
        .await
        .unwrap();
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("via-bastion"));
    assert!(
        lines.next().unwrap().starts_with(&egress.to_string()),
        "target sees the bastion: {}",
        r.stdout
    );
    assert!(target.wait_for_log(&format!("(serial {})", r.serial), Duration::from_secs(5)));
    let rec = bed
        .broker_records()
        .into_iter()
        .find(|x| x["serial"] == r.serial && x["outcome"] == "executed")
        .unwrap();
    assert_eq!(rec["chain"], json!(["bastion", "target"]));
    let bastion_serial = rec["hop_serials"][0].as_u64().unwrap();
    let bastion_issue = bed
        .signer_records()
        .into_iter()
        .find(|x| x["serial"] == bastion_serial)
        .unwrap();
    assert_eq!(bastion_issue["role"], "bastion");
    assert_eq!(bastion_issue["force_command"], "/bin/false");

    // The same kind of target certificate presented from another source
    // address (the bastion's other address) is refused by the target.
    let key =
        ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&rand::random()));
    let client = bed.signer.url.clone();
    let mtls = infrabroker_common::client::MtlsClient::new(
        &client,
        &bed.pki.path("ca.crt"),
        &bed.pki.path("broker-1.crt"),
        &bed.pki.path("broker-1.key"),
        Duration::from_secs(5),
    )
    .unwrap();
    let resp: infrabroker_common::wire::SignResponse = mtls
        .call(
            hyper::Method::POST,
            "/v1/sign",
            Some(&json!({
                "host": "target", "role": "target", "purpose": "oneshot", "command": "echo in",
                "pubkey": key.public_key().to_openssh().unwrap(),
            })),
        )
        .await
        .unwrap();
    chain
        .net
        .route(&chain.target.netns, &format!("{}/32", b.addr), egress)
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ssh = SshClient::create(tmp.path(), &key, resp.certificate.as_deref().unwrap()).unwrap();
    let tgt = infrabroker_testbed::SshTarget::from(&target).from_netns(Some(&b.netns));
    let out = ssh
        .run(&tgt, USER, "x", &["-b", &b.addr.to_string()])
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(
        target.wait_for_log("source address", Duration::from_secs(5)),
        "{}",
        target.log()
    );
    // From the bastion's egress address the very same certificate works.
    let out = ssh.run(&tgt, USER, "x", &[]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "in\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn two_bastion_chain_works() {
    if !netns_or_skip() {
        return;
    }
    ensure_user(USER).unwrap();
    let chain = TestNet::bastion_chain(2).unwrap();
    let (dir, pki) = Bed::pki();
    let (b1, b2) = (&chain.bastions[0], &chain.bastions[1]);
    let s1 = netns_sshd(&pki, &b1.netns, b1.addr, "b1-p");
    let s2 = netns_sshd(&pki, &b2.netns, b2.addr, "b2-p");
    let st = netns_sshd(&pki, &chain.target.netns, chain.target.addr, "t-p");
    let mut e2 = entry(&s2, "b2-p");
    e2["jump"] = json!("b1");
    e2["source_address"] = json!(b1.next.unwrap().to_string());
    let mut et = entry(&st, "t-p");
    et["jump"] = json!("b2");
    et["source_address"] = json!(b2.next.unwrap().to_string());
    let bed = Bed::start(
        dir,
        pki,
        json!({"b1": entry(&s1, "b1-p"), "b2": e2, "target": et}),
    );
    let engine = bed.engine(json!({})).await;
    let r = run(
        &engine,
        "target",
        "hostname -I 2>/dev/null || true; echo two-hops",
    )
    .await
    .unwrap();
    assert!(r.stdout.ends_with("two-hops\n"), "{r:?}");
    assert_eq!(r.exit_code, Some(0));
    let rec = bed
        .broker_records()
        .into_iter()
        .find(|x| x["serial"] == r.serial && x["outcome"] == "executed")
        .unwrap();
    assert_eq!(rec["chain"], json!(["b1", "b2", "target"]));
    assert_eq!(rec["hop_serials"].as_array().unwrap().len(), 3);
    // Per-stage timings, hop by hop, in the result and in the record.
    let hosts: Vec<&str> = r.timings.hops.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["b1", "b2", "target"]);
    assert!(
        r.timings.hops.iter().all(|h| h.connect_ms > 0),
        "each hop's key exchange takes time: {:?}",
        r.timings
    );
    for h in &r.timings.hops {
        assert!(
            h.sign_ms + h.auth_ms <= r.duration_ms,
            "{h:?} in {} ms",
            r.duration_ms
        );
    }
    assert_eq!(
        rec["timings"],
        serde_json::to_value(&r.timings).unwrap(),
        "the record carries the same timings"
    );
}
