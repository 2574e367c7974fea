//! OpenSSH client configuration: `~/.ssh/config`, then `/etc/ssh/ssh_config`.
//!
//! It owns reading those files the way `ssh` does for one destination:
//! `Host` and `Match` blocks, `Include` with globs, `Key value` and
//! `Key=value`, quoted arguments, and OpenSSH's rule that the first value
//! obtained for a keyword wins (`IdentityFile` and `CertificateFile`
//! accumulate instead). Only the keywords this server acts on are kept;
//! every other keyword is ignored with one debug line, never an error, so a
//! config written for `ssh` always loads.
//!
//! Neither russh-config (no `Include`, no `Match`, a handful of keywords) nor
//! ssh2-config (no `Match`, no `ProxyCommand`, `IdentityAgent`,
//! `UserKnownHostsFile` or `StrictHostKeyChecking`) covers what `ssh` users
//! write, hence this module.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::pattern::list_match;

/// Nesting depth of `Include`, as in OpenSSH's `READCONF_MAX_DEPTH`.
const MAX_INCLUDE_DEPTH: usize = 16;
/// OpenSSH's `SSH_MAX_IDENTITY_FILES` and `SSH_MAX_CERTIFICATE_FILES`.
const MAX_FILES: usize = 100;

/// The values the config gives for one destination, unexpanded (tokens
/// such as `%h` are expanded by the caller, who knows the final host).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<String>,
    pub identities_only: Option<bool>,
    pub certificate_files: Vec<String>,
    /// Raw `ProxyJump` value: `none`, or comma-separated `[user@]host[:port]`.
    pub proxy_jump: Option<String>,
    /// Raw `ProxyCommand` line, or `none`.
    pub proxy_command: Option<String>,
    pub user_known_hosts_files: Option<Vec<String>>,
    pub global_known_hosts_files: Option<Vec<String>>,
    pub strict_host_key_checking: Option<String>,
    pub hash_known_hosts: Option<bool>,
    pub connect_timeout: Option<u64>,
    pub server_alive_interval: Option<u64>,
    pub server_alive_count_max: Option<u32>,
    pub preferred_authentications: Option<Vec<String>>,
    pub identity_agent: Option<String>,
    pub password_authentication: Option<bool>,
    pub kbd_interactive_authentication: Option<bool>,
    pub pubkey_authentication: Option<bool>,
}

/// A config file that could not be used. Syntax errors are reported like
/// `ssh` reports them (file and line), so the user can fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Which config files to read, in order. `None` skips one.
#[derive(Debug, Clone)]
pub struct ConfigFiles {
    pub user: Option<PathBuf>,
    pub system: Option<PathBuf>,
}

impl Default for ConfigFiles {
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

impl ConfigFiles {
    /// Resolves the options for `query`. A missing file is no error; an
    /// unreadable or malformed one is.
    pub fn resolve(&self, query: &Query<'_>) -> Result<HostConfig, ConfigError> {
        self.resolve_tracked(query).map(|(config, _)| config)
    }

