//! OpenSSH client configuration: `~/.ssh/config`, then `/etc/ssh/ssh_config`,
//! read the way `ssh` reads them for one destination.
//!
//! - [`lexer`]: lines, quoting, `Key value` and `Key=value`;
//! - [`values`]: typed values (yes/no, times, `StrictHostKeyChecking`,
//!   `ProxyJump` hops, `PreferredAuthentications`);
//! - [`options`]: the keywords this server acts on, and how a line sets
//!   one in [`HostOptions`];
//! - [`resolve`]: `Host`, `Match` and `Include`, the first value obtained
//!   wins; it reports every file and directory it reads;
//! - [`cache`]: keeps resolutions while those files and directories are
//!   unchanged (it depends on `resolve`, never the reverse);
//! - [`tokens`]: `%` tokens and `~`.
//!
//! Only the keywords this server acts on are kept; every other keyword is
//! ignored with one debug line, never an error, so a config written for
//! `ssh` always loads. A malformed value of a kept keyword is an [`Error`]
//! naming its file and line.
//!
//! Neither russh-config (no `Include`, no `Match`, a handful of keywords) nor
//! ssh2-config (no `Match`, no `ProxyCommand`, `IdentityAgent`,
//! `UserKnownHostsFile` or `StrictHostKeyChecking`) covers what `ssh` users
//! write, hence this module.

mod cache;
mod lexer;
mod options;
mod resolve;
mod tokens;
mod values;

use std::path::PathBuf;

pub use cache::Cache;
pub use options::{HostOptions, Proxy};
pub use tokens::{Tokens, expand_hostname, expand_tilde};
pub use values::{Hop, Method};

/// A config file that could not be used. Errors are reported like `ssh`
/// reports them (file and line), so the user can fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: {message}")]
pub struct Error {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Which ssh_config files are read, in order. `None` skips one.
#[derive(Debug, Clone)]
pub struct Files {
    pub user: Option<PathBuf>,
    pub system: Option<PathBuf>,
}

impl Default for Files {
    fn default() -> Self {
        Self {
            user: dirs::home_dir().map(|h| h.join(".ssh").join("config")),
            system: Some(PathBuf::from("/etc/ssh/ssh_config")),
        }
    }
}

/// What a lookup starts from: the destination as given, and whatever the
/// caller fixed already (explicit arguments win, as on `ssh`'s command line).
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub host: &'a str,
    pub user: Option<&'a str>,
    pub port: Option<u16>,
    pub local_user: &'a str,
}

#[cfg(test)]
impl<'a> Query<'a> {
    /// A lookup of `host` alone, by local user `me`.
    pub(super) fn of(host: &'a str) -> Self {
        Query {
            host,
            user: None,
            port: None,
            local_user: "me",
        }
    }
}

impl Files {
    /// Resolves the options for `query`. A missing file is no error; an
    /// unreadable or malformed one is.
    pub fn resolve(&self, query: &Query<'_>) -> Result<HostOptions, Error> {
        resolve::resolve(self, query, &mut |_| {})
    }

    /// [`Files::resolve`], with every file and directory it looked at
    /// (read, listed or found missing), in order: what `doctor` shows.
    pub(crate) fn resolve_listing(
        &self,
        query: &Query<'_>,
    ) -> (Result<HostOptions, Error>, Vec<PathBuf>) {
        let mut seen = Vec::new();
        let result = resolve::resolve(self, query, &mut |source| {
            if let resolve::Source::Path(path) = source {
                seen.push(path.to_path_buf());
            }
        });
        (result, seen)
    }
}
