//! The file tools (`read_file`, `write_file`, `edit_file`,
//! `list_directory`, `upload_file`, `download_file`) through the real
//! binary against a real sshd and Dropbear: each tool's work and its
//! errors, transfers confined to the operator's transfer roots, the grant
//! a third-party component needs, the audit line and progress.
//!
//! The SSH servers run on this machine as the test account, so a test
//! checks the remote side by looking at the files themselves, in a
//! directory the test account owns.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::dropbear_server::Dropbear;
use crate::server::{Server, guest_wasm, install_plugin, structured, succeeded, text, tool_error};
use crate::sshd::{Options, Sshd, TEST_PASSWORD, TEST_USER};

/// A directory the test account owns: the "remote" side.
fn remote_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mcpssh-files-")
        .tempdir()
        .unwrap();
    chown(dir.path());
    dir
}

fn chown(path: &Path) {
    let status = std::process::Command::new("chown")
        .args(["-R", TEST_USER])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Writes `data` at `path` as the test account's file.
fn put(path: &Path, data: impl AsRef<[u8]>) {
    std::fs::write(path, data).unwrap();
    chown(path);
}

fn at(path: &Path) -> String {
    path.display().to_string()
}

/// Target arguments for `sshd` with its key, plus `extra`.
fn args(sshd: &Sshd, extra: Value) -> Value {
    let mut a = json!({
        "host": "127.0.0.1",
        "port": sshd.port(),
        "username": TEST_USER,
        "key_filename": sshd.client_key(),
    });
    a.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    a
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An sshd offering SFTP, which the file tools use first.
fn sftp_sshd() -> Sshd {
    Sshd::start_opts(Options {
        sftp: true,
        ..Options::default()
    })
}

/// An sshd with SFTP, and one without, where the same tools run over exec
/// channels: both must behave the same.
fn both_sshds() -> [(&'static str, Sshd); 2] {
    [("sftp", sftp_sshd()), ("exec", Sshd::start())]
}

async fn server_with_root(root: &Path) -> Server {
    Server::builder()
        .arg("--transfer-root")
        .arg(at(root))
        .spawn()
        .await
}

#[tokio::test]
async fn file_tools_are_listed_with_output_schemas_and_honest_hints() {
    let server = Server::start().await;
    let tools = server.client.list_all_tools().await.unwrap();
    for name in [
        "read_file",
        "write_file",
        "edit_file",
        "list_directory",
        "upload_file",
        "download_file",
    ] {
        let tool = tools
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} is not listed"));
        assert!(tool.output_schema.is_some(), "{name} has no output schema");
        let hints = tool.annotations.as_ref().unwrap();
        let read_only = matches!(name, "read_file" | "list_directory");
        assert_eq!(hints.read_only_hint, Some(read_only), "{name}");
        assert_eq!(hints.destructive_hint, Some(!read_only), "{name}");
    }
}

#[tokio::test]
async fn a_file_written_is_read_back_with_its_stat_over_sftp_and_over_exec() {
    for (how, sshd) in both_sshds() {
        eprintln!("over {how}");
        written_and_read_back(&sshd).await;
    }
}

async fn written_and_read_back(sshd: &Sshd) {
    let dir = remote_dir();
    let server = Server::start().await;
    let path = at(&dir.path().join("notes.txt"));
    let res = server
        .call(
            "write_file",
            args(
                sshd,
                json!({"path": path, "content": "héllo\nworld\n", "mode": "0640"}),
            ),
        )
        .await;
    succeeded(&res);
    let w = structured(&res);
    assert_eq!(w["created"], true, "{w}");
    assert_eq!(w["bytes"], 13);
    assert_eq!(w["sha256"], sha256_hex("héllo\nworld\n".as_bytes()));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "héllo\nworld\n");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o640);

    let res = server
        .call("read_file", args(sshd, json!({"path": path})))
        .await;
    assert_eq!(succeeded(&res), "héllo\nworld\n");
    let r = structured(&res);
    assert_eq!(r["content"], "héllo\nworld\n");
    assert_eq!(
        (r["size"].as_u64(), r["bytes"].as_u64()),
        (Some(13), Some(13))
    );
    assert_eq!(
        (r["eof"].as_bool(), r["mode"].as_str()),
        (Some(true), Some("0640"))
    );
    assert!(r["mtime"].as_u64().unwrap() > 1_700_000_000, "{r}");

    // Replacing keeps the mode and the file is never half-written.
    let res = server
        .call(
            "write_file",
            args(sshd, json!({"path": path, "content": "new"})),
        )
        .await;
    assert_eq!(structured(&res)["created"], false, "{}", text(&res));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

#[tokio::test]
async fn missing_files_directories_and_bad_paths_are_clear_errors_over_sftp_and_over_exec() {
    for (how, sshd) in both_sshds() {
        eprintln!("over {how}");
        clear_errors(&sshd).await;
    }
}

async fn clear_errors(sshd: &Sshd) {
    let dir = remote_dir();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    put(&dir.path().join("plain"), "x");
    chown(dir.path());
    let server = Server::start().await;
    let call = |tool: &'static str, extra: Value| server.call(tool, args(sshd, extra));

    let msg = tool_error(&call("read_file", json!({"path": at(&dir.path().join("nope"))})).await);
    assert!(msg.starts_with("Not found"), "{msg}");
    let msg = tool_error(&call("read_file", json!({"path": at(&dir.path().join("sub"))})).await);
    assert!(msg.starts_with("Is a directory"), "{msg}");
    let msg = tool_error(
        &call(
            "list_directory",
            json!({"path": at(&dir.path().join("plain"))}),
        )
        .await,
    );
    assert!(msg.starts_with("Not a directory"), "{msg}");
    let msg = tool_error(
        &call(
            "write_file",
            json!({"path": at(&dir.path().join("sub")), "content": "x"}),
        )
        .await,
    );
    assert!(msg.starts_with("Is a directory"), "{msg}");
    let msg = tool_error(
        &call(
            "write_file",
            json!({"path": at(&dir.path().join("a/b/c")), "content": "x"}),
        )
        .await,
    );
    assert!(msg.starts_with("Not found"), "{msg}");
    let msg = tool_error(&call("read_file", json!({"path": "/etc/shadow"})).await);
    assert!(msg.starts_with("Permission denied"), "{msg}");
    let msg = tool_error(&call("read_file", json!({"path": "/tmp/a\u{0}b"})).await);
    assert!(msg.contains("NUL"), "{msg}");
    let msg = tool_error(
        &call(
            "write_file",
            json!({"path": at(&dir.path().join("m")), "content": "x", "mode": "0999"}),
        )
        .await,
    );
    assert!(msg.contains("mode"), "{msg}");

    // create_parents makes the missing directories.
    let deep = dir.path().join("a/b/c");
    let res = call(
        "write_file",
        json!({"path": at(&deep), "content": "deep", "create_parents": true}),
    )
    .await;
    succeeded(&res);
    assert_eq!(std::fs::read_to_string(&deep).unwrap(), "deep");
}

#[tokio::test]
async fn binary_content_needs_base64_and_round_trips_through_it() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    let server = Server::start().await;
    let path = at(&dir.path().join("blob.bin"));
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let b64 = <base64ct::Base64 as base64ct::Encoding>::encode_string(&bytes);
    let res = server
        .call(
            "write_file",
            args(
                &sshd,
                json!({"path": path, "content": b64, "encoding": "base64"}),
            ),
        )
        .await;
    succeeded(&res);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    let msg = tool_error(
        &server
            .call("read_file", args(&sshd, json!({"path": path})))
            .await,
    );
    assert!(msg.contains("not UTF-8") && msg.contains("base64"), "{msg}");

    let res = server
        .call(
            "read_file",
            args(&sshd, json!({"path": path, "encoding": "base64"})),
        )
        .await;
    succeeded(&res);
    let back = structured(&res)["content"].as_str().unwrap().to_string();
    assert_eq!(
        <base64ct::Base64 as base64ct::Encoding>::decode_vec(&back).unwrap(),
        bytes
    );
}

