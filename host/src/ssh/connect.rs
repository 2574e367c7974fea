//! Opening one authenticated russh connection: the transport of a route
//! (TCP, a jump host's tunnel, a ProxyCommand), the russh client settings,
//! the host-key check and authentication.
//!
//! It knows nothing of the session table: the manager decides which
//! connections exist and hands a jump host's tunnel in; this module returns
//! a connected handle and the address it reached.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::ChannelOpenFailure;
use russh::client::{self, Handle, Msg};
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

/// Connects to `dest` and authenticates with `credentials` (or the agent
/// and identity files). `tunnel` is the jump host's channel when the route
/// is [`Route::Jump`]. Bounded by nothing: the caller sets the deadline.
pub(crate) async fn establish(
    dest: &Destination,
    credentials: Option<&Credentials>,
    tunnel: Option<russh::ChannelStream<Msg>>,
) -> Result<Connected, SshError> {
    let key = &dest.key;
    let server_id = Arc::new(OnceLock::new());
    let handler = ClientHandler {
        host: key.host.clone(),
        port: key.port,
        policy: dest.host_key_policy,
        known_hosts: dest.known_hosts.clone(),
        server_id: server_id.clone(),
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
            peer = stream.peer_addr().ok().map(|a| a.ip());
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
    auth::authenticate(&mut handle, dest, credentials).await?;
    let server_id = server_id.get().cloned().unwrap_or_default();
    Ok(Connected {
        handle,
        peer,
        server_id,
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
/// `ServerAliveInterval`, host-key algorithms of known keys first, and host
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
        known_hosts::verify(
            self.policy,
            &self.known_hosts,
            &self.host,
            self.port,
            server_key,
        )
        .map_err(HandlerError::HostKey)?;
        Ok(true)
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        _names: &russh::Names,
        session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let id = String::from_utf8_lossy(session.remote_sshid()).into_owned();
        let _ = self.server_id.set(id);
        Ok(())
    }
}
