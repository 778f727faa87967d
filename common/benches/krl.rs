//! KRL build time and size for 100,000 revoked serials (SPEC §11 target:
//! < 50 ms), in three shapes: scattered, dense with holes, and runs.
//! Prints the median and worst build time of 20 builds and the file size,
//! next to a plain serial list (8 bytes a serial) as the baseline.

#![allow(clippy::unwrap_used, reason = "bench setup fails loudly")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use infrabroker_common::krl::{CaRevocations, Krl};
use rand::RngExt as _;

fn build(serials: &[u64]) -> Vec<u8> {
    let mut krl = Krl {
        version: 1,
        generated: 1_800_000_000,
        comment: "bench".into(),
        ..Krl::default()
    };
    krl.cas.insert(
        vec![7u8; 51],
        CaRevocations::from_serials(serials.iter().copied()),
    );
    krl.encode_sealed()
}

fn main() {
    let mut rng = rand::rng();
    let scattered: Vec<u64> = (0..100_000)
        .map(|_| rng.random_range(1..u64::from(u32::MAX)))
        .collect();
    let dense: Vec<u64> = (1..=150_000u64)
        .filter(|s| s % 3 != 0)
        .take(100_000)
        .collect();
    let mut mixed: Vec<u64> = (0..50_000)
        .map(|_| rng.random_range(1..10_000_000u64))
        .collect();
    mixed.extend((20_000_000..20_037_500u64).filter(|s| s % 3 != 0));
    mixed.extend(40_000_000..40_025_000u64);
    println!("| shape | serials | build p50 ms | build max ms | KRL bytes | plain list bytes |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, serials) in [
        ("scattered", &scattered),
        ("dense, every 3rd missing", &dense),
        ("mixed", &mixed),
    ] {
        let mut times: Vec<Duration> = (0..20)
            .map(|_| {
                let start = Instant::now();
                black_box(build(serials));
                start.elapsed()
            })
            .collect();
        times.sort();
        let size = build(serials).len();
        println!(
            "| {name} | {} | {:.1} | {:.1} | {size} | {} |",
            serials.len(),
            times[10].as_secs_f64() * 1e3,
            times[19].as_secs_f64() * 1e3,
            serials.len() * 8
        );
    }
}