#[tokio::test]
async fn a_large_file_is_read_one_mib_at_a_time_saying_where_to_continue() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    let server = Server::start().await;
    let path = dir.path().join("big.txt");
    let data = "0123456789abcdef".repeat(96 * 1024); // 1.5 MiB
    put(&path, &data);
    let res = server
        .call("read_file", args(&sshd, json!({"path": at(&path)})))
        .await;
    let s = structured(&res);
    assert_eq!(
        (s["bytes"].as_u64(), s["eof"].as_bool()),
        (Some(1 << 20), Some(false)),
        "{}",
        text(&res)
    );
    assert_eq!(s["next_offset"], 1 << 20);
    assert!(
        text(&res).contains("offset=1048576"),
        "{}",
        &text(&res)[text(&res).len() - 200..]
    );
    let res = server
        .call(
            "read_file",
            args(&sshd, json!({"path": at(&path), "offset": 1 << 20})),
        )
        .await;
    let s = structured(&res);
    assert_eq!(
        (s["bytes"].as_u64(), s["eof"].as_bool()),
        (Some(512 * 1024), Some(true))
    );
    assert_eq!(s["content"].as_str().unwrap(), &data[1 << 20..]);
}

#[tokio::test]
async fn a_write_whose_if_match_is_stale_is_a_conflict_and_changes_nothing() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    let server = Server::start().await;
    let path = dir.path().join("conf");
    put(&path, "v1\n");
    let seen = sha256_hex(b"v1\n");
    put(&path, "changed by someone else\n");
    let res = server
        .call(
            "write_file",
            args(
                &sshd,
                json!({"path": at(&path), "content": "v2\n", "if_match": seen}),
            ),
        )
        .await;
    let msg = tool_error(&res);
    assert!(msg.starts_with("Conflict"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "changed by someone else\n"
    );
    let current = sha256_hex(b"changed by someone else\n");
    let res = server
        .call(
            "write_file",
            args(
                &sshd,
                json!({"path": at(&path), "content": "v2\n", "if_match": current}),
            ),
        )
        .await;
    succeeded(&res);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "v2\n");
}

