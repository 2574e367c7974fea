//! Who a request is: bearer tokens checked against the clients' SHA-256
//! hashes (the server never stores a token), in constant time; making a
//! token (`mcp-ssh-session token new NAME`); and which MCP session belongs
//! to which client, so that one client can neither post into another's
//! session nor resume its event streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64ct::Encoding;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Tokens start with this, so a leaked one is easy to recognise (and to
/// scan repositories for).
const TOKEN_PREFIX: &str = "mss_";

/// Why a name or hash in the config is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "client name {0:?} must be 1 to 64 letters, digits, '-', '_' or '.' (it is logged and \
         audited)"
    )]
    Name(String),
    #[error("token_sha256 must be 64 hex digits (the SHA-256 of the token), not {0} characters")]
    Hash(usize),
    #[error("cannot get random bytes for a token: {0}")]
    Random(String),
}

/// Checks a client's name: it reaches logs and audit lines.
pub fn check_client_name(name: &str) -> Result<(), AuthConfigError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AuthConfigError::Name(name.chars().take(80).collect()))
    }
}

/// The 32 bytes of a `token_sha256` value.
pub fn parse_token_hash(hex: &str) -> Result<[u8; 32], AuthConfigError> {
    let hex = hex.trim();
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(AuthConfigError::Hash(hex.len()));
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
            _ => return Err(AuthConfigError::Hash(hex.len())),
        }
    }
    Ok(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random token for client `name` and the config lines that admit
/// it: `(token, lines)`. The token is shown once; only its hash is kept.
pub fn new_token(name: &str) -> Result<(String, String), AuthConfigError> {
    check_client_name(name)?;
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| AuthConfigError::Random(e.to_string()))?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64ct::Base64UrlUnpadded::encode_string(&random)
    );
    let hash = to_hex(&Sha256::digest(token.as_bytes()));
    let lines = format!("[clients.{name}]\ntoken_sha256 = \"{hash}\"\n");
    Ok((token, lines))
}

/// The configured clients' token hashes.
pub(crate) struct Clients {
    hashes: Vec<(Arc<str>, [u8; 32])>,
}

impl Clients {
    pub(crate) fn new(hashes: Vec<(String, [u8; 32])>) -> Self {
        Self {
            hashes: hashes.into_iter().map(|(n, h)| (n.into(), h)).collect(),
        }
    }

    /// Whether requests must carry a token at all.
    pub(crate) fn required(&self) -> bool {
        !self.hashes.is_empty()
    }

    /// The client whose hash `token` has. Every hash is compared, each in
    /// constant time, so timing tells neither which client nor how much
    /// of a hash matched.
    pub(crate) fn verify(&self, token: &str) -> Option<Arc<str>> {
        let digest = Sha256::digest(token.as_bytes());
        let mut found = None;
        for (name, hash) in &self.hashes {
            if bool::from(hash.ct_eq(digest.as_slice())) {
                found = Some(name.clone());
            }
        }
        found
    }
}

/// Which client each MCP session (`Mcp-Session-Id`) belongs to.
pub(crate) struct Bindings {
    owners: Mutex<HashMap<String, Arc<str>>>,
    sessions: Arc<LocalSessionManager>,
}

impl Bindings {
    pub(crate) fn new(sessions: Arc<LocalSessionManager>) -> Self {
        Self {
            owners: Mutex::new(HashMap::new()),
            sessions,
        }
    }

    /// Whether `client` may use session `id`: only the client that opened
    /// it may.
    pub(crate) fn allows(&self, id: &str, client: &str) -> bool {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.get(id).is_some_and(|owner| **owner == *client)
    }

    /// Records that `client` opened session `id`, and forgets the sessions
    /// rmcp has dropped since (idle, deleted).
    pub(crate) async fn bind(&self, id: &str, client: Arc<str>) {
        let live: std::collections::HashSet<String> = self
            .sessions
            .sessions
            .read()
            .await
            .keys()
            .map(|k| k.to_string())
            .collect();
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.retain(|k, _| live.contains(k));
        owners.insert(id.to_string(), client);
    }

    /// How many MCP sessions are open, all clients together.
    pub(crate) async fn open_sessions(&self) -> usize {
        self.sessions.sessions.read().await.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_verifies_as_its_client_and_nothing_else_does() {
        let (token, lines) = new_token("ci-bot").unwrap();
        assert!(
            token.starts_with(TOKEN_PREFIX) && token.len() > 40,
            "{token}"
        );
        let hex = lines
            .lines()
            .find_map(|l| l.strip_prefix("token_sha256 = \""))
            .unwrap()
            .trim_end_matches('"');
        assert!(!lines.contains(&token), "the config lines hold the token");
        let clients = Clients::new(vec![
            ("other".into(), [7; 32]),
            ("ci-bot".into(), parse_token_hash(hex).unwrap()),
        ]);
        assert_eq!(clients.verify(&token).as_deref(), Some("ci-bot"));
        assert_eq!(clients.verify(&format!("{token}x")), None);
        assert_eq!(clients.verify(""), None);
    }

    #[test]
    fn bad_names_and_hashes_are_refused() {
        for name in ["", "a b", "a/b", "x\n", &"n".repeat(65)] {
            assert!(check_client_name(name).is_err(), "{name:?}");
        }
        assert!(parse_token_hash("abc").is_err());
        assert!(parse_token_hash(&"g".repeat(64)).is_err());
        assert!(parse_token_hash(&"Ab".repeat(32)).is_ok());
    }
}
