//! One conformance suite run against both backends: SQLite in a temporary
//! file and a real PostgreSQL cluster started by the test. Each test opens
//! the database twice (two handles stand for two replicas) and checks that
//! every operation is atomic across them.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infrabroker_store::{
    ApprovalRow, CertSubject, Entry, EntryKind, GuardLimits, LiveCert, PostgresConfig, Store,
    StoreConfig, StoreError,
};
use infrabroker_testbed::postgres::{Postgres, postgres_or_skip};

fn row(id: &str, caller: &str, deadline: Option<u64>) -> ApprovalRow {
    ApprovalRow {
        id: id.into(),
        caller: caller.into(),
        open: true,
        deadline_ms: deadline,
        purge_at_ms: None,
        created_ms: 1_000,
        body: format!("{{\"id\":\"{id}\"}}"),
        version: 0,
    }
}

async fn approvals(a: &Store, b: &Store) {
    assert!(
        a.approval_insert(&row("x1", "broker-1", Some(5_000)))
            .await
            .unwrap()
    );
    assert!(
        !b.approval_insert(&row("x1", "broker-2", None))
            .await
            .unwrap(),
        "taken id"
    );
    let got = b.approval_get("x1").await.unwrap().unwrap();
    assert_eq!((got.caller.as_str(), got.version), ("broker-1", 1));
    assert!(b.approval_get("nope").await.unwrap().is_none());

    // Compare-and-set: a replace that read version 1 wins once; a second
    // replace with the same stale version loses, across handles.
    let mut next = got.clone();
    next.body = "{\"decided\":true}".into();
    assert!(a.approval_replace(&next).await.unwrap());
    assert!(
        !b.approval_replace(&next).await.unwrap(),
        "stale version must lose"
    );
    let now = a.approval_get("x1").await.unwrap().unwrap();
    assert_eq!((now.version, now.body.as_str()), (2, "{\"decided\":true}"));

    // Racing replaces from two replicas: exactly one wins each round.
    for round in 0..40 {
        let id = format!("race{round}");
        assert!(
            a.approval_insert(&row(&id, "broker-1", None))
                .await
                .unwrap()
        );
        let seen = a.approval_get(&id).await.unwrap().unwrap();
        let (mut ra, mut rb) = (seen.clone(), seen.clone());
        ra.body = "approved".into();
        rb.body = "denied".into();
        let (sa, sb) = (a.clone(), b.clone());
        let ta = tokio::spawn(async move { sa.approval_replace(&ra).await.unwrap() });
        let tb = tokio::spawn(async move { sb.approval_replace(&rb).await.unwrap() });
        let (wa, wb) = (ta.await.unwrap(), tb.await.unwrap());
        assert!(
            wa ^ wb,
            "round {round}: exactly one replace wins ({wa}, {wb})"
        );
        let fin = b.approval_get(&id).await.unwrap().unwrap();
        assert_eq!(fin.body, if wa { "approved" } else { "denied" });
    }

    // Deadlines and purging are queries on their columns.
    assert!(
        a.approval_insert(&row("due", "broker-2", Some(2_000)))
            .await
            .unwrap()
    );
    assert!(
        a.approval_insert(&row("later", "broker-2", Some(9_000)))
            .await
            .unwrap()
    );
    let mut closed = row("closed", "broker-2", Some(1_000));
    closed.open = false;
    closed.purge_at_ms = Some(3_000);
    assert!(a.approval_insert(&closed).await.unwrap());
    let due: Vec<String> = b
        .approval_due(2_500, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(due, ["due"], "only open rows past their deadline");
    assert_eq!(
        b.approval_due(10_000, 1).await.unwrap().len(),
        1,
        "limit applies"
    );
    assert_eq!(a.approval_open_count("broker-2").await.unwrap(), 2);
    assert!(a.claim("notify", "closed", "replica-a", 1).await.unwrap());
    let before = a.approval_count().await.unwrap();
    assert_eq!(b.approval_purge(2_999).await.unwrap(), 0);
    assert_eq!(b.approval_purge(3_000).await.unwrap(), 1);
    assert_eq!(a.approval_count().await.unwrap(), before - 1);
    assert!(
        a.claim("notify", "closed", "replica-a", 2).await.unwrap(),
        "claims go with the row"
    );
    let listed: Vec<String> = a
        .approval_list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(listed.contains(&"x1".to_owned()) && !listed.contains(&"closed".to_owned()));
}

async fn claims(a: &Store, b: &Store) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.claim("notify", "ap-1", &format!("r{i}"), 5)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "one claim across all replicas");
    assert!(a.claim("notify", "ap-2", "r0", 5).await.unwrap());
    assert!(!b.claim("notify", "ap-2", "r1", 5).await.unwrap());
}