#[tokio::test]
async fn edit_file_replaces_exact_text_once_and_refuses_absent_or_ambiguous_text() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    let server = Server::start().await;
    let path = dir.path().join("app.conf");
    put(&path, "port = 80\nhost = a\n# host = a\n");
    let edit = |old: &str, new: &str, all: bool| {
        args(
            &sshd,
            json!({"path": at(&path), "old_text": old, "new_text": new, "replace_all": all}),
        )
    };
    let msg = tool_error(
        &server
            .call("edit_file", edit("port = 81", "x", false))
            .await,
    );
    assert!(
        msg.contains("not found") && msg.contains("nothing was changed"),
        "{msg}"
    );
    let msg = tool_error(
        &server
            .call("edit_file", edit("host = a", "host = b", false))
            .await,
    );
    assert!(
        msg.contains("2 times") && msg.contains("replace_all"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "port = 80\nhost = a\n# host = a\n"
    );

    let res = server
        .call("edit_file", edit("port = 80", "port = 8080", false))
        .await;
    succeeded(&res);
    let s = structured(&res);
    assert_eq!(s["replacements"], 1);
    let diff = s["diff"].as_str().unwrap();
    assert!(diff.contains("-port = 80\n+port = 8080\n"), "{diff}");
    assert_eq!(
        s["sha256"],
        sha256_hex(b"port = 8080\nhost = a\n# host = a\n")
    );
    let res = server
        .call("edit_file", edit("host = a", "host = b", true))
        .await;
    assert_eq!(structured(&res)["replacements"], 2, "{}", text(&res));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "port = 8080\nhost = b\n# host = b\n"
    );
}

#[tokio::test]
async fn concurrent_edits_of_one_file_never_lose_an_update() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    let server = Server::start().await;
    let path = dir.path().join("shared");
    let lines: Vec<String> = (0..8).map(|i| format!("line{i} = old")).collect();
    put(&path, lines.join("\n") + "\n");
    let calls = (0..8).map(|i| {
        server.call(
            "edit_file",
            args(
                &sshd,
                json!({"path": at(&path), "old_text": format!("line{i} = old"),
                               "new_text": format!("line{i} = new")}),
            ),
        )
    });
    let results = futures::future::join_all(calls).await;
    let after = std::fs::read_to_string(&path).unwrap();
    for (i, res) in results.iter().enumerate() {
        let applied = after.contains(&format!("line{i} = new"));
        if res.is_error == Some(true) {
            assert!(text(res).contains("Conflict"), "{}", text(res));
            assert!(
                !applied,
                "line{i}: an edit reported as a conflict was applied"
            );
        } else {
            assert!(
                applied,
                "line{i}: an edit reported as done was lost:\n{after}"
            );
        }
    }
}

