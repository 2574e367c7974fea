//! Client authentication: the credentials a call supplies, or else the
//! operator's ssh-agent and default `~/.ssh/id_*` keys.
//!
//! Messages name the session and the method that failed, never a secret.

use std::path::Path;
use std::sync::Arc;

use russh::client::{AuthResult, Handle, Handler};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};

use super::{Credentials, SessionKey, SshConfig, SshError};

/// Logs `user` in over `handle`, or says which methods were refused.
pub(crate) async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    key: &SessionKey,
    credentials: Option<&Credentials>,
    config: &SshConfig,
) -> Result<(), SshError> {
    let mut refused: Vec<String> = Vec::new();
    match credentials {
        Some(c) => {
            if let Some(path) = &c.key_file {
                let pk = load_key(path, c.passphrase.as_ref().map(|p| p.to_string())).await?;
                if try_key(handle, key, pk).await? {
                    return Ok(());
                }
                refused.push(format!("key {}", path.display()));
            }
            if let Some(password) = &c.password {
                let res = handle
                    .authenticate_password(key.username.as_str(), password.as_str())
                    .await
                    .map_err(|e| lost(key, e))?;
                if res.success() {
                    return Ok(());
                }
                refused.push("password".into());
            }
            Err(SshError::Auth(format!(
                "{key}: the server rejected the {}",
                refused.join(" and the ")
            )))
        }
        None => {
            if config.use_agent && try_agent(handle, key, &mut refused).await? {
                return Ok(());
            }
            for path in &config.default_identities {
                if !path.exists() {
                    continue;
                }
                let pk = match load_key(path, None).await {
                    Ok(pk) => pk,
                    Err(e) => {
                        tracing::debug!("skipping default key: {e}");
                        continue;
                    }
                };
                if try_key(handle, key, pk).await? {
                    return Ok(());
                }
                refused.push(format!("key {}", path.display()));
            }
            let tried = if refused.is_empty() {
                "no ssh-agent key and no default key file was available".to_string()
            } else {
                format!("the server rejected {}", refused.join(", "))
            };
            Err(SshError::Auth(format!(
                "{key}: no password or key_filename was given, and {tried}. \
                 Pass password, or key_filename (with passphrase if it is encrypted)."
            )))
        }
    }
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

async fn try_key<H: Handler>(
    handle: &mut Handle<H>,
    key: &SessionKey,
    pk: PrivateKey,
) -> Result<bool, SshError> {
    let hash = if pk.algorithm().is_rsa() {
        handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| lost(key, e))?
            .flatten()
    } else {
        None
    };
    let res = handle
        .authenticate_publickey(
            key.username.as_str(),
            PrivateKeyWithHashAlg::new(Arc::new(pk), hash),
        )
        .await
        .map_err(|e| lost(key, e))?;
    Ok(res.success())
}

async fn try_agent<H: Handler>(
    handle: &mut Handle<H>,
    key: &SessionKey,
    refused: &mut Vec<String>,
) -> Result<bool, SshError> {
    if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        return Ok(false);
    }
    let mut agent = match AgentClient::connect_env().await {
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
        let AgentIdentity::PublicKey { key: public, .. } = id else {
            continue;
        };
        let hash = if public.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| lost(key, e))?
                .flatten()
        } else {
            None
        };
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
