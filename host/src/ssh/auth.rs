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

use russh::client::{AuthResult, Handle, Handler, KeyboardInteractiveAuthResponse};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Certificate, PrivateKey, PrivateKeyWithHashAlg};
use russh::{MethodKind, MethodSet};

use super::destination::{Agent, Destination, Method};
use super::{Credentials, SessionKey, SshError};

/// Keyboard-interactive rounds answered before giving up: a server that
/// keeps asking is not going to accept the password.
const MAX_KBD_ROUNDS: usize = 4;

/// Logs in over `handle` and says how (`key PATH`, `password`, `ssh-agent
/// key SHA256:...`), or says which methods were refused.
///
/// There is no `none` probe for the server's methods, as `ssh` makes:
/// sshd pads that failure like any other (~9 ms, measured), so the methods
/// it still accepts are learnt from the first real failure instead, and
/// methods it no longer accepts are not tried.
pub(crate) async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    dest: &Destination,
    credentials: Option<&Credentials>,
) -> Result<String, SshError> {
    let mut login = Login {
        handle,
        key: &dest.key,
        refused: Vec::new(),
        offered: None,
        succeeded: None,
    };
    let certificates = load_certificates(&dest.certificate_files).await;
    for method in &dest.methods {
        if !login.offers(*method) {
            continue;
        }
        let done = match (method, credentials) {
            (Method::PublicKey, Some(c)) => match &c.key_file {
                Some(path) => {
                    let pk = load_key(path, c.passphrase.as_ref().map(|p| p.to_string())).await?;
                    login.identity(path, pk, &certificates).await?
                }
                None => false,
            },
            (Method::PublicKey, None) => {
                let agent = match &dest.agent {
                    Some(agent) if !dest.identities_only => {
                        login.agent(agent, &certificates).await?
                    }
                    _ => false,
                };
                agent || login.identity_files(dest, &certificates).await?
            }
            (
                Method::Password,
                Some(Credentials {
                    password: Some(pw), ..
                }),
            ) => {
                let res = login
                    .handle
                    .authenticate_password(login.key.username.as_str(), pw.as_str())
                    .await
                    .map_err(|e| lost(login.key, e))?;
                login.outcome(Method::Password, "password", res)
            }
            (
                Method::KeyboardInteractive,
                Some(Credentials {
                    password: Some(pw), ..
                }),
            ) => login.keyboard_interactive(pw).await?,
            _ => false,
        };
        if done {
            return Ok(login.succeeded.unwrap_or_else(|| method.name().to_string()));
        }
    }
    let key = login.key;
    let accepts = login
        .offered
        .as_ref()
        .filter(|o| !o.is_empty())
        .map(|o| o.iter().map(<&str>::from).collect::<Vec<_>>().join(", "));
    let tried = if let (true, Some(accepts)) = (login.refused.is_empty(), &accepts) {
        format!("the server accepts only {accepts}, and nothing the call gave fits")
    } else if login.refused.is_empty() {
        let allowed: Vec<&str> = dest.methods.iter().map(|m| m.name()).collect();
        let given = match credentials {
            Some(c) if c.key_file.is_some() && c.password.is_some() => "a key file and a password",
            Some(c) if c.key_file.is_some() => "a key file",
            _ => "a password",
        };
        format!(
            "nothing could be tried: ssh_config allows {}, and the call gave {given}",
            allowed.join(", ")
        )
    } else {
        let mut tried = format!("the server rejected {}", login.refused.join(", "));
        if let Some(accepts) = accepts {
            tried.push_str(&format!(" (it accepts {accepts})"));
        }
        tried
    };
    Err(SshError::Auth(match credentials {
        Some(_) => format!("{key}: {tried}"),
        None => format!(
            "{key}: no password or key_filename was given, and {}. \
             Pass password, or key_filename (with passphrase if it is encrypted), \
             or name an IdentityFile for this host in ~/.ssh/config.",
            if login.refused.is_empty() {
                "no ssh-agent key and no identity file was available".to_string()
            } else {
                tried
            }
        ),
    }))
}

/// One login attempt in progress: what was refused, and which methods the
/// server still accepts.
struct Login<'a, H: Handler> {
    handle: &'a mut Handle<H>,
    key: &'a SessionKey,
    refused: Vec<String>,
    /// From the server's last failure; `None` before the first.
    offered: Option<MethodSet>,
    /// What logged in, once something did.
    succeeded: Option<String>,
}

