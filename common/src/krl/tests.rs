//! KRL tests: round trips, the encoder's choices, hostile input, and
//! OpenSSH's own `ssh-keygen` as the oracle (both directions).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use rand::RngExt as _;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::{Algorithm, PrivateKey};

use super::*;

fn ca_blob(key: &PrivateKey) -> Vec<u8> {
    key.public_key().to_bytes().unwrap()
}

fn krl_for(ca: &[u8], revoked: CaRevocations) -> Krl {
    Krl {
        version: 3,
        generated: 1_800_000_000,
        comment: "test".into(),
        cas: [(ca.to_vec(), revoked)].into_iter().collect(),
    }
}

/// A mix the signer will see: scattered serials, dense clusters with holes,
/// and long unbroken runs.
fn mixed_serials(n: usize) -> BTreeSet<u64> {
    let mut rng = rand::rng();
    let mut set = BTreeSet::new();
    while set.len() < n / 2 {
        set.insert(rng.random_range(1..10_000_000u64));
    }
    // Dense runs with every third serial missing, one of them longer than
    // a bitmap may span (sshd refuses a bignum over 16,384 bits).
    let dense = n as u64 / 4;
    set.extend((20_000_000..20_000_000 + dense * 3 / 2).filter(|s| s % 3 != 0));
    set.extend((30_000_000..30_000_000 + dense / 2).filter(|s| s % 3 != 0));
    // Unbroken runs.
    let rest = n.saturating_sub(set.len()) as u64;
    set.extend(40_000_000..40_000_000 + rest / 2);
    set.extend(50_000_000..50_000_000 + rest - rest / 2);
    set
}

#[test]
fn ranges_merge_and_serial_zero_is_never_revoked() {
    let mut r = CaRevocations::default();
    r.revoke_serial(0);
    assert_eq!(r.serial_count(), 0);
    r.revoke_range(5, 9);
    r.revoke_range(10, 12); // adjacent
    r.revoke_range(1, 2);
    r.revoke_range(8, 20); // overlapping
    r.revoke_range(0, 0);
    assert_eq!(r.serial_ranges(), &[1..=2, 5..=20]);
    assert_eq!(r.serial_count(), 18);
    assert!(r.revokes(5, "") && r.revokes(20, "") && !r.revokes(3, "") && !r.revokes(21, ""));
    let built = CaRevocations::from_serials([
        20, 5, 6, 7, 0, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 1, 2, 2,
    ]);
    assert_eq!(built.serial_ranges(), r.serial_ranges());
}

#[test]
fn encode_then_parse_gives_the_same_krl() {
    let a = ca_blob(&PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap());
    let b = ca_blob(&PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap());
    let mut ra = CaRevocations::from_serials(mixed_serials(5_000));
    ra.revoke_range(u64::MAX - 10, u64::MAX);
    ra.key_ids.insert("caller=broker-1;end_user=alice".into());
    let mut rb = CaRevocations::from_serials([1, 3, 5, 7, 64, 65, 200]);
    rb.key_ids.insert("b".into());
    for krl in [
        Krl::default(),
        krl_for(&a, CaRevocations::from_serials([7])),
        krl_for(&a, ra.clone()),
        Krl {
            version: u64::MAX,
            generated: 0,
            comment: "two CAs".into(),
            cas: [(a.clone(), ra.clone()), (b.clone(), rb.clone())]
                .into_iter()
                .collect(),
        },
    ] {
        let parsed = Krl::parse(&krl.encode()).unwrap();
        assert_eq!(parsed, krl);
    }
}

#[test]
fn the_encoder_picks_the_smallest_form() {
    let ca = [1u8; 51];
    let count = |krl: &Krl, kind: u8| {
        // Sub-section types follow the 4-byte length of the previous item;
        // decode properly instead of scanning bytes.
        let bytes = krl.encode();
        let mut r = Reader(&bytes[MAGIC.len()..]);
        r.u32("").unwrap();
        for _ in 0..3 {
            r.u64("").unwrap();
        }
        r.string("").unwrap();
        r.string("").unwrap();
        let mut n = 0;
        while !r.0.is_empty() {
            r.u8("").unwrap();
            let mut s = Reader(r.string("").unwrap());
            s.string("").unwrap();
            s.string("").unwrap();
            while !s.0.is_empty() {
                if s.u8("").unwrap() == kind {
                    n += 1;
                }
                s.string("").unwrap();
            }
        }
        (n, bytes.len())
    };
    // Scattered: one list.
    let sparse = krl_for(&ca, CaRevocations::from_serials([10, 1_000, 100_000]));
    assert_eq!(count(&sparse, CERT_SERIAL_LIST).0, 1);
    assert_eq!(count(&sparse, CERT_SERIAL_BITMAP).0, 0);
    // A long run: one range of 16 bytes, whatever its length.
    let run = krl_for(&ca, CaRevocations::from_serials(1..=1_000_000));
    let (ranges, size) = count(&run, CERT_SERIAL_RANGE);
    assert_eq!(ranges, 1);
    assert!(size < 150, "{size}");
    // Dense with holes: a bitmap, about one bit per serial.
    let dense = krl_for(
        &ca,
        CaRevocations::from_serials((1..=100_000).filter(|s| s % 3 != 0)),
    );
    // … split into bitmaps sshd accepts (each ≤ BITMAP_MAX_SPAN serials,
    // ~20 bytes of framing each).
    let (bitmaps, size) = count(&dense, CERT_SERIAL_BITMAP);
    assert_eq!(
        bitmaps,
        100_000u64.div_ceil(super::BITMAP_MAX_SPAN) as usize
    );
    assert!(
        size < 100_000 / 8 + 200 + 24 * bitmaps,
        "{size} bytes for 100k dense serials"
    );
}

