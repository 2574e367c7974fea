//! Host-key verification against an OpenSSH `known_hosts` file.
//!
//! Parsing is ssh-key's; matching follows OpenSSH: `[host]:port` for
//! non-default ports, `*`/`?` wildcards, `!` negation, hashed `|1|` names,
//! `@revoked` lines that refuse a key outright, and `@cert-authority` lines
//! that vouch for host certificates. Several files are read (the user's,
//! then the global ones); a key is trusted when any line of any file holds
//! it, and has *changed* when the host is known and none of its keys is the
//! one offered, whatever their algorithms (OpenSSH's rule: a host known by
//! an ed25519 key that now shows only an RSA key is an impostor until shown
//! otherwise). Host-key algorithms are offered known types first, as
//! OpenSSH does, so a host with several keys shows the one we know. New
//! keys are appended in OpenSSH's own format, hashed when `HashKnownHosts`
//! says so, so `ssh` accepts them afterwards; appends are serialized (a
//! lock in this process, `flock` across processes) and re-checked under
//! the lock, so concurrent first contacts learn at most one key.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, KnownHosts, Marker};
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey, PublicKeyOrCertificate};
use sha1::Sha1;

use super::SshError;

/// What to do with a server key that known_hosts does not vouch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Unknown hosts are refused.
    Strict,
    /// Unknown hosts are recorded on first contact; changed keys are refused.
    #[default]
    AcceptNew,
    /// Every key is accepted and nothing is recorded. For throwaway hosts only.
    Off,
}

/// Learning is check-then-append: concurrent first contacts in this process
/// take turns here (`flock` alone would do, but costs a syscall pair and
/// cannot be held across a poisoned thread).
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// Cap for one known_hosts file; real ones are a few hundred KiB at most.
const KNOWN_HOSTS_CAP: u64 = 64 * 1024 * 1024;

/// The known_hosts files of one destination, from `UserKnownHostsFile` and
/// `GlobalKnownHostsFile` (or the operator's `--known-hosts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHostsFiles {
    /// Checked first; new keys are recorded in the first one.
    pub user: Vec<PathBuf>,
    /// Checked after the user files, never written.
    pub global: Vec<PathBuf>,
    /// Record new hosts hashed (`HashKnownHosts yes`).
    pub hash: bool,
}

impl KnownHostsFiles {
    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        self.user.iter().chain(&self.global)
    }
}

/// The name a key is recorded under: OpenSSH's `host` or `[host]:port`.
fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

pub(crate) fn fingerprint(key: &PublicKey) -> String {
    format!("{} ({})", key.fingerprint(HashAlg::Sha256), key.algorithm())
}

/// Whether an `@cert-authority` line covers `host:port`: only then is the
/// server asked for a host certificate, as OpenSSH does.
pub(crate) fn has_cert_authority(files: &KnownHostsFiles, host: &str, port: u16) -> bool {
    let name = host_port(host, port);
    files.all().any(|path| {
        entries(path).is_ok_and(|list| {
            list.iter().any(|(_, e)| {
                matches!(e.marker(), Some(Marker::CertAuthority)) && entry_matches(e, &name)
            })
        })
    })
}

/// `defaults` reordered as OpenSSH orders its `HostKeyAlgorithms`: the
/// algorithms of keys already known for `host:port` first, so a host with
/// a known ed25519 key and a new RSA one negotiates ed25519 (and is then
/// trusted), instead of showing the RSA key and being refused as changed.
pub(crate) fn preferred_algorithms(
    files: &KnownHostsFiles,
    host: &str,
    port: u16,
    defaults: &[Algorithm],
) -> Vec<Algorithm> {
    let name = host_port(host, port);
    let mut known: Vec<Algorithm> = Vec::new();
    for path in files.all() {
        let Ok(list) = entries(path) else { continue };
        for (_, entry) in list {
            if entry.marker().is_none() && entry_matches(&entry, &name) {
                known.push(entry.public_key().algorithm());
            }
        }
    }
    // Every RSA signature algorithm serves an RSA key.
    let is_known = |a: &Algorithm| {
        known
            .iter()
            .any(|k| k == a || (k.clone().is_rsa() && a.clone().is_rsa()))
    };
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) =
        defaults.iter().cloned().partition(|a| is_known(a));
    first.extend(rest);
    first
}

