//! The SSH core's file operations, called through the library against real
//! servers: OpenSSH with SFTP, OpenSSH without a `Subsystem sftp` line (the
//! exec fallback), Dropbear (its SFTP) and Dropbear forced onto exec. The
//! remote host is this machine, so the tests check what landed on disk
//! directly.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mcp_ssh_session::ssh::files::TEMP_PREFIX;
use mcp_ssh_session::ssh::{
    Credentials, FileError, FileKind, HostKeyPolicy, SessionManager, SshError, SshSettings, Target,
    Transfer, TransferProgressFn, WriteRequest, ssh_config,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::dropbear_server::Dropbear;
use crate::sshd::{Options, Sshd, TEST_PASSWORD, TEST_USER};

/// A server and a manager connected to it, and a directory the test user
/// owns.
struct Remote {
    manager: SessionManager,
    target: Target,
    dir: TempDir,
    _state: TempDir,
    _sshd: Option<Sshd>,
    _dropbear: Option<Dropbear>,
    name: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    OpensshSftp,
    OpensshExec,
    DropbearSftp,
    DropbearExec,
}

const ALL: [Kind; 4] = [
    Kind::OpensshSftp,
    Kind::OpensshExec,
    Kind::DropbearSftp,
    Kind::DropbearExec,
];

fn test_uid() -> u32 {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == TEST_USER).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {TEST_USER} account: run scripts/test"))
}

