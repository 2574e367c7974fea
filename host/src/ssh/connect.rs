//! Opening one authenticated russh connection: the transport of a route
//! (TCP, a jump host's tunnel, a ProxyCommand), the russh client settings,
//! the host-key check and authentication.
//!
//! It knows nothing of the session table: the manager decides which
//! connections exist and hands a jump host's tunnel in; this module returns
//! a connected handle and the address it reached.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use russh::ChannelOpenFailure;
use russh::client::{self, AuthResult, Handle, Msg};
use russh::keys::PublicKeyOrCertificate;
use tokio::net::TcpStream;

use super::destination::{Destination, Route};
use super::net::QuickAckStream;
use super::{Credentials, HostKeyPolicy, KnownHostsFiles, SshError, auth, known_hosts, proxy};

/// A connected, authenticated session and the address it reached (direct
/// routes only).
pub(crate) struct Connected {
    pub(crate) handle: Handle<ClientHandler>,
    pub(crate) peer: Option<IpAddr>,
    /// The server's identification string (`SSH-2.0-OpenSSH_9.2p1 ...`).
    pub(crate) server_id: String,
}

/// What `doctor` learns while one connection is made: when each step
/// ended, and what the server showed. Never a secret.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    pub(crate) log: Mutex<ProbeLog>,
}

#[derive(Debug, Default)]
pub(crate) struct ProbeLog {
    /// The TCP connection is up (direct routes), and to which address.
    pub(crate) tcp: Option<(Instant, Option<SocketAddr>)>,
    /// The server's key or certificate, when it was checked, and the
    /// verdict.
    pub(crate) host_key: Option<(Instant, PublicKeyOrCertificate, Result<(), SshError>)>,
    /// The key exchange is done, with the server's identification string.
    pub(crate) handshake: Option<(Instant, String)>,
    /// The methods the server offers, from a `none` attempt.
    pub(crate) offered: Option<Vec<String>>,
    /// What logged in, and when.
    pub(crate) auth: Option<(Instant, String)>,
}

