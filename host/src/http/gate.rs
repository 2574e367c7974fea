//! The one check every HTTP request passes before rmcp sees it, in this
//! order: its `Host` is one of the bound names (else 421: a DNS-rebinding
//! page reaches us under its own name), its `Origin`, when it has one, is
//! on the operator's list (else 403), and, when clients are configured, it
//! carries a client's bearer token or a valid JWT ([`super::jwt`]) naming
//! a client (else 401, audited with the source address and the reason,
//! never the token) and names only MCP sessions of that client
//! (else 404, as for a session that does not exist). Also the RFC 9728
//! protected-resource metadata, which needs no token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::auth::{Bindings, Clients};
use super::idle::Activity;
use super::jwt::{self, JwtVerifier};
use crate::audit::{self, AuditLog};
use crate::mcp::ClientName;

const SESSION_HEADER: &str = "mcp-session-id";
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// What the gate checks against.
pub(crate) struct Gate {
    /// `http` or `https`, for the URLs the metadata gives.
    pub(crate) scheme: &'static str,
    /// Allowed `Host` names, lower-case, without ports.
    pub(crate) hosts: Vec<String>,
    /// Allowed `Origin`s (`scheme://host[:port]`, `:*` for any port).
    pub(crate) origins: Vec<String>,
    pub(crate) authorization_servers: Vec<String>,
    pub(crate) clients: Clients,
    pub(crate) jwt: Option<JwtVerifier>,
    pub(crate) audit: Option<Arc<AuditLog>>,
    pub(crate) bindings: Bindings,
    /// Which MCP sessions are in use, for the idle limit.
    pub(crate) activity: Arc<Activity>,
    /// Room for large requests, all clients together.
    pub(crate) budget: super::budget::BodyBudget,
}

/// A refusal. It closes the connection: a peer refused again and again on
/// one connection would keep it open for ever (each answer restarts the
/// wait for its next request), and 512 such peers would hold every place.
fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The middleware: see the module header.
pub(crate) async fn check(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(host) = request_host(request.headers()) else {
        gate.refused(peer, None, "no usable Host header");
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "Misdirected Request: no Host header",
        );
    };
    if !gate.hosts.contains(&host) {
        let shown: String = host.chars().take(100).collect();
        gate.refused(
            peer,
            None,
            &format!("Host {shown} is not a name of this server (DNS rebinding?)"),
        );
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "Misdirected Request: this server does not answer to that Host",
        );
    }
    if let Some(origin) = request.headers().get(header::ORIGIN)
        && !origin
            .to_str()
            .is_ok_and(|o| origin_allowed(o, &gate.origins))
    {
        gate.refused(peer, None, "Origin is not allowed");
        return plain(StatusCode::FORBIDDEN, "Forbidden: Origin is not allowed");
    }
    // Only the metadata's own paths are public: rmcp answers MCP on any
    // path below /mcp.
    let path = request.uri().path();
    let public = path == METADATA_PATH || path.strip_prefix(METADATA_PATH) == Some("/mcp");
    if public {
        return next.run(request).await;
    }
    let named = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if named.is_none() && gate.bindings.open_sessions().await >= super::idle::MAX_SESSIONS {
        gate.refused(peer, None, "too many MCP sessions open");
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: too many MCP sessions are open; try again later",
        );
    }
    if !(gate.clients.required() || gate.jwt.is_some()) {
        let Ok(room) = gate.budget.admit("local", request.headers()).await else {
            return gate.no_room(peer, None);
        };
        let response = next.run(request).await;
        return hold(in_use(&gate.activity, named.as_deref(), response), room);
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let verdict = match token {
        None => Err(None),
        Some(token) => match (gate.clients.verify(token), &gate.jwt) {
            (Some(client), _) => Ok(client),
            (None, Some(jwt)) if jwt::looks_like_jwt(token) => {
                jwt.verify(token).await.map_err(Some)
            }
            (None, _) => Err(Some("unknown bearer token")),
        },
    };
    let client = match verdict {
        Ok(client) => client,
        Err(why) => {
            gate.refused(peer, None, why.unwrap_or("no bearer token"));
            let authority = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or(&host);
            return unauthorized(gate.scheme, authority, why);
        }
    };
    if let Some(id) = &named
        && !gate.bindings.allows(id, &client)
    {
        gate.refused(
            peer,
            Some(&client),
            "MCP session of another client, or none",
        );
        return plain(StatusCode::NOT_FOUND, "Not Found: Session not found");
    }
    let Ok(room) = gate.budget.admit(&client, request.headers()).await else {
        return gate.no_room(peer, Some(&client));
    };
    request.extensions_mut().insert(ClientName(client.clone()));
    let response = next.run(request).await;
    if named.is_none()
        && let Some(id) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        gate.bindings.bind(id, client).await;
    }
    hold(in_use(&gate.activity, named.as_deref(), response), room)
}

