//! Transfers over a link slower than loopback: 1 Gbit/s (a token bucket
//! on the loopback of a network namespace made for the run, sshd and the
//! server inside it), where the remote side has CPU to spare, as on a real
//! network. Our upload hashes the remote file while it is written and the
//! download beside it; `scp` and `sftp` (over a ControlMaster, so a
//! transfer and not a key exchange is timed) hash nothing.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use super::files::{scp, sftp, uid_of};
use super::openssh::Master;
use super::sshd::{Options, Sshd, TEST_USER};
use super::{ms, ratio, row, spawn_from, stats, timed_call};

const NS: &str = "mcpssh-bench-link";

/// The namespace and its shaped loopback, removed on drop.
struct Link;

impl Link {
    fn new() -> Self {
        let _ = ip(&["netns", "del", NS]);
        for step in [
            &["netns", "add", NS][..],
            &["-n", NS, "link", "set", "lo", "up"],
        ] {
            assert!(ip(step), "ip {step:?}");
        }
        let shaped = Command::new("tc")
            .args(["-n", NS, "qdisc", "add", "dev", "lo", "root", "tbf"])
            .args(["rate", "1gbit", "burst", "256kb", "latency", "10ms"])
            .status()
            .unwrap();
        assert!(shaped.success(), "tc tbf");
        Link
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", NS]);
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Measures and prints the shaped-link rows.
pub(super) async fn measure(quick: bool, cache: &Path) {
    let size: usize = if quick { 16 << 20 } else { 100 << 20 };
    let rounds = if quick { 2 } else { 5 };
    let _link = Link::new();
    let sshd = Sshd::start_opts(Options {
        sftp: true,
        netns: Some((NS.to_string(), "127.0.0.1".to_string())),
        ..Options::default()
    });
    let local = tempfile::tempdir().unwrap();
    let remote = tempfile::Builder::new()
        .prefix("mcpssh-bench-link-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::chown(remote.path(), Some(uid_of(TEST_USER)), None).unwrap();
    let src = local.path().join("src.bin");
    let data: Vec<u8> = (0..size as u64)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    drop(data);
    let at = |p: &Path| p.display().to_string();
    let on_host = |name: &str| at(&remote.path().join(name));
    let builder = super::server::Server::builder()
        .netns(NS)
        .arg("--transfer-root")
        .arg(at(local.path()));
    let (server, _) = spawn_from(builder, cache, "warn").await;
    let target = |more: serde_json::Value| {
        let mut args = json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER});
        for (k, v) in more.as_object().unwrap() {
            args[k] = v.clone();
        }
        args
    };
    // Opens the session with the key; the transfers then reuse it.
    let open = super::server::exec_args(&sshd, "true");
    super::call(&server, "execute_command", &open)
        .await
        .unwrap();
    let master = Master::start_in(&sshd, Some(NS));
    let remote_spec = |name: &str| format!("{TEST_USER}@127.0.0.1:{}", on_host(name));
    let dir = local.path();
    let (mut ours_up, mut scp_up, mut sftp_up) = (vec![], vec![], vec![]);
    let (mut ours_down, mut scp_down, mut sftp_down) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let up = format!("up-{round}.bin");
        let args = target(json!({"local_path": at(&src), "remote_path": on_host(&up)}));
        ours_up.push(timed_call(&server, "upload_file", &args).await);
        scp_up.push(scp(&sshd, &master, dir, &at(&src), &remote_spec("scp.bin")));
        let put = format!("put {} {}\n", at(&src), on_host("sftp.bin"));
        sftp_up.push(sftp(&sshd, &master, dir, &put));
        let down = dir.join(format!("down-{round}.bin"));
        let args = target(json!({"remote_path": on_host(&up), "local_path": at(&down)}));
        ours_down.push(timed_call(&server, "download_file", &args).await);
        assert_eq!(std::fs::metadata(&down).unwrap().len(), size as u64);
        let theirs = at(&dir.join("theirs.bin"));
        scp_down.push(scp(&sshd, &master, dir, &remote_spec(&up), &theirs));
        let get = format!("get {} {theirs}\n", on_host(&up));
        sftp_down.push(sftp(&sshd, &master, dir, &get));
        for f in [down, dir.join("theirs.bin"), remote.path().join(&up)] {
            let _ = std::fs::remove_file(f);
        }
    }
    server.client.cancel().await.unwrap();
    drop(master);

    let mib = size >> 20;
    for (what, ours, scp, sftp) in [
        ("upload_file", ours_up, scp_up, sftp_up),
        ("download_file", ours_down, scp_down, sftp_down),
    ] {
        let (o, s, f) = (stats(ours), stats(scp), stats(sftp));
        row([
            &format!("`{what}` {mib} MiB over a 1 Gbit/s link, median of {rounds}"),
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
}
