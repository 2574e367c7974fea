//! Bearer JWTs whose keys come from `jwks_url`: an HTTPS server in the
//! test, under a CA made here, serves the JWKS; the binary trusts that CA
//! only (`jwks_ca_file`), fetches at start, and again for an unknown `kid`
//! at most once a minute.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::http_jwt::{AUDIENCE, ISSUER, claims, keys, sign};
use crate::http_server::{HttpServer, Mcp};
use crate::server::{BIN, Server};

/// A CA and a certificate for 127.0.0.1 it signed, by the openssl CLI:
/// `(ca.pem, leaf.pem, leaf.key)` in `dir`.
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let file = |f: &str| dir.join(format!("{name}-{f}"));
    let ok = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca, ca_key) = (file("ca.pem"), file("ca.key"));
    let (leaf, key, csr, ext) = (
        file("leaf.pem"),
        file("leaf.key"),
        file("leaf.csr"),
        file("ext.cnf"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let s = |p: &PathBuf| p.display().to_string();
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    let (ca_s, ca_key_s) = (s(&ca), s(&ca_key));
    args.extend(["-keyout", &ca_key_s, "-out", &ca_s, "-days", "1"]);
    args.extend(["-subj", "/CN=mcpssh-jwt-test-ca"]);
    ok(&args);
    let (key_s, csr_s, leaf_s, ext_s) = (s(&key), s(&csr), s(&leaf), s(&ext));
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key_s, "-out", &csr_s, "-subj", "/CN=127.0.0.1"]);
    ok(&args);
    ok(&[
        "x509",
        "-req",
        "-in",
        &csr_s,
        "-CA",
        &ca_s,
        "-CAkey",
        &ca_key_s,
        "-CAcreateserial",
        "-out",
        &leaf_s,
        "-days",
        "1",
        "-extfile",
        &ext_s,
    ]);
    (ca, leaf, key)
}

/// An HTTPS server on a free loopback port answering every request with
/// the file `served` as it is then; counts the requests.
fn serve_jwks(leaf: &Path, key: &Path, served: PathBuf) -> (u16, Arc<AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(leaf)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => request.push(byte[0]),
                    _ => break,
                }
            }
            if !request.ends_with(b"\r\n\r\n") {
                continue;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let body = std::fs::read_to_string(&served).unwrap();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(reply.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, count)
}

/// `jwks.json` with only the keys named.
fn only(dir: &Path, kids: &[&str]) -> String {
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("jwks.json")).unwrap()).unwrap();
    let keys: Vec<&Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
        .collect();
    json!({ "keys": keys }).to_string()
}

#[test]
fn keys_at_a_jwks_url_are_fetched_again_for_an_unknown_kid_at_most_once_a_minute() {
    let builder = Server::builder();
    let home = builder.home().to_path_buf();
    let keys = keys(&home);
    let (ca, leaf, key) = certificates(&home, "good");
    let served = home.join("served.json");
    std::fs::write(&served, only(&home, &["ec-1"])).unwrap();
    let (port, fetches) = serve_jwks(&leaf, &key, served.clone());
    let jwt = |ca: &Path| {
        format!(
            "audit_log = \"{}\"\n[clients.ci]\njwt_subject = \"robot-ci\"\n[http.jwt]\nissuer = \
             \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_url = \
             \"https://127.0.0.1:{port}/.well-known/jwks.json\"\njwks_ca_file = \"{}\"\n",
            home.join("audit.jsonl").display(),
            ca.display()
        )
    };

    // A certificate the configured CA did not sign stops the start.
    let stranger = Server::builder();
    let (other_ca, _, _) = certificates(stranger.home(), "other");
    std::fs::write(stranger.home().join("config.toml"), jwt(&other_ca)).unwrap();
    let (mut args, env) = stranger.args_and_env();
    args.extend(["--config".into()]);
    args.push(stranger.home().join("config.toml").display().to_string());
    args.extend(["--http".into(), "127.0.0.1:0".into()]);
    let refused = Command::new(BIN)
        .args(&args)
        .envs(env)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("jwks_url") && stderr.contains("certificate"),
        "{stderr}"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 0, "sent over untrusted TLS");

    let server = HttpServer::start(builder, &jwt(&ca), &[]);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    Mcp::open(
        &server,
        Some(&sign(
            Algorithm::ES256,
            "ec-1",
            &claims("robot-ci"),
            &keys.ec,
        )),
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "a known kid fetched");

    // The issuer rotates in a key: its first token makes us fetch again.
    std::fs::write(&served, only(&home, &["ec-1", "rsa-1"])).unwrap();
    Mcp::open(
        &server,
        Some(&sign(
            Algorithm::RS256,
            "rsa-1",
            &claims("robot-ci"),
            &keys.rsa,
        )),
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // Within the minute, unknown kids (made up, or rotated in since) get
    // 401 and no fetch.
    std::fs::write(&served, only(&home, &["ec-1", "rsa-1", "ed-1"])).unwrap();
    for kid in ["ed-1", "made-up-1", "made-up-2"] {
        let token = sign(Algorithm::EdDSA, kid, &claims("robot-ci"), &keys.ed);
        let reply = server.post_with_bearer(&token, "{}");
        assert_eq!(reply.status, 401, "{kid}: {reply:?}");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("unknown key id"), "{kid}: {challenge}");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "fetched within a minute");
}
