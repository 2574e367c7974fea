//! Bearer JWTs (`[http.jwt]`) against the real binary: keys made in the
//! test (an RSA key by the openssl CLI, P-256 and Ed25519 keys by ring), a
//! JWKS file, tokens signed here. A valid token is its mapped client, with
//! that client's restrictions and namespace; every forged, stale or
//! misaddressed token gets 401 with a reason, and no token reaches the
//! log (at `--log trace`) or the audit log. `http_jwks.rs` fetches the
//! keys from a URL.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use crate::http_server::{HttpServer, Mcp, PROTOCOL};
use crate::server::Server;
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

pub const ISSUER: &str = "https://idp.mcpssh-test.example";
pub const AUDIENCE: &str = "mcp-ssh-session-test";

/// Signing keys, and the JWKS of their public halves.
pub struct Keys {
    pub rsa: EncodingKey,
    pub ec: EncodingKey,
    pub ed: EncodingKey,
    /// The P-256 public key's bytes, for the key-confusion attack.
    ec_public: Vec<u8>,
    /// A P-256 key the JWKS does not hold, under the `kid` of one it does.
    stranger: EncodingKey,
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn p256(rng: &SystemRandom) -> (EncodingKey, Vec<u8>) {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), rng).unwrap();
    (
        EncodingKey::from_ec_der(pkcs8.as_ref()),
        pair.public_key().as_ref().to_vec(),
    )
}

/// Makes the keys and writes `dir/jwks.json`.
pub fn keys(dir: &Path) -> Keys {
    let pem = dir.join("rsa.pem");
    let der = dir.join("rsa.der");
    let ok = |cmd: &mut Command| assert!(cmd.output().unwrap().status.success(), "{cmd:?}");
    ok(Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&pem)
        .arg("2048"));
    ok(Command::new("openssl")
        .args(["rsa", "-traditional", "-outform", "DER", "-in"])
        .arg(&pem)
        .arg("-out")
        .arg(&der));
    let modulus = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    let modulus = String::from_utf8(modulus.stdout).unwrap();
    let n = hex(modulus.trim().strip_prefix("Modulus=").unwrap());

    let rng = SystemRandom::new();
    let (ec, ec_public) = p256(&rng);
    let (stranger, _) = p256(&rng);
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed_public = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref())
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
         "n": b64(&n), "e": "AQAB"},
        {"kty": "EC", "kid": "ec-1", "crv": "P-256",
         "x": b64(&ec_public[1..33]), "y": b64(&ec_public[33..])},
        {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": b64(&ed_public)},
    ]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
    Keys {
        rsa: EncodingKey::from_rsa_der(&std::fs::read(&der).unwrap()),
        ec,
        ed: EncodingKey::from_ed_der(ed_pkcs8.as_ref()),
        ec_public,
        stranger,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims valid for the next ten minutes.
pub fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now(), "nbf": now() - 5,
           "exp": now() + 600})
}

pub fn sign(alg: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// The config: an audit log, `[http.jwt]` and `clients`.
fn config(home: &Path, clients: &str) -> String {
    format!(
        "audit_log = \"{}\"\n{clients}\n[http.jwt]\nissuer = \"{ISSUER}\"\naudience = \
         \"{AUDIENCE}\"\njwks_file = \"{}\"\n",
        home.join("audit.jsonl").display(),
        home.join("jwks.json").display()
    )
}

fn target(sshd: &Sshd, command: &str) -> Value {
    json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
           "password": TEST_PASSWORD, "command": command})
}

fn is_error(answer: &Value) -> bool {
    answer["result"]["isError"] == true || answer.get("error").is_some()
}

