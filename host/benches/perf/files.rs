//! The file rows of the performance suite: uploads and downloads through
//! the server against OpenSSH `scp` and `sftp` of the same file on the same
//! sshd (theirs as a user runs them, each on a new connection, and through
//! a ControlMaster, the transfer alone), in interleaved rounds so drift
//! hits all alike; the server's RSS during the transfers; and warm
//! `read_file` / `edit_file` against a warm `execute_command true` on the
//! same session.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::Server;
use super::openssh::Master;
use super::sshd::{Options, Sshd, TEST_USER};
use super::{call, memory, ms, ratio, row, spawn_from, stats, timed, timed_call};

/// How OpenSSH's clients connect: each its own connection (what a user
/// types: a process, a key exchange, then the transfer), or through a
/// ControlMaster's (the transfer alone, as on a warm session of ours).
#[derive(Clone, Copy)]
enum Via<'a> {
    Fresh(Option<&'a str>),
    Master(&'a Master),
}

/// OpenSSH's `scp` or `sftp` to `sshd` with the fixture's key.
fn openssh(program: &str, sshd: &Sshd, via: Via<'_>, dir: &Path) -> Command {
    let mut c = super::openssh::client(program, sshd, dir, "-P");
    let mut c = match via {
        Via::Fresh(netns) => super::openssh::in_netns(c, netns),
        Via::Master(m) => {
            c.args(m.opts());
            c
        }
    };
    c.stdout(Stdio::null());
    c
}

fn scp(sshd: &Sshd, via: Via<'_>, dir: &Path, from: &str, to: &str) -> Duration {
    let mut c = openssh("scp", sshd, via, dir);
    c.args([from, to]);
    timed(c)
}

fn sftp(sshd: &Sshd, via: Via<'_>, dir: &Path, batch: &str) -> Duration {
    let file = dir.join("batch");
    std::fs::write(&file, batch).unwrap();
    let mut c = openssh("sftp", sshd, via, dir);
    c.arg("-b").arg(&file).arg(format!("{TEST_USER}@127.0.0.1"));
    timed(c)
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn at(p: &Path) -> String {
    p.display().to_string()
}

/// Ours, `scp`'s and `sftp`'s times for one direction: theirs each on a
/// new connection, then through the ControlMaster.
#[derive(Default)]
pub(super) struct Sides {
    ours: Vec<Duration>,
    theirs: [Vec<Duration>; 4],
}

/// Transfers side by side: an sshd with SFTP, a file of `size` bytes in
/// the server's transfer root, a remote directory the test account owns,
/// the server holding a session there, and a ControlMaster for OpenSSH's
/// clients; all in network namespace `netns` when one is given.
pub(super) struct Transfers {
    pub(super) server: Server,
    sshd: Sshd,
    master: Master,
    netns: Option<String>,
    local: tempfile::TempDir,
    remote: tempfile::TempDir,
    size: usize,
}

impl Transfers {
    pub(super) async fn start(size: usize, cache: &Path, netns: Option<&str>) -> Self {
        let sshd = Sshd::start_opts(Options {
            sftp: true,
            netns: netns.map(|ns| (ns.to_string(), "127.0.0.1".to_string())),
            ..Options::default()
        });
        let local = tempfile::tempdir().unwrap();
        let remote = tempfile::Builder::new()
            .prefix("mcpssh-bench-files-")
            .tempdir()
            .unwrap();
        std::os::unix::fs::chown(remote.path(), Some(uid_of(TEST_USER)), None).unwrap();
        let data: Vec<u8> = (0..size as u64)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(local.path().join("src.bin"), &data).unwrap();
        drop(data);
        let mut builder = super::server::Server::builder()
            .arg("--transfer-root")
            .arg(at(local.path()));
        if let Some(ns) = netns {
            builder = builder.netns(ns);
        }
        let (server, _) = spawn_from(builder, cache, "warn").await;
        // Opens the session with the key; later calls reuse it.
        let open = super::server::exec_args(&sshd, "true");
        call(&server, "execute_command", &open).await.unwrap();
        let master = Master::start_in(&sshd, netns);
        Self {
            server,
            sshd,
            master,
            netns: netns.map(str::to_string),
            local,
            remote,
            size,
        }
    }

    /// A call's arguments on the session, with `more`.
    pub(super) fn target(&self, more: Value) -> Value {
        let mut args =
            json!({"host": "127.0.0.1", "port": self.sshd.port(), "username": TEST_USER});
        for (k, v) in more.as_object().unwrap() {
            args[k] = v.clone();
        }
        args
    }

    /// `name` in the remote directory.
    pub(super) fn on_host(&self, name: &str) -> String {
        at(&self.remote.path().join(name))
    }

    /// `rounds` rounds of an upload, then a download, each by us, then
    /// `scp` and `sftp` on new connections and through the ControlMaster,
    /// so drift hits all alike.
    pub(super) async fn rounds(&self, rounds: usize) -> (Sides, Sides) {
        let (mut up, mut down) = (Sides::default(), Sides::default());
        let dir = self.local.path();
        let sshd = &self.sshd;
        let vias = [Via::Fresh(self.netns.as_deref()), Via::Master(&self.master)];
        let src = at(&dir.join("src.bin"));
        let spec = |name: &str| format!("{TEST_USER}@127.0.0.1:{}", self.on_host(name));
        for round in 0..rounds {
            let name = format!("up-{round}.bin");
            let args = self.target(json!({"local_path": src, "remote_path": self.on_host(&name)}));
            up.ours
                .push(timed_call(&self.server, "upload_file", &args).await);
            for (i, via) in vias.iter().enumerate() {
                up.theirs[2 * i].push(scp(sshd, *via, dir, &src, &spec("scp.bin")));
                let put = format!("put {src} {}\n", self.on_host("sftp.bin"));
                up.theirs[2 * i + 1].push(sftp(sshd, *via, dir, &put));
            }
            let got = dir.join(format!("down-{round}.bin"));
            let args =
                self.target(json!({"remote_path": self.on_host(&name), "local_path": at(&got)}));
            down.ours
                .push(timed_call(&self.server, "download_file", &args).await);
            assert_eq!(std::fs::metadata(&got).unwrap().len(), self.size as u64);
            let theirs = at(&dir.join("theirs.bin"));
            for (i, via) in vias.iter().enumerate() {
                down.theirs[2 * i].push(scp(sshd, *via, dir, &spec(&name), &theirs));
                let get = format!("get {} {theirs}\n", self.on_host(&name));
                down.theirs[2 * i + 1].push(sftp(sshd, *via, dir, &get));
            }
            for f in [got, dir.join("theirs.bin"), self.remote.path().join(&name)] {
                let _ = std::fs::remove_file(f);
            }
        }
        (up, down)
    }

    /// Two rows per direction (theirs on new connections, then through a
    /// ControlMaster); `label` names them, given the tool and our median.
    pub(super) fn rows(label: impl Fn(&str, Duration) -> String, (up, down): (Sides, Sides)) {
        for (what, sides) in [("upload_file", up), ("download_file", down)] {
            let o = stats(sides.ours);
            let [scp, sftp, scp_cm, sftp_cm] = sides.theirs.map(|t| stats(t).median);
            let both = [
                (scp, sftp, "each a new connection"),
                (scp_cm, sftp_cm, "through a ControlMaster"),
            ];
            for (i, (s, f, how)) in both.into_iter().enumerate() {
                let (name, median, p90) = if i == 0 {
                    (label(what, o.median), ms(o.median), ms(o.p90))
                } else {
                    ("(same)".to_string(), String::new(), String::new())
                };
                row([
                    &name,
                    &median,
                    &p90,
                    "",
                    &format!("scp {} / sftp {} ({how})", ms(s), ms(f)),
                    &format!("{} / {}", ratio(o.median, s), ratio(o.median, f)),
                ]);
            }
        }
    }
}

/// Measures and prints the file rows.
pub(super) async fn measure(quick: bool, cache: &Path) {
    let size: usize = if quick { 16 << 20 } else { 100 << 20 };
    let rounds = if quick { 3 } else { 5 };
    let warm_n = if quick { 30 } else { 200 };
    let t = Transfers::start(size, cache, None).await;
    let server = &t.server;
    let idle = memory(server, "VmRSS");
    let timed_rounds = t.rounds(rounds).await;
    let growth = memory(server, "VmHWM") - idle;

    // Warm small-file calls, interleaved with the command they compare to.
    let small = t.on_host("small.txt");
    let filler = "-".repeat(4096 - 10);
    std::fs::write(&small, format!("value = 0\n{filler}")).unwrap();
    std::os::unix::fs::chown(&small, Some(uid_of(TEST_USER)), None).unwrap();
    let true_args = t.target(json!({"command": "true"}));
    let read_args = t.target(json!({"path": small}));
    let (mut reads, mut edits, mut trues) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..warm_n {
        trues.push(timed_call(server, "execute_command", &true_args).await);
        reads.push(timed_call(server, "read_file", &read_args).await);
        let (old, new) = if i % 2 == 0 {
            ("value = 0", "value = 1")
        } else {
            ("value = 1", "value = 0")
        };
        let edit = t.target(json!({"path": small, "old_text": old, "new_text": new}));
        edits.push(timed_call(server, "edit_file", &edit).await);
    }
    t.server.client.cancel().await.unwrap();

    let mib = size >> 20;
    let label = |what: &str, median: Duration| {
        let rate = mib as f64 / median.as_secs_f64();
        format!("`{what}` {mib} MiB (SFTP), median of {rounds}: {rate:.0} MiB/s")
    };
    Transfers::rows(label, timed_rounds);
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
