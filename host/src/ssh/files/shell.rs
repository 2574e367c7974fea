//! The exec fallback: the file operations over exec channels, for servers
//! without an SFTP subsystem, with the same semantics.
//!
//! Each operation is one fixed `/bin/sh` script taking paths as argv
//! words (never spliced into a line), run with `LC_ALL=C` so tool errors
//! can be read. It needs `stat -c` (GNU or BusyBox) or GNU `find -printf`,
//! `cat`, `head -c` and `tail -c` (reads), `mv`, `chmod`, `wc` and
//! `mkdir -p` (writes), and for hashes `sha256sum`, `shasum` or `openssl`;
//! a missing one is reported by name. Exit codes 10 to 18 are
//! the scripts' own verdicts; anything else is read from stderr.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::common::{self, Ctl, Feed, Sum};
use super::stream::{self, Collect, Ended, Sink};
use super::{DirEntry, FileError, FileKind, FileStat, parse};
use crate::ssh::{SessionManager, SshError, Target};

use super::scripts::*;

/// Output kept of the scripts that answer in a few lines.
const SMALL: usize = 64 * 1024;
/// A listing's output: names and records of up to the caller's maximum.
const LISTING_MAX: usize = 64 << 20;

/// The exec fallback on one target.
pub(crate) struct Shell<'a> {
    pub(crate) manager: &'a SessionManager,
    pub(crate) target: &'a Target,
    pub(crate) session: &'a str,
}

/// A file written to its temporary name, not yet in place.
pub(crate) struct Staged {
    pub(crate) temp: String,
    pub(crate) bytes: u64,
    pub(crate) sha256: [u8; 32],
    /// The remote side's own hash of what it stored, if it has a hasher.
    pub(crate) remote_sha256: Option<[u8; 32]>,
}

fn script(body: &str) -> String {
    format!("{PRELUDE}{body}")
}

