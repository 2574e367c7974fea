//! Typed ssh_config values: yes/no, times, ports, `StrictHostKeyChecking`,
//! `ProxyJump` hops and `PreferredAuthentications` methods.
//!
//! Each parser returns a message without a location; [`super::resolve`]
//! adds the file and line, as OpenSSH's `readconf.c` does ("line 12: Bad
//! yes/no argument"), so every malformed value is reported where it is
//! written rather than later, when a connection is attempted.

use crate::ssh::known_hosts::HostKeyPolicy;

/// One `ProxyJump` host: `[user@]host[:port]`, itself resolved through
/// ssh_config when it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
}

/// An authentication method this server can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    PublicKey,
    KeyboardInteractive,
    Password,
}

impl Method {
    const ALL: [Method; 3] = [
        Method::PublicKey,
        Method::KeyboardInteractive,
        Method::Password,
    ];

    /// The method's name on the wire and in `PreferredAuthentications`.
    pub fn name(self) -> &'static str {
        match self {
            Method::PublicKey => "publickey",
            Method::KeyboardInteractive => "keyboard-interactive",
            Method::Password => "password",
        }
    }
}

/// Methods OpenSSH's client knows that this server does not implement.
/// OpenSSH skips names it cannot use with a debug line, so a config
/// written for `ssh` may list them; they are skipped here the same way.
const UNSUPPORTED_METHODS: [&str; 4] = ["gssapi-with-mic", "gssapi-keyex", "hostbased", "none"];

pub(super) fn yes_no(keyword: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("{keyword} must be yes or no, not {v:?}")),
    }
}

/// OpenSSH time format: plain seconds, or a sum like `1m30s`.
pub(super) fn seconds(keyword: &str, v: &str) -> Result<u64, String> {
    let bad = || format!("bad {keyword} {v:?}");
    if let Ok(n) = v.parse::<u64>() {
        return Ok(n);
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !digits.is_empty() {
        total = total.saturating_add(digits.parse::<u64>().map_err(|_| bad())?);
    }
    Ok(total)
}

pub(super) fn port(v: &str) -> Result<u16, String> {
    v.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("bad Port {v:?}"))
}

/// OpenSSH's values, case-insensitive. `ask` needs a terminal; without
/// one `ssh` refuses unknown hosts, and so does this server.
pub(super) fn host_key_policy(v: &str) -> Result<HostKeyPolicy, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "ask" => Ok(HostKeyPolicy::Strict),
        "accept-new" => Ok(HostKeyPolicy::AcceptNew),
        "no" | "off" | "false" => Ok(HostKeyPolicy::Off),
        _ => Err(format!(
            "StrictHostKeyChecking {v:?} is not yes, accept-new, no or ask"
        )),
    }
}

/// `ProxyJump`: comma-separated `[user@]host[:port]` or
/// `ssh://[user@]host[:port]`; IPv6 addresses in brackets.
pub(super) fn jump_hops(value: &str) -> Result<Vec<Hop>, String> {
    value.split(',').map(hop).collect()
}

fn hop(hop: &str) -> Result<Hop, String> {
    let bad = || format!("ProxyJump {hop:?} is not [user@]host[:port]");
    let spec = hop.trim();
    let spec = spec.strip_prefix("ssh://").unwrap_or(spec);
    let (user, rest) = match spec.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, spec),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| bad())?),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (h.to_string(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().map_err(|_| bad())?)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || user.as_deref() == Some("") || port == Some(0) {
        return Err(bad());
    }
    Ok(Hop { host, user, port })
}

/// `PreferredAuthentications`: comma-separated method names, in order.
/// Names of OpenSSH methods this server lacks are skipped with a debug
/// line, as `ssh` skips them; a name that is no method at all is an
/// error, since it is most likely a typo that would silently change which
/// methods are tried.
pub(super) fn methods(value: &str) -> Result<Vec<Method>, String> {
    let mut out = Vec::new();
    for name in value.split(',').filter(|n| !n.is_empty()) {
        if let Some(m) = Method::ALL.into_iter().find(|m| m.name() == name) {
            out.push(m);
        } else if UNSUPPORTED_METHODS.contains(&name) {
            tracing::debug!(
                "ssh_config PreferredAuthentications: {name} is not supported, skipped"
            );
        } else {
            return Err(format!(
                "unknown authentication method {name:?} in PreferredAuthentications \
                 (known: publickey, keyboard-interactive, password)"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_values_parse_like_openssh() {
        assert_eq!(seconds("x", "90").unwrap(), 90);
        assert_eq!(seconds("x", "1m30s").unwrap(), 90);
        assert_eq!(seconds("x", "1h").unwrap(), 3600);
        assert!(seconds("x", "1y").is_err());
    }

    #[test]
    fn bad_jumps_are_refused() {
        for bad in ["", "user@", "h:0", "h:x", "[::1", "@h"] {
            assert!(jump_hops(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn jumps_take_a_scheme_users_with_at_signs_and_brackets() {
        let hops: Vec<_> = jump_hops("ssh://u@h,a@b@c:1,[::1]:2")
            .unwrap()
            .into_iter()
            .map(|h| (h.user, h.host, h.port))
            .collect();
        let user = |u: &str| Some(u.to_string());
        assert_eq!(
            hops,
            [
                (user("u"), "h".to_string(), None),
                (user("a@b"), "c".to_string(), Some(1)),
                (None, "::1".to_string(), Some(2)),
            ]
        );
    }

    #[test]
    fn host_key_policies_follow_openssh_names() {
        assert_eq!(host_key_policy("Yes").unwrap(), HostKeyPolicy::Strict);
        assert_eq!(host_key_policy("ask").unwrap(), HostKeyPolicy::Strict);
        assert_eq!(
            host_key_policy("accept-new").unwrap(),
            HostKeyPolicy::AcceptNew
        );
        assert_eq!(host_key_policy("off").unwrap(), HostKeyPolicy::Off);
        let err = host_key_policy("maybe").unwrap_err();
        assert!(err.contains("\"maybe\""), "{err}");
    }

    #[test]
    fn unsupported_methods_are_skipped_and_unknown_ones_refused() {
        assert_eq!(
            methods("gssapi-with-mic,password,hostbased,publickey").unwrap(),
            [Method::Password, Method::PublicKey]
        );
        let err = methods("publickey,gssapi").unwrap_err();
        assert!(
            err.contains("unknown authentication method \"gssapi\""),
            "{err}"
        );
        // OpenSSH compares names exactly.
        assert!(methods("Password").is_err());
    }
}
