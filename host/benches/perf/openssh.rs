//! The OpenSSH baselines: `ssh` with a ControlMaster (a warm call's peer),
//! a fresh `ssh` process (a first call's), and the version they are.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sshd::{Sshd, TEST_USER};

/// OpenSSH's `program` (`ssh`, `scp`, `sftp`) to `sshd` with the
/// fixture's key, no prompts and a throwaway known_hosts in `dir`;
/// `port_flag` is `-p` for ssh and `-P` for scp and sftp.
pub fn client(program: &str, sshd: &Sshd, dir: &Path, port_flag: &str) -> Command {
    let mut c = Command::new(program);
    c.args([
        "-q",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
    ])
    .arg("-o")
    .arg(format!("UserKnownHostsFile={}", dir.join("kh").display()))
    .arg("-i")
    .arg(sshd.client_key())
    .args([port_flag, &sshd.port().to_string()])
    .stdin(Stdio::null());
    c
}

fn ssh_cmd(sshd: &Sshd, dir: &Path, extra: &[String]) -> Command {
    let mut c = client("ssh", sshd, dir, "-p");
    c.args(extra)
        .arg(format!("{TEST_USER}@127.0.0.1"))
        .arg("true");
    c
}

/// `c`, run in network namespace `netns` when one is given.
pub fn in_netns(c: Command, netns: Option<&str>) -> Command {
    let Some(ns) = netns else { return c };
    let mut wrapped = Command::new("ip");
    wrapped
        .args(["netns", "exec", ns])
        .arg(c.get_program())
        .args(c.get_args())
        .stdin(Stdio::null());
    wrapped
}

/// How long `c` took; it must succeed.
pub fn timed(mut c: Command) -> Duration {
    let started = Instant::now();
    assert!(c.status().unwrap().success());
    started.elapsed()
}

/// An OpenSSH ControlMaster connection to `sshd`, closed on drop. Clients
/// given [`Master::opts`] (`ssh`, `scp`, `sftp`) reuse it, so what they are
/// timed on is the command or the transfer, as a warm session of ours is,
/// not a process start and a key exchange.
pub struct Master {
    dir: tempfile::TempDir,
    port: u16,
}

impl Master {
    pub fn start(sshd: &Sshd) -> Self {
        Self::start_in(sshd, None)
    }

    /// A master connecting from network namespace `netns`. Its clients
    /// may run anywhere: the control socket is a file.
    pub fn start_in(sshd: &Sshd, netns: Option<&str>) -> Self {
        let master = Master {
            dir: tempfile::tempdir().unwrap(),
            port: sshd.port(),
        };
        timed(in_netns(
            ssh_cmd(sshd, master.dir.path(), &master.opts()),
            netns,
        ));
        master
    }

    fn control_path(&self) -> String {
        format!("ControlPath={}", self.dir.path().join("cm").display())
    }

    /// The options that make a client use this connection.
    pub fn opts(&self) -> Vec<String> {
        let cp = self.control_path();
        [
            "-o",
            "ControlMaster=auto",
            "-o",
            &cp,
            "-o",
            "ControlPersist=120",
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = Command::new("ssh")
            .args(["-o", &self.control_path(), "-O", "exit", "-p"])
            .arg(self.port.to_string())
            .arg(format!("{TEST_USER}@127.0.0.1"))
            .stderr(Stdio::null())
            .status();
    }
}

pub fn control_master(sshd: &Sshd, n: usize) -> Vec<Duration> {
    let master = Master::start(sshd);
    (0..n)
        .map(|_| timed(ssh_cmd(sshd, master.dir.path(), &master.opts())))
        .collect()
}

pub fn fresh_ssh(sshd: &Sshd, n: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    (0..n)
        .map(|_| timed(ssh_cmd(sshd, dir.path(), &[])))
        .collect()
}

pub fn version() -> String {
    let out = Command::new("ssh").arg("-V").output().unwrap();
    String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}
