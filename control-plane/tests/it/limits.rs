//! The control plane under a handshake flood: it audits refused
//! handshakes within the signer's budget, so a flood cannot fill the disk.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Bed, paper_host, post_sign, sign_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_writes_a_bounded_number_of_records() {
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &[])}));
    let cp = bed.control_plane("cp-flood", json!({}));
    let addr = cp.url.trim_start_matches("https://").to_owned();
    let started = Instant::now();
    let flood = 300;
    for _ in 0..flood {
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    let broker = bed.client(&cp.url, "broker-1");
    let key = bed.pki.ssh_ca_pub().unwrap();
    let ok = post_sign(&broker, &sign_body("web", "id", &key)).await;
    assert!(ok.status.is_success(), "{:?}", ok.status);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let secs = started.elapsed().as_secs() + 1;
    let written = cp.outcomes("tls_rejected").len() as u64;
    assert!(written >= 1, "refused handshakes are audited");
    assert!(
        written <= 20 * (secs + 1) && written < flood,
        "{written} records for {flood} refused handshakes in {secs} s"
    );
}
