//! The JWT issuer's public keys: which keys of a JWKS are usable (each
//! with the one algorithm it verifies), and fetching a JWKS from an
//! `https://` URL: one GET over rustls on ring, HTTP/1.1 with
//! `Connection: close`, trusting `jwks_ca_file` or the system's CA bundle.
//! A small client of our own rather than an HTTP client crate: one
//! request at start and at most one a minute after.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A JWKS larger than this is not a key set.
pub(crate) const JWKS_CAP: u64 = 1024 * 1024;
/// Connect, handshake, request and answer together.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the system keeps its CA bundle (Debian, Fedora, Alpine, SUSE).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Why a key set cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS ({{\"keys\": [...]}}): {0}")]
    Parse(serde_json::Error),
    #[error(
        "no usable key (RS256, ES256 on P-256 or EdDSA on Ed25519, each with a \"kid\"; \
         skipped ones are logged)"
    )]
    NoKeys,
    #[error("jwks_url must be https://HOST[:PORT]/PATH, not {0:?}")]
    Url(String),
    #[error("CA file {0}: {1}")]
    Ca(PathBuf, String),
    #[error("no CA bundle found (tried {SYSTEM_BUNDLES:?}): set jwks_ca_file")]
    NoBundle,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {FETCH_TIMEOUT:?}")]
    Timeout,
    #[error("answered {0}")]
    Status(String),
    #[error("a malformed HTTP answer")]
    Http,
}

/// One key of the set, with the only algorithm it verifies.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) key: DecodingKey,
    pub(crate) alg: Algorithm,
}

/// The usable keys of a JWKS, by `kid`; others are skipped with a
/// warning (a set may hold encryption or HMAC keys we must never use).
pub(crate) fn parse(source: &str, text: &str) -> Result<HashMap<String, Key>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_str(text).map_err(JwksError::Parse)?;
    let mut keys = HashMap::new();
    for (i, value) in set.keys.into_iter().enumerate() {
        match usable_key(value) {
            Ok((kid, key)) => {
                keys.insert(kid, key);
            }
            Err(why) => tracing::warn!("[http.jwt] {source}: key {i} skipped: {why}"),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoKeys);
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

/// Where to fetch a JWKS from, and whom to trust for it.
pub(crate) struct Fetcher {
    host: String,
    port: u16,
    path: String,
    connector: tokio_rustls::TlsConnector,
}

impl Fetcher {
    /// Checks the URL and reads the CA certificates.
    pub(crate) fn new(url: &str, ca_file: Option<&Path>) -> Result<Self, JwksError> {
        let bad = || JwksError::Url(url.chars().take(200).collect());
        let uri: axum::http::Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("https") {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?;
        if authority.as_str().contains('@') {
            return Err(bad());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let path = uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        let bundle = match ca_file {
            Some(path) => path.to_path_buf(),
            None => SYSTEM_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or(JwksError::NoBundle)?,
        };
        let certs = CertificateDer::pem_file_iter(&bundle)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| JwksError::Ca(bundle.clone(), e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(JwksError::Ca(bundle, "no usable certificate in it".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| JwksError::Ca(bundle, e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            port: authority.port_u16().unwrap_or(443),
            host,
            path,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// The JWKS document at the URL.
    pub(crate) async fn fetch(&self) -> Result<String, JwksError> {
        tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .map_err(|_| JwksError::Timeout)?
    }

    async fn get(&self) -> Result<String, JwksError> {
        let name = ServerName::try_from(self.host.clone()).map_err(|_| JwksError::Http)?;
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let mut tls = self.connector.connect(name, tcp).await?;
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nAccept: application/json\r\nUser-Agent: \
             mcp-ssh-session\r\nConnection: close\r\n\r\n",
            self.path, self.port
        );
        tls.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        let read = (&mut tls)
            .take(JWKS_CAP + 16 * 1024)
            .read_to_end(&mut raw)
            .await;
        // A server that closes without close_notify still sent the body.
        if let Err(e) = read
            && e.kind() != std::io::ErrorKind::UnexpectedEof
        {
            return Err(e.into());
        }
        let text = String::from_utf8(raw).map_err(|_| JwksError::Http)?;
        body(&text)
    }
}

/// The body of a `200` answer, chunked or not.
fn body(text: &str) -> Result<String, JwksError> {
    let (head, body) = text.split_once("\r\n\r\n").ok_or(JwksError::Http)?;
    let status = head.lines().next().unwrap_or("");
    if status.split(' ').nth(1) != Some("200") {
        return Err(JwksError::Status(status.chars().take(100).collect()));
    }
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    if !chunked {
        return Ok(body.to_string());
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or(JwksError::Http)?;
        let size = size.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| JwksError::Http)?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = after.get(..size).ok_or(JwksError::Http)?;
        out.push_str(chunk);
        rest = after.get(size..).ok_or(JwksError::Http)?;
        rest = rest.strip_prefix("\r\n").ok_or(JwksError::Http)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_kidless_and_encryption_keys_are_skipped() {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let set = format!(
            r#"{{"keys":[
            {{"kty":"oct","kid":"h","k":"c2VjcmV0"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{x}"}},
            {{"kty":"OKP","crv":"Ed25519","kid":"e","use":"enc","x":"{x}"}},
            {{"kty":"OKP","crv":"Ed25519","kid":"e","alg":"HS256","x":"{x}"}}
        ]}}"#
        );
        assert!(matches!(parse("t", &set), Err(JwksError::NoKeys)));
        let good = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"e","x":"{x}"}}]}}"#);
        assert_eq!(parse("t", &good).unwrap()["e"].alg, Algorithm::EdDSA);
    }

    #[test]
    fn chunked_and_plain_bodies_are_read_and_other_statuses_refused() {
        let plain = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(body(plain).unwrap(), "{}");
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"k\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(body(chunked).unwrap(), "{\"k\":1}");
        assert!(matches!(
            body("HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(JwksError::Status(_))
        ));
        assert!(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[test]
    fn only_https_urls_are_taken() {
        for url in [
            "http://idp.example/jwks",
            "idp.example/jwks",
            "https://u@idp/x",
        ] {
            assert!(
                matches!(Fetcher::new(url, None), Err(JwksError::Url(_))),
                "{url}"
            );
        }
    }
}
