//! The audit log: one JSON line per tool call and per SSH command a
//! component runs or is denied (and per refused listing or closing of
//! sessions), appended to a file only this user can read:
//! created 0600, a wider mode narrowed to 0600, a symlink or a file owned
//! by someone else refused (it could point the log at a file of theirs).
//!
//! Credentials never reach it: tool arguments are not recorded (they may
//! hold passwords), only the tool's name; SSH entries carry the target and
//! the command line or argv as run, which holds whatever the command does
//! (a sudo command is marked with the user it runs as; its password is
//! never in the command line);
//! file entries carry the paths and byte counts, never content.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<File>,
}

/// One entry. Absent fields are left out of the line.
#[derive(Debug, Default, Serialize)]
pub struct Entry<'a> {
    /// `tool_call`, `ssh_command`, `file` (an operation of the `files`
    /// interface), `ssh_sessions` (listing or closing sessions, audited
    /// when refused), or `http_auth` (a refused HTTP request: no or a
    /// wrong bearer token; the token itself is never recorded).
    pub kind: &'a str,
    /// Who called: the HTTP client's name, or `stdio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<&'a str>,
    /// The address a refused HTTP request came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub component: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'a str>,
    /// The import of an `ssh_sessions` entry (`list-sessions`,
    /// `close-session` or `close-all-sessions`) or of a `file` entry
    /// (`stat`, `read`, `write`, `list-directory`, `upload`, `download`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'a str>,
    /// `username@host:port` (the user may be defaulted by the host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<&'a [String]>,
    /// The remote path of a `file` entry, as the component gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    /// The local path of an upload or download, as the component gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_path: Option<&'a str>,
    /// The user a command runs as through sudo: present only on sudo
    /// commands (never the password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sudo: Option<&'a str>,
    /// Bytes a file operation read, wrote or transferred (never content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `allowed`, or `denied: <reason>`.
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Output bytes the command wrote (both streams), kept or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    entry: &'a Entry<'a>,
}

impl AuditLog {
    /// Opens (creating with mode 0600) `path` for appending; see the
    /// module header for what is refused.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: Mutex::new(crate::fsutil::open_owned_log(path)?),
        })
    }

    /// Appends `entry` as one line. A failed write is logged, not fatal:
    /// the tool call itself already happened.
    pub fn record(&self, entry: &Entry<'_>) {
        let line = Line {
            time: rfc3339(SystemTime::now()),
            entry,
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(text.as_bytes()) {
            tracing::error!("cannot write the audit log: {e}");
        }
    }
}

pub(crate) fn millis(d: Duration) -> Option<u64> {
    Some(d.as_millis() as u64)
}

/// `2026-11-25T13:56:37.123Z`, without pulling in a date crate.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_615_397_123);
        assert_eq!(rfc3339(t), "2026-11-25T14:03:17.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn entries_are_one_json_line_each_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.record(&Entry {
            kind: "tool_call",
            component: "c",
            tool: Some("t"),
            decision: "allowed".into(),
            ..Entry::default()
        });
        log.record(&Entry {
            kind: "ssh_command",
            component: "c",
            command: Some("echo \"hi\"\nx"),
            decision: "denied: no".into(),
            ..Entry::default()
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["command"], "echo \"hi\"\nx");
        assert!(lines[0].get("command").is_none());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
