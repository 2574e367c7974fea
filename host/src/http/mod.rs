//! MCP over streamable HTTP (`--http ADDR:PORT`): rmcp's
//! `StreamableHttpService` at `/mcp` on axum, behind one gate
//! ([`gate`]) that checks every request's `Host` (421: DNS rebinding),
//! `Origin` (403) and, when clients are configured, its bearer token (401):
//! a client's opaque token, or a JWT of the operator's issuer ([`jwt`],
//! keys from [`jwks`]); and that the MCP session it names is its own (404).
//!
//! Each configured client calls in a namespace of its own: a session
//! table (and job table) of its own, so another client can neither see,
//! reuse, close nor interrupt its SSH sessions and jobs. With no client
//! configured the server answers only on loopback, and every caller is the
//! operator, as over stdio.
//!
//! SSE events carry ids, and a bounded replay buffer ([`replay`]) keeps
//! each stream's last events, after its call has ended too: a client
//! whose connection dropped reconnects with `Last-Event-ID` and gets what
//! it missed. A session idle for `--http-session-idle` is dropped.

mod auth;
mod budget;
mod gate;
mod idle;
mod jwks;
mod jwt;
mod replay;
mod serve;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

pub use auth::{check_client_name, new_token, parse_token_hash};
pub use jwks::JwksError;
pub use jwt::{JwtConfigError, check_config as check_jwt_config};

use crate::Settings;
use crate::mcp::{Callers, MakeCaller, McpServer};
use crate::plugins::{Caller, PluginHost};
use crate::ssh::SessionManager;

/// How long open streams get to end after SIGINT or SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The transport's flags.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The address to bind; port 0 picks a free one (the bound address is
    /// logged).
    pub addr: SocketAddr,
    /// An MCP session with no request for this long is dropped.
    pub session_idle: Duration,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Serves until SIGINT or SIGTERM, then closes every SSH session.
