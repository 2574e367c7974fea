//! A real OpenSSH `sshd` on 127.0.0.1: a free port, a host key and config
//! in a temp dir, killed (with every connection it forked) on drop. Also a
//! real `ssh-agent` ([`SshAgent`]).
//!
//! Logins use the test account made by `scripts/test` ([`TEST_USER`], with
//! `/bin/sh` and [`TEST_PASSWORD`]), so password auth checks a real
//! `/etc/shadow` entry; [`SHELL_USERS`] has one more account per login
//! shell. The fixture needs root, as sshd does. A real Dropbear, which runs
//! commands differently, is in `dropbear_server.rs`.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const TEST_USER: &str = "mcpssh-test";
/// Written once, in `tests/test-password`, which `scripts/test` sets on the
/// accounts.
pub const TEST_PASSWORD: &str = include_str!("../test-password").trim_ascii();
pub const KEY_PASSPHRASE: &str = "correct horse battery staple";

/// One account per login shell, made by `scripts/test` with
/// [`TEST_PASSWORD`]: `(user, login shell)`.
pub const SHELL_USERS: &[(&str, &str)] = &[
    ("mcpssh-sh", "/bin/sh"),
    ("mcpssh-dash", "/bin/dash"),
    ("mcpssh-bash", "/bin/bash"),
    ("mcpssh-zsh", "/bin/zsh"),
    ("mcpssh-ksh", "/bin/ksh93"),
    ("mcpssh-mksh", "/bin/mksh"),
    ("mcpssh-csh", "/bin/csh"),
    ("mcpssh-tcsh", "/bin/tcsh"),
    ("mcpssh-fish", "/usr/bin/fish"),
    ("mcpssh-ash", "/usr/local/bin/ash"),
    BASHRC_USER,
];

/// A bash account whose `~/.bashrc` prints [`BASHRC_BANNER`] (and
/// [`BASHRC_WARNING`] on stderr) before every
/// command, as a chatty rc file does, and sleeps 5 s while the file an
/// sshd names with `SetEnv MCPSSH_SLOW_RC=PATH` exists.
pub const BASHRC_USER: (&str, &str) = ("mcpssh-bashrc", "/bin/bash");
pub const BASHRC_BANNER: &str = "mcpssh-bashrc banner";
/// What the same `~/.bashrc` prints on stderr.
pub const BASHRC_WARNING: &str = "mcpssh-bashrc warning";

const SSHD: &str = "/usr/sbin/sshd";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

pub struct Sshd {
    dir: TempDir,
    /// Every port it listens on; connections to each are separate sessions.
    ports: Vec<u16>,
    child: Option<Child>,
    options: Options,
    /// Starts so far: each logs its own "Server listening" lines.
    launches: usize,
    /// Its host key files in `dir`, first the one [`Sshd::host_key_fingerprint`] names.
    host_keys: Vec<String>,
}

/// How to start an sshd beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Config lines placed before the defaults (sshd takes the first value).
    pub extra: String,
    /// Ports to listen on (1 if 0; at most 16, sshd's limit).
    pub ports: usize,
    /// Run inside this network namespace, listening on this address.
    pub netns: Option<(String, String)>,
    /// Present a host certificate for these principals, signed by
    /// [`Sshd::host_ca`].
    pub host_cert_principals: Option<String>,
    /// Trust user certificates signed by [`Sshd::user_ca`], and make
    /// [`Sshd::cert_key`] (a key not in authorized_keys) with its certificate.
    pub user_ca: bool,
    /// Offer the SFTP subsystem (`Subsystem sftp`); without it, as by
    /// default, file tools fall back to exec channels.
    pub sftp: bool,
}

impl Sshd {
    pub fn start() -> Self {
        Self::start_opts(Options::default())
    }

    /// Starts sshd with `extra` in its config, ahead of the defaults.
    pub fn start_with(extra: &str) -> Self {
        Self::start_opts(Options {
            extra: extra.into(),
            ..Options::default()
        })
    }

    /// Starts sshd listening on `ports` ports (at most 16, sshd's limit).
    pub fn start_ports(ports: usize) -> Self {
        Self::start_opts(Options {
            ports,
            ..Options::default()
        })
    }

