//! Uploads and downloads through the real binary against a real sshd:
//! verified transfers inside the operator's transfer roots, refusals
//! outside them (`..`, symlinks, no root at all), the grant a third-party
//! component needs for paths and transfers, the audit line of a file
//! operation and progress of a download. The tools themselves are in
//! `files.rs`.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::files::{args, at, put, remote_dir, server_with_root, sftp_sshd, sha256_hex};
use crate::server::{Server, guest_wasm, install_plugin, structured, succeeded, text, tool_error};
use crate::sshd::{Sshd, TEST_USER};

#[tokio::test]
async fn upload_and_download_inside_a_transfer_root_are_verified() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    let root = tempfile::tempdir().unwrap();
    let server = server_with_root(root.path()).await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let src = root.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let remote = at(&dir.path().join("up.bin"));
    let res = server
        .call(
            "upload_file",
            args(
                &sshd,
                json!({"local_path": at(&src), "remote_path": remote}),
            ),
        )
        .await;
    succeeded(&res);
    assert_eq!(structured(&res)["bytes"], data.len());
    assert_eq!(structured(&res)["sha256"], sha256_hex(&data));
    assert_eq!(std::fs::read(&remote).unwrap(), data);

    let back = root.path().join("back.bin");
    std::fs::write(&back, "old content").unwrap();
    let res = server
        .call(
            "download_file",
            args(
                &sshd,
                json!({"remote_path": remote, "local_path": at(&back)}),
            ),
        )
        .await;
    succeeded(&res);
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert_eq!(structured(&res)["sha256"], sha256_hex(&data));
    let mut names: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["back.bin", "src.bin"],
        "a temporary file was left behind"
    );
}

#[tokio::test]
async fn transfers_outside_the_root_through_dot_dot_or_a_symlink_are_refused() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    put(&dir.path().join("r"), "remote");
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(base.path().join("secret"), "secret").unwrap();
    std::os::unix::fs::symlink(base.path().join("secret"), root.join("escape")).unwrap();
    std::os::unix::fs::symlink(base.path(), root.join("updir")).unwrap();
    let server = server_with_root(&root).await;
    let remote = at(&dir.path().join("r"));
    for local in [
        at(&root.join("../secret")),
        at(&root.join("escape")),
        at(&base.path().join("secret")),
        "/etc/hostname".to_string(),
    ] {
        let res = server
            .call(
                "upload_file",
                args(
                    &sshd,
                    json!({"local_path": local, "remote_path": at(&dir.path().join("x"))}),
                ),
            )
            .await;
        let msg = tool_error(&res);
        assert!(msg.contains("outside the transfer roots"), "{local}: {msg}");
    }
    assert!(!dir.path().join("x").exists());
    for local in [at(&root.join("../stolen")), at(&root.join("updir/stolen"))] {
        let res = server
            .call(
                "download_file",
                args(&sshd, json!({"remote_path": remote, "local_path": local})),
            )
            .await;
        let msg = tool_error(&res);
        assert!(msg.contains("outside the transfer roots"), "{local}: {msg}");
    }
    let res = server
        .call(
            "download_file",
            args(
                &sshd,
                json!({"remote_path": remote, "local_path": at(&root.join("escape"))}),
            ),
        )
        .await;
    assert!(tool_error(&res).contains("symbolic link"), "{}", text(&res));
    assert_eq!(
        std::fs::read_to_string(base.path().join("secret")).unwrap(),
        "secret"
    );
    assert!(!base.path().join("stolen").exists());

    // A hard link in the root is another name of a file outside it.
    std::fs::hard_link(base.path().join("secret"), root.join("linked")).unwrap();
    let res = server
        .call(
            "upload_file",
            args(
                &sshd,
                json!({"local_path": at(&root.join("linked")), "remote_path": at(&dir.path().join("x"))}),
            ),
        )
        .await;
    assert!(tool_error(&res).contains("hard links"), "{}", text(&res));
    assert!(!dir.path().join("x").exists());

    // A trailing slash names a directory, not the file before it.
    std::fs::write(root.join("kept"), "kept").unwrap();
    for local in [
        format!("{}/", at(&root.join("kept"))),
        format!("{}/.", at(&root.join("kept"))),
    ] {
        let res = server
            .call(
                "download_file",
                args(&sshd, json!({"remote_path": remote, "local_path": local})),
            )
            .await;
        assert!(
            tool_error(&res).contains("names a directory"),
            "{local}: {}",
            text(&res)
        );
    }
    assert_eq!(std::fs::read_to_string(root.join("kept")).unwrap(), "kept");
}