    /// Resolves, and says what the answer depends on: every file read (or
    /// found missing) and every directory an `Include` globbed. `None` when
    /// that cannot be told (a wildcard above the last path component).
    fn resolve_tracked(
        &self,
        query: &Query<'_>,
    ) -> Result<(HostConfig, Option<Vec<Dependency>>), ConfigError> {
        let mut r = Resolver {
            query,
            out: HostConfig {
                user: query.user.map(str::to_string),
                port: query.port,
                ..HostConfig::default()
            },
            ignored: BTreeSet::new(),
            deps: Some(Vec::new()),
        };
        let user_base = dirs::home_dir().unwrap_or_default().join(".ssh");
        if let Some(path) = &self.user {
            r.read_file(path, &user_base, 0)?;
        }
        if let Some(path) = &self.system {
            r.read_file(path, Path::new("/etc/ssh"), 0)?;
        }
        if !r.ignored.is_empty() {
            tracing::debug!(
                host = query.host,
                "ssh_config keywords not acted on: {}",
                r.ignored.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        Ok((r.out, r.deps))
    }
}

/// Resolutions remembered per query, each valid while the files and
/// directories it was read from are unchanged. Every tool call resolves
/// its target; with this, a call costs a few `stat`s instead of reading
/// and parsing every config file (and listing every `Include` directory).
#[derive(Default)]
pub struct ConfigCache {
    entries: Mutex<HashMap<CacheKey, (Vec<Dependency>, HostConfig)>>,
}

/// Entries kept at most; past it the cache starts over.
const CACHE_ENTRIES: usize = 1024;

type CacheKey = (String, Option<String>, Option<u16>, String);

impl ConfigCache {
    pub fn resolve(
        &self,
        files: &ConfigFiles,
        query: &Query<'_>,
    ) -> Result<HostConfig, ConfigError> {
        let key: CacheKey = (
            query.host.to_string(),
            query.user.map(str::to_string),
            query.port,
            query.local_user.to_string(),
        );
        if let Some((deps, config)) = self.lock().get(&key)
            && deps.iter().all(Dependency::unchanged)
        {
            return Ok(config.clone());
        }
        let (config, deps) = files.resolve_tracked(query)?;
        if let Some(deps) = deps {
            let mut entries = self.lock();
            if entries.len() >= CACHE_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (deps, config.clone()));
        }
        Ok(config)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, (Vec<Dependency>, HostConfig)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A file or directory a resolution read, with what it looked like then.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dependency {
    path: PathBuf,
    stamp: Option<Stamp>,
}

/// Enough of a file's metadata to tell it changed: an edit moves mtime,
/// ctime or the size, a replacement (editors write a new file and rename
/// it) the inode, an added or removed entry a directory's mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: (i64, i64),
    ctime: (i64, i64),
    len: u64,
    ino: u64,
}

impl Dependency {
    fn of(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(path).ok().map(|m| Stamp {
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            len: m.len(),
            ino: m.ino(),
        });
        Self {
            path: path.to_path_buf(),
            stamp,
        }
    }

    fn unchanged(&self) -> bool {
        Self::of(&self.path).stamp == self.stamp
    }
}

struct Resolver<'q> {
    query: &'q Query<'q>,
    out: HostConfig,
    ignored: BTreeSet<String>,
    /// What the result depends on; `None` once that cannot be told.
    deps: Option<Vec<Dependency>>,
}

impl Resolver<'_> {
    fn depends_on(&mut self, path: &Path) {
        if let Some(deps) = &mut self.deps {
            deps.push(Dependency::of(path));
        }
    }

