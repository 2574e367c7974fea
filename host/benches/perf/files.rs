//! The file rows of the performance suite: uploads and downloads through
//! the server against OpenSSH `scp` and `sftp` of the same file on the same
//! sshd, both on a connection already open (our session, their
//! ControlMaster), in interleaved rounds so drift hits both; the
//! server's RSS during the transfers; and warm `read_file` / `edit_file`
//! against a warm `execute_command true` on the same session.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::openssh::Master;
use super::sshd::{Options, Sshd, TEST_USER};
use super::{call, memory, ms, ratio, row, spawn_from, stats, timed, timed_call};

/// OpenSSH's `scp` or `sftp` to `sshd` with the fixture's key, over the
/// master's connection: the transfer is timed, not a key exchange.
fn openssh(program: &str, sshd: &Sshd, master: &Master, dir: &Path) -> Command {
    let mut c = super::openssh::client(program, sshd, dir, "-P");
    c.args(master.opts()).stdout(Stdio::null());
    c
}

pub(super) fn scp(sshd: &Sshd, master: &Master, dir: &Path, from: &str, to: &str) -> Duration {
    let mut c = openssh("scp", sshd, master, dir);
    c.args([from, to]);
    timed(c)
}

pub(super) fn sftp(sshd: &Sshd, master: &Master, dir: &Path, batch: &str) -> Duration {
    let file = dir.join("batch");
    std::fs::write(&file, batch).unwrap();
    let mut c = openssh("sftp", sshd, master, dir);
    c.arg("-b").arg(&file).arg(format!("{TEST_USER}@127.0.0.1"));
    timed(c)
}

pub(super) fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Measures and prints the file rows.
pub(super) async fn measure(quick: bool, cache: &Path) {
    let size: usize = if quick { 16 << 20 } else { 100 << 20 };
    let rounds = if quick { 2 } else { 5 };
    let warm_n = if quick { 30 } else { 200 };
    let sshd = Sshd::start_opts(Options {
        sftp: true,
        ..Options::default()
    });
    let local = tempfile::tempdir().unwrap();
    let remote = tempfile::Builder::new()
        .prefix("mcpssh-bench-files-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::chown(remote.path(), Some(uid_of(TEST_USER)), None).unwrap();
    let src = local.path().join("src.bin");
    let data: Vec<u8> = (0..size as u64)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    drop(data);
    let at = |p: &Path| p.display().to_string();
    let on_host = |name: &str| at(&remote.path().join(name));
    let builder = super::server::Server::builder()
        .arg("--transfer-root")
        .arg(at(local.path()));
    let (server, _) = spawn_from(builder, cache, "warn").await;
    let target = |more: Value| {
        let mut args = json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER});
        for (k, v) in more.as_object().unwrap() {
            args[k] = v.clone();
        }
        args
    };
    call(
        &server,
        "execute_command",
        &super::server::exec_args(&sshd, "true"),
    )
    .await
    .unwrap();
    let idle = memory(&server, "VmRSS");
    let master = Master::start(&sshd);
    let remote_spec = |name: &str| format!("{TEST_USER}@127.0.0.1:{}", on_host(name));

    let (mut ours_up, mut scp_up, mut sftp_up) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_down, mut scp_down, mut sftp_down) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let up = format!("up-{round}.bin");
        ours_up.push(
            timed_call(
                &server,
                "upload_file",
                &target(json!({"local_path": at(&src), "remote_path": on_host(&up)})),
            )
            .await,
        );
        scp_up.push(scp(
            &sshd,
            &master,
            local.path(),
            &at(&src),
            &remote_spec("scp.bin"),
        ));
        sftp_up.push(sftp(
            &sshd,
            &master,
            local.path(),
            &format!("put {} {}\n", at(&src), on_host("sftp.bin")),
        ));
        let down = local.path().join(format!("down-{round}.bin"));
        ours_down.push(
            timed_call(
                &server,
                "download_file",
                &target(json!({"remote_path": on_host(&up), "local_path": at(&down)})),
            )
            .await,
        );
        assert_eq!(std::fs::metadata(&down).unwrap().len(), size as u64);
        scp_down.push(scp(
            &sshd,
            &master,
            local.path(),
            &remote_spec(&up),
            &at(&local.path().join("scp.bin")),
        ));
        sftp_down.push(sftp(
            &sshd,
            &master,
            local.path(),
            &format!(
                "get {} {}\n",
                on_host(&up),
                at(&local.path().join("sftp.bin"))
            ),
        ));
        for f in [
            down,
            local.path().join("scp.bin"),
            local.path().join("sftp.bin"),
        ] {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_file(remote.path().join(&up));
    }
    let growth = memory(&server, "VmHWM") - idle;

    // Warm small-file calls, interleaved with the command they compare to.
    let small = on_host("small.txt");
    let filler = "-".repeat(4096 - 10);
    std::fs::write(
        remote.path().join("small.txt"),
        format!("value = 0\n{filler}"),
    )
    .unwrap();
    std::os::unix::fs::chown(
        remote.path().join("small.txt"),
        Some(uid_of(TEST_USER)),
        None,
    )
    .unwrap();
    let true_args = target(json!({"command": "true"}));
    let (mut reads, mut edits, mut trues) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..warm_n {
        trues.push(timed_call(&server, "execute_command", &true_args).await);
        reads.push(timed_call(&server, "read_file", &target(json!({"path": small}))).await);
        let (old, new) = if i % 2 == 0 {
            ("value = 0", "value = 1")
        } else {
            ("value = 1", "value = 0")
        };
        edits.push(
            timed_call(
                &server,
                "edit_file",
                &target(json!({"path": small, "old_text": old, "new_text": new})),
            )
            .await,
        );
    }
    server.client.cancel().await.unwrap();

    let mib = size >> 20;
    let rate = |d: Duration| format!("{:.0} MiB/s", mib as f64 / d.as_secs_f64());
    for (what, ours, scp, sftp) in [
        ("upload_file", ours_up, scp_up, sftp_up),
        ("download_file", ours_down, scp_down, sftp_down),
    ] {
        let (o, s, f) = (stats(ours), stats(scp), stats(sftp));
        row([
            &format!(
                "`{what}` {mib} MiB (SFTP), median of {rounds}: {}",
                rate(o.median)
            ),
            &ms(o.median),
            &ms(o.p90),
            "",
            &format!(
                "scp {} / sftp {} (ControlMaster)",
                ms(s.median),
                ms(f.median)
            ),
            &format!(
                "{} / {}",
                ratio(o.median, s.median),
                ratio(o.median, f.median)
            ),
        ]);
    }
    row([
        &format!("RSS growth during the transfers: {growth:.1} MiB over {idle:.1} MiB idle"),
        "",
        "",
        "",
        "",
        "",
    ]);
    let t = stats(trues);
    for (what, v) in [("`read_file` 4 KiB", reads), ("`edit_file` 4 KiB", edits)] {
        let s = stats(v);
        row([
            &format!("{what}, warm, n={warm_n}"),
            &ms(s.median),
            &ms(s.p90),
            &ms(s.p99),
            &format!("warm `execute_command true`: {}", ms(t.median)),
            &ratio(s.median, t.median),
        ]);
    }
}