#[test]
fn a_valid_jwt_is_its_mapped_client_with_that_clients_restrictions_and_namespace() {
    let sshd = Sshd::start();
    let builder = Server::builder();
    let keys = keys(builder.home());
    let clients = "[clients.ci]\njwt_subject = \"robot-ci\"\ncommands = [[\"echo\", \"*\"]]\n\
                   [clients.ops]\njwt_subject = \"robot-ops\"\n";
    let cfg = config(builder.home(), clients);
    let server = HttpServer::start(builder, &cfg, &[]);

    let ci_token = sign(Algorithm::RS256, "rsa-1", &claims("robot-ci"), &keys.rsa);
    let ops_token = sign(Algorithm::ES256, "ec-1", &claims("robot-ops"), &keys.ec);
    let mut ci = Mcp::open(&server, Some(&ci_token));
    let mut ops = Mcp::open(&server, Some(&ops_token));

    // ci's table allows argv only: a shell line is refused in its name.
    let denied = ci.call("execute_command", target(&sshd, "echo hi"));
    assert!(is_error(&denied), "{denied}");
    assert!(denied.to_string().contains("client ci"), "{denied}");

    // ops is unrestricted, and its session is its own.
    let ran = ops.call("execute_command", target(&sshd, "echo mcpssh-jwt-ops"));
    assert!(!is_error(&ran), "{ran}");
    assert!(ran.to_string().contains("mcpssh-jwt-ops"), "{ran}");
    let theirs = ci.call("list_sessions", json!({}));
    assert_eq!(
        theirs["result"]["structuredContent"]["sessions"],
        json!([]),
        "{theirs}"
    );
    let mine = ops.call("list_sessions", json!({}));
    assert_eq!(
        mine["result"]["structuredContent"]["sessions"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{mine}"
    );
    // Nor can a token of another subject post into ops's MCP session.
    let hijack = Mcp {
        server: &server,
        token: Some(ci_token.clone()),
        session: ops.session.clone(),
        next: 100,
    };
    let reply = hijack.post(&json!({"jsonrpc":"2.0","id":100,"method":"tools/list"}));
    assert_eq!(reply.status, 404, "{reply:?}");

    // EdDSA works too, for the same client.
    let ed_token = sign(Algorithm::EdDSA, "ed-1", &claims("robot-ops"), &keys.ed);
    Mcp::open(&server, Some(&ed_token));

    let audit = server.audit();
    assert!(
        audit.iter().any(|l| l["kind"] == "ssh_command"
            && l["client"] == "ci"
            && l["decision"]
                .as_str()
                .unwrap()
                .starts_with("denied: client ci")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l["kind"] == "ssh_command" && l["client"] == "ops"),
        "{audit:?}"
    );

    // The RFC 9728 metadata names the issuer.
    let meta = server.request("GET", "/.well-known/oauth-protected-resource/mcp", &[], "");
    let meta: Value = serde_json::from_str(meta.body.trim()).unwrap();
    assert_eq!(meta["authorization_servers"], json!([ISSUER]), "{meta}");
}

#[test]
fn forged_stale_and_misaddressed_jwts_get_401_with_a_reason_and_are_never_logged() {
    let builder = Server::builder();
    let keys = keys(builder.home());
    let cfg = config(builder.home(), "[clients.ci]\njwt_subject = \"robot-ci\"\n");
    // Everything at trace but the WASM compiler, whose trace takes minutes.
    let filter = "trace,cranelift=off,regalloc2=off,wasmtime=off,wasmparser=off";
    let server = HttpServer::start(builder, &cfg, &["--log", filter]);

    let good = claims("robot-ci");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        change(&mut c);
        c
    };
    let ec = |c: &Value| sign(Algorithm::ES256, "ec-1", c, &keys.ec);
    let valid = ec(&good);
    let (head, rest) = valid.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    let mut tampered_claims = good.clone();
    tampered_claims["sub"] = json!("robot-admin");
    let tampered = format!(
        "{head}.{}.{signature}",
        b64(tampered_claims.to_string().as_bytes())
    );
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"ec-1"}"#),
        b64(good.to_string().as_bytes())
    );
    // Validly signed, but naming an extension it says must be understood.
    let crit = {
        let head = b64(br#"{"alg":"ES256","typ":"JWT","kid":"ec-1","crit":["x-hop"],"x-hop":1}"#);
        let signed = format!("{head}.{}", b64(good.to_string().as_bytes()));
        let signature =
            jsonwebtoken::crypto::sign(signed.as_bytes(), &keys.ec, Algorithm::ES256).unwrap();
        format!("{signed}.{signature}")
    };
    let confused = sign(
        Algorithm::HS256,
        "ec-1",
        &good,
        &EncodingKey::from_secret(&keys.ec_public),
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            ec(&with(&|c| c["exp"] = json!(now() - 120))),
            "token expired",
        ),
        (
            "not yet valid",
            ec(&with(&|c| c["nbf"] = json!(now() + 600))),
            "token not yet valid",
        ),
        (
            "issued in the future",
            ec(&with(&|c| c["iat"] = json!(now() + 600))),
            "issued in the future",
        ),
        (
            "nbf as a string",
            ec(&with(&|c| c["nbf"] = json!((now() + 600).to_string()))),
            "malformed token",
        ),
        (
            "no exp",
            ec(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
            "required claim",
        ),
        (
            "wrong issuer",
            ec(&with(&|c| c["iss"] = json!("https://evil.example"))),
            "wrong issuer",
        ),
        (
            "wrong audience",
            ec(&with(&|c| c["aud"] = json!(["other-api"]))),
            "wrong audience",
        ),
        (
            "wrong key",
            sign(Algorithm::ES256, "ec-1", &good, &keys.stranger),
            "bad signature",
        ),
        (
            "unknown kid",
            sign(Algorithm::ES256, "ec-9", &good, &keys.ec),
            "unknown key id",
        ),
        ("alg none", none, "malformed token"),
        (
            "HS256 with the public key",
            confused,
            "algorithm not accepted",
        ),
        (
            "RS256 under an EC key's kid",
            sign(Algorithm::RS256, "ec-1", &good, &keys.rsa),
            "does not match the key",
        ),
        ("tampered payload", tampered, "bad signature"),
        ("an unknown critical extension", crit, "crit"),
        (
            "unmapped subject",
            ec(&with(&|c| c["sub"] = json!("robot-stranger"))),
            "not mapped to a client",
        ),
    ];
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":PROTOCOL,"capabilities":{},"clientInfo":{"name":"raw","version":"0"}}})
    .to_string();
    for (what, token, reason) in &cases {
        let reply = server.post_with_bearer(token, &init);
        assert_eq!(reply.status, 401, "{what}: {reply:?}");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\", error_description=\"")
                && challenge.contains(reason),
            "{what}: {challenge}"
        );
    }
    // The valid token still works: the refusals were the claims' doing.
    Mcp::open(&server, Some(&valid));

    let audit = server.audit();
    let refusals: Vec<&Value> = audit.iter().filter(|l| l["kind"] == "http_auth").collect();
    assert_eq!(refusals.len(), cases.len(), "{audit:?}");
    for ((what, _, reason), line) in cases.iter().zip(&refusals) {
        let decision = line["decision"].as_str().unwrap();
        assert!(decision.contains(reason), "{what}: {decision}");
        assert_eq!(line["source"], "127.0.0.1");
    }
    let everything = format!("{audit:?}{}", server.log());
    // Nothing on these paths logs at TRACE; DEBUG shows the filter took.
    assert!(
        everything.contains(" DEBUG "),
        "the log filter was not applied"
    );
    for (what, token, _) in cases.iter().chain([&("valid", valid.clone(), "")]) {
        // Header and payload are not secret; the signature is what a
        // logged token would give away.
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            signature.is_empty() || !everything.contains(signature),
            "{what}: a token was logged"
        );
        assert!(!everything.contains(token.as_str()), "{what}: logged");
    }
}