impl<H: Handler> Login<'_, H> {
    fn offers(&self, method: Method) -> bool {
        let kind = match method {
            Method::PublicKey => MethodKind::PublicKey,
            Method::KeyboardInteractive => MethodKind::KeyboardInteractive,
            Method::Password => MethodKind::Password,
        };
        // A server that names nothing gets every method tried.
        self.offered
            .as_ref()
            .is_none_or(|o| o.is_empty() || o.contains(&kind))
    }

    /// Whether `res` logged in. A failure is recorded as `what` refused,
    /// unless the server does not take `method` at all (then the message
    /// lists what it does take instead).
    fn outcome(&mut self, method: Method, what: impl Into<String>, res: AuthResult) -> bool {
        match res {
            AuthResult::Success => {
                self.succeeded = Some(what.into());
                true
            }
            AuthResult::Failure {
                remaining_methods, ..
            } => {
                self.offered = Some(remaining_methods);
                if self.offers(method) {
                    self.refused.push(what.into());
                }
                false
            }
        }
    }

    /// The destination's identity files; missing ones are skipped, as `ssh`
    /// does with its defaults, and encrypted ones too (there is no one to
    /// ask).
    async fn identity_files(
        &mut self,
        dest: &Destination,
        certificates: &[Certificate],
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
            if self.identity(path, pk, certificates).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One private key: first with a certificate for it (from
    /// `CertificateFile` or the `KEY-cert.pub` beside it), then on its own.
    async fn identity(
        &mut self,
        path: &Path,
        pk: PrivateKey,
        certificates: &[Certificate],
    ) -> Result<bool, SshError> {
        let user = self.key.username.as_str();
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
            let res = self
                .handle
                .authenticate_openssh_cert(user, pk.clone(), cert.clone())
                .await
                .map_err(|e| lost(self.key, e))?;
            if self.outcome(
                Method::PublicKey,
                format!("certificate {}", cert.key_id()),
                res,
            ) {
                return Ok(true);
            }
        }
        let hash = self.rsa_hash(pk.algorithm().is_rsa()).await?;
        let res = self
            .handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(pk, hash))
            .await
            .map_err(|e| lost(self.key, e))?;
        Ok(self.outcome(Method::PublicKey, format!("key {}", path.display()), res))
    }

    /// Answers every prompt that does not echo (a password prompt) with
    /// the password, and echoing ones with nothing.
    async fn keyboard_interactive(&mut self, password: &str) -> Result<bool, SshError> {
        let mut reply = self
            .handle
            .authenticate_keyboard_interactive_start(self.key.username.as_str(), None::<String>)
            .await
            .map_err(|e| lost(self.key, e))?;
        // A server that does not offer the method fails it at once; that is
        // no refusal of the password worth reporting.
        let mut asked = false;
        for _ in 0..MAX_KBD_ROUNDS {
            match reply {
                KeyboardInteractiveAuthResponse::Success => {
                    self.succeeded = Some("password (keyboard-interactive)".into());
                    return Ok(true);
                }
                KeyboardInteractiveAuthResponse::Failure {
                    remaining_methods, ..
                } => {
                    self.offered = Some(remaining_methods);
                    return Ok(self.kbd_refused(asked));
                }
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
                    // Moved into russh, which drops them once encoded
                    // without wiping (russh 0.65 takes plain Strings, as it
                    // does for `authenticate_password`): no copy stays here.
                    reply = self
                        .handle
                        .authenticate_keyboard_interactive_respond(answers)
                        .await
                        .map_err(|e| lost(self.key, e))?;
                }
            }
        }
        // Still asking after every round.
        Ok(self.kbd_refused(asked))
    }

    /// Records a keyboard-interactive refusal, if the server ever asked.
    fn kbd_refused(&mut self, asked: bool) -> bool {
        if asked {
            self.refused.push("password (keyboard-interactive)".into());
        }
        false
    }

    async fn agent(
        &mut self,
        agent: &Agent,
        certificates: &[Certificate],
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
        let user = self.key.username.as_str();
        for id in identities {
            let (public, cert, comment) = match id {
                AgentIdentity::PublicKey {
                    key: public,
                    comment,
                } => {
                    let cert = certificates
                        .iter()
                        .find(|c| c.public_key() == public.key_data())
                        .cloned();
                    (public, cert, comment)
                }
                AgentIdentity::Certificate {
                    certificate,
                    comment,
                } => (
                    russh::keys::PublicKey::from(certificate.public_key().clone()),
                    Some(certificate),
                    comment,
                ),
            };
            let shown = format!(
                "ssh-agent key {}{}",
                super::known_hosts::fingerprint(&public),
                if comment.is_empty() {
                    String::new()
                } else {
                    format!(" {comment:?}")
                }
            );
            let hash = self.rsa_hash(public.algorithm().is_rsa()).await?;
            if let Some(cert) = cert {
                match self
                    .handle
                    .authenticate_certificate_with(user, cert, hash, &mut agent)
                    .await
                {
                    Ok(res) => {
                        if self.outcome(Method::PublicKey, "an ssh-agent certificate", res) {
                            self.succeeded = Some(format!("{shown}, with its certificate"));
                            return Ok(true);
                        }
                    }
                    Err(e) => tracing::debug!("ssh-agent could not sign: {e}"),
                }
            }
            match self
                .handle
                .authenticate_publickey_with(user, public, hash, &mut agent)
                .await
            {
                Ok(res) => {
                    if self.outcome(Method::PublicKey, "an ssh-agent key", res) {
                        self.succeeded = Some(shown);
                        return Ok(true);
                    }
                }
                Err(e) => {
                    tracing::debug!("ssh-agent could not sign: {e}");
                    self.refused.push("an ssh-agent key".into());
                }
            }
        }
        Ok(false)
    }

    async fn rsa_hash(&self, is_rsa: bool) -> Result<Option<russh::keys::HashAlg>, SshError> {
        if !is_rsa {
            return Ok(None);
        }
        Ok(self
            .handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| lost(self.key, e))?
            .flatten())
    }
}