    fn read_file(&mut self, path: &Path, base: &Path, depth: usize) -> Result<(), ConfigError> {
        // Stamped before reading: a change in between is seen next time.
        self.depends_on(path);
        let text = match crate::fsutil::read_regular_string(path, crate::fsutil::CONFIG_FILE_CAP) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(ConfigError {
                    file: path.display().to_string(),
                    line: 0,
                    message: format!("cannot read: {e}"),
                });
            }
        };
        let file = path.display().to_string();
        // Lines before the first Host or Match apply to every host.
        let mut active = true;
        for (index, raw) in text.lines().enumerate() {
            // Most lines sit in blocks for other hosts: skip them before
            // tokenizing, which is most of the cost of a large config.
            if !active && !opens_block(raw) {
                continue;
            }
            let err = |message: String| ConfigError {
                file: file.clone(),
                line: index + 1,
                message,
            };
            let line = match split_line(raw) {
                Ok(Some(line)) => line,
                Ok(None) => continue,
                // The quoting rules of a shell line are the shell's.
                Err(_)
                    if raw
                        .trim_start()
                        .to_ascii_lowercase()
                        .starts_with("proxycommand") =>
                {
                    let (_, rest) = raw.trim().split_at("proxycommand".len());
                    let rest = rest.trim_start();
                    Line {
                        keyword: "proxycommand".into(),
                        args: vec![rest.to_string()],
                        raw: rest.strip_prefix('=').unwrap_or(rest).trim().to_string(),
                    }
                }
                Err(e) => return Err(err(e)),
            };
            let Line { keyword, args, raw } = line;
            match keyword.as_str() {
                "host" => {
                    if args.is_empty() {
                        return Err(err("Host needs at least one pattern".into()));
                    }
                    active = list_match(&args, self.query.host);
                }
                "match" => active = self.match_line(&args).map_err(err)?,
                "include" if active => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(err("Include nested too deeply".into()));
                    }
                    for pattern in &args {
                        let (paths, listed) = include_paths(pattern, base);
                        match listed {
                            Some(dir) => self.depends_on(&dir),
                            None => self.deps = None,
                        }
                        for included in paths {
                            self.read_file(&included, base, depth + 1)?;
                        }
                    }
                }
                // ProxyJump and ProxyCommand exclude each other: the first
                // one given wins, as in OpenSSH.
                "proxycommand" if active && self.out.proxy_jump.is_none() => {
                    set_once(&mut self.out.proxy_command, raw);
                }
                _ if active => self.set(&keyword, args).map_err(err)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// `Match` criteria, all of which must hold. Criteria this server cannot
    /// evaluate (`exec`, `localnetwork`, `tagged`) never match, so their
    /// blocks are skipped rather than applied wrongly.
    fn match_line(&mut self, args: &[String]) -> Result<bool, String> {
        let mut result = true;
        let mut i = 0;
        if args.is_empty() {
            return Err("Match needs a criterion".into());
        }
        while i < args.len() {
            let word = args[i].to_ascii_lowercase();
            let (negate, criterion) = match word.strip_prefix('!') {
                Some(c) => (true, c.to_string()),
                None => (false, word),
            };
            i += 1;
            let matched = match criterion.as_str() {
                "all" => true,
                // One pass: by the time our options are read, everything a
                // `final` pass would know is known.
                "canonical" | "final" => true,
                "host" | "originalhost" | "user" | "localuser" | "exec" | "localnetwork"
                | "tagged" => {
                    let Some(value) = args.get(i) else {
                        return Err(format!("Match {criterion} needs an argument"));
                    };
                    i += 1;
                    let patterns: Vec<String> = value.split(',').map(str::to_string).collect();
                    match criterion.as_str() {
                        "host" => {
                            let host = self.out.hostname.as_deref().unwrap_or(self.query.host);
                            list_match(&patterns, &expand_hostname(host, self.query.host))
                        }
                        "originalhost" => list_match(&patterns, self.query.host),
                        "user" => {
                            let user = self.out.user.as_deref().unwrap_or(self.query.local_user);
                            list_match(&patterns, user)
                        }
                        "localuser" => list_match(&patterns, self.query.local_user),
                        other => {
                            self.ignored.insert(format!("Match {other}"));
                            false
                        }
                    }
                }
                other => return Err(format!("unsupported Match criterion {other:?}")),
            };
            result &= matched != negate;
        }
        Ok(result)
    }

