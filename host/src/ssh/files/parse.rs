//! Reading what the remote tools print: `stat -c '%f %s %Y'` and
//! `find -printf '%y %m %s %T@'` records, and error messages (with
//! `LC_ALL=C`, and SFTP's strerror texts) mapped to [`FileError`].

use super::{FileError, FileKind, FileStat, common};
use crate::ssh::SshError;

const S_IFMT: u32 = 0o170000;

pub(crate) fn kind_of(mode: u32) -> FileKind {
    match mode & S_IFMT {
        0o100000 => FileKind::File,
        0o040000 => FileKind::Directory,
        0o120000 => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

/// What a non-regular file is, for messages.
pub(crate) fn kind_name(mode: u32) -> &'static str {
    match mode & S_IFMT {
        0o010000 => "a FIFO",
        0o020000 => "a character device",
        0o060000 => "a block device",
        0o140000 => "a socket",
        0o120000 => "a symlink",
        0o040000 => "a directory",
        0 => "of an unknown type",
        _ => "a special file",
    }
}

/// One record of the exec fallback's `st` function: `S <hex st_mode>
/// <size> <mtime>` from `stat -c`, or `F <type letter> <octal perms>
/// <size> <mtime with fraction>` from GNU `find -printf`. Returns the stat
/// and the raw `st_mode` (type bits included).
pub(crate) fn record(line: &str) -> Option<(FileStat, u32)> {
    let mut f = line.split_ascii_whitespace();
    let (raw, size, mtime) = match f.next()? {
        "S" => {
            let raw = u32::from_str_radix(f.next()?, 16).ok()?;
            (raw, f.next()?, f.next()?)
        }
        "F" => {
            let kind: u32 = match f.next()? {
                "f" => 0o100000,
                "d" => 0o040000,
                "l" => 0o120000,
                "p" => 0o010000,
                "c" => 0o020000,
                "b" => 0o060000,
                "s" => 0o140000,
                _ => 0,
            };
            let perms = u32::from_str_radix(f.next()?, 8).ok()?;
            (kind | (perms & 0o7777), f.next()?, f.next()?)
        }
        _ => return None,
    };
    if f.next().is_some() {
        return None;
    }
    let size = size.parse().ok()?;
    let mtime = mtime
        .split('.')
        .next()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| u64::try_from(s).ok());
    Some((
        FileStat {
            kind: kind_of(raw),
            size,
            mode: raw & 0o7777,
            mtime,
            link_target: None,
        },
        raw,
    ))
}

/// Maps an error message about `path` (a tool's stderr under `LC_ALL=C`,
/// or an SFTP status message) to the matching error; `what` says what
/// was being done. Only the last line of the message is kept, bounded:
/// tools name files, never print their contents, on stderr.
pub(crate) fn classify(session: &str, path: &str, what: &str, message: &str) -> FileError {
    let has = |s: &str| message.contains(s);
    if has("No such file") {
        return common::not_found(session, path);
    }
    if has("Permission denied") || has("Operation not permitted") {
        return common::denied(session, path);
    }
    if has("Is a directory") {
        return common::is_dir(session, path);
    }
    if has("Not a directory") {
        return common::not_dir(session, path);
    }
    if has("File exists") {
        return FileError::Exists(format!("{session}: {path}: already exists"));
    }
    if has("File too large") || has("too long") {
        return FileError::TooLarge(format!("{session}: {what}: {}", last_line(message)));
    }
    let detail = last_line(message);
    let detail = if detail.is_empty() {
        "failed".to_string()
    } else {
        detail
    };
    FileError::Ssh(SshError::Other(format!("{session}: {what}: {detail}")))
}

/// The last non-empty line, at most 300 bytes.
pub(crate) fn last_line(message: &str) -> String {
    let line = message
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut end = line.len().min(300);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_stat_records_give_kind_mode_size_and_time() {
        let (s, raw) = record("S 81a4 1234 1700000000").unwrap();
        assert_eq!(
            s,
            FileStat {
                kind: FileKind::File,
                size: 1234,
                mode: 0o644,
                mtime: Some(1_700_000_000),
                link_target: None
            }
        );
        assert_eq!(raw, 0o100644);
        assert_eq!(record("S 41ed 4096 1").unwrap().0.kind, FileKind::Directory);
        assert_eq!(record("S a1ff 7 1").unwrap().0.kind, FileKind::Symlink);
        let (fifo, raw) = record("S 11a4 0 1").unwrap();
        assert_eq!(fifo.kind, FileKind::Other);
        assert_eq!(kind_name(raw), "a FIFO");
        assert_eq!(record("S 8fed 0 1").unwrap().0.mode, 0o7755);
    }

    #[test]
    fn find_printf_records_read_like_stat_ones() {
        let (s, raw) = record("F f 4755 10 1700000000.1234567890").unwrap();
        assert_eq!(s.kind, FileKind::File);
        assert_eq!(s.mode, 0o4755);
        assert_eq!(s.mtime, Some(1_700_000_000));
        assert_eq!(raw, 0o104755);
        assert_eq!(
            record("F d 755 4096 5").unwrap().0.kind,
            FileKind::Directory
        );
        assert_eq!(
            record("F c 666 0 5").map(|r| kind_name(r.1)),
            Some("a character device")
        );
        // A time before 1970 is no time rather than a wrong one.
        assert_eq!(record("F f 644 1 -5.5").unwrap().0.mtime, None);
    }

    #[test]
    fn garbage_records_are_refused_not_guessed() {
        for bad in [
            "",
            "S",
            "S zz 1 1",
            "S 81a4 x 1",
            "X 81a4 1 1",
            "S 81a4 1 1 extra",
            "F f 9 1 1",
        ] {
            assert!(record(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tool_messages_map_to_the_error_kinds_and_name_the_path() {
        let s = "u@h:22";
        let cases = [
            ("cat: /x: No such file or directory", "NotFound"),
            (
                "mv: cannot move 'a' to 'b': Permission denied",
                "PermissionDenied",
            ),
            ("cat: /etc: Is a directory", "IsADirectory"),
            (
                "stat: cannot statx '/etc/passwd/x': Not a directory",
                "NotADirectory",
            ),
            ("mkdir: cannot create directory 'a': File exists", "Exists"),
            ("cat: write error: No space left on device", "Ssh"),
        ];
        for (msg, want) in cases {
            let e = classify(s, "/x", "write /x", msg);
            let got = format!("{e:?}");
            assert!(got.starts_with(want), "{msg} -> {got}");
            assert!(e.to_string().contains(s), "{e}");
        }
        let e = classify(
            s,
            "/x",
            "write /x",
            "line one\ncat: write error: No space left on device\n",
        );
        assert_eq!(
            e.to_string(),
            "u@h:22: write /x: cat: write error: No space left on device"
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(400);
        let l = last_line(&long);
        assert!(l.len() <= 300 && l.chars().all(|c| c == 'é'));
    }
}
