//! `ssh_put_file` / `ssh_get_file` against real sshd: the signer's
//! force-command does exactly the transfer; bad paths are refused before
//! anything is signed, the host refuses what only it can see (an existing
//! file, a symlink, a file grown too large).

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use infrabroker_broker::api::{GetFileRequest, PutFileRequest, ToolError, Tools};
use infrabroker_testbed::sshd_or_skip;
use serde_json::json;
use sha2::Digest as _;

use crate::harness::{Bed, USER, caller, host_for, sshd};

/// A 0755 directory owned by `owner` (none: root).
fn own_dir(path: &Path, owner: Option<&str>) {
    if !path.exists() {
        std::fs::create_dir(path).unwrap();
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(
        path,
        Some(owner.map_or(0, |u| infrabroker_testbed::uid_of(u).unwrap())),
        None,
    )
    .unwrap();
}

fn put(host: &str, path: &Path, content: &[u8]) -> PutFileRequest {
    PutFileRequest {
        host: host.into(),
        path: path.display().to_string(),
        content: content.to_vec(),
        mode: None,
        sudo: false,
        sudo_user: None,
        overwrite: false,
    }
}

fn get(host: &str, path: &Path) -> GetFileRequest {
    GetFileRequest {
        host: host.into(),
        path: path.display().to_string(),
        max_bytes: None,
        sudo: false,
        sudo_user: None,
    }
}

fn code(e: &ToolError) -> &str {
    e.reason_code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_move_byte_exact_within_the_allowed_paths_and_nothing_else() {
    if !sshd_or_skip() {
        return;
    }
    let _sudo =
        infrabroker_testbed::sudoers(USER, &format!("{USER} ALL=(root) NOPASSWD: ALL")).unwrap();
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let area = tempfile::Builder::new()
        .prefix("ib-files-")
        .tempdir()
        .unwrap();
    own_dir(area.path(), Some(USER));
    let outside = tempfile::Builder::new()
        .prefix("ib-outside-")
        .tempdir()
        .unwrap();
    own_dir(outside.path(), Some(USER));
    let root = area.path().display().to_string();
    let mut files = host_for(&s, "web-principal");
    files["allow_file_transfer"] = json!(true);
    files["allow_sudo"] = json!(true);
    files["max_file_bytes"] = json!(4096);
    files["file_transfer_paths"] =
        json!({"allow": [format!("{root}/**")], "deny": [format!("{root}/**/secret*")]});
    let closed = host_for(&s, "web-principal");
    let bed = Bed::start(dir, pki, json!({"files": files, "closed": closed}));
    let engine = bed.engine(json!({})).await;
    let issued = |path: &str| {
        bed.signer_records()
            .iter()
            .any(|r| r["outcome"] == "issued" && r["path"] == path)
    };

    // Every byte value round-trips, with its mode, size and SHA-256.
    let body: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let target = area.path().join("sub/all-bytes.bin");
    own_dir(&area.path().join("sub"), Some(USER));
    let mut req = put("files", &target, &body);
    req.mode = Some("0640".into());
    let done = engine.put_file(&caller(), req.clone()).await.unwrap();
    assert_eq!((done.size, done.sha256.as_str()), (1024, sha.as_str()));
    assert_eq!(std::fs::read(&target).unwrap(), body);
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    let back = engine
        .get_file(&caller(), get("files", &target))
        .await
        .unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(back.content_base64.unwrap())
        .unwrap();
    assert_eq!((decoded, back.sha256), (body.clone(), sha.clone()));
    let rec = bed
        .broker_records()
        .into_iter()
        .find(|r| r["file_op"] == "file_put" && r["outcome"] == "executed")
        .unwrap();
    assert_eq!(
        (rec["size"].as_u64(), rec["sha256"].as_str()),
        (Some(1024), Some(sha.as_str()))
    );
    assert!(
        !rec.to_string().contains("content"),
        "the body is never recorded: {rec}"
    );

    // An existing file is replaced only with overwrite.
    let e = engine.put_file(&caller(), req.clone()).await.unwrap_err();
    assert_eq!(code(&e), "file_exists", "{e}");
    req.overwrite = true;
    req.content = b"second\n".to_vec();
    req.mode = None;
    engine.put_file(&caller(), req.clone()).await.unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"second\n");
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(
        meta.mode() & 0o777,
        0o640,
        "an overwritten file keeps its mode"
    );

    // A symlink at the target is neither written through nor read.
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "original\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o666)).unwrap();
    let link = area.path().join("link.txt");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let mut through = put("files", &link, b"escaped\n");
    through.overwrite = true;
    let e = engine.put_file(&caller(), through).await.unwrap_err();
    assert_eq!(code(&e), "path_not_regular", "{e}");
    let e = engine
        .get_file(&caller(), get("files", &link))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "path_not_regular", "{e}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original\n");
    // Nor is a directory reached through a symlink.
    let linked_dir = area.path().join("dirlink");
    std::os::unix::fs::symlink(outside.path(), &linked_dir).unwrap();
    let e = engine
        .put_file(&caller(), put("files", &linked_dir.join("new.txt"), b"x"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "path_not_regular", "{e}");
    assert!(!outside.path().join("new.txt").exists());

    // Refused before anything is signed: outside the globs, denied,
    // traversal, relative, a newline, too large, a closed host.
    let escape = format!("{root}/../etc/passwd");
    let cases: [(String, &str); 6] = [
        (
            outside.path().join("x").display().to_string(),
            "path_forbidden",
        ),
        (format!("{root}/secret.key"), "path_forbidden"),
        (escape, "path_invalid"),
        ("relative/x".to_owned(), "path_invalid"),
        (format!("{root}/a\nb"), "path_invalid"),
        (format!("{root}/big.bin"), "file_too_large"),
    ];
    for (path, want) in cases {
        let size = if want == "file_too_large" { 5000 } else { 3 };
        let mut req = put("files", Path::new(&path), &vec![b'x'; size]);
        req.path = path.clone();
        let e = engine.put_file(&caller(), req).await.unwrap_err();
        assert_eq!(code(&e), want, "{path:?}: {e}");
        assert!(!issued(&path), "a certificate was issued for {path:?}");
    }
    let e = engine
        .put_file(&caller(), put("closed", &area.path().join("c.txt"), b"x"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "file_transfer_not_allowed", "{e}");

    // A directory another account could change under the transfer is
    // refused: writable by others, or (for a root write) owned by the user.
    let open_dir = area.path().join("open");
    own_dir(&open_dir, Some(USER));
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = engine
        .put_file(&caller(), put("files", &open_dir.join("x"), b"x"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "path_not_regular", "{e}");
    assert!(e.to_string().contains("writable by group or others"), "{e}");
    let mut as_root = put("files", &area.path().join("sub/r.txt"), b"r");
    as_root.sudo = true;
    let e = engine.put_file(&caller(), as_root).await.unwrap_err();
    assert!(e.to_string().contains("belongs to another account"), "{e}");
    // Login files are refused on every host, whatever the globs say.
    let e = engine
        .put_file(&caller(), put("files", &area.path().join(".ssh"), b"x"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "path_forbidden", "{e}");

    // The host refuses a file grown past max_bytes.
    let big = area.path().join("big.txt");
    std::fs::write(&big, vec![b'y'; 3000]).unwrap();
    let mut small = get("files", &big);
    small.max_bytes = Some(100);
    let e = engine.get_file(&caller(), small).await.unwrap_err();
    assert_eq!(code(&e), "file_too_large", "{e}");

    // A sudo write lands as the sudo user (root here, in a root directory).
    let root_dir = area.path().join("rootdir");
    own_dir(&root_dir, None);
    let mut elevated = put("files", &root_dir.join("root-owned.txt"), b"r\n");
    elevated.sudo = true;
    engine.put_file(&caller(), elevated).await.unwrap();
    let meta = std::fs::metadata(root_dir.join("root-owned.txt")).unwrap();
    assert_eq!(meta.uid(), 0, "written as root");
}
