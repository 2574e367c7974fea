//! Paths a tool call or a config names that are not what they claim: a
//! key file that is a device, the JSON-RPC pipe, a FIFO, a directory or a
//! huge file, a compile cache others could have written to, and a kernel
//! file whose size says 0; a login shell that prints before every
//! command, or starts slowly. And a compile cache that would fill with other versions'
//! entries.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{Server, structured, succeeded, tool_error};
use crate::sshd::{BASHRC_USER, Sshd, TEST_PASSWORD, TEST_USER};

/// How far the server's peak resident memory may grow while refusing the
/// files: far below the 100 MiB file it must not read.
const PEAK_GROWTH_KIB: u64 = 40 * 1024;

#[tokio::test]
async fn key_files_that_are_devices_pipes_fifos_directories_or_huge_are_refused_quickly() {
    let sshd = Sshd::start();
    let server = Server::start().await;
    server.exec(&sshd, "true").await;
    let peak_before = server.status_field("VmHWM");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("key.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let sparse = dir.path().join("huge_key");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let cases = [
        ("/dev/zero".to_string(), "not a regular file"),
        ("/dev/stdin".to_string(), "not a regular file"),
        (fifo.display().to_string(), "not a regular file"),
        (dir.path().display().to_string(), "not a regular file"),
        (sparse.display().to_string(), "larger than"),
        // A regular file whose read fails (EINVAL): the error names it.
        ("/proc/self/pagemap".to_string(), "cannot be read"),
    ];
    for (path, why) in cases {
        let started = Instant::now();
        let call = server.call(
            "execute_command",
            json!({
                "host": "127.0.0.1",
                "port": sshd.port(),
                "username": TEST_USER,
                "key_filename": path,
                "command": "echo should-not-run",
            }),
        );
        let res = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap_or_else(|_| panic!("key_filename {path}: no answer in 10 s"));
        let msg = tool_error(&res);
        assert!(
            msg.contains(&format!("key file {path}")) && msg.contains(why),
            "{path}: {msg}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{path}: slow");
        // Still answering, and nothing swallowed its requests.
        server.exec(&sshd, "true").await;
    }
    let growth = server.status_field("VmHWM") - peak_before;
    assert!(growth < PEAK_GROWTH_KIB, "peak RSS grew by {growth} KiB");
}

#[tokio::test]
async fn identity_and_certificate_files_from_ssh_config_that_are_devices_are_skipped() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("id.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let server = Server::builder()
        .ssh_config(&format!(
            "Host *\n  IdentityFile /dev/zero\n  IdentityFile {fifo}\n  \
             CertificateFile /dev/zero\n  CertificateFile {fifo}\n  IdentityFile {key}\n",
            fifo = fifo.display(),
            key = sshd.client_key().display()
        ))
        .spawn()
        .await;
    let call = server.call(
        "execute_command",
        crate::server::bare_args(&sshd, "echo through-the-real-key"),
    );
    let res = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("no answer in 10 s");
    assert!(
        crate::server::stdout(&res).contains("through-the-real-key"),
        "{}",
        crate::server::text(&res)
    );
}

/// Starts a server on compile cache `dir` and checks its tools work; its log.
async fn start_on_cache(dir: &std::path::Path) -> String {
    let server = Server::builder()
        .arg("--cache-dir")
        .arg(dir.display().to_string())
        .spawn()
        .await;
    assert!(
        !server.client.list_all_tools().await.unwrap().is_empty(),
        "no tools"
    );
    server.log()
}

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[tokio::test]
async fn a_compile_cache_directory_others_can_write_to_is_neither_loaded_nor_written() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("c");
    start_on_cache(&dir).await;
    let warm = entries(&dir);
    assert!(!warm.is_empty());
    // Anyone could have replaced the entries since: none may be loaded,
    // and nothing written there.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let stamps = || -> Vec<_> {
        let mut all: Vec<_> = entries(&dir)
            .into_iter()
            .map(|p| {
                let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p, modified)
            })
            .collect();
        all.sort();
        all
    };
    let before = stamps();
    let log = start_on_cache(&dir).await;
    assert!(log.contains("compile cache disabled"), "{log}");
    assert!(!log.contains("loaded from compile cache"), "{log}");
    assert_eq!(stamps(), before, "wrote into a directory others can write");
}