/// `response`, keeping `held` until its body has been sent or dropped.
fn hold<T: Send + Sync + 'static>(response: Response, held: Option<T>) -> Response {
    let Some(held) = held else {
        return response;
    };
    let (parts, body) = response.into_parts();
    let body = futures::StreamExt::map(body.into_data_stream(), move |chunk| {
        let _held = &held;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// The answer to a request of session `named`, keeping the session in use
/// (for the idle limit) until the answer has been sent or dropped: a long
/// call's stream is activity. A new session counts from its creation.
fn in_use(activity: &Arc<Activity>, named: Option<&str>, response: Response) -> Response {
    let created = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok());
    let Some(id) = named.or(created) else {
        return response;
    };
    // Only an answer rmcp gave as the session's is tracked: a refusal
    // (404 for an unknown session, or 405, 406, 415 before it looks) would
    // keep any id a request names until the next reap.
    if !response.status().is_success() {
        return response;
    }
    let guard = activity.begin(id);
    hold(response, Some(guard))
}

impl Gate {
    /// 503 for a large request that found no room in the budget.
    fn no_room(&self, peer: SocketAddr, client: Option<&str>) -> Response {
        self.refused(peer, client, "too much request data in flight");
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: too much request data is in flight; try again later",
        )
    }

    /// Logs and audits a refused request: its client when known (a
    /// valid token naming another client's session), never its token.
    fn refused(&self, peer: SocketAddr, client: Option<&str>, why: &str) {
        tracing::warn!(%peer, client = client.unwrap_or("-"), "refused: {why}");
        if let Some(log) = &self.audit {
            log.record(&audit::Entry {
                kind: "http_auth",
                client,
                component: "-",
                source: Some(peer.ip().to_string()),
                decision: format!("denied: {why}"),
                ..audit::Entry::default()
            });
        }
    }
}

/// 401 pointing at the metadata (RFC 9728 section 5.1); `invalid` says
/// why a presented token was refused (RFC 6750 section 3), in a fixed
/// string that holds no part of the token.
fn unauthorized(scheme: &str, host: &str, invalid: Option<&str>) -> Response {
    let metadata = format!("{scheme}://{host}{METADATA_PATH}/mcp");
    let challenge = if let Some(why) = invalid {
        format!(
            "Bearer error=\"invalid_token\", error_description=\"{why}\", \
             resource_metadata=\"{metadata}\""
        )
    } else {
        format!("Bearer resource_metadata=\"{metadata}\"")
    };
    let mut response = plain(
        StatusCode::UNAUTHORIZED,
        "Unauthorized: a bearer token is required",
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// RFC 9728 protected-resource metadata for `/mcp`.
pub(crate) async fn metadata(State(gate): State<Arc<Gate>>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let body = serde_json::json!({
        "resource": format!("{}://{host}/mcp", gate.scheme),
        "authorization_servers": gate.authorization_servers,
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-ssh-session",
    });
    let mut response = Response::new(Body::from(body.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The request's `Host`, lower-case, without port or brackets.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::HOST)?.to_str().ok()?;
    // RFC 9110 section 7.2: no userinfo in Host (it would reach the
    // metadata's URLs as sent).
    if value.contains('@') {
        return None;
    }
    let authority: axum::http::uri::Authority = value.parse().ok()?;
    Some(
        authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

/// `(scheme, host, port)` of an origin, the port defaulted by scheme.
fn parse_origin(origin: &str) -> Option<(String, String, Option<u16>)> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let rest = rest.trim_end_matches('/');
    let (rest, any_port) = match rest.strip_suffix(":*") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let authority: axum::http::uri::Authority = rest.parse().ok()?;
    let scheme = scheme.to_ascii_lowercase();
    let port = match (any_port, authority.port_u16(), scheme.as_str()) {
        (true, _, _) => None,
        (false, Some(p), _) => Some(p),
        (false, None, "https") => Some(443),
        (false, None, _) => Some(80),
    };
    Some((scheme, authority.host().to_ascii_lowercase(), port))
}

/// Whether `origin` is on the list (`"null"` only if listed as such).
fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if origin.trim() == "null" {
        return allowed.iter().any(|a| a == "null");
    }
    let Some((scheme, host, Some(port))) = parse_origin(origin) else {
        return false;
    };
    allowed
        .iter()
        .filter_map(|a| parse_origin(a))
        .any(|(s, h, p)| s == scheme && h == host && p.is_none_or(|p| p == port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sessions_rmcp_knows_are_tracked() {
        let activity = Arc::new(Activity::default());
        let answer = |status| {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = status;
            response
        };
        for i in 0..100 {
            let named = format!("made-up-{i}");
            drop(in_use(
                &activity,
                Some(&named),
                answer(StatusCode::NOT_FOUND),
            ));
        }
        for status in [StatusCode::NOT_ACCEPTABLE, StatusCode::METHOD_NOT_ALLOWED] {
            drop(in_use(&activity, Some("made-up"), answer(status)));
        }
        assert_eq!(activity.tracked(), 0);
        drop(in_use(&activity, Some("real"), answer(StatusCode::OK)));
        assert_eq!(activity.tracked(), 1);
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let allowed = vec![
            "https://app.example".to_string(),
            "http://localhost:*".to_string(),
        ];
        assert!(origin_allowed("https://app.example", &allowed));
        assert!(origin_allowed("https://APP.example:443", &allowed));
        assert!(!origin_allowed("https://app.example:8443", &allowed));
        assert!(!origin_allowed("http://app.example", &allowed));
        assert!(origin_allowed("http://localhost:5173", &allowed));
        assert!(!origin_allowed("http://localhost.evil.example", &allowed));
        assert!(!origin_allowed("null", &allowed));
        assert!(!origin_allowed("https://evil.example", &[]));
    }
}
