//! Typed helpers for the `files` interface (WIT 0.1.5): its errors as
//! tool results, SHA-256 digests as hex, and modes as octal text, so that
//! every file tool words them the same way.

use crate::{Output, describe};

pub use crate::bindings::mcp_ssh::tools::files::*;

impl From<SshError> for FileError {
    fn from(e: SshError) -> Self {
        FileError::Ssh(e)
    }
}

impl From<FileError> for Output {
    fn from(e: FileError) -> Self {
        Output::error(describe_file_error(&e))
    }
}

/// A readable sentence for a [`FileError`], prefixed with what kind it is.
pub fn describe_file_error(e: &FileError) -> String {
    let (what, msg) = match e {
        FileError::NotFound(m) => ("Not found", m),
        FileError::PermissionDenied(m) => ("Permission denied", m),
        FileError::IsADirectory(m) => ("Is a directory", m),
        FileError::NotADirectory(m) => ("Not a directory", m),
        FileError::Exists(m) => ("Already exists", m),
        FileError::Conflict(m) => ("Conflict", m),
        FileError::TooLarge(m) => ("Too large", m),
        FileError::Unsupported(m) => ("Unsupported", m),
        FileError::Local(m) => ("Local file error", m),
        FileError::Ssh(e) => return describe(e),
    };
    format!("{what}: {msg}")
}

/// Lower-case hex of `bytes` (a SHA-256 digest).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes of a SHA-256 written as 64 hex digits (either case).
pub fn parse_sha256_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Permission bits written in octal, as `chmod` takes them: `"644"`,
/// `"0644"`, `"0o644"` or `"4755"`; at most `0o7777`.
pub fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

/// Permission bits as four octal digits: `0644`.
pub fn mode_text(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

impl FileKind {
    /// `file`, `directory`, `symlink` or `other`, as tools report it.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_text_within_0o7777() {
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("0o755"), Some(0o755));
        assert_eq!(parse_mode("4755"), Some(0o4755));
        for bad in ["", "8", "0o", "-644", "17777", "rwx", "0x1ff", "644 "] {
            assert_eq!(parse_mode(bad), None, "{bad:?}");
        }
        assert_eq!(mode_text(0o644), "0644");
    }

    #[test]
    fn sha256_hex_round_trips() {
        let digest: Vec<u8> = (0..32).collect();
        let text = hex(&digest);
        assert_eq!(text.len(), 64);
        assert_eq!(parse_sha256_hex(&text), Some(digest.clone()));
        assert_eq!(parse_sha256_hex(&text.to_uppercase()), Some(digest));
        assert_eq!(parse_sha256_hex(&text[..62]), None);
        assert_eq!(parse_sha256_hex(&"zz".repeat(32)), None);
    }
}
