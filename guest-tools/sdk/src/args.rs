//! Argument types that every tool reaching a host shares: where to connect
//! ([`TargetArgs`]), with what ([`CredentialArgs`]), and, for tools that
//! run commands, how ([`RunArgs`]). Tools embed them with
//! `#[serde(flatten)]`, so the names, types and descriptions of these fields
//! are written once and cannot drift from tool to tool.
//!
//! serde does not support `deny_unknown_fields` on a struct that is
//! flattened, so these two leave it off; the tool's own argument struct
//! keeps it, and serde then refuses whatever key no flattened struct took
//! (and the host refuses it first, since the schema says
//! `additionalProperties: false`).

use std::collections::BTreeMap;

use base64ct::{Base64, Encoding};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::types::{CommandOptions, SudoOptions};
use crate::{Credentials, SshError, Target};

/// The SSH target of a call: host, user and port, each user and port
/// filled in from ssh_config when left out.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
// Without this the doc comment above becomes the description of every
// tool's whole argument object.
#[schemars(description = "")]
pub struct TargetArgs {
    /// Host name, IP address, or an alias from the server's ~/.ssh/config
    /// (its HostName, User, Port, IdentityFile, ProxyJump... apply).
    pub host: String,
    /// User to log in as. Default: ssh_config's User for the host, else
    /// the local user name, as with `ssh`.
    #[serde(default)]
    pub username: Option<String>,
    /// SSH port. Default: ssh_config's Port for the host, else 22.
    #[serde(default)]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
}

/// Credentials a caller may give for a new session. Without them an open
/// session, or the operator's ssh-agent and default keys, serve the call.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(description = "")]
pub struct CredentialArgs {
    /// Password for password authentication. Omit to reuse the open session,
    /// or to use ssh-agent and the default keys.
    #[serde(default)]
    pub password: Option<String>,
    /// Path of a private key file on the machine running this server.
    #[serde(default)]
    pub key_filename: Option<String>,
    /// Passphrase of an encrypted `key_filename`.
    #[serde(default)]
    pub passphrase: Option<String>,
}

/// How a command runs: where, with which extra variables, what it reads,
/// and whether through sudo.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(description = "")]
pub struct RunArgs {
    /// Run in this directory, for this call only: the session's working
    /// directory does not change. Default: the session's working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Variables for this call only, on top of the session's, as
    /// {"NAME": "value"}.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Text written to the command's stdin, then end-of-file (at most
    /// 16 MiB). Default: stdin is closed, so a command reading it sees
    /// end-of-file at once.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Like `stdin`, for bytes: base64-encoded.
    #[serde(default)]
    pub stdin_base64: Option<String>,
    /// Run the command through sudo, as `sudo_user`. The password is sent
    /// to sudo only when it asks, never to the command.
    #[serde(default)]
    pub sudo: Option<bool>,
    /// The user sudo runs the command as. Default: root.
    #[serde(default)]
    pub sudo_user: Option<String>,
    /// The password sudo asks for. Default: the password that opened the
    /// session, if any.
    #[serde(default)]
    pub sudo_password: Option<String>,
}

impl RunArgs {
    /// The host's options, or a clear error for arguments that do not go
    /// together.
    pub fn options(self) -> Result<CommandOptions, SshError> {
        let invalid = |m: &str| SshError::InvalidArgument(m.to_string());
        let stdin = match (self.stdin, self.stdin_base64) {
            (Some(_), Some(_)) => return Err(invalid("give stdin or stdin_base64, not both")),
            (Some(text), None) => Some(text.into_bytes()),
            (None, Some(b64)) => Some(
                Base64::decode_vec(b64.trim())
                    .map_err(|_| invalid("stdin_base64 is not valid base64"))?,
            ),
            (None, None) => None,
        };
        let sudo = if self.sudo == Some(true) {
            Some(SudoOptions {
                user: self.sudo_user,
                password: self.sudo_password,
            })
        } else if self.sudo_user.is_some() || self.sudo_password.is_some() {
            return Err(invalid(
                "sudo_user and sudo_password need sudo: true; without it the command does not run \
                 through sudo",
            ));
        } else {
            None
        };
        Ok(CommandOptions {
            cwd: self.cwd,
            env: self.env.unwrap_or_default().into_iter().collect(),
            stdin,
            sudo,
        })
    }
}