#[tokio::test]
async fn listing_is_bounded_hides_dot_files_and_recurses() {
    let sshd = sftp_sshd();
    let dir = remote_dir();
    for name in ["a", "b", "c", "d", ".hidden"] {
        std::fs::write(dir.path().join(name), name).unwrap();
    }
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/inner"), "x").unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
    chown(dir.path());
    let server = Server::start().await;
    let list = |extra: Value| {
        let mut a = args(&sshd, json!({"path": at(dir.path())}));
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        server.call("list_directory", a)
    };
    let names = |res: &rmcp::model::CallToolResult| -> Vec<String> {
        structured(res)["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    let res = list(json!({})).await;
    assert_eq!(
        names(&res),
        ["a", "b", "c", "d", "link", "sub"],
        "{}",
        text(&res)
    );
    let link = &structured(&res)["entries"][4];
    assert_eq!(
        (link["type"].as_str(), link["link_target"].as_str()),
        (Some("symlink"), Some("/etc"))
    );
    assert_eq!(structured(&res)["complete"], true);

    let res = list(json!({"include_hidden": true})).await;
    assert_eq!(names(&res)[0], ".hidden");

    let res = list(json!({"max_entries": 2})).await;
    assert_eq!(names(&res), ["a", "b"]);
    assert_eq!(structured(&res)["omitted"], 4, "{}", text(&res));
    assert!(text(&res).contains("4 more left out"), "{}", text(&res));

    let res = list(json!({"recursive": true})).await;
    assert!(
        names(&res).contains(&"sub/inner".to_string()),
        "{:?}",
        names(&res)
    );
    // The symlink to /etc is listed, not followed.
    assert!(!names(&res).iter().any(|n| n.starts_with("link/")));
}

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
    let mut child = std::process::Command::new(crate::server::BIN)
        .args(["--no-plugins", "--cache-dir"])
        .arg(crate::server::shared_cache())
        .arg("--known-hosts")
        .arg(home.path().join("kh"))
        .arg("--transfer-root")
        .arg(root.path())
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let local = root.path().join("big.bin");
    let params = json!({"name": "download_file", "_meta": {"progressToken": "dl-1"},
        "arguments": args(&sshd, json!({"remote_path": at(&remote), "local_path": at(&local)}))});
    let mut stdin = child.stdin.take().unwrap();
    for msg in [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":params}),
    ] {
        writeln!(stdin, "{msg}").unwrap();
    }
    let mut progress = Vec::new();
    let mut response = Value::Null;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
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

fn dropbear_args(dropbear: &Dropbear, extra: Value) -> Value {
    let mut a = json!({"host": "127.0.0.1", "port": dropbear.port(), "username": TEST_USER,
                       "password": TEST_PASSWORD});
    a.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    a
}

#[tokio::test]
async fn the_file_tools_work_on_dropbear_too() {
    let dropbear = Dropbear::start();
    let dir = remote_dir();
    let root = tempfile::tempdir().unwrap();
    let server = server_with_root(root.path()).await;
    let path = at(&dir.path().join("db.txt"));
    let res = server
        .call(
            "write_file",
            dropbear_args(&dropbear, json!({"path": path, "content": "one\ntwo\n"})),
        )
        .await;
    succeeded(&res);
    let res = server
        .call(
            "edit_file",
            dropbear_args(
                &dropbear,
                json!({"path": path, "old_text": "two", "new_text": "2"}),
            ),
        )
        .await;
    succeeded(&res);
    let res = server
        .call("read_file", dropbear_args(&dropbear, json!({"path": path})))
        .await;
    assert_eq!(succeeded(&res), "one\n2\n", "{}", dropbear.log());
    let res = server
        .call(
            "list_directory",
            dropbear_args(&dropbear, json!({"path": at(dir.path())})),
        )
        .await;
    assert!(succeeded(&res).contains("db.txt"));
    let msg = tool_error(
        &server
            .call(
                "read_file",
                dropbear_args(&dropbear, json!({"path": at(&dir.path().join("nope"))})),
            )
            .await,
    );
    assert!(msg.starts_with("Not found"), "{msg}");
    let local: PathBuf = root.path().join("db.txt");
    let res = server
        .call(
            "download_file",
            dropbear_args(
                &dropbear,
                json!({"remote_path": path, "local_path": at(&local)}),
            ),
        )
        .await;
    succeeded(&res);
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "one\n2\n");
}