#[tokio::test]
async fn transfers_are_off_without_a_transfer_root_and_say_how_to_enable_them() {
    let sshd = sftp_sshd();
    let server = Server::start().await;
    let res = server
        .call(
            "download_file",
            args(
                &sshd,
                json!({"remote_path": "/etc/hostname", "local_path": "/tmp/mcpssh-never"}),
            ),
        )
        .await;
    let msg = tool_error(&res);
    assert!(
        msg.contains("--transfer-root") && msg.contains("off"),
        "{msg}"
    );
    let res = server
        .call(
            "upload_file",
            args(
                &sshd,
                json!({"local_path": "/etc/hostname", "remote_path": "/tmp/mcpssh-never"}),
            ),
        )
        .await;
    assert!(tool_error(&res).contains("--transfer-root"));
    assert!(!Path::new("/tmp/mcpssh-never").exists());
}

const PROBE_MANIFEST: &str = r#"
[requests]
hosts = ["127.0.0.1"]
users = ["mcpssh-test"]
read_paths = ["/tmp/**"]
write_paths = ["/tmp/**"]
transfer = true
"#;

async fn probe_server(config: &str, root: &Path) -> Server {
    install_plugin(
        Server::builder().arg("--transfer-root").arg(at(root)),
        &guest_wasm("file_probe"),
        "file_probe",
        Some(PROBE_MANIFEST),
        config,
    )
    .spawn()
    .await
}

fn probe_args(sshd: &Sshd, path: &str, extra: Option<&str>) -> Value {
    json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER, "path": path, "extra": extra})
}

#[tokio::test]
async fn a_third_party_component_needs_a_grant_for_paths_and_transfers() {
    let sshd = sftp_sshd();
    let root = tempfile::tempdir().unwrap();
    // Not granted at all: denied, and told what to add.
    let server = probe_server("", root.path()).await;
    let res = server
        .call("probe_read", probe_args(&sshd, "/etc/hostname", None))
        .await;
    let msg = tool_error(&res);
    assert!(
        msg.contains("not granted") && msg.contains("[plugins.file_probe]"),
        "{msg}"
    );
    assert!(msg.contains("read_paths = [\"/tmp/**\"]"), "{msg}");
    drop(server);

    // Granted hosts and users, but no paths and no transfer.
    let grant = format!(
        "[plugins.file_probe]\nhosts = [\"127.0.0.1\"]\nusers = [\"mcpssh-test\"]\nports = [{}]\n",
        sshd.port()
    );
    let server = probe_server(&grant, root.path()).await;
    let res = server
        .call("probe_read", probe_args(&sshd, "/etc/hostname", None))
        .await;
    let msg = tool_error(&res);
    assert!(
        msg.contains("may not read") && msg.contains("read_paths"),
        "{msg}"
    );
    let res = server
        .call(
            "probe_write",
            probe_args(&sshd, "/tmp/mcpssh-probe-denied", Some("x")),
        )
        .await;
    assert!(tool_error(&res).contains("write_paths"), "{}", text(&res));
    assert!(!Path::new("/tmp/mcpssh-probe-denied").exists());
    let local = at(&root.path().join("got"));
    let res = server
        .call(
            "probe_download",
            probe_args(&sshd, "/etc/hostname", Some(&local)),
        )
        .await;
    assert!(tool_error(&res).contains("may not read"), "{}", text(&res));
    drop(server);

    // Paths granted, transfer not: reads work, a download is refused.
    let dir = remote_dir();
    put(&dir.path().join("f"), "probe-content");
    let grant = grant + "read_paths = [\"/tmp/**\"]\n";
    let server = probe_server(&grant, root.path()).await;
    // A third-party component may not pass credentials: the operator's
    // session serves it.
    server
        .call("execute_command", crate::server::exec_args(&sshd, "true"))
        .await;
    let res = server
        .call(
            "probe_read",
            probe_args(&sshd, &at(&dir.path().join("f")), None),
        )
        .await;
    assert_eq!(succeeded(&res), "probe-content");
    let res = server
        .call(
            "probe_read",
            probe_args(
                &sshd,
                &format!("{}/../../etc/hostname", at(dir.path())),
                None,
            ),
        )
        .await;
    assert!(tool_error(&res).contains(".."), "{}", text(&res));
    let res = server
        .call(
            "probe_download",
            probe_args(&sshd, &at(&dir.path().join("f")), Some(&local)),
        )
        .await;
    assert!(
        tool_error(&res).contains("transfer = true"),
        "{}",
        text(&res)
    );
    assert!(!Path::new(&local).exists());
}