#[tokio::test]
async fn cache_entries_that_are_symlinks_or_owned_by_another_user_are_not_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("c");
    start_on_cache(&dir).await;
    let mut warm = entries(&dir);
    assert!(warm.len() >= 2, "{warm:?}");
    // An artifact first, then the rest (its checksum among them).
    warm.sort_by_key(|p| p.extension().is_none_or(|x| x != "cwasm"));
    // One entry becomes a symlink to a valid entry outside the cache; the
    // others are handed to another user.
    let outside = cache.path().join("elsewhere.cwasm");
    std::fs::rename(&warm[0], &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &warm[0]).unwrap();
    for entry in &warm[1..] {
        std::os::unix::fs::chown(entry, Some(65534), None).unwrap();
    }
    let log = start_on_cache(&dir).await;
    assert!(!log.contains("loaded from compile cache"), "{log}");
    assert!(log.contains("symbolic link"), "{log}");
    assert!(log.contains("owned by uid 65534"), "{log}");
}

/// One component's entry copied over another's names (both files, so its
/// checksum is whole) is refused, not run as the other component; a `.sum`
/// of 100 GB (sparse) is refused from its size, not read.
#[tokio::test]
async fn cache_entries_of_another_component_or_of_any_size_are_recompiled() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("c");
    start_on_cache(&dir).await;
    let mut artifacts: Vec<_> = entries(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    artifacts.sort();
    assert_eq!(artifacts.len(), 3, "{artifacts:?}");
    let (from, to) = (&artifacts[0], &artifacts[1]);
    for ext in ["cwasm", "sum"] {
        let target = to.with_extension(ext);
        // Entries are written read-only.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::copy(from.with_extension(ext), &target).unwrap();
    }
    let sum = artifacts[2].with_extension("sum");
    std::fs::set_permissions(&sum, std::fs::Permissions::from_mode(0o600)).unwrap();
    let huge = std::fs::OpenOptions::new().write(true).open(&sum).unwrap();
    huge.set_len(100 << 30).unwrap();
    let server = Server::builder()
        .arg("--cache-dir")
        .arg(dir.display().to_string())
        .spawn()
        .await;
    let log = server.log();
    assert_eq!(log.matches("corrupt").count(), 1, "{log}");
    assert!(log.contains("larger than 40 bytes"), "{log}");
    assert!(!log.contains("clash"), "{log}");
    let tools = server.client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), crate::server::BUILT_IN_TOOLS.len());
}