async fn serials(a: &Store, b: &Store) {
    let first = a.serial_block(1_000_000, 10).await.unwrap();
    assert!(first >= 1_000_000);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..25 {
                got.push(s.serial_block(0, 10).await.unwrap());
            }
            got
        }));
    }
    let mut seen = HashSet::new();
    for s in first..first + 10 {
        seen.insert(s);
    }
    for t in tasks {
        for start in t.await.unwrap() {
            for s in start..start + 10 {
                assert!(seen.insert(s), "serial {s} handed out twice");
            }
        }
    }
    assert_eq!(seen.len(), 10 * 201);
    // A higher floor (a clock or an audit log ahead of the counter) lifts it.
    let lifted = b.serial_block(9_000_000_000, 1).await.unwrap();
    assert_eq!(lifted, 9_000_000_000);
    assert!(a.serial_block(0, 1).await.unwrap() > lifted);
    assert!(matches!(
        a.serial_block(u64::MAX - 1, 5).await,
        Err(StoreError::Corrupt(_))
    ));
}

async fn entries(a: &Store, b: &Store) {
    for kind in [EntryKind::Freeze, EntryKind::Grant] {
        let e = |id: &str, expires: Option<u64>| Entry {
            id: id.into(),
            created_ms: 100,
            expires_ms: expires,
            ended_ms: None,
            body: "{}".into(),
        };
        assert!(a.entry_insert(kind, &e("f1", None)).await.unwrap());
        assert!(!b.entry_insert(kind, &e("f1", None)).await.unwrap());
        assert!(a.entry_insert(kind, &e("f2", Some(1_000))).await.unwrap());
        let ids = |v: Vec<Entry>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(b.entry_active(kind, 999).await.unwrap()), ["f1", "f2"]);
        assert_eq!(
            ids(b.entry_active(kind, 1_000).await.unwrap()),
            ["f1"],
            "expired at its second"
        );
        assert!(
            !a.entry_end(kind, "f2", 1_000).await.unwrap(),
            "an expired entry cannot be ended"
        );
        assert!(b.entry_end(kind, "f1", 500).await.unwrap());
        assert!(!a.entry_end(kind, "f1", 600).await.unwrap(), "ended once");
        assert!(a.entry_active(kind, 1_000).await.unwrap().is_empty());
    }
}

