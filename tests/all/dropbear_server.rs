//! A real Dropbear server on 127.0.0.1: a free port and an ed25519 host key
//! in a temp dir, killed (with every connection it forked) on drop.
//!
//! Dropbear matters because it runs a command differently from OpenSSH: the
//! exec is not made a process-group leader, so a stop that signals the
//! group of the login shell misses. It reads `authorized_keys` only from
//! the user's own home, so logins use password auth ([`TEST_PASSWORD`](crate::sshd::TEST_PASSWORD)
//! against `/etc/shadow`, which works as root). It also refuses login
//! shells missing from `/etc/shells`, which `scripts/test` fills.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::sshd::{check_prerequisites, free_port};

const DROPBEAR: &str = "/usr/sbin/dropbear";
const DROPBEARKEY: &str = "/usr/bin/dropbearkey";

pub struct Dropbear {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Dropbear {
    pub fn start() -> Self {
        check_prerequisites();
        for bin in [DROPBEAR, DROPBEARKEY] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: run scripts/test, which installs dropbear-bin"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("mcpssh-dropbear-")
            .tempdir()
            .unwrap();
        let key = dir.path().join("host_ed25519");
        let out = Command::new(DROPBEARKEY)
            .args(["-t", "ed25519", "-f"])
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dropbearkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Self {
            dir,
            port: free_port(),
            child: None,
        };
        server.launch();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What Dropbear logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dropbear.log")).unwrap_or_default()
    }

    fn launch(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("dropbear.log"))
            .unwrap();
        // -F: foreground, -E: log to stderr, -r: this host key only.
        let mut child = Command::new(DROPBEAR)
            .arg("-F")
            .arg("-E")
            .arg("-r")
            .arg(self.dir.path().join("host_ed25519"))
            .arg("-p")
            .arg(format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start dropbear");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("dropbear exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "dropbear did not listen in 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }
}

impl Drop for Dropbear {
    fn drop(&mut self) {
        crate::sshd::kill_server(self.child.take());
    }
}