impl Probe {
    fn note(&self, f: impl FnOnce(&mut ProbeLog)) {
        f(&mut self.log.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// What was noted so far; the probe is left empty.
    pub(crate) fn take(&self) -> ProbeLog {
        std::mem::take(&mut self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Connects to `dest` and authenticates with `credentials` (or the agent
/// and identity files). `tunnel` is the jump host's channel when the route
/// is [`Route::Jump`]. Bounded by nothing: the caller sets the deadline.
pub(crate) async fn establish(
    dest: &Destination,
    credentials: Option<&Credentials>,
    tunnel: Option<russh::ChannelStream<Msg>>,
) -> Result<Connected, SshError> {
    establish_probed(dest, credentials, tunnel, None).await
}

/// [`establish`], noting each step in `probe` (for `doctor`). With a probe,
/// a new host key is never recorded, and the server is first asked with a
/// `none` attempt which methods it offers.
pub(crate) async fn establish_probed(
    dest: &Destination,
    credentials: Option<&Credentials>,
    tunnel: Option<russh::ChannelStream<Msg>>,
    probe: Option<Arc<Probe>>,
) -> Result<Connected, SshError> {
    let key = &dest.key;
    let server_id = Arc::new(OnceLock::new());
    let handler = ClientHandler {
        host: key.host.clone(),
        port: key.port,
        policy: dest.host_key_policy,
        known_hosts: dest.known_hosts.clone(),
        server_id: server_id.clone(),
        probe: probe.clone(),
    };
    let config = Arc::new(russh_config(dest));
    let handshake_failed = |e: HandlerError, detail: &str| match e {
        HandlerError::HostKey(e) => e,
        HandlerError::Ssh(e) => {
            SshError::Connect(format!("{key}: SSH handshake failed: {e}{detail}"))
        }
    };
    let mut peer = None;
    let mut handle = match (&dest.route, tunnel) {
        (Route::Jump(_), Some(stream)) => client::connect_stream(config, stream, handler)
            .await
            .map_err(|e| handshake_failed(e, ""))?,
        (Route::Jump(_), None) => {
            return Err(SshError::Other(format!(
                "{key}: no tunnel for the jump route"
            )));
        }
        (Route::Direct, _) => {
            let tcp = TcpStream::connect((key.host.as_str(), key.port))
                .await
                .map_err(|e| {
                    SshError::Connect(format!("cannot connect to {}:{}: {e}", key.host, key.port))
                })?;
            let stream = QuickAckStream::new(tcp);
            let addr = stream.peer_addr().ok();
            if let Some(p) = &probe {
                p.note(|l| l.tcp = Some((Instant::now(), addr)));
            }
            peer = addr.map(|a| a.ip());
            tracing::debug!(?peer, "TCP connected");
            client::connect_stream(config, stream, handler)
                .await
                .map_err(|e| handshake_failed(e, ""))?
        }
        (Route::Command(command), _) => {
            let (stream, stderr) = proxy::spawn(command)
                .map_err(|e| SshError::Connect(format!("{key}: cannot start ProxyCommand: {e}")))?;
            match client::connect_stream(config, stream, handler).await {
                Ok(handle) => handle,
                Err(e) => {
                    // Let the command finish its complaint.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let said = stderr.text();
                    let detail = if said.is_empty() {
                        String::new()
                    } else {
                        format!(" (ProxyCommand said: {said})")
                    };
                    return Err(handshake_failed(e, &detail));
                }
            }
        }
    };
    let how = match &probe {
        Some(p) => match offered_methods(&mut handle, dest).await? {
            Some(offered) => {
                p.note(|l| l.offered = Some(offered));
                None
            }
            None => Some("none (the server asked for nothing)".to_string()),
        },
        None => None,
    };
    let how = match how {
        Some(how) => how,
        None => auth::authenticate(&mut handle, dest, credentials).await?,
    };
    if let Some(p) = &probe {
        p.note(|l| l.auth = Some((Instant::now(), how)));
    }
    let server_id = server_id.get().cloned().unwrap_or_default();
    Ok(Connected {
        handle,
        peer,
        server_id,
    })
}

/// The methods the server offers, from a `none` attempt (`None`: it let
/// the user in without any).
async fn offered_methods(
    handle: &mut Handle<ClientHandler>,
    dest: &Destination,
) -> Result<Option<Vec<String>>, SshError> {
    let res = handle
        .authenticate_none(dest.key.username.as_str())
        .await
        .map_err(|e| {
            SshError::Connect(format!(
                "{}: the connection failed during authentication: {e}",
                dest.key
            ))
        })?;
    Ok(match res {
        AuthResult::Success => None,
        AuthResult::Failure {
            remaining_methods, ..
        } => Some(
            remaining_methods
                .iter()
                .map(|m| <&str>::from(m).to_string())
                .collect(),
        ),
    })
}

/// A session channel on `handle`. A server out of sessions (a `MaxSessions`
/// below our cap, or a slot it has not yet freed after a close; OpenSSH says
/// "connect failed") ran nothing: wait a little and retry, `attempts` times.
pub(crate) async fn open_session<H: client::Handler>(
    handle: &Handle<H>,
    attempts: u64,
) -> Result<russh::Channel<Msg>, russh::Error> {
    let mut attempt = 0u64;
    loop {
        match handle.channel_open_session().await {
            Err(russh::Error::ChannelOpenFailure(
                ChannelOpenFailure::ResourceShortage
                | ChannelOpenFailure::AdministrativelyProhibited
                | ChannelOpenFailure::ConnectFailed,
            )) if attempt < attempts => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5 * attempt.min(20))).await;
            }
            other => return other,
        }
    }
}

/// The receive window of each channel (see [`russh_config`]).
const WINDOW: u32 = 16 << 20;

/// russh's settings for one connection: keepalive from
/// `ServerAliveInterval`, AES-GCM first where the CPU has AES
/// ([`super::cipher`]), host-key algorithms of known keys first, and host
/// certificates asked for only when an `@cert-authority` line could vouch
/// for one (as OpenSSH does).
fn russh_config(dest: &Destination) -> client::Config {
    let mut config = client::Config {
        nodelay: true,
        keepalive_interval: dest.keepalive.map(|(interval, _)| interval),
        keepalive_max: dest.keepalive.map_or(3, |(_, max)| max),
        inactivity_timeout: None,
        // How much the server may send before we acknowledge: 2 MiB (the
        // default) caps a download at 2 MiB per round trip; on a 20 ms
        // path that is 100 MB/s, on 100 ms 20 MB/s. Memory stays bounded by
        // the channel buffer, since russh acknowledges on receipt.
        window_size: WINDOW,
        ..client::Config::default()
    };
    config.preferred.cipher = super::cipher::preferred().into();
    let (files, host, port) = (&dest.known_hosts, &dest.key.host, dest.key.port);
    config.preferred.key =
        known_hosts::preferred_algorithms(files, host, port, &config.preferred.key).into();
    if known_hosts::has_cert_authority(&dest.known_hosts, &dest.key.host, dest.key.port) {
        config.preferred.host_key_certificates = config.preferred.key.clone();
    }
    config
}

/// russh's per-connection callbacks: host-key verification.
pub(crate) struct ClientHandler {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    known_hosts: KnownHostsFiles,
    server_id: Arc<OnceLock<String>>,
    probe: Option<Arc<Probe>>,
}

#[derive(Debug)]
pub(crate) enum HandlerError {
    Ssh(russh::Error),
    HostKey(SshError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        Self::Ssh(e)
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let Some(probe) = &self.probe else {
            known_hosts::verify(
                self.policy,
                &self.known_hosts,
                &self.host,
                self.port,
                server_key,
            )
            .map_err(HandlerError::HostKey)?;
            return Ok(true);
        };
        let verdict = known_hosts::verify_without_recording(
            self.policy,
            &self.known_hosts,
            &self.host,
            self.port,
            server_key,
        );
        let shown = match server_key {
            PublicKeyOrCertificate::PublicKey { key, hash_alg } => {
                PublicKeyOrCertificate::PublicKey {
                    key: key.clone(),
                    hash_alg: *hash_alg,
                }
            }
            PublicKeyOrCertificate::Certificate(c) => {
                PublicKeyOrCertificate::Certificate(c.clone())
            }
        };
        probe.note(|l| l.host_key = Some((Instant::now(), shown, verdict.clone())));
        verdict.map_err(HandlerError::HostKey)?;
        Ok(true)
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        _names: &russh::Names,
        session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let id = String::from_utf8_lossy(session.remote_sshid()).into_owned();
        if let Some(p) = &self.probe {
            p.note(|l| l.handshake = Some((Instant::now(), id.clone())));
        }
        let _ = self.server_id.set(id);
        Ok(())
    }
}