#[tokio::test]
async fn file_operations_are_audited_with_path_and_bytes_never_content() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    let builder = Server::builder();
    let log = builder.home().join("audit.jsonl");
    let server = builder.arg("--audit-log").arg(at(&log)).spawn().await;
    let path = at(&dir.path().join("audited"));
    let secret = "mcpssh-content-marker-91c2";
    let res = server
        .call(
            "write_file",
            args(&sshd, json!({"path": path, "content": secret})),
        )
        .await;
    succeeded(&res);
    succeeded(
        &server
            .call("read_file", args(&sshd, json!({"path": path})))
            .await,
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(secret), "content reached the audit log");
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let files: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "file").collect();
    let ops: Vec<&str> = files
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["write", "read"], "{entries:#?}");
    for e in &files {
        assert_eq!(e["path"], path.as_str());
        assert_eq!(e["bytes"], secret.len());
        assert_eq!(e["component"], "built-in:file-tools");
        assert_eq!(e["decision"], "allowed");
    }
}

#[test]
fn a_download_reports_progress_in_bytes_when_asked() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    let remote = dir.path().join("big.bin");
    let data: Vec<u8> = (0..(48u32 << 20)).map(|i| (i % 253) as u8).collect();
    put(&remote, &data);
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut child = crate::server::raw_server_with(
        home.path(),
        &["--transfer-root".as_ref(), root.path().as_os_str()],
        std::process::Stdio::null(),
    );
    let local = root.path().join("big.bin");
    let params = json!({"name": "download_file", "_meta": {"progressToken": "dl-1"},
        "arguments": args(&sshd, json!({"remote_path": at(&remote), "local_path": at(&local)}))});
    let (stdin, lines) = crate::server::send_raw_call(&mut child, params);
    let mut progress = Vec::new();
    let mut response = Value::Null;
    for line in lines {
        let msg: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if msg["id"] == 2 {
            response = msg;
            break;
        }
        if msg["method"] == "notifications/progress" {
            progress.push(msg["params"].clone());
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(response["result"]["isError"], false, "{response}");
    assert_eq!(std::fs::read(&local).unwrap().len(), data.len());
    assert!(!progress.is_empty(), "no progress for a 48 MiB download");
    for p in &progress {
        assert_eq!(p["progressToken"], "dl-1");
        assert!(p["message"].as_str().unwrap().contains("bytes"), "{p}");
        assert!(p["progress"].as_f64().unwrap() <= data.len() as f64);
        if let Some(total) = p["total"].as_f64() {
            assert_eq!(total, data.len() as f64);
        }
    }
}

#[test]
fn a_cancelled_download_leaves_nothing_in_the_root() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    let remote = dir.path().join("huge.bin");
    // Sparse: 1 GiB of zeros costs no disk, and takes long enough to
    // cancel in the middle.
    std::fs::File::create(&remote)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    crate::files::chown(&remote);
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut child = crate::server::raw_server_with(
        home.path(),
        &["--transfer-root".as_ref(), root.path().as_os_str()],
        std::process::Stdio::null(),
    );
    let local = root.path().join("huge.bin");
    let params = json!({"name": "download_file", "_meta": {"progressToken": "dl-2"},
        "arguments": args(&sshd, json!({"remote_path": at(&remote), "local_path": at(&local)}))});
    let (mut stdin, mut lines) = crate::server::send_raw_call(&mut child, params);
    // Cancel once the transfer is under way.
    for line in lines.by_ref() {
        let msg: Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_ne!(
            msg["id"], 2,
            "the download ended before it was cancelled: {msg}"
        );
        if msg["method"] == "notifications/progress" {
            break;
        }
    }
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled",
                        "params":{"requestId":2,"reason":"test"}});
    writeln!(stdin, "{cancel}").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let entries = || std::fs::read_dir(root.path()).unwrap().count();
    while entries() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        left.is_empty(),
        "left in the transfer root after a cancel: {left:?}"
    );
    assert!(!local.exists());
}