impl Shell<'_> {
    async fn run<R: AsyncRead + Unpin, S: Sink>(
        &self,
        what: &str,
        body: &str,
        args: &[&str],
        stdin: Option<&mut Feed<R>>,
        sink: &mut S,
        ctl: &Ctl,
    ) -> Result<Ended, FileError> {
        let argv = stream::argv(&script(body), args);
        stream::run(self, what, &argv, stdin, sink, ctl).await
    }

    async fn collect(
        &self,
        what: &str,
        body: &str,
        args: &[&str],
        limit: usize,
        ctl: &Ctl,
    ) -> Result<(Vec<u8>, Ended), FileError> {
        let mut sink = Collect {
            out: Vec::new(),
            limit,
        };
        let ended = self
            .run::<&[u8], _>(what, body, args, None, &mut sink, ctl)
            .await?;
        Ok((sink.out, ended))
    }

    /// The error a script's failure means for `path`.
    fn failed(&self, path: &str, what: &str, ended: &Ended, out: &[u8]) -> FileError {
        let s = self.session;
        match ended.status {
            Some(10) => common::not_found(s, path),
            Some(11) => common::denied(s, path),
            Some(12) => common::is_dir(s, path),
            Some(13) => common::not_dir(s, path),
            Some(15) => common::conflict(s, path, ended.stderr.contains("missing")),
            Some(16) => {
                let line = out.split(|&b| b == b'\n').next().unwrap_or_default();
                let kind = parse::record(&String::from_utf8_lossy(line))
                    .map_or("not a regular file", |(_, raw)| parse::kind_name(raw));
                common::not_regular(s, path, kind)
            }
            Some(17) | Some(127) => FileError::Unsupported(format!(
                "{s}: {what}: the server has no SFTP subsystem, and the exec fallback lacks a \
                 tool: {}",
                parse::last_line(&ended.stderr)
            )),
            _ => parse::classify(s, path, what, &ended.stderr),
        }
    }

    pub(crate) async fn stat(&self, path: &str, ctl: &Ctl) -> Result<FileStat, FileError> {
        let (out, ended) = self.collect("stat", STAT, &[path], SMALL, ctl).await?;
        if ended.status != Some(0) {
            return Err(self.failed(path, "stat", &ended, &out));
        }
        let text = String::from_utf8_lossy(&out);
        let (line, rest) = text.split_once('\n').unwrap_or((&text, ""));
        let (mut stat, _) = parse::record(line).ok_or_else(|| self.garbled(path, "stat"))?;
        if stat.kind == FileKind::Symlink {
            stat.link_target = Some(rest.strip_suffix('\n').unwrap_or(rest).to_string());
        }
        Ok(stat)
    }

    fn garbled(&self, path: &str, what: &str) -> FileError {
        FileError::Ssh(SshError::Other(format!(
            "{}: {what} {path}: the remote tools answered in an unexpected form",
            self.session
        )))
    }

    /// Splits `out` into the record line and what follows.
    fn head<'o>(
        &self,
        out: &'o [u8],
        path: &str,
        what: &str,
    ) -> Result<(FileStat, &'o [u8]), FileError> {
        let nl = out
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.garbled(path, what))?;
        let (stat, _) = parse::record(&String::from_utf8_lossy(&out[..nl]))
            .ok_or_else(|| self.garbled(path, what))?;
        Ok((stat, &out[nl + 1..]))
    }

    pub(crate) async fn read(
        &self,
        path: &str,
        offset: u64,
        max: u64,
        ctl: &Ctl,
    ) -> Result<(Vec<u8>, FileStat, bool), FileError> {
        // `tail -c +N` counts from 1; past 2^63 - 1 it reads nothing. An
        // empty file is not read past 0 (`tail` would seek, and may be
        // refused): the size 0 a kernel file says is checked by reading.
        let (off, len) = (offset.to_string(), max.to_string());
        let from = offset.saturating_add(1).to_string();
        let limit = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .saturating_add(SMALL);
        let (out, ended) = self
            .collect("read", READ, &[path, &off, &len, &from], limit, ctl)
            .await?;
        // The pipe's status is head's: a failing cat or tail shows only on
        // stderr.
        if ended.status != Some(0) || !ended.stderr.trim().is_empty() {
            // A regular file's stat comes first. Past its size there is
            // nothing to read: `tail` refuses to seek as far as 1e15 on
            // ext4. A size of 0 says nothing (/proc): its errors stay.
            let verdict = matches!(ended.status, Some(10..=18 | 127));
            if let Ok((stat, _)) = self.head(&out, path, "read")
                && !verdict
                && stat.kind == FileKind::File
                && stat.is_past(offset)
            {
                return Ok((Vec::new(), stat, true));
            }
            return Err(self.failed(path, "read", &ended, &out));
        }
        let (stat, data) = self.head(&out, path, "read")?;
        // What the stat describes, no more: bytes past it are a file that
        // grew meanwhile (read on from the offset), or output of something
        // else in the session (a login shell's background job). A size of
        // 0 says nothing: the kernel's files (`/proc/meminfo`) have it.
        let described = stat.size.saturating_sub(offset).min(max);
        let data = match usize::try_from(described) {
            Ok(n) if stat.size > 0 && n < data.len() => &data[..n],
            _ => data,
        };
        let got = data.len() as u64;
        let eof = got < max || stat.reached_by(offset, got);
        Ok((data.to_vec(), stat, eof))
    }

    pub(crate) async fn list(
        &self,
        dir: &str,
        max: u32,
        ctl: &Ctl,
    ) -> Result<(Vec<DirEntry>, u64), FileError> {
        let max_s = max.to_string();
        let body = format!("{ENTRY}{LIST}");
        let (out, ended) = self
            .collect("list", &body, &[dir, &max_s], LISTING_MAX, ctl)
            .await?;
        if ended.status != Some(0) {
            return Err(self.failed(dir, "list", &ended, &out));
        }
        let nl = out
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.garbled(dir, "list"))?;
        let header = String::from_utf8_lossy(&out[..nl]).into_owned();
        let rest = &out[nl + 1..];
        let total: u64 = header
            .get(2..)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.garbled(dir, "list"))?;
        if header.starts_with('C') {
            return Ok((self.entries(rest, dir)?, 0));
        }
        // Too many: choose the first `max` by name, then stat only those.
        let mut names: Vec<String> = rest
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        names.sort();
        names.truncate(max as usize);
        let omitted = total.saturating_sub(names.len() as u64);
        if names.is_empty() {
            return Ok((Vec::new(), omitted));
        }
        let base = if dir.ends_with('/') {
            dir.to_string()
        } else {
            format!("{dir}/")
        };
        let mut args: Vec<&str> = vec![&base];
        args.extend(names.iter().map(String::as_str));
        let body = format!("{ENTRY}{STAT_MANY}");
        let (out, ended) = self.collect("list", &body, &args, LISTING_MAX, ctl).await?;
        if ended.status != Some(0) {
            return Err(self.failed(dir, "list", &ended, &out));
        }
        let nl = out
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.garbled(dir, "list"))?;
        Ok((self.entries(&out[nl + 1..], dir)?, omitted))
    }

    /// `NAME \0 RECORD \n [LINK \n] \0`, repeated. An entry that vanished
    /// between the listing and its stat is left out.
    fn entries(&self, mut rest: &[u8], dir: &str) -> Result<Vec<DirEntry>, FileError> {
        let mut out = Vec::new();
        while !rest.is_empty() {
            let mut parts = rest.splitn(3, |&b| b == 0);
            let (Some(name), Some(body)) = (parts.next(), parts.next()) else {
                return Err(self.garbled(dir, "list"));
            };
            rest = parts.next().unwrap_or_default();
            let body = String::from_utf8_lossy(body);
            let (line, link) = body.split_once('\n').unwrap_or((&body, ""));
            let Some((mut stat, _)) = parse::record(line) else {
                continue;
            };
            if stat.kind == FileKind::Symlink {
                stat.link_target = Some(link.strip_suffix('\n').unwrap_or(link).to_string());
            }
            out.push(DirEntry {
                name: String::from_utf8_lossy(name).into_owned(),
                stat,
            });
        }
        Ok(out)
    }

    /// Writes `feed` (of `size` bytes) to a temporary file beside `path`.
    pub(crate) async fn stage<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        feed: &mut Feed<R>,
        size: u64,
        create_parents: bool,
        ctl: &Ctl,
    ) -> Result<Staged, FileError> {
        let (dir, _) = common::split_path(self.session, path)?;
        let (size_s, cp) = (size.to_string(), if create_parents { "1" } else { "0" });
        // The temporary file's name is chosen here, so it can be removed
        // even when a cancel or a lost connection came before the script
        // said it (the script creates it exclusively, `set -C`).
        let chosen = common::temp_name(dir);
        let leaf = chosen.rsplit('/').next().unwrap_or(&chosen);
        let mut sink = Collect {
            out: Vec::new(),
            limit: SMALL,
        };
        let res = self
            .run(
                "write",
                STAGE,
                &[path, cp, &size_s, leaf],
                Some(feed),
                &mut sink,
                ctl,
            )
            .await;
        let out = sink.out;
        let temp = out
            .iter()
            .position(|&b| b == 0)
            .map(|i| String::from_utf8_lossy(&out[..i]).into_owned());
        let ended = match res {
            Ok(e) => e,
            Err(e) => {
                // The script removes its file on a signal; after a lost
                // connection or a KILL it may not have. A cancel or the
                // deadline may have stopped it before it said the name:
                // the chosen one then. Other failures (no channel, a lost
                // connection) leave only a name it said worth a try.
                let stopped = matches!(
                    e,
                    FileError::Ssh(SshError::Cancelled(_) | SshError::Timeout(_))
                );
                match temp.as_deref() {
                    Some(t) => self.abort(t).await,
                    None if stopped => self.abort(&chosen).await,
                    None => {}
                }
                return Err(e);
            }
        };
        if ended.status == Some(10) {
            return Err(common::parent_not_found(self.session, path, dir));
        }
        if ended.status == Some(13) {
            return Err(common::not_dir(self.session, dir));
        }
        if ended.status != Some(0) {
            return Err(self.failed(path, "write", &ended, &out));
        }
        let (Some(temp), Some(i)) = (temp, out.iter().position(|&b| b == 0)) else {
            return Err(self.garbled(path, "write"));
        };
        let tail = String::from_utf8_lossy(&out[i + 1..]).into_owned();
        let remote_sha256 = tail.trim().strip_prefix("H ").and_then(common::parse_hex);
        Ok(Staged {
            temp,
            bytes: feed.done,
            sha256: feed.sha256(),
            remote_sha256,
        })
    }

    /// Puts a staged file in place (see [`super::sftp::Sftp::commit`] for
    /// the semantics). Returns whether the file was created.
    pub(crate) async fn commit(
        &self,
        staged: &Staged,
        path: &str,
        mode: Option<u32>,
        if_match: Option<&[u8; 32]>,
        ctl: &Ctl,
    ) -> Result<bool, FileError> {
        let mode = mode.map_or("-".to_string(), |m| format!("{:o}", m & 0o7777));
        let want = if_match.map_or("-".to_string(), common::hex);
        let res = self
            .collect(
                "write",
                COMMIT,
                &[&staged.temp, path, &mode, &want],
                SMALL,
                ctl,
            )
            .await;
        let (out, ended) = match res {
            Ok(r) => r,
            Err(e) => {
                self.abort(&staged.temp).await;
                return Err(e);
            }
        };
        if ended.status != Some(0) {
            return Err(self.failed(path, "write", &ended, &out));
        }
        Ok(String::from_utf8_lossy(&out).trim() == "E 0")
    }

    /// Removes a temporary file, best effort (logged).
    pub(crate) async fn abort(&self, temp: &str) {
        let ctl = Ctl::cleanup();
        let res = self.collect("clean up", ABORT, &[temp], SMALL, &ctl).await;
        if !matches!(
            res,
            Ok((
                _,
                Ended {
                    status: Some(0),
                    ..
                }
            ))
        ) {
            tracing::warn!(session = %self.session, %temp, "could not remove a temporary file");
        }
    }

    /// The remote sha256 of `path` (of `size` bytes, when known: it picks
    /// the tool); `None` when the host has no hasher.
    pub(crate) async fn sha256(
        &self,
        path: &str,
        size: Option<u64>,
        ctl: &Ctl,
    ) -> Result<Option<[u8; 32]>, FileError> {
        let size = size.map(|n| n.to_string()).unwrap_or_default();
        let (out, ended) = self
            .collect("hash", SHA, &[path, &size], SMALL, ctl)
            .await?;
        if ended.status != Some(0) {
            return Err(self.failed(path, "hash", &ended, &out));
        }
        let text = String::from_utf8_lossy(&out);
        if text.trim() == "-" {
            return Ok(None);
        }
        common::parse_hex(&text)
            .map(Some)
            .ok_or_else(|| self.garbled(path, "hash"))
    }

    /// Streams `remote` into `local`, hashing into `sum`; returns the
    /// bytes and the size the remote `stat` gave.
    pub(crate) async fn download<W: AsyncWrite + Unpin>(
        &self,
        remote: &str,
        local: &mut W,
        sum: &mut Sum,
        ctl: &Ctl,
    ) -> Result<(u64, u64), FileError> {
        let mut sink = DownloadSink {
            head: Vec::new(),
            size: None,
            local,
            sum,
        };
        let ended = self
            .run::<&[u8], _>("download", DOWNLOAD, &[remote], None, &mut sink, ctl)
            .await?;
        if ended.status != Some(0) {
            return Err(self.failed(remote, "download", &ended, &sink.head));
        }
        let Some(size) = sink.size else {
            return Err(self.garbled(remote, "download"));
        };
        sink.local
            .flush()
            .await
            .map_err(|e| FileError::Local(format!("writing the local file: {e}")))?;
        Ok((sink.sum.done, size))
    }
}