    fn set(&mut self, keyword: &str, args: Vec<String>) -> Result<(), String> {
        let first = || {
            args.first()
                .cloned()
                .ok_or_else(|| format!("{keyword} needs a value"))
        };
        let o = &mut self.out;
        match keyword {
            "hostname" => set_once(&mut o.hostname, first()?),
            "user" => set_once(&mut o.user, first()?),
            "port" => {
                let v = first()?;
                let port = v
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("bad Port {v:?}"))?;
                set_once(&mut o.port, port);
            }
            "identityfile" => push_file(&mut o.identity_files, first()?),
            "certificatefile" => push_file(&mut o.certificate_files, first()?),
            "identitiesonly" => set_once(&mut o.identities_only, yes_no(keyword, &first()?)?),
            "proxyjump" => {
                if o.proxy_command.is_none() {
                    set_once(&mut o.proxy_jump, first()?);
                }
            }
            "userknownhostsfile" => set_once(&mut o.user_known_hosts_files, args),
            "globalknownhostsfile" => set_once(&mut o.global_known_hosts_files, args),
            "stricthostkeychecking" => set_once(
                &mut o.strict_host_key_checking,
                first()?.to_ascii_lowercase(),
            ),
            "hashknownhosts" => set_once(&mut o.hash_known_hosts, yes_no(keyword, &first()?)?),
            "connecttimeout" => set_once(&mut o.connect_timeout, seconds(keyword, &first()?)?),
            "serveraliveinterval" => {
                set_once(&mut o.server_alive_interval, seconds(keyword, &first()?)?)
            }
            "serveralivecountmax" => {
                let v = first()?;
                let n = v
                    .parse()
                    .map_err(|_| format!("bad ServerAliveCountMax {v:?}"))?;
                set_once(&mut o.server_alive_count_max, n);
            }
            "preferredauthentications" => {
                let methods = first()?.split(',').map(str::to_string).collect();
                set_once(&mut o.preferred_authentications, methods);
            }
            "identityagent" => set_once(&mut o.identity_agent, first()?),
            // Kept verbatim by the caller; here only when a ProxyJump won.
            "proxycommand" => {}
            "passwordauthentication" => {
                set_once(&mut o.password_authentication, yes_no(keyword, &first()?)?)
            }
            "kbdinteractiveauthentication" | "challengeresponseauthentication" => set_once(
                &mut o.kbd_interactive_authentication,
                yes_no(keyword, &first()?)?,
            ),
            "pubkeyauthentication" => {
                set_once(&mut o.pubkey_authentication, yes_no(keyword, &first()?)?)
            }
            other => {
                self.ignored.insert(other.to_string());
            }
        }
        Ok(())
    }
}

/// Whether a line starts a `Host` or `Match` block.
fn opens_block(line: &str) -> bool {
    let line = line.trim_start();
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = &line[..end];
    keyword.eq_ignore_ascii_case("host") || keyword.eq_ignore_ascii_case("match")
}

fn set_once<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

fn push_file(files: &mut Vec<String>, file: String) {
    if files.len() < MAX_FILES && !files.contains(&file) {
        files.push(file);
    }
}

fn yes_no(keyword: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("{keyword} must be yes or no, not {v:?}")),
    }
}

/// OpenSSH time format: plain seconds, or a sum like `1m30s`.
fn seconds(keyword: &str, v: &str) -> Result<u64, String> {
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

/// Splits a line into its lowercased keyword and arguments; `None` for a
/// blank or comment line. Double quotes group words, as in OpenSSH.
fn split_line(line: &str) -> Result<Option<Line>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (keyword, rest) = match line.find(|c: char| c.is_whitespace() || c == '=') {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, ""),
    };
    // One `=` may separate the keyword from its value.
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in rest.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    args.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            '#' if !quoted && !in_word => break,
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unbalanced quotes".into());
    }
    if in_word {
        args.push(current);
    }
    Ok(Some(Line {
        keyword: keyword.to_ascii_lowercase(),
        args,
        raw: rest.trim_end().to_string(),
    }))
}

struct Line {
    keyword: String,
    args: Vec<String>,
    /// The value as written: `ProxyCommand` is a shell line, kept verbatim.
    raw: String,
}

/// `HostName` may name the original host with `%h` (and `%%`).
pub fn expand_hostname(hostname: &str, original: &str) -> String {
    hostname
        .replace("%%", "\0")
        .replace("%h", original)
        .replace('\0', "%")
}

