//! What ssh_config says for one host ([`HostOptions`]): the keywords this
//! server acts on, and how one line of an active block sets one of them.
//! The first value obtained wins; `IdentityFile` and `CertificateFile`
//! accumulate instead.

use super::lexer::Line;
use super::tokens;
use super::values::{self, Hop, Method};
use crate::ssh::known_hosts::HostKeyPolicy;

/// OpenSSH's `SSH_MAX_IDENTITY_FILES` and `SSH_MAX_CERTIFICATE_FILES`.
const MAX_FILES: usize = 100;

/// What ssh_config says for one destination. Paths and commands are
/// unexpanded: tokens such as `%h` are expanded by the caller, who knows
/// the final host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOptions {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<String>,
    pub identities_only: Option<bool>,
    pub certificate_files: Vec<String>,
    /// `ProxyJump` or `ProxyCommand`, whichever came first.
    pub proxy: Option<Proxy>,
    pub user_known_hosts_files: Option<Vec<String>>,
    pub global_known_hosts_files: Option<Vec<String>>,
    pub strict_host_key_checking: Option<HostKeyPolicy>,
    pub hash_known_hosts: Option<bool>,
    pub connect_timeout: Option<u64>,
    pub server_alive_interval: Option<u64>,
    pub server_alive_count_max: Option<u32>,
    /// In order; OpenSSH methods this server lacks are already left out.
    pub preferred_authentications: Option<Vec<Method>>,
    pub identity_agent: Option<String>,
    pub password_authentication: Option<bool>,
    pub kbd_interactive_authentication: Option<bool>,
    pub pubkey_authentication: Option<bool>,
}

/// How to reach the host. `ProxyJump` and `ProxyCommand` exclude each
/// other: the first one given wins, `none` included, as in OpenSSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// `ProxyJump none` or `ProxyCommand none`: connect directly.
    None,
    /// Through these hosts, first to last.
    Jump(Vec<Hop>),
    /// A shell line, unexpanded.
    Command(String),
}

impl HostOptions {
    /// Applies one line of an active block; gives the keyword back when
    /// this server does not act on it. Typed values are parsed even
    /// when an earlier value wins, as OpenSSH does, so a malformed line is
    /// reported wherever it is; `%` tokens are checked only in values that
    /// are kept, since only those are ever expanded.
    pub(super) fn apply(&mut self, line: Line) -> Result<Option<String>, String> {
        let Line {
            keyword,
            name,
            args,
            raw,
        } = line;
        let name = name.as_str();
        let first = || {
            args.first()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let yes_no = || values::yes_no(name, &first()?);
        let seconds = || values::seconds(name, &first()?);
        match keyword.as_str() {
            "hostname" => set_name(name, &mut self.hostname, first()?)?,
            "user" => set_name(name, &mut self.user, first()?)?,
            "port" => set_once(&mut self.port, values::port(&first()?)?),
            "identityfile" => push_file(name, &mut self.identity_files, first()?)?,
            "certificatefile" => push_file(name, &mut self.certificate_files, first()?)?,
            "identitiesonly" => set_once(&mut self.identities_only, yes_no()?),
            "proxyjump" => {
                let v = first()?;
                let proxy = if v.eq_ignore_ascii_case("none") {
                    Proxy::None
                } else {
                    Proxy::Jump(values::jump_hops(&v)?)
                };
                set_once(&mut self.proxy, proxy);
            }
            "proxycommand" if self.proxy.is_none() => {
                let proxy = if raw.eq_ignore_ascii_case("none") {
                    Proxy::None
                } else {
                    check_tokens(name, &raw)?;
                    Proxy::Command(raw)
                };
                self.proxy = Some(proxy);
            }
            "proxycommand" => {}
            "userknownhostsfile" | "globalknownhostsfile" => {
                let slot = if keyword == "userknownhostsfile" {
                    &mut self.user_known_hosts_files
                } else {
                    &mut self.global_known_hosts_files
                };
                if slot.is_none() {
                    for file in &args {
                        check_tokens(name, file)?;
                    }
                    *slot = Some(args);
                }
            }
            "stricthostkeychecking" => set_once(
                &mut self.strict_host_key_checking,
                values::host_key_policy(&first()?)?,
            ),
            "hashknownhosts" => set_once(&mut self.hash_known_hosts, yes_no()?),
            "connecttimeout" => set_once(&mut self.connect_timeout, seconds()?),
            "serveraliveinterval" => set_once(&mut self.server_alive_interval, seconds()?),
            "serveralivecountmax" => {
                let v = first()?;
                let n = v
                    .parse()
                    .map_err(|_| format!("bad ServerAliveCountMax {v:?}"))?;
                set_once(&mut self.server_alive_count_max, n);
            }
            "preferredauthentications" => set_once(
                &mut self.preferred_authentications,
                values::methods(&first()?)?,
            ),
            "identityagent" => {
                let v = first()?;
                // `$VAR` names an environment variable, not a path.
                if self.identity_agent.is_none() && !v.starts_with('$') {
                    check_tokens(name, &v)?;
                }
                set_once(&mut self.identity_agent, v);
            }
            "passwordauthentication" => set_once(&mut self.password_authentication, yes_no()?),
            "kbdinteractiveauthentication" | "challengeresponseauthentication" => {
                set_once(&mut self.kbd_interactive_authentication, yes_no()?)
            }
            "pubkeyauthentication" => set_once(&mut self.pubkey_authentication, yes_no()?),
            _ => return Ok(Some(keyword)),
        }
        Ok(None)
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// A host or user name is checked again once resolved (it reaches
/// known_hosts lines, logs and the login); refusing blanks and control
/// characters here too names the line that holds them.
fn set_name(keyword: &str, slot: &mut Option<String>, value: String) -> Result<(), String> {
    if slot.is_none() {
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "{keyword} {value:?} has blanks or control characters"
            ));
        }
        *slot = Some(value);
    }
    Ok(())
}