/// Checks the server's key or host certificate for `host:port` under
/// `policy`, recording a new plain key when the policy is accept-new.
pub(crate) fn verify(
    policy: HostKeyPolicy,
    files: &KnownHostsFiles,
    host: &str,
    port: u16,
    offered: &PublicKeyOrCertificate,
) -> Result<(), SshError> {
    verify_as(policy, files, host, port, offered, true)
}

/// [`verify`] without writing: a new key that accept-new would record is
/// accepted and left out of the file (`doctor` says it would be recorded).
pub(crate) fn verify_without_recording(
    policy: HostKeyPolicy,
    files: &KnownHostsFiles,
    host: &str,
    port: u16,
    offered: &PublicKeyOrCertificate,
) -> Result<(), SshError> {
    verify_as(policy, files, host, port, offered, false)
}

/// The known_hosts line that vouches for `offered` on `host:port`: a plain
/// line holding the key, or the `@cert-authority` line of a certificate's
/// signer. `None` when no line does (a new host).
pub(crate) fn vouching_line(
    files: &KnownHostsFiles,
    host: &str,
    port: u16,
    offered: &PublicKeyOrCertificate,
) -> Option<(PathBuf, usize)> {
    let name = host_port(host, port);
    let (data, marker) = match offered {
        PublicKeyOrCertificate::PublicKey { key, .. } => (key.key_data().clone(), None),
        PublicKeyOrCertificate::Certificate(cert) => {
            (cert.signature_key().clone(), Some(Marker::CertAuthority))
        }
    };
    files.all().find_map(|path| {
        entries(path).ok()?.into_iter().find_map(|(line, e)| {
            (e.marker() == marker.as_ref()
                && e.public_key().key_data() == &data
                && entry_matches(&e, &name))
            .then(|| (path.clone(), line))
        })
    })
}

/// How many entries `path` holds (lines this parser does not understand
/// are not counted); a missing file holds none.
pub(crate) fn count_entries(path: &Path) -> Result<usize, SshError> {
    entries(path).map(|e| e.len())
}

fn verify_as(
    policy: HostKeyPolicy,
    files: &KnownHostsFiles,
    host: &str,
    port: u16,
    offered: &PublicKeyOrCertificate,
    record: bool,
) -> Result<(), SshError> {
    let key = match offered {
        PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
        PublicKeyOrCertificate::Certificate(cert) => {
            if let Some(verdict) = verify_certificate(policy, files, host, port, cert) {
                return verdict;
            }
            // No authority vouches for it: OpenSSH then checks the
            // certificate's plain key, and so do we.
            PublicKey::from(cert.public_key().clone())
        }
    };
    verify_key(policy, files, host, port, &key, record)
}

fn verify_key(
    policy: HostKeyPolicy,
    files: &KnownHostsFiles,
    host: &str,
    port: u16,
    key: &PublicKey,
    record: bool,
) -> Result<(), SshError> {
    if policy == HostKeyPolicy::Off {
        tracing::warn!(
            host,
            port,
            "host key checking is off: accepting {}",
            fingerprint(key)
        );
        return Ok(());
    }
    let name = host_port(host, port);
    let mut changed = None;
    let mut trusted = false;
    for path in files.all() {
        let file = path.display();
        match lookup(path, &name, key)? {
            Lookup::Trusted => trusted = true,
            Lookup::Revoked { line } => {
                return Err(SshError::HostKey(format!(
                    "the host key of {name} is marked @revoked in {file} line {line}: {}",
                    fingerprint(key)
                )));
            }
            Lookup::Changed { known, line } if changed.is_none() => {
                changed = Some((path, known, line));
            }
            Lookup::Changed { .. } | Lookup::Unknown => {}
        }
    }
    if trusted {
        return Ok(());
    }
    if let Some((path, known, line)) = changed {
        return Err(changed_key(path, &name, key, &known, line));
    }
    let shown = files
        .all()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let Some(target) = files
        .user
        .first()
        .filter(|_| policy == HostKeyPolicy::AcceptNew)
    else {
        let why = if policy == HostKeyPolicy::AcceptNew {
            "there is no UserKnownHostsFile to record it in"
        } else {
            "host keys are checked strictly"
        };
        return Err(SshError::HostKey(format!(
            "{name} is not in the known_hosts files ({shown}) and {why}; the server offered {}",
            fingerprint(key)
        )));
    };
    if !record {
        return Ok(());
    }
    let learned = learn(target, &name, key, files.hash).map_err(|e| {
        SshError::HostKey(format!(
            "could not record the host key of {name} in {}: {e}",
            target.display()
        ))
    })?;
    match learned {
        Lookup::Unknown => {
            tracing::info!(host = %name, "recorded new host key {} in {}", fingerprint(key), target.display());
            Ok(())
        }
        Lookup::Trusted => Ok(()),
        Lookup::Changed { known, line } => Err(changed_key(target, &name, key, &known, line)),
        Lookup::Revoked { line } => Err(SshError::HostKey(format!(
            "the host key of {name} is marked @revoked in {} line {line}: {}",
            target.display(),
            fingerprint(key)
        ))),
    }
}

