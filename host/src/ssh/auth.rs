//! Client authentication: the credentials a call supplies, or else the
//! destination's ssh-agent, identity files and certificates from ssh_config
//! (`IdentityFile`, `CertificateFile`, `IdentitiesOnly`, `IdentityAgent`),
//! in the order `PreferredAuthentications` gives.
//!
//! A password answers both the `password` method and keyboard-interactive
//! prompts, so servers that offer only keyboard-interactive work too.
//! Messages name the session and the method that failed, never a secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::MethodKind;
use russh::client::{AuthResult, Handle, Handler, KeyboardInteractiveAuthResponse};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Certificate, PrivateKey, PrivateKeyWithHashAlg};

use super::destination::{Agent, Destination, Method};
use super::{Credentials, SessionKey, SshError};

/// Keyboard-interactive rounds answered before giving up: a server that
/// keeps asking is not going to accept the password.
const MAX_KBD_ROUNDS: usize = 4;

/// Logs in over `handle`, or says which methods were refused.
pub(crate) async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    dest: &Destination,
    credentials: Option<&Credentials>,
) -> Result<(), SshError> {
    let key = &dest.key;
    // Ask with `none` first, as ssh does: the answer lists the methods the
    // server accepts, and sshd does not delay it the way it pads every
    // failed real attempt (~10 ms, to hide which users exist).
    let offered = match handle
        .authenticate_none(key.username.as_str())
        .await
        .map_err(|e| lost(key, e))?
    {
        AuthResult::Success => return Ok(()),
        AuthResult::Failure {
            remaining_methods, ..
        } => remaining_methods,
    };
    let offers = |m: &Method| {
        let kind = match m {
            Method::PublicKey => MethodKind::PublicKey,
            Method::KeyboardInteractive => MethodKind::KeyboardInteractive,
            Method::Password => MethodKind::Password,
        };
        // A server that names nothing gets every method tried.
        offered.is_empty() || offered.contains(&kind)
    };
    let mut refused: Vec<String> = Vec::new();
    let certificates = load_certificates(&dest.certificate_files).await;
    for method in dest.methods.iter().filter(|m| offers(m)) {
        let done = match (method, credentials) {
            (Method::PublicKey, Some(c)) => match &c.key_file {
                Some(path) => {
                    let pk = load_key(path, c.passphrase.as_ref().map(|p| p.to_string())).await?;
                    try_identity(handle, key, path, pk, &certificates, &mut refused).await?
                }
                None => false,
            },
            (Method::PublicKey, None) => {
                let agent = match &dest.agent {
                    Some(agent) if !dest.identities_only => {
                        try_agent(handle, key, agent, &certificates, &mut refused).await?
                    }
                    _ => false,
                };
                agent || try_identity_files(handle, dest, &certificates, &mut refused).await?
            }
            (
                Method::Password,
                Some(Credentials {
                    password: Some(pw), ..
                }),
            ) => {
                let res = handle
                    .authenticate_password(key.username.as_str(), pw.as_str())
                    .await
                    .map_err(|e| lost(key, e))?;
                if !res.success() {
                    refused.push("password".into());
                }
                res.success()
            }
            (
                Method::KeyboardInteractive,
                Some(Credentials {
                    password: Some(pw), ..
                }),
            ) => try_keyboard_interactive(handle, key, pw, &mut refused).await?,
            _ => false,
        };
        if done {
            return Ok(());
        }
    }
    let tried = if refused.is_empty() {
        let offered: Vec<&str> = offered.iter().map(<&str>::from).collect();
        let allowed: Vec<&str> = dest.methods.iter().map(|m| m.name()).collect();
        let given = match credentials {
            Some(c) if c.key_file.is_some() && c.password.is_some() => "a key file and a password",
            Some(c) if c.key_file.is_some() => "a key file",
            _ => "a password",
        };
        format!(
            "nothing could be tried: the server accepts {}, ssh_config allows {}, and the \
             call gave {given}",
            offered.join(", "),
            allowed.join(", ")
        )
    } else {
        format!("the server rejected {}", refused.join(", "))
    };
    Err(SshError::Auth(match credentials {
        Some(_) => format!("{key}: {tried}"),
        None => format!(
            "{key}: no password or key_filename was given, and {}. \
             Pass password, or key_filename (with passphrase if it is encrypted), \
             or name an IdentityFile for this host in ~/.ssh/config.",
            if refused.is_empty() {
                "no ssh-agent key and no identity file was available".to_string()
            } else {
                tried
            }
        ),
    }))
}