#[test]
fn hostile_bytes_are_refused_never_panicked_on() {
    let ca = [2u8; 51];
    let mut revoked = CaRevocations::from_serials(mixed_serials(2_000));
    revoked.key_ids.insert("x".into());
    let good = krl_for(&ca, revoked).encode();
    assert_eq!(Krl::parse(b"SSHKRL\n"), Err(KrlError::Truncated("magic")));
    assert_eq!(Krl::parse(b"PEM-----\0\0\0\x01"), Err(KrlError::BadMagic));
    let mut v2 = good.clone();
    v2[11] = 2;
    assert_eq!(Krl::parse(&v2), Err(KrlError::BadVersion(2)));
    let mut unknown = good.clone();
    unknown.extend_from_slice(&[0x09, 0, 0, 0, 0]);
    assert_eq!(Krl::parse(&unknown), Err(KrlError::UnknownSection(9)));
    // Every cut inside a section is refused (cuts between sections give a
    // shorter valid KRL: that is what `parse_sealed` is for).
    let header = MAGIC.len() + 4 + 24 + 4 + 4 + "test".len();
    for cut in (header + 1)..good.len() {
        assert!(
            Krl::parse(&good[..cut]).is_err(),
            "cut at {cut} of {}",
            good.len()
        );
    }
    // A bitmap over sshd's bignum limit makes sshd refuse the whole file,
    // so the parser (which `krl fetch` trusts) refuses it too.
    for (span, ok) in [
        (16_000u64, true),
        (16_384, true),
        (16_392, false),
        (40_000, false),
    ] {
        let cluster: Vec<u64> = (1..=span).step_by(2).collect();
        let mut body = Vec::new();
        super::put_u64(&mut body, 1);
        super::put_string(&mut body, &super::bitmap_mpint(1, span, &cluster));
        let mut section = Vec::new();
        super::put_string(&mut section, &ca);
        super::put_string(&mut section, b"");
        section.push(CERT_SERIAL_BITMAP);
        super::put_string(&mut section, &body);
        let mut bytes = Krl::default().encode();
        bytes.push(1);
        super::put_string(&mut bytes, &section);
        assert_eq!(Krl::parse(&bytes).is_ok(), ok, "a bitmap of {span} bits");
    }
    let mut rng = rand::rng();
    for _ in 0..2_000 {
        let mut bytes = good.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = rng.random();
        }
        let _ = Krl::parse(&bytes);
    }
}

#[test]
fn a_sealed_krl_detects_any_truncation() {
    let ca = [3u8; 51];
    let mut two = krl_for(&ca, CaRevocations::from_serials([5, 9]));
    two.cas
        .insert(vec![4u8; 51], CaRevocations::from_serials(1..=1_000));
    let sealed = two.encode_sealed();
    let parsed = Krl::parse_sealed(&sealed).unwrap();
    assert_eq!(parsed.cas, two.cas);
    for cut in 0..sealed.len() {
        assert!(Krl::parse_sealed(&sealed[..cut]).is_err(), "cut at {cut}");
    }
    // An unsealed KRL (e.g. from ssh-keygen) is not accepted as sealed.
    assert!(Krl::parse_sealed(&two.encode()).is_err());
}

// ---- ssh-keygen as the oracle ----

/// Whether `ssh-keygen` can run; in CI its absence fails the test.
fn have_ssh_keygen() -> bool {
    let ok = Command::new("ssh-keygen").arg("-?").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI requires ssh-keygen (openssh-client)"
        );
        eprintln!("SKIP: requires ssh-keygen (openssh-client)");
    }
    ok
}