/// OpenSSH's changed-key refusal: both fingerprints, and how to remove the
/// old key if the change is expected.
fn changed_key(
    path: &Path,
    name: &str,
    key: &PublicKey,
    known: &PublicKey,
    line: usize,
) -> SshError {
    let file = path.display();
    SshError::HostKey(format!(
        "the host key of {name} has CHANGED: the server offered {}, but {file} line {line} \
         has {}. Someone may be intercepting the connection. If the change is expected, \
         remove the old key with: ssh-keygen -f '{file}' -R '{name}'",
        fingerprint(key),
        fingerprint(known),
    ))
}

/// `Some` when an `@cert-authority` line for the host names the
/// certificate's signer: the certificate then decides, whatever its plain
/// key would. `None` when no authority is known for it.
fn verify_certificate(
    policy: HostKeyPolicy,
    files: &KnownHostsFiles,
    host: &str,
    port: u16,
    cert: &Certificate,
) -> Option<Result<(), SshError>> {
    let name = host_port(host, port);
    let signer = cert.signature_key();
    let mut authority = None;
    for path in files.all() {
        let Ok(list) = entries(path) else { continue };
        for (line, entry) in list {
            let same = entry.public_key().key_data() == signer;
            match entry.marker() {
                Some(Marker::Revoked) if same && entry_matches(&entry, &name) => {
                    return Some(Err(SshError::HostKey(format!(
                        "the certificate authority that signed the host certificate of {name} \
                         is marked @revoked in {} line {line}",
                        path.display()
                    ))));
                }
                Some(Marker::CertAuthority) if same && entry_matches(&entry, &name) => {
                    authority.get_or_insert((path.clone(), line, entry.public_key().clone()));
                }
                _ => {}
            }
        }
    }
    let (path, line, ca) = authority?;
    if policy == HostKeyPolicy::Off {
        return Some(Ok(()));
    }
    let refuse = |why: String| {
        Some(Err(SshError::HostKey(format!(
            "the host certificate of {name} (signed by the authority in {} line {line}) is not \
             valid: {why}",
            path.display()
        ))))
    };
    if cert.cert_type() != CertType::Host {
        return refuse("it is a user certificate, not a host certificate".into());
    }
    let principal = host.to_ascii_lowercase();
    if !cert.valid_principals().is_empty()
        && !cert
            .valid_principals()
            .iter()
            .any(|p| p.to_ascii_lowercase() == principal)
    {
        return refuse(format!(
            "its principals {:?} do not include {principal}",
            cert.valid_principals()
        ));
    }
    if !cert.critical_options().is_empty() {
        return refuse("it has critical options, which host certificates must not".into());
    }
    if let Err(e) = cert.validate([&ca.fingerprint(HashAlg::Sha256)]) {
        return refuse(format!("{e} (expired, not yet valid, or a bad signature)"));
    }
    // The plain key may still be revoked on its own.
    let plain = PublicKey::from(cert.public_key().clone());
    for path in files.all() {
        if let Ok(Lookup::Revoked { line }) = lookup(path, &name, &plain) {
            return Some(Err(SshError::HostKey(format!(
                "the host key of {name} is marked @revoked in {} line {line}: {}",
                path.display(),
                fingerprint(&plain)
            ))));
        }
    }
    tracing::debug!(host = %name, "host certificate signed by {}", fingerprint(&ca));
    Some(Ok(()))
}

