//! Host-key verification against an OpenSSH `known_hosts` file.
//!
//! Parsing is ssh-key's; matching follows OpenSSH: `[host]:port` for
//! non-default ports, `*`/`?` wildcards, `!` negation, hashed `|1|` names,
//! and `@revoked` lines that refuse a key outright. A key is trusted when
//! any line for the host holds it; it has *changed* when the host is known
//! with a different key of the same algorithm.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, KnownHosts, Marker};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

use super::SshError;

/// What to do with a server key that known_hosts does not vouch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HostKeyPolicy {
    /// Unknown hosts are refused.
    Strict,
    /// Unknown hosts are recorded on first contact; changed keys are refused.
    #[default]
    AcceptNew,
    /// Every key is accepted and nothing is recorded. For throwaway hosts only.
    Off,
}

/// Appends from concurrent first connections must not interleave.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

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

/// Checks `key` for `host:port` under `policy`, recording it in `path` when
/// the policy is accept-new and the host is unknown.
pub(crate) fn verify(
    policy: HostKeyPolicy,
    path: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
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
    let file = path.display();
    match lookup(path, &name, key)? {
        Lookup::Trusted => Ok(()),
        Lookup::Revoked { line } => Err(SshError::HostKey(format!(
            "the host key of {name} is marked @revoked in {file} line {line}: {}",
            fingerprint(key)
        ))),
        Lookup::Changed { known, line } => Err(SshError::HostKey(format!(
            "the host key of {name} has CHANGED: the server offered {}, but {file} line {line} \
             has {}. Someone may be intercepting the connection. If the change is expected, \
             remove the old key with: ssh-keygen -f '{file}' -R '{name}'",
            fingerprint(key),
            fingerprint(&known),
        ))),
        Lookup::Unknown if policy == HostKeyPolicy::Strict => Err(SshError::HostKey(format!(
            "{name} is not in {file} and the host-key policy is strict; the server offered {}",
            fingerprint(key)
        ))),
        Lookup::Unknown => {
            learn(path, &name, key).map_err(|e| {
                SshError::HostKey(format!(
                    "could not record the host key of {name} in {file}: {e}"
                ))
            })?;
            tracing::info!(host = %name, "recorded new host key {} in {file}", fingerprint(key));
            Ok(())
        }
    }
}

enum Lookup {
    Trusted,
    Unknown,
    Changed { known: Box<PublicKey>, line: usize },
    Revoked { line: usize },
}