/// The files one `Include` argument names: `~` expanded, relative to
/// `base`, globbed and sorted as OpenSSH does. Also the directory whose
/// listing decides the result, when only the last component has wildcards
/// (`None` when a wildcard sits higher up).
fn include_paths(pattern: &str, base: &Path) -> (Vec<PathBuf>, Option<PathBuf>) {
    let expanded = expand_tilde(pattern);
    let full = if Path::new(&expanded).is_absolute() {
        PathBuf::from(expanded)
    } else {
        base.join(expanded)
    };
    let wild = |p: &Path| p.to_string_lossy().contains(['*', '?', '[']);
    let listed = match full.parent() {
        Some(dir) if !wild(dir) => Some(dir.to_path_buf()),
        _ => None,
    };
    let Some(text) = full.to_str() else {
        return (Vec::new(), listed);
    };
    let paths = match glob::glob(text) {
        Ok(paths) => {
            let mut out: Vec<PathBuf> = paths.flatten().filter(|p| p.is_file()).collect();
            out.sort();
            out
        }
        Err(e) => {
            tracing::debug!("ssh_config Include {pattern:?} is not a valid glob: {e}");
            Vec::new()
        }
    };
    (paths, listed)
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

    fn resolve_in(text: &str, system: &str, query: Query<'_>) -> HostConfig {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("config");
        let sys = dir.path().join("ssh_config");
        std::fs::write(&user, text).unwrap();
        std::fs::write(&sys, system).unwrap();
        ConfigFiles {
            user: Some(user),
            system: Some(sys),
        }
        .resolve(&query)
        .unwrap()
    }

    fn q(host: &str) -> Query<'_> {
        Query {
            host,
            user: None,
            port: None,
            local_user: "me",
        }
    }

    #[test]
    fn first_value_wins_across_blocks_and_files() {
        let c = resolve_in(
            "Host db-*\n  HostName 10.0.0.5\n  Port 2200\nHost *\n  User fallback\n  Port 22\n",
            "Host *\n  User system\n  HostName never\n",
            q("db-prod"),
        );
        assert_eq!(c.hostname.as_deref(), Some("10.0.0.5"));
        assert_eq!(c.port, Some(2200));
        assert_eq!(c.user.as_deref(), Some("fallback"));
    }

    #[test]
    fn explicit_arguments_beat_the_config() {
        let query = Query {
            user: Some("explicit"),
            port: Some(2022),
            ..q("h")
        };
        let c = resolve_in("Host h\n  User u\n  Port 1\n", "", query);
        assert_eq!(c.user.as_deref(), Some("explicit"));
        assert_eq!(c.port, Some(2022));
    }

    #[test]
    fn negation_and_wildcards() {
        let text = "Host *.corp !bastion.corp\n  User corp\nHost ?ux\n  User short\n";
        assert_eq!(
            resolve_in(text, "", q("web.corp")).user.as_deref(),
            Some("corp")
        );
        assert_eq!(resolve_in(text, "", q("bastion.corp")).user, None);
        assert_eq!(
            resolve_in(text, "", q("lux")).user.as_deref(),
            Some("short")
        );
        assert_eq!(resolve_in(text, "", q("flux")).user, None);
    }

    #[test]
    fn identity_files_accumulate_and_equals_syntax_parses() {
        let c = resolve_in(
            "Host h\n IdentityFile=~/.ssh/a\n IdentityFile \"/path with space/b\"\nHost *\n IdentityFile ~/.ssh/a\n IdentityFile c # comment\n",
            "",
            q("h"),
        );
        assert_eq!(c.identity_files, ["~/.ssh/a", "/path with space/b", "c"]);
    }

    #[test]
    fn match_host_sees_hostname_and_originalhost_the_alias() {
        let text = "Host alias\n  HostName real.example\n\
                    Match host real.example\n  User by-host\n\
                    Match originalhost alias\n  Port 2201\n\
                    Match user nobody-here\n  IdentitiesOnly yes\n\
                    Match !localuser me\n  ConnectTimeout 3\n\
                    Match exec true\n  ProxyJump never\n\
                    Match all\n  ServerAliveInterval 1m5s\n";
        let c = resolve_in(text, "", q("alias"));
        assert_eq!(c.user.as_deref(), Some("by-host"));
        assert_eq!(c.port, Some(2201));
        assert_eq!(c.identities_only, None);
        assert_eq!(c.connect_timeout, None);
        assert_eq!(c.proxy_jump, None);
        assert_eq!(c.server_alive_interval, Some(65));
    }

    #[test]
    fn include_globs_relative_to_the_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(
            dir.path().join("conf.d/10-a.conf"),
            "Host a\n User from-a\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("conf.d/20-b.conf"),
            "Host *\n User from-b\n",
        )
        .unwrap();
        let main = dir.path().join("config");
        std::fs::write(
            &main,
            format!("Include {}/conf.d/*.conf\n", dir.path().display()),
        )
        .unwrap();
        let files = ConfigFiles {
            user: Some(main),
            system: None,
        };
        let a = files.resolve(&q("a")).unwrap();
        assert_eq!(a.user.as_deref(), Some("from-a"));
        let b = files.resolve(&q("b")).unwrap();
        assert_eq!(b.user.as_deref(), Some("from-b"));
    }

    #[test]
    fn include_cycles_stop_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config");
        std::fs::write(&main, format!("Include {}\n", main.display())).unwrap();
        let files = ConfigFiles {
            user: Some(main),
            system: None,
        };
        let err = files.resolve(&q("h")).unwrap_err();
        assert!(err.message.contains("nested"), "{err}");
    }

    #[test]
    fn bad_values_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config");
        std::fs::write(&main, "Host h\n\n  Port banana\n").unwrap();
        let err = ConfigFiles {
            user: Some(main),
            system: None,
        }
        .resolve(&q("h"))
        .unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("banana"), "{err}");
    }

    #[test]
    fn unknown_keywords_are_ignored() {
        let c = resolve_in(
            "Host *\n  SendEnv LANG\n  ForwardX11 yes\n  User u\n",
            "",
            q("h"),
        );
        assert_eq!(c.user.as_deref(), Some("u"));
    }

    #[test]
    fn the_cache_sees_edits_and_new_included_files() {
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        let main = dir.path().join("config");
        std::fs::write(
            &main,
            format!("Include {}/*.conf\nHost h\n  Port 1\n", conf_d.display()),
        )
        .unwrap();
        let files = ConfigFiles {
            user: Some(main.clone()),
            system: Some(dir.path().join("missing")),
        };
        let cache = ConfigCache::default();
        let port = || cache.resolve(&files, &q("h")).unwrap().port;
        assert_eq!(port(), Some(1));
        assert_eq!(port(), Some(1));
        // An edit, same size.
        std::fs::write(
            &main,
            std::fs::read_to_string(&main)
                .unwrap()
                .replace("Port 1", "Port 2"),
        )
        .unwrap();
        assert_eq!(port(), Some(2));
        // A new file in the included directory, read before the main file's.
        std::fs::write(conf_d.join("a.conf"), "Host h\n  Port 3\n").unwrap();
        assert_eq!(port(), Some(3));
        // A file that was missing appears.
        std::fs::remove_file(conf_d.join("a.conf")).unwrap();
        std::fs::write(&main, "").unwrap();
        std::fs::write(dir.path().join("missing"), "Port 4\n").unwrap();
        assert_eq!(port(), Some(4));
    }

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
    fn time_values_parse_like_openssh() {
        assert_eq!(seconds("x", "90").unwrap(), 90);
        assert_eq!(seconds("x", "1m30s").unwrap(), 90);
        assert_eq!(seconds("x", "1h").unwrap(), 3600);
        assert!(seconds("x", "1y").is_err());
    }
}
