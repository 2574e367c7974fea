//! Transfers over a link slower than loopback: 1 Gbit/s (a token bucket
//! on the loopback of a network namespace made for the run, sshd and the
//! server inside it), as on a real network, where the link and not the
//! CPU sets the pace. Our transfers hash the whole remote file (after an
//! upload, beside a download); `scp` and `sftp` hash nothing. The rows
//! are [`Transfers`]' as on loopback.

use std::path::Path;
use std::process::Command;

use super::files::Transfers;

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
    let rounds = if quick { 3 } else { 5 };
    let _link = Link::new();
    let t = Transfers::start(size, cache, Some(NS)).await;
    let timed = t.rounds(rounds).await;
    t.server.client.cancel().await.unwrap();
    let mib = size >> 20;
    let label =
        |what: &str, _| format!("`{what}` {mib} MiB over a 1 Gbit/s link, median of {rounds}");
    Transfers::rows(label, timed);
}
