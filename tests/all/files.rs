//! The file tools (`read_file`, `write_file`, `edit_file`,
//! `list_directory`) through the real binary against a real sshd (with
//! SFTP, and without it, over exec) and Dropbear: each tool's work and its
//! errors. Transfers, grants, audit and progress: `file_transfers.rs`.
//!
//! The SSH servers run on this machine as the test account, so a test
//! checks the remote side by looking at the files themselves, in a
//! directory the test account owns.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::dropbear_server::Dropbear;
use crate::server::{Server, structured, succeeded, text, tool_error};
use crate::sshd::{Options, Sshd, TEST_PASSWORD, TEST_USER};

/// A directory the test account owns: the "remote" side.
pub(crate) fn remote_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mcpssh-files-")
        .tempdir()
        .unwrap();
    chown(dir.path());
    dir
}

pub(crate) fn chown(path: &Path) {
    let status = std::process::Command::new("chown")
        .args(["-R", TEST_USER])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Writes `data` at `path` as the test account's file.
pub(crate) fn put(path: &Path, data: impl AsRef<[u8]>) {
    std::fs::write(path, data).unwrap();
    chown(path);
}

pub(crate) fn at(path: &Path) -> String {
    path.display().to_string()
}

/// Target arguments for `sshd` with its key, plus `extra`.
pub(crate) fn args(sshd: &Sshd, extra: Value) -> Value {
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

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An sshd offering SFTP, which the file tools use first.
pub(crate) fn sftp_sshd() -> Sshd {
    Sshd::start_opts(Options {
        sftp: true,
        ..Options::default()
    })
}

/// An sshd with SFTP, and one without, where the same tools run over exec
/// channels: both must behave the same.
pub(crate) fn both_sshds() -> [(&'static str, Sshd); 2] {
    [("sftp", sftp_sshd()), ("exec", Sshd::start())]
}

pub(crate) async fn server_with_root(root: &Path) -> Server {
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
async fn a_read_past_the_end_however_far_is_empty_and_the_end() {
    let dir = remote_dir();
    let server = Server::start().await;
    let (short, empty) = (dir.path().join("short.txt"), dir.path().join("empty"));
    put(&short, "0123456789");
    put(&empty, "");
    // sftp-server seeks first, and Linux refuses a seek past the file
    // system's largest file (1e15 on ext4), `tail` too, and no file has a
    // byte past 2^63 - 1: that is no error to show.
    let far = [1_000_000_000_000_000, i64::MAX as u64, 1 << 63, u64::MAX];
    let cases: Vec<(&Path, u64, u64)> = [(&short, 10, 11), (&empty, 0, 1)]
        .into_iter()
        .flat_map(|(path, size, next)| {
            std::iter::once(next)
                .chain(far)
                .map(move |offset| (path.as_path(), size, offset))
        })
        .collect();
    for (how, sshd) in both_sshds() {
        for &(path, size, offset) in &cases {
            let res = server
                .call(
                    "read_file",
                    args(&sshd, json!({"path": at(path), "offset": offset})),
                )
                .await;
            succeeded(&res);
            let s = structured(&res);
            let case = format!("over {how}, {} at {offset}", path.display());
            let got = (
                s["bytes"].as_u64(),
                s["eof"].as_bool(),
                s["content"].as_str(),
            );
            assert_eq!(got, (Some(0), Some(true), Some("")), "{case}");
            assert_eq!(s["size"].as_u64(), Some(size), "{case}");
        }
    }
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
