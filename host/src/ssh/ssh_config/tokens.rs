//! OpenSSH's `%` tokens and `~` in ssh_config values.
//!
//! Values are expanded only once the final host, port and user are known
//! (by [`crate::ssh::destination`]), but a value's syntax does not depend on
//! them: [`check`] lets the resolver refuse an unknown token where it is
//! written, with its file and line.

/// Values for OpenSSH's `%` tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens<'a> {
    /// `%h`: the remote host name (after `HostName`).
    pub host: &'a str,
    /// `%n`: the host as given.
    pub original_host: &'a str,
    /// `%p`
    pub port: u16,
    /// `%r`: the remote user.
    pub remote_user: &'a str,
    /// `%u`: the local user.
    pub local_user: &'a str,
}

impl Tokens<'_> {
    /// Expands `%d %h %n %p %r %u %%` and a leading `~`; an unknown token is
    /// an error, as in OpenSSH, so a typo never names the wrong file.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        let text = expand_tilde(text);
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('d') => out.push_str(&dirs::home_dir().unwrap_or_default().to_string_lossy()),
                Some('h') => out.push_str(plain(self.host)?),
                Some('n') => out.push_str(plain(self.original_host)?),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('r') => out.push_str(plain(self.remote_user)?),
                Some('u') => out.push_str(plain(self.local_user)?),
                Some(t) => return Err(format!("unknown token %{t} in {text:?}")),
                None => return Err(format!("a lone % ends {text:?}")),
            }
        }
        Ok(out)
    }
}

/// Whether `text` would expand for some host: every `%` starts a known
/// token. Empty names are plain, so only the syntax can fail here.
pub(super) fn check(text: &str) -> Result<(), String> {
    Tokens::default().expand(text).map(drop)
}

/// `HostName` may name the original host with `%h` (and `%%`).
pub fn expand_hostname(hostname: &str, original: &str) -> String {
    hostname
        .replace("%%", "\0")
        .replace("%h", original)
        .replace('\0', "%")
}

/// `~` and `~/...` name the home directory.
pub fn expand_tilde(path: &str) -> String {
    match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = dirs::home_dir().unwrap_or_default();
            format!("{}{rest}", home.display())
        }
        _ => path.to_string(),
    }
}

/// A host or user name fit to be put into a `ProxyCommand` shell line or
/// a file path: the host name can come from a tool call, so `$(...)`, `;`,
/// quotes, `/` or a leading `-` must not reach `/bin/sh` or name another
/// file. OpenSSH refuses such names on its command line for the same reason.
fn plain(value: &str) -> Result<&str, String> {
    let fits = !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:@%+-".contains(c));
    if fits {
        Ok(value)
    } else {
        Err(format!(
            "{value:?} has characters that cannot go into a command line or path \
             (only letters, digits and . _ : @ % + -, not leading -)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expand_and_unknown_ones_fail() {
        let t = Tokens {
            host: "10.0.0.5",
            original_host: "db",
            port: 2200,
            remote_user: "deploy",
            local_user: "me",
        };
        let home = dirs::home_dir().unwrap().display().to_string();
        assert_eq!(
            t.expand("%d/.ssh/%r@%h:%p-%n-%u-%%").unwrap(),
            format!("{home}/.ssh/deploy@10.0.0.5:2200-db-me-%")
        );
        assert_eq!(t.expand("~/k").unwrap(), format!("{home}/k"));
        assert!(t.expand("%z").is_err());
        for hostile in [
            "$(touch x)",
            "a;b",
            "a b",
            "../etc",
            "-oProxyCommand=x",
            "a'b",
        ] {
            let t = Tokens {
                host: hostile,
                ..t.clone()
            };
            assert!(t.expand("nc %h %p").is_err(), "{hostile:?} expanded");
            assert_eq!(t.expand("nc %p").unwrap(), "nc 2200");
        }
        assert_eq!(expand_hostname("%h.example.com", "web"), "web.example.com");
    }

    #[test]
    fn check_refuses_only_bad_syntax() {
        assert!(check("%d/.ssh/%r@%h:%p-%n-%u-%%").is_ok());
        assert!(check("nc %h %p").is_ok());
        assert!(check("none").is_ok());
        assert!(check("~/keys/%z").unwrap_err().contains("%z"));
        assert!(check("key%").unwrap_err().contains("lone %"));
    }
}