async fn guardrails(a: &Store, b: &Store) {
    let lim = GuardLimits {
        window_ms: 60_000,
        rate_limit: 2,
        count_over: false,
        max_subjects: 2,
        max_items: 2,
    };
    let shapes = vec!["ls -l".to_owned(), "id".to_owned()];
    let c = a
        .guard_check("s1", "web", &shapes, 1_000, lim)
        .await
        .unwrap();
    assert_eq!(
        (c.hits, c.host_known, c.known_commands.len()),
        (0, false, 0)
    );
    let items = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(k, i)| ((*k).to_owned(), (*i).to_owned()))
            .collect::<Vec<_>>()
    };
    b.guard_learn(
        "s1",
        &items(&[("host", "web"), ("command", "id")]),
        1_001,
        lim,
    )
    .await
    .unwrap();
    let c = a
        .guard_check("s1", "web", &shapes, 2_000, lim)
        .await
        .unwrap();
    assert_eq!(
        (c.hits, c.oldest_hit_ms, c.host_known),
        (1, Some(1_000), true)
    );
    assert_eq!(
        c.known_commands,
        ["id"],
        "learned on the other handle, in the order asked"
    );
    // Over the limit in enforce mode: not counted, so the window drains.
    let c = b.guard_check("s1", "web", &[], 3_000, lim).await.unwrap();
    assert_eq!(c.hits, 2);
    let c = b.guard_check("s1", "web", &[], 4_000, lim).await.unwrap();
    assert_eq!(c.hits, 2, "a refused request is not counted");
    let c = a.guard_check("s1", "web", &[], 61_000, lim).await.unwrap();
    assert_eq!(
        (c.hits, c.oldest_hit_ms),
        (1, Some(2_000)),
        "the window slid"
    );
    // Per-subject item bound: the least recently used goes, touch keeps one.
    b.guard_learn("s1", &items(&[("command", "ls -l")]), 62_000, lim)
        .await
        .unwrap();
    a.guard_touch("s1", &items(&[("command", "id")]), 63_000)
        .await
        .unwrap();
    b.guard_learn("s1", &items(&[("command", "cat")]), 64_000, lim)
        .await
        .unwrap();
    let c = a
        .guard_check(
            "s1",
            "web",
            &["id".into(), "ls -l".into(), "cat".into()],
            65_000,
            lim,
        )
        .await
        .unwrap();
    assert_eq!(
        c.known_commands,
        ["id", "cat"],
        "ls -l was the least recently used"
    );
    // Subject bound and idle expiry.
    a.guard_learn("s2", &items(&[("host", "db")]), 66_000, lim)
        .await
        .unwrap();
    a.guard_learn("s3", &items(&[("host", "db")]), 67_000, lim)
        .await
        .unwrap();
    assert_eq!(
        b.guard_subjects().await.unwrap(),
        2,
        "s1, the least recently active, went"
    );
    let c = b.guard_check("s1", "web", &[], 68_000, lim).await.unwrap();
    assert!(!c.host_known && c.hits == 0, "s1 is new again");
    assert_eq!(a.guard_sweep(200_000, 60_000).await.unwrap(), 2);
    assert_eq!(b.guard_subjects().await.unwrap(), 0);
}

fn live(
    serial: u64,
    caller: &str,
    forwarder: &str,
    user: &str,
    host: &str,
    before: u64,
) -> LiveCert {
    LiveCert {
        serial,
        ca: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA".into(),
        key_id: format!("k{serial}"),
        caller: caller.into(),
        forwarder: forwarder.into(),
        end_user: user.into(),
        host: host.into(),
        valid_before_ms: before,
        revoked_by: None,
    }
}