pub async fn serve(config: Settings, options: HttpOptions) -> anyhow::Result<()> {
    let addr = options.addr;
    if config.clients.is_empty() && config.http.jwt.is_none() && !addr.ip().is_loopback() {
        bail!(
            "--http {addr}: a non-loopback address needs client tokens, or anyone who reaches \
             it could run commands as you. Make one with `mcp-ssh-session token new NAME` and \
             add the [clients.NAME] table it prints to {}, or bind 127.0.0.1",
            config.plugins.config_path.display()
        );
    }
    let mut clients = HashMap::new();
    for (name, spec) in &config.clients {
        let hash = spec
            .token_sha256
            .as_deref()
            .map(parse_token_hash)
            .transpose()?;
        let policy = spec.policy(name)?;
        clients.insert(name.clone(), (hash, policy));
    }
    let jwt = match &config.http.jwt {
        Some(spec) => Some(jwt::JwtVerifier::load(spec, &config.clients).await?),
        None => None,
    };
    let operator = SessionManager::new(config.ssh.clone());
    let plugins = PluginHost::load(config.plugins.clone(), operator.clone())
        .await
        .context("loading tool components")?;
    let audit = plugins.audit_log();
    // One namespace per client: its own session and job tables.
    let mut namespaces = vec![operator.clone()];
    let unmapped: Arc<Mutex<HashMap<String, Caller>>> = Arc::default();
    let callers = if clients.is_empty() && jwt.is_none() {
        tracing::warn!(
            "no [clients] in the config: any process on this machine that can reach the \
             port can use your SSH credentials through it; add client tokens \
             (`mcp-ssh-session token new NAME`) on a shared machine"
        );
        Callers::One(Caller::operator("local", operator))
    } else {
        let mut map = HashMap::new();
        for (name, (_, policy)) in &clients {
            let sessions = SessionManager::new(config.ssh.clone());
            namespaces.push(sessions.clone());
            let caller = Caller {
                name: name.as_str().into(),
                sessions,
                policy: Some(Arc::new(policy.clone())),
                shared: config
                    .http
                    .shared_operator_sessions
                    .then(|| operator.clone()),
            };
            map.insert(name.clone(), caller);
        }
        let others = config
            .http
            .jwt
            .as_ref()
            .is_some_and(|j| j.allow_unmapped_subjects)
            .then(|| unmapped_callers(&config, &operator, unmapped.clone()));
        Callers::Clients(map, others)
    };
    let server = McpServer::new(Arc::new(plugins), Arc::new(callers));

    let acceptor = match &options.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--http {addr}: cannot bind"))?;
    let bound = listener.local_addr()?;
    let hosts = allowed_hosts(bound.ip(), &config.http.allowed_hosts);
    let stop = CancellationToken::new();
    let mut sessions =
        LocalSessionManager::default().with_event_store(Arc::new(replay::Replay::default()));
    // The idle limit is ours (`idle`): rmcp's counts only messages, and
    // would cut off a long call that prints nothing.
    sessions.session_config.keep_alive = None;
    let sessions = Arc::new(sessions);
    let activity = Arc::new(idle::Activity::default());
    idle::spawn_reaper(
        activity.clone(),
        sessions.clone(),
        options.session_idle,
        stop.clone(),
    );
    let rmcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts.clone())
        .with_allowed_origins(config.http.allowed_origins.clone())
        .enforce_origin_validation()
        // As over stdio: a call with the largest `stdin_base64` must fit.
        .with_max_request_body_bytes(crate::MAX_MESSAGE)
        .with_cancellation_token(stop.child_token());
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), sessions.clone(), rmcp_config);
    let gate = Arc::new(gate::Gate {
        scheme,
        hosts,
        origins: config.http.allowed_origins.clone(),
        authorization_servers: authorization_servers(&config.http.authorization_servers, &jwt),
        clients: auth::Clients::new(
            clients
                .into_iter()
                .filter_map(|(n, (h, _))| Some((n, h?)))
                .collect(),
        ),
        jwt,
        audit,
        bindings: auth::Bindings::new(sessions),
        activity,
        budget: budget::BodyBudget::default(),
    });
    let router = Router::new()
        .nest_service("/mcp", service)
        .route(
            "/.well-known/oauth-protected-resource",
            axum::routing::get(gate::metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            axum::routing::get(gate::metadata),
        )
        .layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            gate::check,
        ))
        .with_state(gate);
    // Printed whatever the log filter: tests and scripts read it for the
    // port picked.
    eprintln!("mcp-ssh-session: listening on {scheme}://{bound}/mcp");

    tokio::spawn(crate::stop_on_signal(stop.clone()));
    let served = async {
        serve::serve(listener, acceptor, router, stop.clone()).await;
        Ok(())
    };
    let result = tokio::select! {
        r = served => r,
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    };
    let later: Vec<SessionManager> = lock(&unmapped)
        .values()
        .map(|c| c.sessions.clone())
        .collect();
    let closing = namespaces
        .iter()
        .chain(&later)
        .map(SessionManager::shut_down);
    let closed: u32 = futures::future::join_all(closing).await.into_iter().sum();
    tracing::info!(closed, "HTTP server stopped; SSH sessions closed");
    result
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Namespaces kept for unmapped JWT subjects: past it, those holding no
/// session and running no job are dropped.
const MAX_UNMAPPED_SUBJECTS: usize = 1024;