fn write_cert(dir: &Path, ca: &PrivateKey, user: &PrivateKey, serial: u64, key_id: &str) -> String {
    let mut b = Builder::new_with_random_nonce(
        &mut rand::rng(),
        user.public_key().key_data().clone(),
        1_700_000_000,
        1_900_000_000,
    )
    .unwrap();
    b.serial(serial).unwrap();
    b.key_id(key_id).unwrap();
    b.cert_type(CertType::User).unwrap();
    b.valid_principal("p").unwrap();
    let cert = b.sign(ca).unwrap();
    let name = format!("c{serial}-{key_id}.pub");
    std::fs::write(dir.join(&name), cert.to_openssh().unwrap()).unwrap();
    name
}

/// `ssh-keygen -Q -l`'s listing of `krl`, ranges expanded.
fn listed_serials(krl: &Path) -> (BTreeSet<u64>, BTreeSet<String>) {
    let out = Command::new("ssh-keygen")
        .args(["-Q", "-l", "-f"])
        .arg(krl)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut serials = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(s) = line.strip_prefix("serial: ") {
            match s.split_once('-') {
                Some((lo, hi)) => serials.extend(lo.parse::<u64>().unwrap()..=hi.parse().unwrap()),
                None => {
                    serials.insert(s.parse().unwrap());
                }
            }
        } else if let Some(id) = line.strip_prefix("id: ") {
            ids.insert(id.to_owned());
        }
    }
    (serials, ids)
}

#[test]
fn ssh_keygen_reads_a_100k_serial_krl_exactly() {
    if !have_ssh_keygen() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let user = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let set = mixed_serials(100_000);
    assert_eq!(set.len(), 100_000);
    let mut revoked = CaRevocations::from_serials(set.iter().copied());
    revoked.key_ids.insert("caller=broker-1 host=web01".into());
    let path = dir.path().join("krl");
    std::fs::write(&path, krl_for(&ca_blob(&ca), revoked).encode()).unwrap();

    let (listed, ids) = listed_serials(&path);
    assert_eq!(listed.len(), set.len());
    assert!(listed == set, "ssh-keygen lists another set of serials");
    assert_eq!(ids, ["caller=broker-1 host=web01".to_owned()].into());

    // Certificates: revoked and live serials from each kind of region, and
    // a live serial whose key id is revoked.
    let mut rng = rand::rng();
    let all: Vec<u64> = set.iter().copied().collect();
    let mut expect = Vec::new();
    for _ in 0..40 {
        expect.push((all[rng.random_range(0..all.len())], "k", true));
    }
    // Live serials: scattered, holes of the dense runs (multiples of 3),
    // and just below an unbroken run. Each kind is tried a bounded number
    // of times.
    for kind in 0..120u64 {
        let s = match kind % 3 {
            0 => rng.random_range(1..10_000_000u64),
            1 => 20_000_001 + 3 * rng.random_range(0..4_000u64),
            _ => 40_000_000 - rng.random_range(1..100u64),
        };
        if !set.contains(&s) && expect.iter().filter(|e| !e.2).count() < 40 {
            expect.push((s, "k", false));
        }
    }
    assert!(expect.iter().filter(|e| !e.2).count() >= 30);
    expect.push((77_777_777, "caller=broker-1 host=web01", true));
    let files: Vec<String> = expect
        .iter()
        .map(|(s, id, _)| write_cert(dir.path(), &ca, &user, *s, id))
        .collect();
    let out = Command::new("ssh-keygen")
        .current_dir(dir.path())
        .args(["-Q", "-f", "krl"])
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for ((serial, _, revoked), file) in expect.iter().zip(&files) {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{file} ")))
            .unwrap_or_else(|| panic!("no answer for {file}: {text}"));
        assert_eq!(
            line.ends_with("REVOKED"),
            *revoked,
            "serial {serial}: {line}"
        );
    }
}

#[test]
fn we_read_krls_that_ssh_keygen_wrote() {
    if !have_ssh_keygen() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&ca_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut rng = rand::rng();
    let mut set: BTreeSet<u64> = (0..3_000).map(|_| rng.random_range(1..50_000u64)).collect();
    set.extend(100_000..=100_999);
    let mut spec: String = set.iter().map(|s| format!("serial: {s}\n")).collect();
    spec.push_str("serial: 200000-300000\nid: b\n");
    std::fs::write(dir.path().join("spec"), spec).unwrap();
    let out = Command::new("ssh-keygen")
        .current_dir(dir.path())
        .args(["-k", "-f", "krl", "-s", "ca.pub", "spec"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = Krl::parse(&std::fs::read(dir.path().join("krl")).unwrap()).unwrap();
    let ca = ssh_key::PublicKey::read_openssh_file(dir.path().join("ca.pub")).unwrap();
    let revoked = &parsed.cas[&ca.to_bytes().unwrap()];
    let mut want = CaRevocations::from_serials(set);
    want.revoke_range(200_000, 300_000);
    want.key_ids.insert("b".into());
    assert_eq!(revoked, &want);
}