    pub fn start_opts(options: Options) -> Self {
        check_prerequisites();
        let ports = options.ports;
        let dir = tempfile::Builder::new()
            .prefix("mcpssh-sshd-")
            .tempdir()
            .unwrap();
        // The test user's sshd child reads authorized_keys from here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        keygen(&dir.path().join("host_ed25519"), "");
        keygen(&dir.path().join("client_ed25519"), "");
        keygen(&dir.path().join("client_encrypted"), KEY_PASSPHRASE);
        let authorized: String = ["client_ed25519.pub", "client_encrypted.pub"]
            .iter()
            .map(|f| fs::read_to_string(dir.path().join(f)).unwrap())
            .collect();
        let auth_path = dir.path().join("authorized_keys");
        fs::write(&auth_path, authorized).unwrap();
        fs::set_permissions(&auth_path, fs::Permissions::from_mode(0o644)).unwrap();

        let d = dir.path();
        let mut extra = String::new();
        if let Some(principals) = &options.host_cert_principals {
            keygen(&d.join("host_ca"), "");
            sign(
                &d.join("host_ca"),
                &d.join("host_ed25519.pub"),
                "-h",
                principals,
            );
            extra.push_str(&format!(
                "HostCertificate {}\n",
                d.join("host_ed25519-cert.pub").display()
            ));
        }
        if options.user_ca {
            keygen(&d.join("user_ca"), "");
            keygen(&d.join("cert_key"), "");
            sign(&d.join("user_ca"), &d.join("cert_key.pub"), "-I", TEST_USER);
            extra.push_str(&format!(
                "TrustedUserCAKeys {}\n",
                d.join("user_ca.pub").display()
            ));
        }
        if options.sftp {
            extra.push_str(&format!("Subsystem sftp {SFTP_SERVER}\n"));
        }
        let mut options = options;
        options.extra = extra + &options.extra;
        let mut sshd = Self {
            dir,
            ports: (0..ports.clamp(1, 16)).map(|_| free_port()).collect(),
            child: None,
            options,
            launches: 0,
            host_keys: vec!["host_ed25519".into()],
        };
        sshd.launch();
        sshd
    }

    /// The address it listens on.
    pub fn addr(&self) -> &str {
        self.options
            .netns
            .as_ref()
            .map_or("127.0.0.1", |(_, addr)| addr.as_str())
    }

    /// The public key line of the CA that signed its host certificate.
    pub fn host_ca(&self) -> String {
        fs::read_to_string(self.dir.path().join("host_ca.pub"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A key accepted only through its certificate ([`Options::user_ca`]);
    /// the certificate is `cert_key-cert.pub` beside it.
    pub fn cert_key(&self) -> PathBuf {
        self.dir.path().join("cert_key")
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An unencrypted ed25519 key the server accepts for [`TEST_USER`].
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// An ed25519 key encrypted with [`KEY_PASSPHRASE`], also accepted.
    pub fn encrypted_key(&self) -> PathBuf {
        self.dir.path().join("client_encrypted")
    }

    /// The SHA256 fingerprint of the current host key, as `ssh-keygen -l`.
    pub fn host_key_fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.host_key_public())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().nth(1).unwrap().to_string()
    }

    /// Kills sshd and every connection it serves; starts it again on the
    /// same port with the same keys.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Restarts with a freshly generated host key.
    pub fn change_host_key(&mut self) {
        self.kill();
        let key = self.dir.path().join("host_ed25519");
        let _ = fs::remove_file(&key);
        let _ = fs::remove_file(key.with_extension("pub"));
        keygen(&key, "");
        self.launch();
    }

    /// The `.pub` file of its first host key.
    pub fn host_key_public(&self) -> PathBuf {
        self.dir.path().join(format!("{}.pub", self.host_keys[0]))
    }

    /// Restarts presenting only a new host key of type `kind` (`rsa`,
    /// `ecdsa`, `ed25519`): the same host, now showing another algorithm.
    pub fn change_host_key_type(&mut self, kind: &str) {
        self.kill();
        let name = format!("host_{kind}_{}", self.launches);
        keygen_type(&self.dir.path().join(&name), "", kind);
        self.host_keys = vec![name];
        self.launch();
    }

    /// Restarts presenting a new host key of type `kind` besides the ones
    /// it has.
    pub fn add_host_key_type(&mut self, kind: &str) {
        self.kill();
        let name = format!("host_{kind}_{}", self.launches);
        keygen_type(&self.dir.path().join(&name), "", kind);
        self.host_keys.push(name);
        self.launch();
    }

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) every connection sshd
    /// serves: a server that stops answering without closing anything.
    pub fn freeze_connections(&self, frozen: bool) {
        let Some(child) = &self.child else { return };
        let pids = descendants(child.id());
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let _ = Command::new("kill")
            .arg(signal)
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    fn launch(&mut self) {
        self.launches += 1;
        let d = self.dir.path();
        let ports: String = self.ports.iter().map(|p| format!("Port {p}\n")).collect();
        let host_keys: String = self
            .host_keys
            .iter()
            .map(|k| format!("HostKey {}/{k}\n", d.display()))
            .collect();
        let config = format!(
            "{extra}\n\
             {ports}\
             ListenAddress {addr}\n\
             {host_keys}\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             UsePAM no\n\
             StrictModes no\n\
             PasswordAuthentication yes\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin no\n\
             AllowUsers {TEST_USER} {shell_users}\n\
             MaxStartups 200\n\
             LogLevel VERBOSE\n\
             {penalties}",
            addr = self.addr(),
            d = d.display(),
            shell_users = SHELL_USERS
                .iter()
                .map(|(user, _)| *user)
                .collect::<Vec<_>>()
                .join(" "),
            penalties = if sshd_has_penalties() {
                "PerSourcePenalties no\n"
            } else {
                ""
            },
            extra = self.options.extra,
        );
        let config_path = d.join("sshd_config");
        fs::write(&config_path, config).unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("sshd.log"))
            .unwrap();
        let mut command = match &self.options.netns {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SSHD]);
                c
            }
            None => Command::new(SSHD),
        };
        let mut child = command
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("sshd exited at start ({status}):\n{}", self.log());
            }
            // Inside a namespace it cannot be reached from here: its own
            // word that it listens is the sign.
            let listening = match &self.options.netns {
                Some(_) => {
                    self.log().matches("Server listening on").count()
                        >= self.ports.len() * self.launches
                }
                None => self
                    .ports
                    .iter()
                    .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok()),
            };
            if listening {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen in 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    fn kill(&mut self) {
        kill_server(self.child.take());
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn check_prerequisites() {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: run scripts/test, which installs openssh-server"
    );
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let shell_of = |user: &str| {
        passwd.lines().find_map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            (fields.first() == Some(&user)).then(|| fields.last().map(|s| s.to_string()))?
        })
    };
    assert!(
        shell_of(TEST_USER).is_some(),
        "the test account {TEST_USER} is missing: run scripts/test, which creates it"
    );
    for (user, shell) in SHELL_USERS {
        assert_eq!(
            shell_of(user).as_deref(),
            Some(*shell),
            "the test account {user} with login shell {shell} is missing: run scripts/test, \
             which installs the shells and creates the accounts"
        );
    }
    // sshd's privilege separation directory; /run is a tmpfs.
    fs::create_dir_all("/run/sshd").unwrap();
}