enum Lookup {
    Trusted,
    Unknown,
    Changed { known: Box<PublicKey>, line: usize },
    Revoked { line: usize },
}

/// Every entry of a file with its line number. One line at a time, so a
/// line this parser does not understand is skipped instead of hiding every
/// line after it. A missing file has no entries.
fn entries(path: &Path) -> Result<Vec<(usize, Entry)>, SshError> {
    let text = match crate::fsutil::read_regular(path, KNOWN_HOSTS_CAP) {
        // A line that is not UTF-8 cannot be a valid entry: it is skipped.
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(SshError::HostKey(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| match KnownHosts::new(line).next() {
            Some(Ok(entry)) => Some((i + 1, entry)),
            _ => None,
        })
        .collect())
}

fn lookup(path: &Path, name: &str, key: &PublicKey) -> Result<Lookup, SshError> {
    let mut trusted = false;
    let mut changed = None;
    for (line, entry) in entries(path)? {
        if !entry_matches(&entry, name) {
            continue;
        }
        let same_key = entry.public_key().key_data() == key.key_data();
        match entry.marker() {
            Some(Marker::Revoked) if same_key => return Ok(Lookup::Revoked { line }),
            Some(_) => {}
            None if same_key => trusted = true,
            // Any algorithm: a host known by one key type that shows another
            // has changed, as OpenSSH judges it.
            None if changed.is_none() => {
                changed = Some((Box::new(entry.public_key().clone()), line));
            }
            None => {}
        }
    }
    Ok(match (trusted, changed) {
        (true, _) => Lookup::Trusted,
        (false, Some((known, line))) => Lookup::Changed { known, line },
        (false, None) => Lookup::Unknown,
    })
}

fn entry_matches(entry: &Entry, name: &str) -> bool {
    match entry.host_patterns() {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(salt) else {
                return false;
            };
            mac.chain_update(name.as_bytes()).verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(patterns) => crate::pattern::list_match(patterns, name),
    }
}

/// OpenSSH's hashed host name: `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`
/// with a fresh 20-byte salt.
fn hashed_name(name: &str) -> std::io::Result<String> {
    use base64ct::Encoding;
    let mut salt = [0u8; 20];
    getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt)
        .map_err(std::io::Error::other)?
        .chain_update(name.as_bytes())
        .finalize()
        .into_bytes();
    Ok(format!(
        "|1|{}|{}",
        base64ct::Base64::encode_string(&salt),
        base64ct::Base64::encode_string(&mac)
    ))
}

/// Appends the key for `name` to `path` unless, re-checked under the lock,
/// the file already decides it: returns what the re-check found
/// ([`Lookup::Unknown`] when the key was appended).
fn learn(path: &Path, name: &str, key: &PublicKey, hash: bool) -> std::io::Result<Lookup> {
    let shown = if hash {
        hashed_name(name)?
    } else {
        name.to_string()
    };
    let line = format!(
        "{shown} {}\n",
        key.to_openssh().map_err(std::io::Error::other)?
    );
    let _guard = WRITE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        // As ssh does for ~/.ssh: private to the user.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = crate::fsutil::open_private_append(path)?;
    // Another server (or `ssh`) may be learning this host right now.
    f.lock()?;
    let found = lookup(path, name, key).map_err(|e| std::io::Error::other(e.to_string()))?;
    if !matches!(found, Lookup::Unknown) {
        return Ok(found);
    }
    // A file whose last line lacks its newline would swallow ours.
    let needs_newline = f.metadata()?.len() > 0 && {
        use std::io::{Read, Seek, SeekFrom};
        let mut reader = std::fs::File::open(path)?;
        reader.seek(SeekFrom::End(-1))?;
        let mut last = [0u8; 1];
        reader.read_exact(&mut last)?;
        last[0] != b'\n'
    };
    let mut out = Vec::with_capacity(line.len() + 1);
    if needs_newline {
        out.push(b'\n');
    }
    out.extend_from_slice(line.as_bytes());
    f.write_all(&out)?;
    Ok(Lookup::Unknown)
}

#[cfg(test)]
mod tests;