fn lookup(path: &Path, name: &str, key: &PublicKey) -> Result<Lookup, SshError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Unknown),
        Err(e) => {
            return Err(SshError::HostKey(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let mut trusted = false;
    let mut changed = None;
    for (index, line) in text.lines().enumerate() {
        // One line at a time, so a line this parser does not understand is
        // skipped instead of hiding every line after it.
        let Some(Ok(entry)) = KnownHosts::new(line).next() else {
            continue;
        };
        if !entry_matches(&entry, name) {
            continue;
        }
        let same_key = entry.public_key().key_data() == key.key_data();
        match entry.marker() {
            Some(Marker::Revoked) if same_key => return Ok(Lookup::Revoked { line: index + 1 }),
            Some(_) => {}
            None if same_key => trusted = true,
            None if entry.public_key().algorithm() == key.algorithm() && changed.is_none() => {
                changed = Some((Box::new(entry.public_key().clone()), index + 1));
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
        HostPatterns::Patterns(patterns) => {
            let mut matched = false;
            for p in patterns {
                match p.strip_prefix('!') {
                    Some(neg) if crate::pattern::glob_match(&neg.to_ascii_lowercase(), name) => {
                        return false;
                    }
                    Some(_) => {}
                    None => matched |= crate::pattern::glob_match(&p.to_ascii_lowercase(), name),
                }
            }
            matched
        }
    }
}

fn learn(path: &Path, name: &str, key: &PublicKey) -> std::io::Result<()> {
    let line = format!(
        "{name} {}\n",
        key.to_openssh().map_err(std::io::Error::other)?
    );
    let _guard = WRITE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = crate::fsutil::open_private_append(path)?;
    // A file whose last line lacks its newline would swallow ours.
    let needs_newline = std::fs::read(path)
        .map(|b| b.last().is_some_and(|&c| c != b'\n'))
        .unwrap_or(false);
    let mut out = Vec::with_capacity(line.len() + 1);
    if needs_newline {
        out.push(b'\n');
    }
    out.extend_from_slice(line.as_bytes());
    f.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Distinct ed25519 keys, one per call (made with ssh-keygen).
    fn key() -> PublicKey {
        const KEYS: [&str; 3] = [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGSHG7poKtaYZi/5YKo2Pw2jhaDAJc+FhgJNRHb8AQQn",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAt4mNnjb+pBuWel8ia5AHgww3yn1H4l5d0Ck1jpNml",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID+1ygfV6diOKvFhvwajgV2K0mccZfbF6R+uLp7p5a1k",
        ];
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let i = NEXT.fetch_add(1, Ordering::Relaxed) % KEYS.len();
        PublicKey::from_openssh(KEYS[i]).unwrap()
    }

    fn file_with(lines: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, lines).unwrap();
        (dir, path)
    }

    fn line(name: &str, k: &PublicKey) -> String {
        format!("{name} {}\n", k.to_openssh().unwrap())
    }

    #[test]
    fn accept_new_records_then_trusts() {
        let (_d, path) = file_with("");
        let k = key();
        verify(HostKeyPolicy::AcceptNew, &path, "127.0.0.1", 2222, &k).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("[127.0.0.1]:2222 ssh-ed25519 "), "{text}");
        verify(HostKeyPolicy::Strict, &path, "127.0.0.1", 2222, &k).unwrap();
    }

    #[test]
    fn changed_key_names_both_fingerprints() {
        let (old, new) = (key(), key());
        let (_d, path) = file_with(&line("[h]:2222", &old));
        let err = verify(HostKeyPolicy::AcceptNew, &path, "h", 2222, &new).unwrap_err();
        let SshError::HostKey(msg) = err else {
            panic!("{err:?}")
        };
        assert!(
            msg.contains(&old.fingerprint(HashAlg::Sha256).to_string()),
            "{msg}"
        );
        assert!(
            msg.contains(&new.fingerprint(HashAlg::Sha256).to_string()),
            "{msg}"
        );
        assert!(msg.contains("[h]:2222"), "{msg}");
    }

    #[test]
    fn strict_refuses_unknown_and_writes_nothing() {
        let (_d, path) = file_with("");
        assert!(verify(HostKeyPolicy::Strict, &path, "h", 22, &key()).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn hashed_entries_match() {
        let k = key();
        let salt = [7u8; 20];
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt)
            .unwrap()
            .chain_update(b"[127.0.0.1]:2200")
            .finalize()
            .into_bytes();
        use base64ct::Encoding;
        let hashed = format!(
            "|1|{}|{}",
            base64ct::Base64::encode_string(&salt),
            base64ct::Base64::encode_string(&mac)
        );
        let (_d, path) = file_with(&line(&hashed, &k));
        verify(HostKeyPolicy::Strict, &path, "127.0.0.1", 2200, &k).unwrap();
        assert!(verify(HostKeyPolicy::Strict, &path, "127.0.0.1", 2201, &k).is_err());
    }

    #[test]
    fn negation_and_revocation() {
        let k = key();
        let (_d, path) = file_with(&line("*.corp,!bad.corp", &k));
        verify(HostKeyPolicy::Strict, &path, "good.corp", 22, &k).unwrap();
        assert!(verify(HostKeyPolicy::Strict, &path, "bad.corp", 22, &k).is_err());

        let (_d2, path) = file_with(&(line("h", &k) + "@revoked " + &line("*", &k)));
        let err = verify(HostKeyPolicy::AcceptNew, &path, "h", 22, &k).unwrap_err();
        assert!(err.to_string().contains("@revoked"), "{err}");
    }

    #[test]
    fn unparsable_lines_do_not_hide_later_ones() {
        let k = key();
        let (_d, path) = file_with(&format!("garbage line here\n{}", line("h", &k)));
        verify(HostKeyPolicy::Strict, &path, "h", 22, &k).unwrap();
    }
}
