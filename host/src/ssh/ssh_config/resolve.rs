//! Resolving one destination: which lines apply to it (`Host` and `Match`
//! blocks, `Include` with globs, the user's file before the system's), each
//! applied to [`HostOptions`] in order, with errors naming file and line.
//!
//! The resolver reports each file and directory it reads as a [`Source`],
//! before reading it, to whoever asked ([`super::cache`] stamps them).
//! Reporting before reading matters: a file edited in between is then seen
//! as changed at the next lookup, never cached with its old contents.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::lexer;
use super::{Error, Files, HostOptions, Query, tokens};
use crate::pattern::list_match;

/// Nesting depth of `Include`, as in OpenSSH's `READCONF_MAX_DEPTH`.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Something a resolution's answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source<'a> {
    /// A file read or found missing, or a directory an `Include` listed.
    Path(&'a Path),
    /// An `Include` with a wildcard above its last path component: what it
    /// matches cannot be told from a few paths.
    Untracked,
}

/// Resolves `query` through `files`, reporting every [`Source`] to
/// `on_source` before it is read.
pub(super) fn resolve(
    files: &Files,
    query: &Query<'_>,
    on_source: &mut dyn FnMut(Source<'_>),
) -> Result<HostOptions, Error> {
    let mut r = Resolver {
        query,
        out: HostOptions {
            user: query.user.map(str::to_string),
            port: query.port,
            ..HostOptions::default()
        },
        ignored: BTreeSet::new(),
        on_source,
    };
    let user_base = dirs::home_dir().unwrap_or_default().join(".ssh");
    if let Some(path) = &files.user {
        r.read_file(path, &user_base, 0)?;
    }
    if let Some(path) = &files.system {
        r.read_file(path, Path::new("/etc/ssh"), 0)?;
    }
    if !r.ignored.is_empty() {
        tracing::debug!(
            host = query.host,
            "ssh_config keywords not acted on: {}",
            r.ignored.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(r.out)
}

struct Resolver<'q, 's> {
    query: &'q Query<'q>,
    out: HostOptions,
    ignored: BTreeSet<String>,
    on_source: &'s mut dyn FnMut(Source<'_>),
}

impl Resolver<'_, '_> {
    fn read_file(&mut self, path: &Path, base: &Path, depth: usize) -> Result<(), Error> {
        (self.on_source)(Source::Path(path));
        let text = match crate::fsutil::read_regular_string(path, crate::fsutil::CONFIG_FILE_CAP) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error {
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
            if !active && !lexer::opens_block(raw) {
                continue;
            }
            let err = |message: String| Error {
                file: file.clone(),
                line: index + 1,
                message,
            };
            let Some(line) = lexer::line(raw).map_err(err)? else {
                continue;
            };
            match line.keyword.as_str() {
                "host" => {
                    if line.args.is_empty() {
                        return Err(err("Host needs at least one pattern".into()));
                    }
                    active = list_match(&line.args, self.query.host);
                }
                "match" => active = self.match_line(&line.args).map_err(err)?,
                "include" if active => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(err("Include nested too deeply".into()));
                    }
                    for pattern in &line.args {
                        let (paths, listed) = include_paths(pattern, base);
                        match &listed {
                            Some(dir) => (self.on_source)(Source::Path(dir)),
                            None => (self.on_source)(Source::Untracked),
                        }
                        for included in paths {
                            self.read_file(&included, base, depth + 1)?;
                        }
                    }
                }
                _ if active => {
                    if let Some(keyword) = self.out.apply(line).map_err(err)? {
                        self.ignored.insert(keyword);
                    }
                }
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
                            list_match(&patterns, &tokens::expand_hostname(host, self.query.host))
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
}

/// The files one `Include` argument names: `~` expanded, relative to
/// `base`, globbed and sorted as OpenSSH does. Also the directory whose
/// listing decides the result, when only the last component has wildcards
/// (`None` when a wildcard sits higher up).
fn include_paths(pattern: &str, base: &Path) -> (Vec<PathBuf>, Option<PathBuf>) {
    let expanded = tokens::expand_tilde(pattern);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_in(text: &str, system: &str, query: Query<'_>) -> HostOptions {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("config");
        let sys = dir.path().join("ssh_config");
        std::fs::write(&user, text).unwrap();
        std::fs::write(&sys, system).unwrap();
        Files {
            user: Some(user),
            system: Some(sys),
        }
        .resolve(&query)
        .unwrap()
    }

    /// The error for `text` as the user's config, with the file's name.
    fn error_in(text: &str) -> (Error, String) {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config");
        std::fs::write(&main, text).unwrap();
        let err = Files {
            user: Some(main.clone()),
            system: None,
        }
        .resolve(&Query::of("h"))
        .unwrap_err();
        (err, main.display().to_string())
    }

    #[test]
    fn first_value_wins_across_blocks_and_files() {
        let c = resolve_in(
            "Host db-*\n  HostName 10.0.0.5\n  Port 2200\nHost *\n  User fallback\n  Port 22\n",
            "Host *\n  User system\n  HostName never\n",
            Query::of("db-prod"),
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
            ..Query::of("h")
        };
        let c = resolve_in("Host h\n  User u\n  Port 1\n", "", query);
        assert_eq!(c.user.as_deref(), Some("explicit"));
        assert_eq!(c.port, Some(2022));
    }

    #[test]
    fn negation_and_wildcards() {
        let text = "Host *.corp !bastion.corp\n  User corp\nHost ?ux\n  User short\n";
        assert_eq!(
            resolve_in(text, "", Query::of("web.corp")).user.as_deref(),
            Some("corp")
        );
        assert_eq!(resolve_in(text, "", Query::of("bastion.corp")).user, None);
        assert_eq!(
            resolve_in(text, "", Query::of("lux")).user.as_deref(),
            Some("short")
        );
        assert_eq!(resolve_in(text, "", Query::of("flux")).user, None);
    }

    #[test]
    fn identity_files_accumulate_and_equals_syntax_parses() {
        let c = resolve_in(
            "Host h\n IdentityFile=~/.ssh/a\n IdentityFile \"/path with space/b\"\nHost *\n IdentityFile ~/.ssh/a\n IdentityFile c # comment\n",
            "",
            Query::of("h"),
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
        let c = resolve_in(text, "", Query::of("alias"));
        assert_eq!(c.user.as_deref(), Some("by-host"));
        assert_eq!(c.port, Some(2201));
        assert_eq!(c.identities_only, None);
        assert_eq!(c.connect_timeout, None);
        assert_eq!(c.proxy, None);
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
        let files = Files {
            user: Some(main),
            system: None,
        };
        let a = files.resolve(&Query::of("a")).unwrap();
        assert_eq!(a.user.as_deref(), Some("from-a"));
        let b = files.resolve(&Query::of("b")).unwrap();
        assert_eq!(b.user.as_deref(), Some("from-b"));
    }

    #[test]
    fn include_cycles_stop_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config");
        std::fs::write(&main, format!("Include {}\n", main.display())).unwrap();
        let files = Files {
            user: Some(main),
            system: None,
        };
        let err = files.resolve(&Query::of("h")).unwrap_err();
        assert!(err.message.contains("nested"), "{err}");
    }

    #[test]
    fn bad_values_name_file_and_line() {
        let (err, _) = error_in("Host h\n\n  Port banana\n");
        assert_eq!(err.line, 3);
        assert!(err.message.contains("banana"), "{err}");
    }

    #[test]
    fn unknown_keywords_are_ignored() {
        let c = resolve_in(
            "Host *\n  SendEnv LANG\n  ForwardX11 yes\n  User u\n",
            "",
            Query::of("h"),
        );
        assert_eq!(c.user.as_deref(), Some("u"));
    }

    #[test]
    fn malformed_typed_values_name_file_and_line() {
        for (text, line, says) in [
            (
                "Host h\n  StrictHostKeyChecking maybe\n",
                2,
                "StrictHostKeyChecking \"maybe\"",
            ),
            (
                "# jump\nHost h\n\n  ProxyJump user@\n",
                4,
                "ProxyJump \"user@\"",
            ),
            (
                "Host h\n  User u\n  PreferredAuthentications publickey,gssapi\n",
                3,
                "unknown authentication method \"gssapi\"",
            ),
            (
                "Host h\n  IdentityFile ~/.ssh/%z\n",
                2,
                "IdentityFile: unknown token %z",
            ),
            // Malformed even where an earlier value wins, as in OpenSSH.
            (
                "StrictHostKeyChecking yes\nHost h\n  StrictHostKeyChecking sometimes\n",
                3,
                "\"sometimes\"",
            ),
        ] {
            let (err, file) = error_in(text);
            assert_eq!(err.line, line, "{err}");
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("{file} line {line}: ")) && shown.contains(says),
                "{shown}"
            );
        }
    }
}
