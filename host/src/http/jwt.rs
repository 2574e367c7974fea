//! Bearer JWTs from the operator's authorization server (`[http.jwt]`),
//! the second way a client authenticates: the keys of a local JWKS file
//! (read at start), and the check of one token: its signature by the key
//! its `kid` names, with that key's one algorithm (RS256, ES256 or EdDSA;
//! never `none` or HMAC, which a public JWKS cannot verify and which key
//! confusion would forge), then `iss`, `aud`, `exp` (required), `nbf` and
//! `iat` with 60 s of leeway. The token's `sub` must be the `jwt_subject`
//! of a `[clients.NAME]` table: the request is then that client's, with
//! its restrictions and its namespace; any other subject is refused.
//!
//! Reasons for a refusal are fixed strings: they go into the 401's
//! `error_description` and the audit log, and never carry the token.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

use crate::config::{ClientSpec, JwtSpec};

/// Clock skew allowed on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 60;
/// Longer tokens are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;
const MISSING: &str = "a required claim (exp, iss, aud, sub) is missing";
/// A JWKS larger than this is not a key set.
const JWKS_CAP: u64 = 1024 * 1024;

/// Why `[http.jwt]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("[http.jwt] jwks_file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("[http.jwt] jwks_file {0}: not a JWKS ({{\"keys\": [...]}}): {1}")]
    Parse(PathBuf, serde_json::Error),
    #[error(
        "[http.jwt] jwks_file {0}: no usable key (RS256, ES256 on P-256 or EdDSA on Ed25519, \
         each with a \"kid\")"
    )]
    NoKeys(PathBuf),
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

/// One key of the set, with the only algorithm it verifies.
struct Key {
    key: DecodingKey,
    alg: Algorithm,
}

/// The verifier of bearer JWTs.
pub(crate) struct JwtVerifier {
    issuer: String,
    audience: String,
    keys: HashMap<String, Key>,
    /// `sub` -> client name.
    subjects: HashMap<String, Arc<str>>,
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
    /// Reads the key set and maps the clients' subjects.
    pub(crate) fn load(
        spec: &JwtSpec,
        clients: &BTreeMap<String, ClientSpec>,
    ) -> Result<Self, JwtConfigError> {
        check_config(Some(spec), clients)?;
        let path = &spec.jwks_file;
        let text = crate::fsutil::read_regular_string(path, JWKS_CAP)
            .map_err(|e| JwtConfigError::Read(path.clone(), e))?;
        let keys = parse_jwks(path, &text)?;
        let subjects = clients
            .iter()
            .filter_map(|(name, c)| Some((c.jwt_subject.clone()?, Arc::from(name.as_str()))))
            .collect();
        Ok(Self {
            issuer: spec.issuer.clone(),
            audience: spec.audience.clone(),
            keys,
            subjects,
        })
    }

    /// The issuer, for the RFC 9728 metadata.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client `token` authenticates, or why it does not.
    pub(crate) fn verify(&self, token: &str) -> Result<Arc<str>, &'static str> {
        if token.len() > MAX_TOKEN_LEN {
            return Err("token too long");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err("algorithm not accepted (RS256, ES256 or EdDSA only)");
        }
        let kid = header.kid.as_deref().ok_or("token has no kid")?;
        let key = self.keys.get(kid).ok_or("unknown key id (kid)")?;
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
        self.subjects
            .get(&sub)
            .cloned()
            .ok_or("subject is not mapped to a client (jwt_subject)")
    }
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

/// The usable keys of a JWKS, by `kid`; others are skipped with a
/// warning (a set may hold encryption or HMAC keys we must never use).
fn parse_jwks(path: &Path, text: &str) -> Result<HashMap<String, Key>, JwtConfigError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set =
        serde_json::from_str(text).map_err(|e| JwtConfigError::Parse(path.to_path_buf(), e))?;
    let mut keys = HashMap::new();
    for (i, value) in set.keys.into_iter().enumerate() {
        match usable_key(value) {
            Ok((kid, key)) => {
                keys.insert(kid, key);
            }
            Err(why) => tracing::warn!(
                "[http.jwt] jwks_file {}: key {i} skipped: {why}",
                path.display()
            ),
        }
    }
    if keys.is_empty() {
        return Err(JwtConfigError::NoKeys(path.to_path_buf()));
    }
    Ok(keys)
}

fn usable_key(value: serde_json::Value) -> Result<(String, Key), String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a known JWK: {e}"))?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("not a signing key (\"use\")".into());
    }
    let kid = jwk.common.key_id.clone().ok_or("no \"kid\"")?;
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric (oct) key: never accepted".into());
        }
        _ => return Err("an unsupported key type or curve".into()),
    };
    let stated = jwk.common.key_algorithm;
    let agrees = match stated {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => alg == Algorithm::EdDSA,
        Some(_) => false,
    };
    if !agrees {
        return Err(format!("its \"alg\" {stated:?} is not accepted for it"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable: {e}"))?;
    Ok((kid, Key { key, alg }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shapes_are_told_from_opaque_tokens() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(looks_like_jwt("eyJh.eyJz."));
        assert!(!looks_like_jwt("mss_abcdef"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a b.c.d"));
    }

    #[test]
    fn symmetric_and_kidless_keys_are_skipped() {
        let set = r#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"e","use":"enc","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        assert!(matches!(
            parse_jwks(Path::new("k.json"), set),
            Err(JwtConfigError::NoKeys(_))
        ));
        let good = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"e","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let keys = parse_jwks(Path::new("k.json"), good).unwrap();
        assert_eq!(keys["e"].alg, Algorithm::EdDSA);
    }
}
