use super::*;
use std::path::PathBuf;

/// A fresh ed25519 public key, distinct from every other (32 random
/// bytes): each test makes its own, so tests running in parallel can
/// never be handed one key twice.
fn key() -> PublicKey {
    use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData};
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    PublicKey::from(KeyData::Ed25519(Ed25519PublicKey(bytes)))
}

fn file_with(lines: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, lines).unwrap();
    (dir, path)
}

fn files(path: &Path) -> KnownHostsFiles {
    KnownHostsFiles {
        user: vec![path.to_path_buf()],
        global: Vec::new(),
        hash: false,
    }
}

fn check(
    policy: HostKeyPolicy,
    path: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<(), SshError> {
    verify(policy, &files(path), host, port, &key.clone().into())
}

fn line(name: &str, k: &PublicKey) -> String {
    format!("{name} {}\n", k.to_openssh().unwrap())
}

#[test]
fn accept_new_records_then_trusts() {
    let (_d, path) = file_with("");
    let k = key();
    check(HostKeyPolicy::AcceptNew, &path, "127.0.0.1", 2222, &k).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("[127.0.0.1]:2222 ssh-ed25519 "), "{text}");
    check(HostKeyPolicy::Strict, &path, "127.0.0.1", 2222, &k).unwrap();
}

#[test]
fn changed_key_names_both_fingerprints() {
    let (old, new) = (key(), key());
    let (_d, path) = file_with(&line("[h]:2222", &old));
    let err = check(HostKeyPolicy::AcceptNew, &path, "h", 2222, &new).unwrap_err();
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
    assert!(check(HostKeyPolicy::Strict, &path, "h", 22, &key()).is_err());
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
    check(HostKeyPolicy::Strict, &path, "127.0.0.1", 2200, &k).unwrap();
    assert!(check(HostKeyPolicy::Strict, &path, "127.0.0.1", 2201, &k).is_err());
}

#[test]
fn negation_and_revocation() {
    let k = key();
    let (_d, path) = file_with(&line("*.corp,!bad.corp", &k));
    check(HostKeyPolicy::Strict, &path, "good.corp", 22, &k).unwrap();
    assert!(check(HostKeyPolicy::Strict, &path, "bad.corp", 22, &k).is_err());

    let (_d2, path) = file_with(&(line("h", &k) + "@revoked " + &line("*", &k)));
    let err = check(HostKeyPolicy::AcceptNew, &path, "h", 22, &k).unwrap_err();
    assert!(err.to_string().contains("@revoked"), "{err}");
}

#[test]
fn hashed_learning_round_trips_and_hides_the_name() {
    let (_d, path) = file_with("");
    let k = key();
    let hashed = KnownHostsFiles {
        hash: true,
        ..files(&path)
    };
    verify(
        HostKeyPolicy::AcceptNew,
        &hashed,
        "10.1.2.3",
        2200,
        &k.clone().into(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains("10.1.2.3"),
        "{text}"
    );
    check(HostKeyPolicy::Strict, &path, "10.1.2.3", 2200, &k).unwrap();
    assert!(check(HostKeyPolicy::Strict, &path, "10.1.2.3", 22, &k).is_err());
}

#[test]
fn every_file_is_read_and_only_the_first_user_file_written() {
    let k = key();
    let (_d, global) = file_with(&line("[g]:2200", &k));
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&second, line("[u]:2200", &k)).unwrap();
    let all = KnownHostsFiles {
        user: vec![first.clone(), second.clone()],
        global: vec![global],
        hash: false,
    };
    for host in ["g", "u"] {
        verify(HostKeyPolicy::Strict, &all, host, 2200, &k.clone().into()).unwrap();
    }
    verify(
        HostKeyPolicy::AcceptNew,
        &all,
        "new",
        2200,
        &k.clone().into(),
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(&first)
            .unwrap()
            .starts_with("[new]:2200 ")
    );
}

#[test]
fn unparsable_lines_do_not_hide_later_ones() {
    let k = key();
    let (_d, path) = file_with(&format!("garbage line here\n{}", line("h", &k)));
    check(HostKeyPolicy::Strict, &path, "h", 22, &k).unwrap();
}

/// An ECDSA key: of another algorithm than [`key`]'s.
fn ecdsa_key() -> PublicKey {
    PublicKey::from_openssh(
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN2FVpmSt\
         zoaTNZlVx2qtaoBTWvegLYG2LgXuN8aVxeXshDf2u7luip4y5rSKnl6ziEhcFfBf73bvmUKvJw3jUM=",
    )
    .unwrap()
}

#[test]
fn a_key_of_another_algorithm_is_a_changed_key_under_every_policy() {
    let (old, new) = (key(), ecdsa_key());
    let (_d, path) = file_with(&line("[h]:2222", &old));
    for policy in [HostKeyPolicy::AcceptNew, HostKeyPolicy::Strict] {
        let err = check(policy, &path, "h", 2222, &new).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("CHANGED") && msg.contains("ssh-keygen"),
            "{msg}"
        );
        assert!(
            msg.contains(&old.fingerprint(HashAlg::Sha256).to_string()),
            "{msg}"
        );
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
}

#[test]
fn algorithms_of_known_keys_are_offered_first() {
    let defaults = [
        Algorithm::Ed25519,
        ecdsa_key().algorithm(),
        Algorithm::Rsa { hash: None },
    ];
    let (_d, path) = file_with(&line("[h]:2222", &ecdsa_key()));
    let order = preferred_algorithms(&files(&path), "h", 2222, &defaults);
    assert_eq!(order[0], ecdsa_key().algorithm());
    assert_eq!(order.len(), 3);
    let unknown = preferred_algorithms(&files(&path), "other", 2222, &defaults);
    assert_eq!(unknown, defaults);
}