fn keygen(path: &Path, passphrase: &str) {
    keygen_type(path, passphrase, "ed25519");
}

fn keygen_type(path: &Path, passphrase: &str, kind: &str) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            kind,
            "-N",
            passphrase,
            "-C",
            "mcpssh-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

/// A real `ssh-agent` on a socket of its own, holding one key added with
/// `ssh-add`; killed on drop.
pub struct SshAgent {
    child: Child,
    socket: PathBuf,
    _dir: TempDir,
}

impl SshAgent {
    pub fn start_with(key: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let added = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &socket)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            added.status.success(),
            "ssh-add failed: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    /// For `SSH_AUTH_SOCK` or `IdentityAgent`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs `public` with the CA `ca`: a host certificate (`-h`) for
/// `principals`, or a user certificate (`-I`) for `principals`.
fn sign(ca: &Path, public: &Path, kind: &str, principals: &str) {
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-q").arg("-s").arg(ca);
    if kind == "-h" {
        cmd.args(["-h", "-I", "mcpssh-test-host"]);
    } else {
        cmd.args(["-I", "mcpssh-test-user"]);
    }
    let status = cmd
        .args(["-n", principals, "-V", "-5m:+1d"])
        .arg(public)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "ssh-keygen -s failed for {}",
        public.display()
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `PerSourcePenalties` (OpenSSH 9.8+) would refuse a client that failed
/// authentication on purpose; older versions reject the keyword.
fn sshd_has_penalties() -> bool {
    let out = Command::new("ssh").arg("-V").output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let version = text
        .strip_prefix("OpenSSH_")
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit() && c != '.').next())
        .unwrap_or("0");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (9, 8)
}

/// Every process below `pid`, from /proc.
pub(crate) fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let mut stat = String::new();
        if fs::File::open(entry.path().join("stat"))
            .and_then(|mut f| f.read_to_string(&mut stat))
            .is_err()
        {
            continue;
        }
        // The command name is in parentheses and may hold spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok())
        {
            parent_of.push((p, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Kills a server and every connection handler it forked: handlers outlive
/// a killed listener, so they go first.
pub fn kill_server(child: Option<Child>) {
    let Some(mut child) = child else { return };
    let pids = descendants(child.id());
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}