impl From<TargetArgs> for Target {
    fn from(a: TargetArgs) -> Self {
        Target::new(a.host, a.username, a.port)
    }
}

impl TargetArgs {
    /// The target with the caller's credentials, if it gave any.
    pub fn with(self, credentials: CredentialArgs) -> Target {
        Target::from(self).with_credentials(credentials)
    }
}

impl From<CredentialArgs> for Option<Credentials> {
    fn from(c: CredentialArgs) -> Self {
        // A passphrase alone unlocks nothing: no key file, no credentials.
        (c.password.is_some() || c.key_filename.is_some()).then_some(Credentials {
            password: c.password,
            key_file: c.key_filename,
            passphrase: c.passphrase,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_json;
    use serde_json::{Value, json};

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Args {
        #[serde(flatten)]
        target: TargetArgs,
        /// Command line to run.
        command: String,
        #[serde(flatten)]
        credentials: CredentialArgs,
    }

    #[test]
    fn flattened_arguments_make_one_flat_closed_object() {
        let schema = schema_json::<Args>();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        let mut names: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no properties: {schema}"))
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "command",
                "host",
                "key_filename",
                "passphrase",
                "password",
                "port",
                "username"
            ]
        );
        assert_eq!(schema["required"], json!(["host", "command"]));
        // Plain JSON Schema that form-based clients render: one type, no
        // `default: null`, no schemars-only format; the bounds stay.
        let port = &schema["properties"]["port"];
        assert_eq!(port["type"], "integer", "{port}");
        assert!(
            port.get("default").is_none() && port.get("format").is_none(),
            "{port}"
        );
        assert_eq!(port["minimum"], 1);
        assert_eq!(port["maximum"], 65535);
        let text = schema.to_string();
        assert!(
            !text.contains("\"null\"") && !text.contains("uint"),
            "{text}"
        );
        assert!(
            port["description"]
                .as_str()
                .is_some_and(|d| d.contains("ssh_config"))
        );
        assert!(schema.get("allOf").is_none(), "{schema}");
        assert!(schema.get("description").is_none(), "{schema}");
    }

    #[test]
    fn an_unknown_field_is_refused_next_to_flattened_ones() {
        let ok: Args =
            serde_json::from_value(json!({"host": "h", "command": "true", "password": "pw"}))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.credentials.password.as_deref(), Some("pw"));
        assert_eq!(
            (ok.target.host.as_str(), ok.command.as_str()),
            ("h", "true")
        );
        let err = serde_json::from_value::<Args>(json!({"host": "h", "command": "c", "bogus": 1}))
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(err, Err("unknown field `bogus`".to_string()));
    }

    #[test]
    fn a_wrong_type_in_a_flattened_field_is_refused() {
        let bad = json!({"host": "h", "command": "c", "port": "22"});
        assert!(serde_json::from_value::<Args>(bad).is_err());
        let none: Value = json!({"command": "c"});
        assert!(serde_json::from_value::<Args>(none).is_err());
    }

    #[test]
    fn credentials_without_password_or_key_are_none() {
        let target = TargetArgs {
            host: "h".into(),
            ..TargetArgs::default()
        };
        let only_passphrase = CredentialArgs {
            passphrase: Some("p".into()),
            ..CredentialArgs::default()
        };
        assert!(target.clone().with(only_passphrase).credentials.is_none());
        let key = CredentialArgs {
            key_filename: Some("/k".into()),
            ..CredentialArgs::default()
        };
        let creds = target.with(key).credentials;
        assert_eq!(creds.and_then(|c| c.key_file).as_deref(), Some("/k"));
    }
}