/// Callers for JWT subjects no `[clients.NAME]` maps (`jwt:SUB`, made by
/// the gate only when `allow_unmapped_subjects` is on): each gets a
/// namespace of its own on first use and no restriction but the grants.
/// The issuer decides how many subjects there are, so the namespaces that
/// hold nothing are dropped past [`MAX_UNMAPPED_SUBJECTS`] (a subject
/// coming back starts afresh).
fn unmapped_callers(
    config: &Settings,
    operator: &SessionManager,
    made: Arc<Mutex<HashMap<String, Caller>>>,
) -> MakeCaller {
    let ssh = config.ssh.clone();
    let shared = config
        .http
        .shared_operator_sessions
        .then(|| operator.clone());
    Arc::new(move |name: &str| {
        if !name.starts_with(jwt::UNMAPPED_PREFIX) {
            return None;
        }
        let mut made = lock(&made);
        make_room(&mut made, name, MAX_UNMAPPED_SUBJECTS);
        let caller = made.entry(name.to_string()).or_insert_with(|| Caller {
            name: name.into(),
            sessions: SessionManager::new(ssh.clone()),
            // No restriction beyond the grants, but no key files on the
            // server either: those take the operator's word.
            policy: crate::plugins::ClientPolicy::new(name, None, None, None)
                .ok()
                .map(Arc::new),
            shared: shared.clone(),
        });
        Some(caller.clone())
    })
}

/// Before `name` is added to a full `made`: drops the namespaces that
/// hold nothing. Busy ones stay, whatever their number: each holds
/// sessions, which are bounded per namespace.
fn make_room(made: &mut HashMap<String, Caller>, name: &str, max: usize) {
    if made.len() >= max && !made.contains_key(name) {
        made.retain(|_, c| !c.sessions.is_idle());
    }
}

/// The operator's authorization servers, and the JWT issuer if not among
/// them: RFC 9728 clients find where to get a token there.
fn authorization_servers(listed: &[String], jwt: &Option<jwt::JwtVerifier>) -> Vec<String> {
    let mut servers = listed.to_vec();
    if let Some(jwt) = jwt
        && !servers.iter().any(|s| s == jwt.issuer())
    {
        servers.push(jwt.issuer().to_string());
    }
    servers
}

/// An SSE answer goes out in several small writes (headers, event, last
/// chunk): with Nagle on, the last waits for the client's delayed ACK, 40
/// ms on every call.
pub(crate) fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
}

/// The `Host` names a request may carry: the address bound, the loopback
/// names when it is a loopback or wildcard address, and the operator's.
fn allowed_hosts(ip: IpAddr, extra: &[String]) -> Vec<String> {
    let mut hosts = vec![ip.to_string()];
    if ip.is_loopback() || ip.is_unspecified() {
        hosts.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    }
    hosts.extend(extra.iter().map(|h| h.to_ascii_lowercase()));
    hosts.sort();
    hosts.dedup();
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_binds_allow_the_loopback_names_and_others_only_their_own() {
        let local = allowed_hosts("127.0.0.1".parse().unwrap(), &[]);
        assert!(local.contains(&"localhost".to_string()));
        let public = allowed_hosts("192.0.2.7".parse().unwrap(), &["Bastion.Example".into()]);
        assert_eq!(public, vec!["192.0.2.7", "bastion.example"]);
    }

    #[test]
    fn unmapped_namespaces_that_hold_nothing_make_room_and_busy_ones_stay() {
        let caller = |name: &str| Caller::operator(name, SessionManager::new(Default::default()));
        let mut made: HashMap<String, Caller> = (0..3)
            .map(|i| (format!("jwt:{i}"), caller(&format!("jwt:{i}"))))
            .collect();
        // A job running in one: it stays.
        let busy =
            made["jwt:1"]
                .sessions
                .jobs()
                .create("s".into(), "sleep 9".into(), "built-in".into());
        // Not full, or a known name: nothing goes.
        make_room(&mut made, "jwt:new", 4);
        make_room(&mut made, "jwt:0", 3);
        assert_eq!(made.len(), 3);
        make_room(&mut made, "jwt:new", 3);
        assert_eq!(made.keys().collect::<Vec<_>>(), ["jwt:1"]);
        busy.finish(Err("done".into()));
        make_room(&mut made, "jwt:new", 1);
        assert!(made.is_empty());
    }
}