fn push_file(name: &str, files: &mut Vec<String>, file: String) -> Result<(), String> {
    if files.len() < MAX_FILES && !files.contains(&file) {
        check_tokens(name, &file)?;
        files.push(file);
    }
    Ok(())
}

fn check_tokens(name: &str, value: &str) -> Result<(), String> {
    tokens::check(value).map_err(|e| format!("{name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::ssh_config::lexer;

    /// Every line of `text` applied, as in one active block.
    fn apply_all(text: &str) -> Result<HostOptions, String> {
        let mut out = HostOptions::default();
        for raw in text.lines() {
            if let Some(line) = lexer::line(raw)? {
                out.apply(line)?;
            }
        }
        Ok(out)
    }

    #[test]
    fn typed_values_parse_where_they_are_read() {
        let c = apply_all(
            "StrictHostKeyChecking accept-new\n  ProxyJump ops@bastion:2222\n  \
             PreferredAuthentications hostbased,password,publickey\n  ProxyCommand nc %h %p\n",
        )
        .unwrap();
        assert_eq!(c.strict_host_key_checking, Some(HostKeyPolicy::AcceptNew));
        assert_eq!(
            c.proxy,
            Some(Proxy::Jump(vec![Hop {
                host: "bastion".into(),
                user: Some("ops".into()),
                port: Some(2222),
            }]))
        );
        assert_eq!(
            c.preferred_authentications,
            Some(vec![Method::Password, Method::PublicKey])
        );
        let c = apply_all("ProxyCommand nc %h %p\nProxyJump h").unwrap();
        assert_eq!(c.proxy, Some(Proxy::Command("nc %h %p".into())));
        let c = apply_all("ProxyJump NONE\nProxyCommand nc %h %p").unwrap();
        assert_eq!(c.proxy, Some(Proxy::None));
    }

    #[test]
    fn the_first_value_wins_but_every_value_is_checked() {
        let c = apply_all("Port 2200\nPort 22\nIdentityFile a\nIdentityFile b").unwrap();
        assert_eq!(c.port, Some(2200));
        assert_eq!(c.identity_files, ["a", "b"]);
        let err = apply_all("StrictHostKeyChecking no\nStrictHostKeyChecking maybe").unwrap_err();
        assert!(err.contains("\"maybe\""), "{err}");
        // A kept value's tokens are checked; a later, unused one is never
        // expanded, so it cannot fail.
        assert!(apply_all("IdentityAgent ~/%z").is_err());
        assert!(apply_all("IdentityAgent none\nIdentityAgent ~/%z").is_ok());
        let err = apply_all("User \"a b\"").unwrap_err();
        assert!(err.contains("User \"a b\" has blanks"), "{err}");
        assert!(apply_all("HostName \"h\u{7}\"").is_err());
        assert!(apply_all("User u\nUser \"a b\"").is_ok());
    }

    #[test]
    fn keywords_not_acted_on_are_handed_back() {
        let mut out = HostOptions::default();
        let line = lexer::line("ForwardX11 yes").unwrap().unwrap();
        assert_eq!(out.apply(line).unwrap().as_deref(), Some("forwardx11"));
        assert_eq!(out, HostOptions::default());
    }
}