fn remote(kind: Kind) -> Remote {
    let state = tempfile::tempdir().unwrap();
    let settings = SshSettings {
        ssh_config: ssh_config::Files {
            user: None,
            system: None,
        },
        known_hosts: Some(state.path().join("known_hosts")),
        host_key_policy: Some(HostKeyPolicy::AcceptNew),
        use_agent: false,
        // OpenSSH without the Subsystem line refuses SFTP: the fallback is
        // found, not forced. This machine's Dropbear has an sftp-server, so
        // its exec path is forced.
        sftp: !matches!(kind, Kind::DropbearExec),
        ..SshSettings::default()
    };
    let (sshd, dropbear, port, credentials) = match kind {
        Kind::OpensshSftp | Kind::OpensshExec => {
            let sshd = Sshd::start_opts(Options {
                // Without the line, the exec fallback is what works.
                sftp: matches!(kind, Kind::OpensshSftp),
                ..Options::default()
            });
            let creds = Credentials {
                key_file: Some(sshd.client_key()),
                ..Credentials::default()
            };
            let port = sshd.port();
            (Some(sshd), None, port, creds)
        }
        Kind::DropbearSftp | Kind::DropbearExec => {
            let d = Dropbear::start();
            let creds = Credentials {
                password: Some(Zeroizing::new(TEST_PASSWORD.to_string())),
                ..Credentials::default()
            };
            let port = d.port();
            (None, Some(d), port, creds)
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("mcpssh-files-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::chown(dir.path(), Some(test_uid()), None).unwrap();
    Remote {
        manager: SessionManager::new(settings),
        target: Target {
            host: "127.0.0.1".into(),
            username: Some(TEST_USER.into()),
            port: Some(port),
            credentials: Some(credentials),
            peer_check: None,
        },
        dir,
        _state: state,
        _sshd: sshd,
        _dropbear: dropbear,
        kind,
        name: match kind {
            Kind::OpensshSftp => "openssh+sftp",
            Kind::OpensshExec => "openssh exec",
            Kind::DropbearSftp => "dropbear+sftp",
            Kind::DropbearExec => "dropbear exec",
        },
    }
}

impl Remote {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn local(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn write(
        &self,
        name: &str,
        data: &[u8],
    ) -> Result<mcp_ssh_session::ssh::WriteOutcome, FileError> {
        self.manager
            .write_file(
                &self.target,
                &WriteRequest {
                    path: self.path(name),
                    data: data.to_vec(),
                    ..WriteRequest::default()
                },
                &CancellationToken::new(),
            )
            .await
    }

    /// Temporary files left anywhere under the directory.
    fn leftovers(&self) -> Vec<String> {
        fn walk(dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEMP_PREFIX) {
                    out.push(e.path().display().to_string());
                }
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Every byte value, the launcher's marker byte among them, and lines.
fn binary_content() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend_from_slice(b"\n\x1emcp-ssh:forged:1:G:/bin/sh\x1e\nend\n");
    v.extend((0..100_000u32).map(|i| (i * 7 % 251) as u8));
    v
}

async fn reads_and_writes(r: &Remote) {
    let n = r.name;
    let m = &r.manager;
    let t = &r.target;
    let content = binary_content();

    // A new file, through missing parents.
    let deep = r.path("a/b/new.bin");
    let missing_parent = m
        .write_file(
            t,
            &WriteRequest {
                path: deep.clone(),
                data: content.clone(),
                ..WriteRequest::default()
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&missing_parent, FileError::NotFound(msg) if msg.contains(&r.path("a/b")) && msg.contains("127.0.0.1")),
        "{n}: {missing_parent:?}"
    );
    let out = m
        .write_file(
            t,
            &WriteRequest {
                path: deep.clone(),
                data: content.clone(),
                create_parents: true,
                ..WriteRequest::default()
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(out.created, "{n}");
    assert_eq!(out.bytes, content.len() as u64, "{n}");
    assert_eq!(out.sha256, sha(&content), "{n}");
    assert_eq!(fs::read(r.local("a/b/new.bin")).unwrap(), content, "{n}");
    let mode = fs::metadata(r.local("a/b/new.bin"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o644, "{n}: a new file's mode");

    // Read it back whole and in part.
    let chunk = m.read_file(t, &deep, 0, 1 << 20).await.unwrap();
    assert_eq!(chunk.data, content, "{n}");
    assert!(chunk.eof, "{n}");
    assert_eq!(chunk.stat.size, content.len() as u64, "{n}");
    let part = m.read_file(t, &deep, 250, 20).await.unwrap();
    assert_eq!(part.data, &content[250..270], "{n}");
    assert!(!part.eof, "{n}");
    let tail = m
        .read_file(t, &deep, content.len() as u64 - 5, 100)
        .await
        .unwrap();
    assert_eq!(tail.data, &content[content.len() - 5..], "{n}");
    assert!(tail.eof, "{n}");

    // An existing file's mode is kept; a given mode wins.
    fs::set_permissions(r.local("a/b/new.bin"), fs::Permissions::from_mode(0o751)).unwrap();
    let out = r.write("a/b/new.bin", b"second").await.unwrap();
    assert!(!out.created, "{n}");
    let mode = fs::metadata(r.local("a/b/new.bin"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o751, "{n}: the mode was not kept");
    m.write_file(
        t,
        &WriteRequest {
            path: deep.clone(),
            data: b"third".to_vec(),
            mode: Some(0o600),
            ..WriteRequest::default()
        },
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let mode = fs::metadata(r.local("a/b/new.bin"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o600, "{n}");

    // if_match: a stale hash loses, the current one wins, a missing file
    // conflicts.
    let stale = m
        .write_file(
            t,
            &WriteRequest {
                path: deep.clone(),
                data: b"lost update".to_vec(),
                if_match: Some(sha(b"second")),
                ..WriteRequest::default()
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, FileError::Conflict(_)), "{n}: {stale:?}");
    assert_eq!(fs::read(r.local("a/b/new.bin")).unwrap(), b"third", "{n}");
    m.write_file(
        t,
        &WriteRequest {
            path: deep.clone(),
            data: b"fourth".to_vec(),
            if_match: Some(sha(b"third")),
            ..WriteRequest::default()
        },
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(fs::read(r.local("a/b/new.bin")).unwrap(), b"fourth", "{n}");
    let missing = m
        .write_file(
            t,
            &WriteRequest {
                path: r.path("nothing-here"),
                data: b"x".to_vec(),
                if_match: Some(sha(b"")),
                ..WriteRequest::default()
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(missing, FileError::Conflict(_)),
        "{n}: {missing:?}"
    );
    assert!(!r.local("nothing-here").exists(), "{n}");

    // Directories where files are expected, and the reverse.
    let e = r.write("a", b"x").await.unwrap_err();
    assert!(matches!(e, FileError::IsADirectory(_)), "{n}: {e:?}");
    let e = m.read_file(t, &r.path("a"), 0, 10).await.unwrap_err();
    assert!(matches!(e, FileError::IsADirectory(_)), "{n}: {e:?}");
    let e = m.read_file(t, &r.path("nope"), 0, 10).await.unwrap_err();
    assert!(
        matches!(&e, FileError::NotFound(msg) if msg.contains(&r.path("nope"))),
        "{n}: {e:?}"
    );
    let e = m.list_directory(t, &deep, 10).await.unwrap_err();
    assert!(matches!(e, FileError::NotADirectory(_)), "{n}: {e:?}");

    // Special files are refused up front, without hanging.
    let fifo = r.local("fifo");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    std::os::unix::fs::chown(&fifo, Some(test_uid()), None).unwrap();
    for special in [fifo.to_str().unwrap(), "/dev/zero"] {
        let started = Instant::now();
        let e = tokio::time::timeout(Duration::from_secs(20), m.read_file(t, special, 0, 1 << 20))
            .await
            .unwrap_or_else(|_| panic!("{n}: reading {special} hung"))
            .unwrap_err();
        assert!(
            matches!(&e, FileError::Unsupported(msg) if msg.contains("not a regular file")),
            "{n}: {special}: {e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{n}");
    }

    // stat and list: kinds, modes, link targets, sorted, bounded.
    std::os::unix::fs::symlink("a/b/new.bin", r.local("link")).unwrap();
    let st = m.stat(t, &r.path("link")).await.unwrap();
    assert_eq!(st.kind, FileKind::Symlink, "{n}");
    assert_eq!(st.link_target.as_deref(), Some("a/b/new.bin"), "{n}");
    let st = m.stat(t, &deep).await.unwrap();
    assert_eq!(
        (st.kind, st.size, st.mode),
        (FileKind::File, 6, 0o600),
        "{n}"
    );
    assert!(st.mtime.is_some(), "{n}");
    fs::write(r.local(".hidden"), b"h").unwrap();
    fs::write(r.local("name with\nnewline"), b"n").unwrap();
    let all = m.list_directory(t, &r.path(""), 100).await.unwrap();
    let names: Vec<&str> = all.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [".hidden", "a", "fifo", "link", "name with\nnewline"],
        "{n}"
    );
    assert_eq!(all.omitted, 0, "{n}");
    let link = &all.entries[3].stat;
    assert_eq!(
        (link.kind, link.link_target.as_deref()),
        (FileKind::Symlink, Some("a/b/new.bin")),
        "{n}"
    );
    assert_eq!(all.entries[1].stat.kind, FileKind::Directory, "{n}");
    let two = m.list_directory(t, &r.path(""), 2).await.unwrap();
    let names: Vec<&str> = two.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!((names, two.omitted), (vec![".hidden", "a"], 3), "{n}");

    assert!(r.leftovers().is_empty(), "{n}: {:?}", r.leftovers());
    if let Some(sshd) = &r._sshd {
        // Which path ran: an SFTP session, or (refused) exec channels only.
        let sftp_ran = sshd.log().contains("subsystem 'sftp'");
        assert_eq!(sftp_ran, matches!(r.kind, Kind::OpensshSftp), "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_writes_stats_and_listings_mean_the_same_over_sftp_and_exec() {
    for kind in ALL {
        let r = remote(kind);
        reads_and_writes(&r).await;
    }
}

fn random_file(path: &Path, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    fs::write(path, &data).unwrap();
    data
}

async fn transfers(r: &Remote, size: usize) -> (Duration, Duration) {
    let n = r.name;
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src.bin");
    let data = random_file(&src, size);
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = reports.clone();
    let transfer = Transfer {
        progress: Some(TransferProgressFn(Arc::new(move |done, total| {
            seen.lock().unwrap().push((done, total));
        }))),
        timeout: Duration::from_secs(300),
        ..Transfer::default()
    };
    let started = Instant::now();
    let local = tokio::fs::File::open(&src).await.unwrap();
    let out = r
        .manager
        .upload(&r.target, local, &r.path("big.bin"), Some(0o640), &transfer)
        .await
        .unwrap();
    let up = started.elapsed();
    assert_eq!(out.bytes, size as u64, "{n}");
    assert_eq!(out.sha256, sha(&data), "{n}");
    assert!(out.remote_verified, "{n}: sha256sum is there");
    assert!(
        fs::read(r.local("big.bin")).unwrap() == data,
        "{n}: upload differs"
    );
    let mode = fs::metadata(r.local("big.bin"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o640, "{n}");
    let last = *reports.lock().unwrap().last().unwrap();
    assert_eq!(last, (size as u64, Some(size as u64)), "{n}");

    let dst = scratch.path().join("dst.bin");
    let mut local = tokio::fs::File::create(&dst).await.unwrap();
    let started = Instant::now();
    let out = r
        .manager
        .download(&r.target, &r.path("big.bin"), &mut local, &transfer)
        .await
        .unwrap();
    let down = started.elapsed();
    assert_eq!((out.bytes, out.sha256), (size as u64, sha(&data)), "{n}");
    assert!(out.remote_verified, "{n}");
    assert!(fs::read(&dst).unwrap() == data, "{n}: download differs");
    assert!(r.leftovers().is_empty(), "{n}: {:?}", r.leftovers());
    (up, down)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_upload_and_download_arrive_whole_and_verified() {
    for kind in ALL {
        let r = remote(kind);
        let size = match kind {
            Kind::OpensshSftp | Kind::OpensshExec => 50 << 20,
            _ => 8 << 20,
        };
        let (up, down) = transfers(&r, size).await;
        eprintln!("{}: {} MiB up {up:?}, down {down:?}", r.name, size >> 20);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_leaves_neither_file_nor_temporary_file() {
    for kind in [Kind::OpensshSftp, Kind::OpensshExec, Kind::DropbearExec] {
        let r = remote(kind);
        let n = r.name;
        let scratch = tempfile::tempdir().unwrap();
        let src = scratch.path().join("src.bin");
        random_file(&src, 64 << 20);
        let transfer = Transfer::default();
        let cancel = transfer.cancel.clone();
        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        let transfer = Transfer {
            progress: Some(TransferProgressFn(Arc::new(move |done, _| {
                if done > 4 << 20 && !f.swap(true, Ordering::Relaxed) {
                    cancel.cancel();
                }
            }))),
            ..transfer
        };
        let local = tokio::fs::File::open(&src).await.unwrap();
        let started = Instant::now();
        let e = r
            .manager
            .upload(&r.target, local, &r.path("big.bin"), None, &transfer)
            .await
            .unwrap_err();
        assert!(
            matches!(e, FileError::Ssh(SshError::Cancelled(_))),
            "{n}: {e:?}"
        );
        assert!(fired.load(Ordering::Relaxed), "{n}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{n}: the cancel took {:?}",
            started.elapsed()
        );
        assert!(!r.local("big.bin").exists(), "{n}");
        assert!(r.leftovers().is_empty(), "{n}: {:?}", r.leftovers());
        // The session still works.
        r.write("after", b"ok").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_leaves_the_file_as_it_was() {
    for kind in [Kind::OpensshSftp, Kind::OpensshExec, Kind::DropbearExec] {
        let r = remote(kind);
        let n = r.name;
        r.write("kept", b"old").await.unwrap();
        let request = WriteRequest {
            path: r.path("kept"),
            data: vec![b'x'; 64 << 20],
            ..WriteRequest::default()
        };
        // Cancelled before the write starts, and at every moment of its
        // start: before and after its script says its PID.
        let moments = (0..=24).map(|ms| Some(Duration::from_millis(ms)));
        for after in std::iter::once(None).chain(moments) {
            let cancel = CancellationToken::new();
            match after {
                None => cancel.cancel(),
                Some(after) => {
                    let cancel = cancel.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        cancel.cancel();
                    });
                }
            }
            let e = r
                .manager
                .write_file(&r.target, &request, &cancel)
                .await
                .unwrap_err();
            assert!(
                matches!(e, FileError::Ssh(SshError::Cancelled(_))),
                "{n}, cancelled after {after:?}: {e:?}"
            );
            assert_eq!(fs::read(r.local("kept")).unwrap(), b"old", "{n}");
            assert!(r.leftovers().is_empty(), "{n}: {:?}", r.leftovers());
        }
        // The session still works.
        r.write("kept", b"new").await.unwrap();
        assert_eq!(fs::read(r.local("kept")).unwrap(), b"new", "{n}");
    }
}

/// A command cancelled while its stdin streams (the remote reading it as
/// fast as it comes) is stopped, verified. The stop's channel shares the
/// connection with the stdin's writer: left parked on the window, that
/// writer held the lock the connection's reader takes for each window
/// adjustment, so the stop was never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_cancelled_while_its_stdin_streams_is_stopped_verified() {
    use mcp_ssh_session::ssh::{Command, CommandOptions, ExecRequest};
    let r = remote(Kind::OpensshExec);
    r.write("warm", b"the session is up").await.unwrap();
    let stdin = vec![b'x'; 16 << 20];
    let mut ran = 0;
    for ms in 0..=60 {
        let request = ExecRequest {
            command: Command::Line("cat >/dev/null; sleep 4751".into()),
            options: CommandOptions {
                stdin: Some(stdin.clone()),
                ..CommandOptions::default()
            },
            ..ExecRequest::default()
        };
        let cancel = request.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            cancel.cancel();
        });
        let out = match r.manager.exec(&r.target, &request).await {
            // Before the command was sent: nothing to stop.
            Err(SshError::Cancelled(_)) => continue,
            res => res.unwrap(),
        };
        ran += 1;
        assert!(out.cancelled, "cancelled after {ms} ms: {out:?}");
        assert_eq!(
            out.remote_stopped,
            Some(true),
            "cancelled after {ms} ms: {:?}",
            out.notes
        );
    }
    assert!(
        ran > 20,
        "only {ran} of 61 commands started before their cancel"
    );
}

/// Over SFTP the commit checks `if_match` by hashing the current file,
/// which takes long for a large one: a cancel then is still before the
/// rename, and leaves the file as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cancelled_while_its_if_match_is_checked_leaves_the_file() {
    let r = remote(Kind::OpensshSftp);
    let big = vec![7u8; 256 << 20];
    fs::write(r.local("big"), &big).unwrap();
    std::os::unix::fs::chown(r.local("big"), Some(test_uid()), None).unwrap();
    let request = WriteRequest {
        path: r.path("big"),
        data: b"small".to_vec(),
        if_match: Some(sha(&big)),
        ..WriteRequest::default()
    };
    let cancel = CancellationToken::new();
    let fire = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fire.cancel();
    });
    let e = r
        .manager
        .write_file(&r.target, &request, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(e, FileError::Ssh(SshError::Cancelled(_))), "{e:?}");
    assert_eq!(
        fs::metadata(r.local("big")).unwrap().len(),
        big.len() as u64
    );
    assert!(r.leftovers().is_empty(), "{:?}", r.leftovers());
}

/// Run, in a release build, `cargo test --release -p mcp-ssh-session --test
/// all -- files_core::measure --ignored --nocapture`: 50 MiB up and down
/// through the core (SFTP, then exec) beside `scp` and `sftp` on the same
/// sshd, best of three each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it in a release build"]
async fn measure_50_mib_transfers_against_scp_and_sftp() {
    const SIZE: usize = 50 << 20;
    let r = remote(Kind::OpensshSftp);
    let exec = remote(Kind::OpensshExec);
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src.bin");
    random_file(&src, SIZE);
    let sshd = r._sshd.as_ref().unwrap();
    let key = sshd.client_key();
    let port = sshd.port().to_string();
    let common = |c: &mut std::process::Command| {
        c.args(["-q", "-i"]).arg(&key).args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ]);
    };
    let remote_file = r.path("scp.bin");
    let dest = format!("{TEST_USER}@127.0.0.1:{remote_file}");
    let best = |f: &mut dyn FnMut() -> Duration| (0..3).map(|_| f()).min().unwrap();
    let timed = |c: &mut std::process::Command| {
        let started = Instant::now();
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    };
    let scp_up = best(&mut || {
        let mut c = std::process::Command::new("scp");
        common(&mut c);
        c.args(["-P", &port]).arg(&src).arg(&dest);
        timed(&mut c)
    });
    let back = scratch.path().join("scp-back.bin");
    let scp_down = best(&mut || {
        let mut c = std::process::Command::new("scp");
        common(&mut c);
        c.args(["-P", &port]).arg(&dest).arg(&back);
        timed(&mut c)
    });
    let batch = scratch.path().join("batch");
    fs::write(
        &batch,
        format!(
            "put {} {remote_file}\nget {remote_file} {}\n",
            src.display(),
            back.display()
        ),
    )
    .unwrap();
    let sftp_both = best(&mut || {
        let mut c = std::process::Command::new("sftp");
        common(&mut c);
        c.args(["-P", &port, "-b"])
            .arg(&batch)
            .arg(format!("{TEST_USER}@127.0.0.1"));
        timed(&mut c)
    });
    let mut ours = Vec::new();
    for r in [&r, &exec] {
        let mut up = Duration::MAX;
        let mut down = Duration::MAX;
        for _ in 0..3 {
            let (u, d) = transfers(r, SIZE).await;
            up = up.min(u);
            down = down.min(d);
        }
        ours.push((r.name, up, down));
    }
    let mbps = |d: Duration| SIZE as f64 / 1e6 / d.as_secs_f64();
    eprintln!("50 MiB over loopback, best of 3 (MB/s in brackets):");
    eprintln!(
        "  scp          up {scp_up:>10.2?} ({:.0})  down {scp_down:>10.2?} ({:.0})",
        mbps(scp_up),
        mbps(scp_down)
    );
    eprintln!(
        "  sftp put+get    {sftp_both:>10.2?} ({:.0} both ways)",
        2.0 * mbps(sftp_both)
    );
    for (name, up, down) in ours {
        eprintln!(
            "  {name:<12} up {up:>10.2?} ({:.0})  down {down:>10.2?} ({:.0})  (incl. remote sha256)",
            mbps(up),
            mbps(down)
        );
    }
}

/// The PIDs of `root` and every process descended from it.
fn descendants(root: u32) -> Vec<(u32, String)> {
    let mut procs = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let ppid: u32 = stat[close + 2..]
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        procs.push((pid, ppid, comm));
    }
    let mut out = vec![(root, String::new())];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].0;
        out.extend(
            procs
                .iter()
                .filter(|p| p.1 == parent)
                .map(|p| (p.0, p.2.clone())),
        );
        i += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_calls_share_one_sftp_session_beside_busy_commands_and_outlive_its_death() {
    use mcp_ssh_session::ssh::{Command, ExecRequest};
    let r = remote(Kind::OpensshSftp);
    let sshd = r._sshd.as_ref().unwrap();
    fs::write(r.local("f"), b"data").unwrap();
    let path = r.path("f");
    // Every command slot busy while the file calls come.
    let busy: Vec<_> = (0..8)
        .map(|_| {
            let (m, t) = (r.manager.clone(), r.target.clone());
            tokio::spawn(async move {
                let request = ExecRequest {
                    command: Command::Line("sleep 2".into()),
                    ..ExecRequest::default()
                };
                m.exec(&t, &request).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads =
        futures::future::join_all((0..20).map(|_| r.manager.read_file(&r.target, &path, 0, 10)))
            .await;
    for read in reads {
        assert_eq!(read.unwrap().data, b"data");
    }
    for b in busy {
        let out = b.await.unwrap().unwrap();
        assert_eq!(out.exit_status, Some(0));
    }
    let sessions = || sshd.log().matches("subsystem 'sftp'").count();
    assert_eq!(sessions(), 1, "one SFTP session for every call");

    // Its sftp-server dies: the next call gets a new one, and succeeds.
    let pid: u32 = fs::read_to_string(sshd.dir().join("sshd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let servers: Vec<u32> = descendants(pid)
        .into_iter()
        .filter(|(_, comm)| comm == "sftp-server")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(servers.len(), 1, "{servers:?}");
    unsafe { libc::kill(servers[0] as i32, libc::SIGKILL) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = r.manager.stat(&r.target, &path).await.unwrap();
    assert_eq!(st.size, 4);
    assert_eq!(sessions(), 2);
}

/// Many first file calls at once on a server without SFTP: one learns
/// there is none, the others take its word, and no refused channel is left
/// holding one of the server's MaxSessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_without_sftp_leave_the_connection_usable() {
    use mcp_ssh_session::ssh::{Command, ExecRequest};
    let r = remote(Kind::OpensshExec);
    fs::write(r.local("f"), b"data").unwrap();
    let path = r.path("f");
    let reads =
        futures::future::join_all((0..16).map(|_| r.manager.read_file(&r.target, &path, 0, 10)))
            .await;
    for read in reads {
        assert_eq!(read.unwrap().data, b"data");
    }
    let probes = r
        ._sshd
        .as_ref()
        .unwrap()
        .log()
        .matches("subsystem request for sftp")
        .count();
    assert!(probes <= 1, "{probes} SFTP probes");
    // The connection still takes a full set of commands.
    let runs = futures::future::join_all((0..8).map(|_| {
        let request = ExecRequest {
            command: Command::Line("echo ok".into()),
            ..ExecRequest::default()
        };
        let (m, t) = (r.manager.clone(), r.target.clone());
        async move { m.exec(&t, &request).await }
    }))
    .await;
    for run in runs {
        assert_eq!(run.unwrap().exit_status, Some(0));
    }
}