/// The destination's identity files; missing ones are skipped, as `ssh`
/// does with its defaults, and encrypted ones too (there is no one to ask).
async fn try_identity_files<H: Handler>(
    handle: &mut Handle<H>,
    dest: &Destination,
    certificates: &[Certificate],
    refused: &mut Vec<String>,
) -> Result<bool, SshError> {
    for path in &dest.identity_files {
        if !path.exists() {
            continue;
        }
        let pk = match load_key(path, None).await {
            Ok(pk) => pk,
            Err(e) => {
                tracing::debug!("skipping identity file: {e}");
                continue;
            }
        };
        if try_identity(handle, &dest.key, path, pk, certificates, refused).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One private key: first with a certificate for it (from `CertificateFile`
/// or the `KEY-cert.pub` beside it), then on its own.
async fn try_identity<H: Handler>(
    handle: &mut Handle<H>,
    key: &SessionKey,
    path: &Path,
    pk: PrivateKey,
    certificates: &[Certificate],
    refused: &mut Vec<String>,
) -> Result<bool, SshError> {
    let mut beside = PathBuf::from(path);
    beside.as_mut_os_string().push("-cert.pub");
    let own = if beside.exists() {
        load_certificates(std::slice::from_ref(&beside)).await
    } else {
        Vec::new()
    };
    let pk = Arc::new(pk);
    for cert in certificates.iter().chain(&own) {
        if cert.public_key() != pk.public_key().key_data() {
            continue;
        }
        let res = handle
            .authenticate_openssh_cert(key.username.as_str(), pk.clone(), cert.clone())
            .await
            .map_err(|e| lost(key, e))?;
        if res.success() {
            return Ok(true);
        }
        refused.push(format!("certificate {}", cert.key_id()));
    }
    let hash = rsa_hash(handle, key, pk.algorithm().is_rsa()).await?;
    let res = handle
        .authenticate_publickey(key.username.as_str(), PrivateKeyWithHashAlg::new(pk, hash))
        .await
        .map_err(|e| lost(key, e))?;
    if !res.success() {
        refused.push(format!("key {}", path.display()));
    }
    Ok(res.success())
}

/// Answers every prompt that does not echo (a password prompt) with the
/// password, and echoing ones with nothing.
async fn try_keyboard_interactive<H: Handler>(
    handle: &mut Handle<H>,
    key: &SessionKey,
    password: &str,
    refused: &mut Vec<String>,
) -> Result<bool, SshError> {
    let mut reply = handle
        .authenticate_keyboard_interactive_start(key.username.as_str(), None::<String>)
        .await
        .map_err(|e| lost(key, e))?;
    // A server that does not offer the method fails it at once; that is no
    // refusal of the password worth reporting.
    let mut asked = false;
    for _ in 0..MAX_KBD_ROUNDS {
        match reply {
            KeyboardInteractiveAuthResponse::Success => return Ok(true),
            KeyboardInteractiveAuthResponse::Failure { .. } => break,
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                asked |= !prompts.is_empty();
                let answers = prompts
                    .iter()
                    .map(|p| {
                        if p.echo {
                            String::new()
                        } else {
                            password.to_string()
                        }
                    })
                    .collect();
                reply = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(|e| lost(key, e))?;
            }
        }
    }
    if matches!(reply, KeyboardInteractiveAuthResponse::Success) {
        return Ok(true);
    }
    if asked {
        refused.push("password (keyboard-interactive)".into());
    }
    Ok(false)
}

/// Certificates that could not be read are skipped with a debug line, as
/// `ssh` skips them.
async fn load_certificates(paths: &[PathBuf]) -> Vec<Certificate> {
    let paths = paths.to_vec();
    tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .filter_map(|p| match russh::keys::load_openssh_certificate(p) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!("skipping certificate {}: {e}", p.display());
                    None
                }
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

async fn rsa_hash<H: Handler>(
    handle: &Handle<H>,
    key: &SessionKey,
    is_rsa: bool,
) -> Result<Option<russh::keys::HashAlg>, SshError> {
    if !is_rsa {
        return Ok(None);
    }
    Ok(handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| lost(key, e))?
        .flatten())
}

fn lost(key: &SessionKey, e: russh::Error) -> SshError {
    SshError::Connect(format!(
        "{key}: the connection failed during authentication: {e}"
    ))
}

/// Reads and, if needed, decrypts a private key. Off the async threads:
/// OpenSSH's bcrypt KDF takes a noticeable fraction of a second.
pub(crate) async fn load_key(
    path: &Path,
    passphrase: Option<String>,
) -> Result<PrivateKey, SshError> {
    let owned = path.to_path_buf();
    let has_passphrase = passphrase.is_some();
    let res = tokio::task::spawn_blocking(move || {
        let pass = passphrase.map(zeroize::Zeroizing::new);
        russh::keys::load_secret_key(&owned, pass.as_ref().map(|p| p.as_str()))
    })
    .await
    .map_err(|e| SshError::Other(format!("key loading task failed: {e}")))?;
    let shown = path.display();
    res.map_err(|e| {
        use russh::keys::Error as K;
        SshError::Auth(match e {
            K::IO(io) if io.kind() == std::io::ErrorKind::NotFound => {
                format!("key file {shown} does not exist")
            }
            K::IO(io) => format!("key file {shown} cannot be read: {io}"),
            K::KeyIsEncrypted => format!("key file {shown} is encrypted: pass its passphrase"),
            other if has_passphrase => format!(
                "key file {shown} could not be decrypted with the given passphrase \
                 (wrong passphrase, or not a private key): {other}"
            ),
            other => format!("key file {shown} is not a usable private key: {other}"),
        })
    })
}

async fn try_agent<H: Handler>(
    handle: &mut Handle<H>,
    key: &SessionKey,
    agent: &Agent,
    certificates: &[Certificate],
    refused: &mut Vec<String>,
) -> Result<bool, SshError> {
    let connected = match agent {
        Agent::Env if std::env::var_os("SSH_AUTH_SOCK").is_none() => return Ok(false),
        Agent::Env => AgentClient::connect_env().await,
        Agent::Socket(path) => AgentClient::connect_uds(path).await,
    };
    let mut agent = match connected {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!("ssh-agent unavailable: {e}");
            return Ok(false);
        }
    };
    let identities = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::debug!("ssh-agent did not list keys: {e}");
            return Ok(false);
        }
    };
    for id in identities {
        let (public, cert) = match id {
            AgentIdentity::PublicKey { key: public, .. } => {
                let cert = certificates
                    .iter()
                    .find(|c| c.public_key() == public.key_data())
                    .cloned();
                (public, cert)
            }
            AgentIdentity::Certificate { certificate, .. } => (
                russh::keys::PublicKey::from(certificate.public_key().clone()),
                Some(certificate),
            ),
        };
        let hash = rsa_hash(handle, key, public.algorithm().is_rsa()).await?;
        if let Some(cert) = cert {
            match handle
                .authenticate_certificate_with(key.username.as_str(), cert, hash, &mut agent)
                .await
            {
                Ok(AuthResult::Success) => return Ok(true),
                Ok(_) => refused.push("an ssh-agent certificate".into()),
                Err(e) => tracing::debug!("ssh-agent could not sign: {e}"),
            }
        }
        match handle
            .authenticate_publickey_with(key.username.as_str(), public, hash, &mut agent)
            .await
        {
            Ok(AuthResult::Success) => return Ok(true),
            Ok(_) => {}
            Err(e) => tracing::debug!("ssh-agent could not sign: {e}"),
        }
        refused.push("an ssh-agent key".into());
    }
    Ok(false)
}