#[test]
fn unmapped_subjects_when_allowed_are_jwt_clients_each_in_a_namespace_of_its_own() {
    let sshd = Sshd::start();
    let builder = Server::builder();
    let keys = keys(builder.home());
    let mut cfg = config(builder.home(), "");
    cfg.push_str("allow_unmapped_subjects = true\n");
    let server = HttpServer::start(builder, &cfg, &[]);
    let token = |sub: &str| sign(Algorithm::ES256, "ec-1", &claims(sub), &keys.ec);

    let mut a = Mcp::open(&server, Some(&token("robot-a")));
    let mut b = Mcp::open(&server, Some(&token("robot-b")));
    let ran = a.call("execute_command", target(&sshd, "echo mcpssh-jwt-a"));
    assert!(!is_error(&ran), "{ran}");
    let theirs = b.call("list_sessions", json!({}));
    assert_eq!(
        theirs["result"]["structuredContent"]["sessions"],
        json!([]),
        "{theirs}"
    );
    // A new MCP session of the same subject is the same client.
    let mut again = Mcp::open(&server, Some(&token("robot-a")));
    let mine = again.call("list_sessions", json!({}));
    assert_eq!(
        mine["result"]["structuredContent"]["sessions"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{mine}"
    );
    // A subject that cannot be a client name (it reaches audit lines).
    let reply = server.post_with_bearer(&token("robot a\nforged"), "{}");
    assert_eq!(reply.status, 401, "{reply:?}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("unusable as a client name"),
        "{challenge}"
    );
    let audit = server.audit();
    assert!(
        audit
            .iter()
            .any(|l| l["kind"] == "ssh_command" && l["client"] == "jwt:robot-a"),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l["kind"] == "tool_call" && l["client"] == "jwt:robot-b"),
        "{audit:?}"
    );
}
