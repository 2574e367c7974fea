//! Bearer JWTs from the operator's authorization server (`[http.jwt]`),
//! the second way a client authenticates: the issuer's keys ([`jwks`]:
//! a local JWKS file read at start, or an `https://` URL fetched at start
//! and again when a token names an unknown `kid`, at most once a minute
//! after the first time), and the check of one token: its signature by the key
//! its `kid` names, with that key's one algorithm (RS256, ES256 or EdDSA;
//! never `none` or HMAC, which a public JWKS cannot verify and which key
//! confusion would forge), then `iss`, `aud`, `exp` (required), `nbf` and
//! `iat` with 60 s of leeway. The token's `sub` must be the `jwt_subject`
//! of a `[clients.NAME]` table: the request is then that client's, with
//! its restrictions and its namespace. Any other subject is refused, or,
//! with `allow_unmapped_subjects`, is client `jwt:SUB`: a namespace of its
//! own, no restriction beyond the components' grants.
//!
//! Reasons for a refusal are fixed strings: they go into the 401's
//! `error_description` and the audit log, and never carry the token.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};

use super::jwks::{self, Fetcher, JwksError, Key};
use crate::config::{ClientSpec, JwtSpec};

/// Clock skew allowed on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 60;
/// Longer tokens are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Unmapped subjects' client names start with this.
pub(crate) const UNMAPPED_PREFIX: &str = "jwt:";
const MISSING: &str = "a required claim (exp, iss, aud, sub) is missing";
/// The least time between two fetches for unknown `kid`s: a stream of
/// made-up ids must not make us hammer the issuer.
const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Why `[http.jwt]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("[http.jwt] jwks_file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("[http.jwt] {0}: {1}")]
    Keys(String, JwksError),
    #[error("[http.jwt] needs exactly one of jwks_file and jwks_url")]
    Source,
    #[error("[http.jwt] jwks_ca_file goes with jwks_url only")]
    CaWithoutUrl,
    #[error("[http.jwt] {0} must not be empty")]
    Empty(&'static str),
    #[error("[clients.{0}] and [clients.{1}] have the same jwt_subject")]
    SameSubject(String, String),
    #[error("[clients.{0}] has a jwt_subject but the config has no [http.jwt] table")]
    NoJwt(String),
}

/// Checks `[http.jwt]` and the clients' `jwt_subject`s without reading
/// the key set (the config check runs before the transport is chosen).
pub fn check_config(
    jwt: Option<&JwtSpec>,
    clients: &BTreeMap<String, ClientSpec>,
) -> Result<(), JwtConfigError> {
    if let Some(spec) = jwt {
        if spec.issuer.trim().is_empty() {
            return Err(JwtConfigError::Empty("issuer"));
        }
        if spec.audience.trim().is_empty() {
            return Err(JwtConfigError::Empty("audience"));
        }
        match (&spec.jwks_file, &spec.jwks_url) {
            (Some(_), None) if spec.jwks_ca_file.is_some() => {
                return Err(JwtConfigError::CaWithoutUrl);
            }
            (Some(_), None) => {}
            (None, Some(url)) => {
                // Checked again, with the CA file read, when serving.
                if !url.starts_with("https://") {
                    return Err(JwtConfigError::Keys(
                        "jwks_url".into(),
                        JwksError::Url(url.chars().take(200).collect()),
                    ));
                }
            }
            _ => return Err(JwtConfigError::Source),
        }
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (name, client) in clients {
        let Some(subject) = client.jwt_subject.as_deref() else {
            continue;
        };
        if jwt.is_none() {
            return Err(JwtConfigError::NoJwt(name.clone()));
        }
        if let Some(other) = seen.insert(subject, name) {
            return Err(JwtConfigError::SameSubject(other.into(), name.clone()));
        }
    }
    Ok(())
}

/// The verifier of bearer JWTs.
pub(crate) struct JwtVerifier {
    issuer: String,
    audience: String,
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// Set for `jwks_url`; the time of the last refresh for an unknown
    /// `kid` (`None`: none yet) is held across the fetch, so concurrent
    /// requests wait for one fetch rather than start their own.
    refresh: Option<(Fetcher, tokio::sync::Mutex<Option<Instant>>)>,
    /// `sub` -> client name.
    subjects: HashMap<String, Arc<str>>,
    allow_unmapped: bool,
}

/// The claims read besides those the library checks; typed, so that a
/// non-numeric `exp`, `nbf` or `iat` or an `iss` array is a malformed
/// token (the library would take it as absent, so unchecked). Absent ones
/// are left to the library, which names the missing claim.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: Option<String>,
    iss: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
}

impl JwtVerifier {
    /// Reads or fetches the key set and maps the clients' subjects.
    pub(crate) async fn load(
        spec: &JwtSpec,
        clients: &BTreeMap<String, ClientSpec>,
    ) -> Result<Self, JwtConfigError> {
        check_config(Some(spec), clients)?;
        let (keys, refresh) = match (&spec.jwks_file, &spec.jwks_url) {
            (Some(path), _) => {
                let text = crate::fsutil::read_regular_string(path, jwks::JWKS_CAP)
                    .map_err(|e| JwtConfigError::Read(path.clone(), e))?;
                let source = format!("jwks_file {}", path.display());
                let keys = jwks::parse(&source, &text)
                    .map_err(|e| JwtConfigError::Keys(source.clone(), e))?;
                (keys, None)
            }
            (None, Some(url)) => {
                let source = format!("jwks_url {url}");
                let keys_error = |e| JwtConfigError::Keys(source.clone(), e);
                let fetcher =
                    Fetcher::new(url, spec.jwks_ca_file.as_deref()).map_err(keys_error)?;
                let text = fetcher.fetch().await.map_err(keys_error)?;
                let keys = jwks::parse(&source, &text).map_err(keys_error)?;
                (keys, Some((fetcher, tokio::sync::Mutex::new(None))))
            }
            (None, None) => return Err(JwtConfigError::Source),
        };
        let subjects = clients
            .iter()
            .filter_map(|(name, c)| Some((c.jwt_subject.clone()?, Arc::from(name.as_str()))))
            .collect();
        Ok(Self {
            issuer: spec.issuer.clone(),
            audience: spec.audience.clone(),
            keys: RwLock::new(Arc::new(keys)),
            refresh,
            subjects,
            allow_unmapped: spec.allow_unmapped_subjects,
        })
    }

    /// The issuer, for the RFC 9728 metadata.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client `token` authenticates, or why it does not.
    pub(crate) async fn verify(&self, token: &str) -> Result<Arc<str>, &'static str> {
        if token.len() > MAX_TOKEN_LEN {
            return Err("token too long");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        if has_crit(token) {
            // RFC 7515 section 4.1.11: extensions it names must be
            // understood, and this server understands none.
            return Err("critical header extension not understood (crit), or a header not read");
        }
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err("algorithm not accepted (RS256, ES256 or EdDSA only)");
        }
        let kid = header.kid.as_deref().ok_or("token has no kid")?;
        let key = match self.key(kid) {
            Some(key) => key,
            None => self.refreshed(kid).await.ok_or("unknown key id (kid)")?,
        };
        if key.alg != header.alg {
            return Err("algorithm does not match the key");
        }
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature => "bad signature",
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::ImmatureSignature => "token not yet valid (nbf)",
                    ErrorKind::InvalidIssuer => "wrong issuer",
                    ErrorKind::InvalidAudience => "wrong audience",
                    ErrorKind::MissingRequiredClaim(_) => MISSING,
                    ErrorKind::InvalidAlgorithm => "algorithm does not match the key",
                    _ => "malformed token",
                }
            })?;
        let now = jsonwebtoken::get_current_timestamp();
        if data
            .claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(LEEWAY_SECS))
        {
            return Err("token issued in the future (iat)");
        }
        let sub = data.claims.sub.ok_or(MISSING)?;
        if let Some(client) = self.subjects.get(&sub) {
            return Ok(client.clone());
        }
        if !self.allow_unmapped {
            return Err("subject is not mapped to a client (jwt_subject)");
        }
        // The name reaches logs and audit lines; a configured name has no
        // ':', so `jwt:` names never meet a table's namespace.
        super::auth::check_client_name(&sub)
            .map(|()| format!("{UNMAPPED_PREFIX}{sub}").into())
            .map_err(|_| "subject unusable as a client name (1 to 64 of A-Z a-z 0-9 - _ .)")
    }

    fn key(&self, kid: &str) -> Option<Key> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.get(kid).cloned()
    }

    /// The key `kid` after fetching the set again, if the URL may be
    /// asked now; a failed fetch keeps the keys we have.
    async fn refreshed(&self, kid: &str) -> Option<Key> {
        let (fetcher, last) = self.refresh.as_ref()?;
        let mut last = last.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.key(kid) {
            return Some(key);
        }
        if last.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
            return None;
        }
        *last = Some(Instant::now());
        let fetched = match fetcher.fetch().await {
            Ok(text) => jwks::parse("jwks_url", &text),
            Err(e) => Err(e),
        };
        match fetched {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "[http.jwt] key set fetched again");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
            }
            Err(e) => tracing::warn!("[http.jwt] fetching the key set again failed: {e}"),
        }
        self.key(kid)
    }
}

/// Whether the header of `token` (already decoded once) has a `crit`, or
/// cannot be read here to tell (a lone surrogate, nesting deeper than
/// serde_json's limit, which jsonwebtoken skips over unread).
fn has_crit(token: &str) -> bool {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let part = token.split('.').next().unwrap_or_default();
    Base64UrlUnpadded::decode_vec(part)
        .ok()
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .is_none_or(|header| header.get("crit").is_some())
}

/// Whether `token` has a JWT's shape (three base64url parts): opaque
/// tokens are checked against the hashes only.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crit_header_is_seen() {
        use base64ct::{Base64UrlUnpadded, Encoding};
        let token = |header: &str| {
            format!(
                "{}.e30.c2ln",
                Base64UrlUnpadded::encode_string(header.as_bytes())
            )
        };
        assert!(has_crit(&token(
            r#"{"alg":"RS256","kid":"k","crit":["exp"]}"#
        )));
        assert!(has_crit(&token(r#"{"alg":"RS256","crit":[]}"#)));
        assert!(!has_crit(&token(r#"{"alg":"RS256","kid":"k"}"#)));
        assert!(has_crit("not a token"), "unreadable: refused");
        assert!(has_crit(&token(
            r#"{"alg":"RS256","x":"\ud800","crit":["x"]}"#
        )));
        let deep = format!(
            r#"{{"alg":"RS256","crit":["x"],"x":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(has_crit(&token(&deep)));
    }

    #[test]
    fn jwt_shapes_are_told_from_opaque_tokens() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(looks_like_jwt("eyJh.eyJz."));
        assert!(!looks_like_jwt("mss_abcdef"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a b.c.d"));
    }

    #[test]
    fn a_jwt_config_needs_one_key_source_and_distinct_subjects() {
        let spec = |file: bool, url: Option<&str>, ca: bool| JwtSpec {
            issuer: "https://idp.example".into(),
            audience: "mcp".into(),
            jwks_file: file.then(|| PathBuf::from("k.json")),
            jwks_url: url.map(String::from),
            jwks_ca_file: ca.then(|| PathBuf::from("ca.pem")),
            allow_unmapped_subjects: false,
        };
        let none = BTreeMap::new();
        assert!(check_config(Some(&spec(true, None, false)), &none).is_ok());
        assert!(check_config(Some(&spec(false, Some("https://i/k"), true)), &none).is_ok());
        for bad in [
            spec(false, None, false),
            spec(true, Some("https://i/k"), false),
            spec(true, None, true),
            spec(false, Some("http://i/k"), false),
        ] {
            assert!(check_config(Some(&bad), &none).is_err(), "{bad:?}");
        }
        let client = |sub: &str| ClientSpec {
            jwt_subject: Some(sub.into()),
            ..ClientSpec::default()
        };
        let twice = BTreeMap::from([("a".into(), client("s")), ("b".into(), client("s"))]);
        assert!(matches!(
            check_config(Some(&spec(true, None, false)), &twice),
            Err(JwtConfigError::SameSubject(..))
        ));
        assert!(ClientSpec::default().validate("a").is_err(), "no way in");
        assert!(client("s").validate("a").is_ok());
        let one = BTreeMap::from([("a".into(), client("s"))]);
        assert!(matches!(
            check_config(None, &one),
            Err(JwtConfigError::NoJwt(_))
        ));
    }
}