/// Every server version and plugin build adds entries no later start
/// uses: a start keeps its own, touched, and the 32 most recent others.
#[tokio::test]
async fn the_compile_cache_keeps_what_starts_use_and_a_bounded_rest() {
    use std::time::SystemTime;
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("c");
    start_on_cache(&dir).await;
    let stem = |p: &std::path::PathBuf| p.file_stem().unwrap().to_str().unwrap().to_string();
    let used: Vec<String> = entries(&dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .map(stem)
        .collect();
    assert_eq!(used.len(), 3, "{used:?}");
    let engine = used[0].split_once('-').unwrap().1.to_string();
    let age = |path: &std::path::Path, hours: u64| {
        let file = std::fs::File::open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(3600 * hours))
            .unwrap();
    };
    // The built-ins' entries look older than anything else...
    for s in &used {
        age(&dir.join(format!("{s}.cwasm")), 1000);
    }
    // ...than 40 entries of other versions, entry i being i hours old.
    let others: Vec<String> = (1..=40u64)
        .map(|i| {
            let s = format!("{i:032x}-{engine}");
            for ext in ["cwasm", "sum"] {
                let path = dir.join(format!("{s}.{ext}"));
                std::fs::write(&path, b"another version's entry").unwrap();
                age(&path, i);
            }
            s
        })
        .collect();
    let log = start_on_cache(&dir).await;
    assert!(
        log.contains("removed entries no recent start used"),
        "{log}"
    );
    let left: Vec<String> = entries(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    for s in &used {
        assert!(left.contains(&format!("{s}.cwasm")), "{s} in use");
        let touched = std::fs::metadata(dir.join(format!("{s}.cwasm")))
            .unwrap()
            .modified()
            .unwrap();
        assert!(
            SystemTime::now().duration_since(touched).unwrap() < Duration::from_secs(3600),
            "a hit makes its entry recent"
        );
    }
    for (i, s) in others.iter().enumerate() {
        assert_eq!(left.contains(&format!("{s}.cwasm")), i < 32, "{s}.cwasm");
        assert_eq!(left.contains(&format!("{s}.sum")), i < 32, "{s}.sum");
    }
    assert_eq!(left.len(), 2 * (3 + 32), "{left:?}");
    // Within bounds: the next start removes nothing.
    let log = start_on_cache(&dir).await;
    assert!(!log.contains("removed entries"), "{log}");
    assert_eq!(entries(&dir).len(), 2 * (3 + 32));
}

/// A temporary directory on this machine (the remote side) owned by `user`.
fn dir_of(user: &str, prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let owned = std::process::Command::new("chown")
        .arg(user)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(owned.success());
    dir
}

/// A login shell whose rc file prints (a `~/.bashrc` banner) breaks SFTP,
/// whose protocol is sftp-server's stdout, and its banner comes before
/// every exec script's own output: the file tools still work over exec,
/// read exactly the file, and leave no temporary file behind.
#[tokio::test]
async fn a_login_shell_that_prints_a_banner_does_not_break_the_file_tools() {
    let (user, _) = BASHRC_USER;
    let local = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(local.path().join("up.bin"), &data).unwrap();
    for sshd in [Sshd::start(), crate::files::sftp_sshd()] {
        let remote = dir_of(user, "mcpssh-banner-");
        let server = crate::files::server_with_root(local.path()).await;
        let on = |name: &str| remote.path().join(name).display().to_string();
        let call = |tool: &'static str, extra: serde_json::Value| {
            let mut args = json!({
                "host": "127.0.0.1", "port": sshd.port(), "username": user,
                "password": TEST_PASSWORD,
            });
            args.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let server = &server;
            async move {
                let res = server.call(tool, args).await;
                succeeded(&res);
                structured(&res).clone()
            }
        };
        let path = on("a.txt");
        call("write_file", json!({"path": path, "content": "hello\n"})).await;
        assert_eq!(std::fs::read(&path).unwrap(), b"hello\n");
        let read = call("read_file", json!({"path": path})).await;
        assert_eq!(read["content"], "hello\n", "{read}");
        call(
            "edit_file",
            json!({"path": path, "old_text": "hello", "new_text": "bye"}),
        )
        .await;
        assert_eq!(std::fs::read(&path).unwrap(), b"bye\n");
        let listed = call("list_directory", json!({"path": on("")})).await;
        assert!(listed.to_string().contains("a.txt"), "{listed}");
        let local_up = local.path().join("up.bin").display().to_string();
        let up = call(
            "upload_file",
            json!({"local_path": local_up, "remote_path": on("up.bin")}),
        )
        .await;
        assert_eq!(up["remote_verified"], true, "{up}");
        assert!(std::fs::read(on("up.bin")).unwrap() == data);
        let back = local.path().join("back.bin").display().to_string();
        let down = call(
            "download_file",
            json!({"remote_path": on("up.bin"), "local_path": back}),
        )
        .await;
        assert_eq!(down["remote_verified"], true, "{down}");
        assert!(std::fs::read(&back).unwrap() == data);
        std::fs::remove_file(&back).unwrap();
        let left: Vec<String> = std::fs::read_dir(remote.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".mcp-ssh.tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}

/// A write cancelled while the login shell still reads a slow rc file
/// (over exec, the file tools' fallback) never starts its script: no
/// temporary file appears, then or later, and the file is as it was.
/// Before, the stop waited for the script's PID, and the script, started
/// meanwhile with all its input, kept its temporary file until a kill that
/// had to wait for the rc file too.
#[tokio::test]
async fn a_write_cancelled_behind_a_slow_rc_file_never_starts() {
    let (user, _) = BASHRC_USER;
    let slow = tempfile::tempdir().unwrap();
    let flag = slow.path().join("slow");
    let sshd = Sshd::start_with(&format!("SetEnv MCPSSH_SLOW_RC={}", flag.display()));
    let remote = dir_of(user, "mcpssh-slowrc-");
    let server = Server::start().await;
    let path = remote.path().join("f").display().to_string();
    let write = |content: &str| {
        json!({
            "host": "127.0.0.1", "port": sshd.port(), "username": user,
            "password": TEST_PASSWORD, "path": path, "content": content,
        })
    };
    let temps = || {
        std::fs::read_dir(remote.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".mcp-ssh.tmp"))
            .count()
    };
    // The rc file is quick while the session and its shell are learnt.
    succeeded(&server.call("write_file", write("old")).await);
    std::fs::write(&flag, "").unwrap();
    let mut call = Box::pin(server.try_call("write_file", write("new")));
    // Cancelled 0.8 s before the rc file's 5 s are over.
    let cancel_at = Instant::now() + Duration::from_millis(4200);
    while Instant::now() < cancel_at {
        tokio::select! {
            r = &mut call => panic!("answered before the cancel: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    drop(call);
    // Watched past the moment the script would have started.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(temps(), 0, "a temporary file appeared after the cancel");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
}

/// A kernel file says its size is 0 and has content: read whole over SFTP
/// and over exec (where a read returns no more than the stat describes
/// otherwise).
#[tokio::test]
async fn a_file_whose_size_says_zero_is_read_whole() {
    let want = std::fs::read_to_string("/proc/version").unwrap();
    assert!(!want.is_empty());
    for (kind, sshd) in crate::files::both_sshds() {
        let server = Server::start().await;
        let args = crate::files::args(&sshd, json!({"path": "/proc/version"}));
        let res = server.call("read_file", args).await;
        succeeded(&res);
        assert_eq!(structured(&res)["content"], want.as_str(), "{kind}");
        // Nor does it say where the file ends: a read that stops short of
        // the end does not claim it, and reading on gives the rest.
        let part = |offset: usize| {
            crate::files::args(
                &sshd,
                json!({"path": "/proc/version", "offset": offset, "length": 10}),
            )
        };
        let res = server.call("read_file", part(0)).await;
        let s = structured(&res);
        assert_eq!(
            (s["bytes"].as_u64(), s["eof"].as_bool()),
            (Some(10), Some(false)),
            "{kind}"
        );
        assert_eq!(s["next_offset"], 10);
        let res = server.call("read_file", part(10)).await;
        assert_eq!(structured(&res)["content"], &want[10..20], "{kind}");
        // Past 2^63 - 1 no file has a byte: nothing, and the end.
        for offset in [1u64 << 63, u64::MAX] {
            let args =
                crate::files::args(&sshd, json!({"path": "/proc/version", "offset": offset}));
            let s = structured(&server.call("read_file", args).await).clone();
            let got = (s["bytes"].as_u64(), s["eof"].as_bool());
            assert_eq!(got, (Some(0), Some(true)), "{kind} at {offset}: {s}");
        }
        // And its errors are errors, wherever they happen: /proc/self/mem
        // has nothing mapped at 4096 (the reader's own memory).
        let args = crate::files::args(&sshd, json!({"path": "/proc/self/mem", "offset": 4096}));
        let res = server.call("read_file", args).await;
        tool_error(&res);
    }
}

/// A read of control characters, whose JSON takes 6 bytes for each, stops
/// where the answer would grow past what fits, and says where to go on;
/// over SFTP and over exec. (A raw client: rmcp's drops lines past 16 MiB.)
#[test]
fn a_read_of_control_characters_stops_where_the_answer_fits() {
    for (how, sshd) in crate::files::both_sshds() {
        let dir = crate::files::remote_dir();
        let path = dir.path().join("ctl.txt");
        crate::files::put(&path, vec![1u8; 16 << 20]);
        let args = crate::files::args(
            &sshd,
            serde_json::json!({"path": crate::files::at(&path), "length": 16 << 20}),
        );
        let answer = crate::server::raw_call_answer(
            serde_json::json!({"name": "read_file", "arguments": args}),
        );
        let result = &answer["result"];
        assert_eq!(
            result["isError"],
            false,
            "{how}: {}",
            &answer.to_string()[..300]
        );
        let s = &result["structuredContent"];
        let bytes = s["bytes"].as_u64().unwrap();
        assert_eq!(bytes, (18 << 20) / 6, "{how}");
        assert_eq!(s["next_offset"], bytes, "{how}");
        assert_eq!(s["eof"], false, "{how}");
        assert_eq!(s["content"].as_str().unwrap().len() as u64, bytes, "{how}");
        assert!(
            result["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains(&format!("offset={bytes}")),
            "{how}"
        );
    }
}
