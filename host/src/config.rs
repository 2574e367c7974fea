//! The server's settings, as the library takes them (the binary builds
//! them from its flags), and the operator's config file.

use std::path::PathBuf;

use anyhow::bail;

use crate::plugins::grants::GrantError;
use crate::plugins::{Grants, PluginSettings};
use crate::ssh::SshSettings;

/// The operator's config file (`config.toml`): grants and the audit log.
/// Unknown keys are errors, never silently ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Grants for plugin components, by name (the `.wasm` file's stem).
    #[serde(default)]
    pub plugins: Grants,
    /// Where to append the audit log (JSON lines, created with mode 0600).
    pub audit_log: Option<PathBuf>,
    /// Local directories uploads and downloads may use; `--transfer-root`
    /// replaces them.
    #[serde(default)]
    pub transfer_roots: Vec<PathBuf>,
    /// Clients of the HTTP transport, by name: their token hashes and what
    /// each may reach.
    #[serde(default)]
    pub clients: std::collections::BTreeMap<String, ClientSpec>,
    /// The HTTP transport's settings.
    #[serde(default)]
    pub http: HttpSpec,
}

/// One `[clients.NAME]` table: a client of the HTTP transport. It
/// authenticates with an opaque token, a JWT, or either.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// SHA-256 of the client's bearer token, in hex; the token itself is
    /// never stored (`mcp-ssh-session token new NAME` makes one).
    pub token_sha256: Option<String>,
    /// A bearer JWT (`[http.jwt]`) whose `sub` is this authenticates as
    /// this client.
    pub jwt_subject: Option<String>,
    /// Hosts the client may reach, as in a plugin grant; absent: any.
    pub hosts: Option<Vec<String>>,
    /// User names it may log in as (globs); absent: any.
    pub users: Option<Vec<String>>,
    /// Argv patterns it may run, as in a plugin grant; absent: any command.
    /// When set, raw shell lines, background jobs and file writes are
    /// refused, as for a component granted `commands` without `shell`.
    pub commands: Option<Vec<Vec<String>>>,
    /// May name private key files on the server (`key_filename`): they are
    /// the operator's files, so off unless the operator says so.
    #[serde(default)]
    pub key_files: bool,
}

/// The `[http]` table.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// Browser origins allowed to call (`https://app.example:443`, `:*` for
    /// any port); a request with any other `Origin` gets 403. Requests
    /// without `Origin` (non-browser clients) are not affected.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Host names clients may use besides the address bound (and the
    /// loopback names when it is a loopback one): any other `Host` gets
    /// 421, which stops DNS rebinding.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// OAuth authorization servers published in the RFC 9728
    /// protected-resource metadata; may be empty.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Let every client use SSH sessions opened with the operator's own
    /// agent and keys (calls without credentials that the client has no
    /// session of its own for). Off: each client connects its own.
    #[serde(default)]
    pub shared_operator_sessions: bool,
    /// Bearer JWTs from an authorization server, the second way a client
    /// authenticates.
    pub jwt: Option<JwtSpec>,
}

/// The `[http.jwt]` table: which JWTs authenticate a client.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    /// The `iss` tokens must carry; also published as the authorization
    /// server in the RFC 9728 metadata.
    pub issuer: String,
    /// The `aud` tokens must carry (or contain).
    pub audience: String,
    /// The issuer's public keys (a JWKS JSON file), read at start.
    pub jwks_file: Option<PathBuf>,
    /// Or an `https://` URL serving them: fetched at start, and again
    /// when a token names an unknown `kid` (at most once a minute).
    pub jwks_url: Option<String>,
    /// CA certificates (PEM) to trust for `jwks_url` instead of the
    /// system's bundle.
    pub jwks_ca_file: Option<PathBuf>,
    /// Admit a token whose `sub` no `[clients.NAME]` maps, as client
    /// `jwt:SUB` with a namespace of its own and no restriction beyond the
    /// grants. Off: such tokens get 401.
    #[serde(default)]
    pub allow_unmapped_subjects: bool,
}

impl OperatorConfig {
    /// Reads `path`; a missing file is an error only if it was asked for.
    /// Every grant is checked here, so a bad value stops the start with
    /// its file, table and key.
    pub fn load(path: &std::path::Path, required: bool) -> anyhow::Result<Self> {
        let file: Self =
            match crate::fsutil::read_regular_string(path, crate::fsutil::CONFIG_FILE_CAP) {
                Ok(text) => toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Self::default(),
                Err(e) => bail!("config file {}: {e}", path.display()),
            };
        for (name, grant) in &file.plugins {
            if let Err(e) = grant.validate() {
                bail!("config file {}: [plugins.{name}] {e}", path.display());
            }
        }
        for (name, client) in &file.clients {
            if let Err(e) = client.validate(name) {
                bail!("config file {}: [clients.{name}] {e}", path.display());
            }
        }
        if let Err(e) = crate::http::check_jwt_config(file.http.jwt.as_ref(), &file.clients) {
            bail!("config file {}: {e}", path.display());
        }
        Ok(file)
    }
}

impl ClientSpec {
    /// Checks the name, the hash and every pattern, so a bad one stops the
    /// start naming its key.
    pub fn validate(&self, name: &str) -> anyhow::Result<()> {
        crate::http::check_client_name(name)?;
        match (&self.token_sha256, &self.jwt_subject) {
            (None, None) => bail!("needs token_sha256, jwt_subject or both"),
            (_, Some(sub)) if sub.is_empty() => bail!("jwt_subject must not be empty"),
            (Some(hash), _) => {
                crate::http::parse_token_hash(hash)?;
            }
            (None, Some(_)) => {}
        }
        self.policy(name)?;
        Ok(())
    }

    /// The client's restrictions, checked beside each component's grant.
    pub fn policy(&self, name: &str) -> Result<crate::plugins::ClientPolicy, GrantError> {
        crate::plugins::ClientPolicy::new(
            name,
            self.hosts.clone(),
            self.users.clone(),
            self.commands.clone(),
        )
        .map(|p| p.with_key_files(self.key_files))
    }
}

/// Everything the server runs with: the SSH core's settings and the
/// plugin host's.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ssh: SshSettings,
    pub plugins: PluginSettings,
    /// The HTTP transport's clients, from the config file.
    pub clients: std::collections::BTreeMap<String, ClientSpec>,
    /// The config file's `[http]` table.
    pub http: HttpSpec,
}