/// Certificates that could not be read are skipped with a debug line, as
/// `ssh` skips them.
async fn load_certificates(paths: &[PathBuf]) -> Vec<Certificate> {
    if paths.is_empty() {
        return Vec::new();
    }
    let paths = paths.to_vec();
    tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .filter_map(|p| match load_certificate(p) {
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

/// A certificate under the same rules as a key file: a regular file of at
/// most 64 KiB.
fn load_certificate(path: &Path) -> Result<Certificate, String> {
    let bytes = crate::fsutil::read_regular(path, crate::fsutil::KEY_FILE_CAP)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    Certificate::from_openssh(&text).map_err(|e| e.to_string())
}

fn lost(key: &SessionKey, e: russh::Error) -> SshError {
    SshError::Connect(format!(
        "{key}: the connection failed during authentication: {e}"
    ))
}

/// Reads and, if needed, decrypts a private key. Off the async threads:
/// OpenSSH's bcrypt KDF takes a noticeable fraction of a second. The file
/// must be a regular file of at most 64 KiB ([`crate::fsutil::read_regular`]),
/// so `/dev/zero`, `/dev/stdin` or a FIFO cannot grow or pin the server.
pub(crate) async fn load_key(
    path: &Path,
    passphrase: Option<String>,
) -> Result<PrivateKey, SshError> {
    let owned = path.to_path_buf();
    let has_passphrase = passphrase.is_some();
    let shown = path.display();
    let res = tokio::task::spawn_blocking(move || {
        let pass = passphrase.map(zeroize::Zeroizing::new);
        let text = crate::fsutil::read_regular(&owned, crate::fsutil::KEY_FILE_CAP)
            .map(zeroize::Zeroizing::new)
            .map_err(russh::keys::Error::IO)?;
        let text = std::str::from_utf8(&text).map_err(|_| russh::keys::Error::CouldNotReadKey)?;
        russh::keys::decode_secret_key(text, pass.as_ref().map(|p| p.as_str()))
    })
    .await
    .map_err(|e| SshError::Other(format!("key loading task failed: {e}")))?;
    res.map_err(|e| {
        use russh::keys::Error as K;
        SshError::Auth(match e {
            K::IO(io) if io.kind() == std::io::ErrorKind::NotFound => {
                format!("key file {shown} does not exist")
            }
            K::IO(io) if crate::fsutil::is_refusal(&io) => format!("key file {io}"),
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