/// The record line first, then the file's bytes to the local file.
struct DownloadSink<'a, W> {
    head: Vec<u8>,
    size: Option<u64>,
    local: &'a mut W,
    sum: &'a mut Sum,
}

impl<W: AsyncWrite + Unpin> Sink for DownloadSink<'_, W> {
    async fn data(&mut self, mut data: &[u8]) -> Result<(), FileError> {
        if self.size.is_none() {
            let nl = data.iter().position(|&b| b == b'\n');
            let take = nl.map_or(data.len(), |i| i + 1);
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.head.len() > 512 {
                return Err(FileError::Ssh(SshError::Other(
                    "the remote tools answered in an unexpected form".into(),
                )));
            }
            if nl.is_none() {
                return Ok(());
            }
            let line = String::from_utf8_lossy(&self.head);
            let Some((stat, _)) = parse::record(line.trim_end()) else {
                return Err(FileError::Ssh(SshError::Other(
                    "the remote tools answered in an unexpected form".into(),
                )));
            };
            self.size = Some(stat.size);
            self.sum.report.set_total(Some(stat.size));
        }
        if data.is_empty() {
            return Ok(());
        }
        self.sum.add(data);
        self.local
            .write_all(data)
            .await
            .map_err(|e| FileError::Local(format!("writing the local file: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Runs a script here under `/bin/sh` with only `tools` on `PATH`.
    fn run(body: &str, args: &[&str], tools: &[&str]) -> (Option<i32>, Vec<u8>, String) {
        let bin = tempfile::tempdir().unwrap();
        for t in tools {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(t))
                .find(|p| p.exists())
                .unwrap();
            std::os::unix::fs::symlink(real, bin.path().join(t)).unwrap();
        }
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script(body))
            .arg("mcp-ssh-files")
            .args(args)
            .env_clear()
            .env("PATH", bin.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            out.stdout,
            String::from_utf8_lossy(super::stream::scripts_stderr(&out.stderr)).into_owned(),
        )
    }

    fn stat_with(tools: &[&str], path: &str) -> (FileStat, String) {
        let (code, out, err) = run(STAT, &[path], tools);
        assert_eq!(code, Some(0), "{err}");
        let text = String::from_utf8(out).unwrap();
        let (line, rest) = text.split_once('\n').unwrap();
        (parse::record(line).unwrap().0, rest.to_string())
    }

    #[test]
    fn gnu_find_answers_where_stat_is_missing_with_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("-odd name");
        std::fs::write(&file, b"12345").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o4751))
            .unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("-odd name", &link).unwrap();
        for p in [&file, &link, &dir.path().to_path_buf()] {
            let p = p.to_str().unwrap();
            let by_stat = stat_with(&["stat", "readlink"], p);
            let by_find = stat_with(&["find"], p);
            assert_eq!(by_stat, by_find, "{p}");
        }
        let (st, target) = stat_with(&["find"], link.to_str().unwrap());
        assert_eq!(
            (st.kind, target.as_str()),
            (FileKind::Symlink, "-odd name\n")
        );
        // Relative paths starting with `-` are not options to find.
        let (code, _, err) = run(
            &format!("cd {} && {STAT}", dir.path().display()),
            &["-odd name"],
            &["find"],
        );
        assert_eq!(code, Some(0), "{err}");
    }

    #[test]
    fn a_missing_tool_is_named() {
        let (code, _, err) = run(STAT, &["/etc/hostname"], &[]);
        assert_eq!(code, Some(17));
        assert!(err.contains("missing: stat"), "{err}");
        let (code, _, err) = run(SHA, &["/etc/hostname"], &["stat"]);
        assert_eq!((code, err.as_str()), (Some(0), ""));
    }

    /// The SHA script with an `openssl` of `body` first on `PATH`; the
    /// directory lives as long as the script is run.
    fn sha_with_fake_openssl(body: &str) -> (tempfile::TempDir, String) {
        let bin = tempfile::tempdir().unwrap();
        let openssl = bin.path().join("openssl");
        std::fs::write(&openssl, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(
            &openssl,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let script = format!("PATH=\"{}:$PATH\"\n{SHA}", bin.path().display());
        (bin, script)
    }

    #[test]
    fn every_hasher_gives_the_same_sha256_and_openssl_is_asked_first_only_for_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let (small, big) = (dir.path().join("-small"), dir.path().join("big file"));
        let data: Vec<u8> = (0..5u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&small, &data[..100_000]).unwrap();
        std::fs::write(&big, &data).unwrap();
        let hex = |d: &[u8]| {
            let h = <sha2::Sha256 as sha2::Digest>::digest(d).into();
            format!("{}\n", common::hex(&h))
        };
        let cases = [
            (small.to_str().unwrap(), hex(&data[..100_000]), "100000"),
            (big.to_str().unwrap(), hex(&data), "5242880"),
        ];
        for (f, want, size) in &cases {
            for tools in [&["openssl"][..], &["sha256sum"], &["shasum", "perl"]] {
                // The size given, or found by `ls`.
                for args in [&[*f, *size][..], &[*f, ""], &[*f]] {
                    let tools: Vec<&str> = tools.iter().chain(&["ls"]).copied().collect();
                    let (code, out, err) = run(SHA, args, &tools);
                    assert_eq!(code, Some(0), "{tools:?} {args:?}: {err}");
                    assert_eq!(&String::from_utf8(out).unwrap(), want, "{tools:?} {args:?}");
                }
            }
            let (code, out, _) = run(SHA, &[f], &["ls"]);
            assert_eq!((code, out.as_slice()), (Some(0), &b"-\n"[..]), "no hasher");
        }
        // An `openssl` that gets `abc` right but answers zeros otherwise:
        // asked first for the big file only.
        let zero = "0".repeat(64);
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let (_bin, script) = sha_with_fake_openssl(&format!(
            "if [ \"$(cat)\" = abc ]; then echo 'SHA2-256(stdin)= {abc}'; \
             else echo 'SHA2-256(stdin)= {zero}'; fi"
        ));
        let tools = ["sha256sum", "ls", "cat"];
        let (_, out, _) = run(&script, &[cases[1].0], &tools);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{zero}\n"),
            "big: openssl first"
        );
        let (_, out, _) = run(&script, &[cases[0].0], &tools);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            cases[0].1,
            "small: sha256sum"
        );
        // One that gets `abc` wrong is not asked; one that fails is no
        // hasher's answer, and not `none` either.
        let (_bin, script) = sha_with_fake_openssl(&format!("echo '{zero}'"));
        let (_, out, _) = run(&script, &[cases[1].0, "5242880"], &["sha256sum"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            cases[1].1,
            "openssl refused"
        );
        let (_bin, script) = sha_with_fake_openssl("exit 3");
        let (code, _, _) = run(&script, &[cases[1].0, "5242880"], &[]);
        assert_eq!(code, Some(1), "a hasher that failed");
    }

    #[test]
    fn a_listing_by_find_alone_keeps_odd_names_whole() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a\nb", ".h", "..x", "-x", "sp ace"] {
            std::fs::write(dir.path().join(name), b"1").unwrap();
        }
        let body = format!("{ENTRY}{LIST}");
        let d = dir.path().to_str().unwrap();
        let (code, out, err) = run(&body, &[d, "100"], &["find"]);
        assert_eq!(code, Some(0), "{err}");
        let nl = out.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(&out[..nl], b"C 5");
        let shell = Shell {
            manager: &SessionManager::new(crate::ssh::SshSettings::default()),
            target: &Target::default(),
            session: "s",
        };
        let mut names: Vec<String> = shell
            .entries(&out[nl + 1..], d)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, ["-x", "..x", ".h", "a\nb", "sp ace"]);
    }
}