async fn certs(a: &Store, b: &Store) {
    let serials = |v: Vec<LiveCert>| v.into_iter().map(|c| c.serial).collect::<Vec<_>>();
    a.cert_insert(vec![
        live(1, "b1", "", "alice", "web", 10_000),
        live(2, "b1", "", "bob", "db", 10_000),
        live(3, "b2", "cp", "alice", "db", 10_000),
        live(4, "b2", "", "carol", "web", 2_000),
    ])
    .await
    .unwrap();
    assert!(
        b.cert_insert(vec![
            live(5, "b3", "", "", "web", 10_000),
            live(1, "x", "", "", "web", 1)
        ])
        .await
        .is_err(),
        "a duplicate serial fails the batch"
    );
    assert_eq!(
        serials(b.cert_live(None, 1_000, 100).await.unwrap()),
        [1, 2, 3, 4],
        "all or none"
    );
    assert_eq!(
        serials(b.cert_live(None, 2_000, 100).await.unwrap()),
        [1, 2, 3],
        "expired at its millisecond"
    );
    assert_eq!(
        serials(b.cert_live(None, 1_000, 2).await.unwrap()),
        [1, 2],
        "limit"
    );
    let of = |s, v: &str| Some((s, v.to_owned()));
    assert_eq!(
        serials(
            b.cert_live(of(CertSubject::Caller, "cp"), 1_000, 9)
                .await
                .unwrap()
        ),
        [3],
        "a forwarder is a caller"
    );
    assert_eq!(
        serials(
            b.cert_live(of(CertSubject::Serial, "x"), 1_000, 9)
                .await
                .unwrap()
        ),
        Vec::<u64>::new()
    );

    assert_eq!(
        a.cert_revoke(CertSubject::EndUser, "alice", "f1", 1_000)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        b.cert_revoke(CertSubject::Caller, "b1", "f2", 1_000)
            .await
            .unwrap(),
        1,
        "serial 1 is already revoked"
    );
    assert_eq!(
        a.cert_revoke(CertSubject::Host, "web", "f3", 3_000)
            .await
            .unwrap(),
        0,
        "serial 4 has expired"
    );
    assert_eq!(
        a.cert_revoke(CertSubject::Serial, "not-a-number", "f4", 1_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        a.cert_revoke(CertSubject::KeyId, "k4", "f5", 1_000)
            .await
            .unwrap(),
        1
    );
    let revoked = b.cert_revoked(1_000).await.unwrap();
    let by = revoked
        .iter()
        .map(|c| (c.serial, c.revoked_by.clone().unwrap()))
        .collect::<Vec<_>>();
    assert_eq!(
        by,
        [
            (1, "f1".into()),
            (2, "f2".into()),
            (3, "f1".into()),
            (4, "f5".into())
        ]
    );
    assert_eq!(
        serials(b.cert_revoked(2_000).await.unwrap()),
        [1, 2, 3],
        "expired entries leave the list"
    );

    assert_eq!(a.cert_purge(2_000).await.unwrap(), 1);
    assert_eq!(b.cert_purge(2_000).await.unwrap(), 0);
    assert_eq!(serials(b.cert_live(None, 0, 100).await.unwrap()), [1, 2, 3]);

    let v1 = a.krl_publish("d1", 5_000).await.unwrap();
    assert_eq!(
        (v1.digest.as_str(), v1.version >= 5),
        ("d1", true),
        "at least the clock in seconds"
    );
    let same = b.krl_publish("d1", 9_000).await.unwrap();
    assert_eq!(same, v1, "the same content keeps its version");
    let v2 = b.krl_publish("d2", 6_000).await.unwrap();
    assert!(v2.version > v1.version && v2.digest == "d2");
    let v3 = a.krl_publish("d1", 6_000).await.unwrap();
    assert!(
        v3.version > v2.version,
        "going back to old content is still a change"
    );
    assert_eq!(a.cert_purge(u64::MAX / 2).await.unwrap(), 3);
}

async fn suite(a: Store, b: Store) {
    a.ping().await.unwrap();
    approvals(&a, &b).await;
    claims(&a, &b).await;
    serials(&a, &b).await;
    entries(&a, &b).await;
    guardrails(&a, &b).await;
    certs(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_backend_is_atomic_across_two_handles() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::Sqlite(dir.path().join("state.db"));
    let a = Store::open(&cfg).await.unwrap();
    let b = Store::open(&cfg).await.unwrap();
    assert_eq!(a.backend(), "sqlite");
    suite(a, b).await;
    // Reopening migrates nothing and keeps every row.
    let c = Store::open(&cfg).await.unwrap();
    assert!(c.approval_get("x1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(
        Store::open(&StoreConfig::Sqlite(path.clone()))
            .await
            .unwrap(),
    );
    let conn = rusqlite_free_bump(&path);
    assert!(conn, "schema bumped");
    let err = Store::open(&StoreConfig::Sqlite(path)).await.unwrap_err();
    assert!(err.to_string().contains("newer than this build"), "{err}");
}

/// Marks the file as migrated by a future build, with the sqlite3 CLI if
/// present, else through a second open of the store's own driver.
fn rusqlite_free_bump(path: &std::path::Path) -> bool {
    std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('INSERT INTO schema_version VALUES (99, 0)'); c.commit()",
        ])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

fn pg_config(pg: &Postgres, db: &str) -> StoreConfig {
    StoreConfig::Postgres(PostgresConfig {
        url: pg.url(db),
        ca: None,
        pool_size: 8,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_backend_is_atomic_across_two_replicas() {
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("conf").unwrap();
    let cfg = pg_config(&pg, "conf");
    // Two replicas starting at once migrate the schema exactly once.
    let (a, b) = tokio::join!(Store::open(&cfg), Store::open(&cfg));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.backend(), "postgres");
    suite(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_is_an_error_and_recovers_without_reopening() {
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("outage").unwrap();
    let store = Arc::new(Store::open(&pg_config(&pg, "outage")).await.unwrap());
    assert!(
        store
            .approval_insert(&row("before", "b", None))
            .await
            .unwrap()
    );

    pg.stop_immediate().unwrap();
    let t = Instant::now();
    let err = store
        .approval_insert(&row("during", "b", None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(store.serial_block(0, 1).await.is_err());
    assert!(store.ping().await.is_err());
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "an outage fails fast: {:?}",
        t.elapsed()
    );

    pg.start_again().unwrap();
    let mut back = false;
    for _ in 0..50 {
        if store.ping().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the same pool reconnects: {}", pg.log());
    assert!(
        store.approval_get("before").await.unwrap().is_some(),
        "committed rows survive a crash"
    );
    assert!(
        store.approval_get("during").await.unwrap().is_none(),
        "nothing half-written"
    );
    assert!(
        store
            .approval_insert(&row("after", "b", None))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_at_start_is_a_clear_error() {
    let cfg = StoreConfig::Postgres(PostgresConfig {
        url: format!(
            "postgresql://postgres@127.0.0.1:{}/x",
            infrabroker_testbed::free_port()
        ),
        ca: None,
        pool_size: 1,
    });
    let err = Store::open(&cfg).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

fn psql(pg: &Postgres, db: &str, sql: &str) {
    let ok = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .status()
        .unwrap()
        .success();
    assert!(ok, "psql {sql}");
}

fn audit_record(n: usize) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("outcome".into(), "issued".into());
    m.insert("serial".into(), n.into());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_global_audit_chain_is_one_verifiable_chain_and_refuses_a_forged_head() {
    use infrabroker_common::audit::{AuditKey, VerifyOptions, verify_file};
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("chain").unwrap();
    let cfg = pg_config(&pg, "chain");
    let (a, b) = (
        Store::open(&cfg).await.unwrap(),
        Store::open(&cfg).await.unwrap(),
    );
    let key = Arc::new(AuditKey::from_seed(zeroize::Zeroizing::new([3u8; 32])));

    // Two replicas appending batches at once: one gap-free chain.
    let mut tasks = Vec::new();
    for r in 0..4 {
        let (s, key) = (if r % 2 == 0 { a.clone() } else { b.clone() }, key.clone());
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                let batch = (0..4)
                    .map(|k| audit_record(r * 1000 + i * 10 + k))
                    .collect();
                seqs.extend(s.audit_append(batch, &key).await.unwrap());
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=400).collect::<Vec<u64>>());
    let lines = a.audit_lines(0, 1_000).await.unwrap();
    assert_eq!(b.audit_lines(390, 1_000).await.unwrap().len(), 10);
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("chain.jsonl");
    std::fs::write(
        &export,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let report = verify_file(
        &export,
        &key.verifying_key(),
        VerifyOptions {
            all_signatures: true,
        },
    )
    .unwrap();
    assert_eq!(report.records, 400);

    // A database admin without the key edits the head row (and its hash
    // column): a replica that did not write it refuses to seal over it.
    psql(
        &pg,
        "chain",
        "UPDATE audit_chain SET line = replace(line, '\"issued\"', '\"denied\"'), \
         hash = repeat('a', 64) WHERE seq = 400",
    );
    let fresh = Store::open(&cfg).await.unwrap();
    let err = fresh
        .audit_append(vec![audit_record(1)], &key)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert_eq!(
        fresh.audit_lines(399, 10).await.unwrap().len(),
        1,
        "nothing appended over it"
    );

    // The SQLite store keeps no shared chain: a clear error, not a silent file.
    let sq = Store::open(&StoreConfig::Sqlite(dir.path().join("s.db")))
        .await
        .unwrap();
    assert!(sq.audit_append(vec![audit_record(1)], &key).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server_against_store_ca() {
    use infrabroker_testbed::stack::Pki;
    if !postgres_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    let (pki, other) = (Pki::create(&ours).unwrap(), Pki::create(&theirs).unwrap());
    // The server presents a certificate for 127.0.0.1 from our dev CA.
    let pg = Postgres::start_tls(&pki.path("signer.crt"), &pki.path("signer.key")).unwrap();
    pg.create_db("tls").unwrap();
    let cfg = |ca: &std::path::Path| {
        StoreConfig::Postgres(PostgresConfig {
            url: pg.url("tls"),
            ca: Some(ca.to_owned()),
            pool_size: 1,
        })
    };
    let store = Store::open(&cfg(&pki.path("ca.crt"))).await.unwrap();
    assert!(store.approval_insert(&row("tls", "b", None)).await.unwrap());
    assert!(
        pg.log().contains("SSL enabled"),
        "the session used TLS:\n{}",
        pg.log()
    );
    // Another CA: the server is not trusted, nothing connects.
    let err = Store::open(&cfg(&other.path("ca.crt"))).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // A CA file with no certificate is a clear error too.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = Store::open(&cfg(&empty)).await.unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
}
