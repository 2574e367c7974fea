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

fn ssh_cmd(sshd: &Sshd, dir: &Path, extra: &[&str]) -> Command {
    let mut c = client("ssh", sshd, dir, "-p");
    c.args(extra)
        .arg(format!("{TEST_USER}@127.0.0.1"))
        .arg("true");
    c
}

/// How long `c` took; it must succeed.
pub fn timed(mut c: Command) -> Duration {
    let started = Instant::now();
    assert!(c.status().unwrap().success());
    started.elapsed()
}

pub fn control_master(sshd: &Sshd, n: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let cp = format!("ControlPath={}", dir.path().join("cm").display());
    let opts = [
        "-o",
        "ControlMaster=auto",
        "-o",
        &cp,
        "-o",
        "ControlPersist=60",
    ];
    timed(ssh_cmd(sshd, dir.path(), &opts));
    let times = (0..n)
        .map(|_| timed(ssh_cmd(sshd, dir.path(), &opts)))
        .collect();
    let _ = Command::new("ssh")
        .args(["-o", &cp, "-O", "exit", "-p", &sshd.port().to_string()])
        .arg(format!("{TEST_USER}@127.0.0.1"))
        .stderr(Stdio::null())
        .status();
    times
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
