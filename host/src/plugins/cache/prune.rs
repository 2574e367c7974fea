//! Keeps the compile cache from growing for ever: every server version,
//! and every build of a plugin, adds an entry that no later start uses.
//! At start, after the components are loaded, the entries this start did
//! not use are kept up to [`KEEP_UNUSED`], the most recently used first
//! (a hit touches its entry's time), and the rest removed; so are
//! temporary files that a crash left while writing an entry.
//!
//! Only what this cache itself writes is touched: regular files owned by
//! this server's user whose names have an entry's or a temporary file's
//! exact form. Another version's server sharing the directory loses at
//! most the compile time of an entry it still wanted. An entry mapped by
//! a running server stays valid once unlinked, as a deleted shared
//! library does.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Entries not used by this start that are kept: about ten other server
/// versions' built-ins, or a plugin's recent builds.
pub(super) const KEEP_UNUSED: usize = 32;
/// A temporary file older than this is left over from a crash, not being
/// written.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// Removes from `dir` the entries beyond the [`KEEP_UNUSED`] most recent
/// of those not in `used` (entry names: `<component>-<engine>`), and stale
/// temporary files. Returns how many files it removed.
pub(super) fn prune(dir: &Path, used: &HashSet<String>) -> usize {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut unused = Vec::new();
    let mut removed = 0;
    for entry in listing.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(meta) = ours(&entry.path()) else {
            continue;
        };
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some(stem) = name.strip_suffix(".cwasm").filter(|s| is_entry_name(s)) {
            if !used.contains(stem) {
                unused.push((modified, stem.to_string()));
            }
        } else if let Some(stem) = name.strip_suffix(".sum").filter(|s| is_entry_name(s)) {
            // A sum whose artifact is gone belongs to nothing.
            if !dir.join(format!("{stem}.cwasm")).exists() && remove(&entry.path()) {
                removed += 1;
            }
        } else if is_temporary_name(name)
            && now.duration_since(modified).unwrap_or_default() > STALE_TEMPORARY
            && remove(&entry.path())
        {
            removed += 1;
        }
    }
    // Most recently used first; what is past the quota goes.
    unused.sort_by_key(|u| std::cmp::Reverse(u.0));
    for (_, stem) in unused.iter().skip(KEEP_UNUSED) {
        for ext in ["cwasm", "sum"] {
            if remove(&dir.join(format!("{stem}.{ext}"))) {
                removed += 1;
            }
        }
    }
    removed
}

/// The metadata of `path` if it is this user's regular file (not
/// followed through a symlink): the only kind this cache removes.
fn ours(path: &Path) -> Option<std::fs::Metadata> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    (meta.is_file() && super::check_owner(&meta).is_ok()).then_some(meta)
}

/// Removes `path` if it is [`ours`].
fn remove(path: &Path) -> bool {
    if ours(path).is_none() {
        return false;
    }
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!("compile cache: cannot remove {}: {e}", path.display());
            }
            false
        }
    }
}

/// `<32 hex>-<16 hex>`, as [`super::CompileCache::load`] names entries.
fn is_entry_name(stem: &str) -> bool {
    let Some((component, engine)) = stem.split_once('-') else {
        return false;
    };
    is_lower_hex(component, 32) && is_lower_hex(engine, 16)
}

/// `.tmp-<24 hex>`, as [`super::tempfile_in`] names them.
fn is_temporary_name(name: &str) -> bool {
    name.strip_prefix(".tmp-")
        .is_some_and(|rest| is_lower_hex(rest, 24))
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path, i: usize, age: Duration) -> String {
        let stem = format!("{i:032x}-{:016x}", 7);
        for ext in ["cwasm", "sum"] {
            let path = dir.join(format!("{stem}.{ext}"));
            std::fs::write(&path, b"x").unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(SystemTime::now() - age).unwrap();
        }
        stem
    }

    fn names(dir: &Path) -> HashSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    #[test]
    fn unused_entries_past_the_quota_go_oldest_first_and_used_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        // Entry i is i hours old; entry 0 is in use, and the oldest of all.
        let stems: Vec<String> = (1..=KEEP_UNUSED + 5)
            .map(|i| entry(dir.path(), i, hour * i as u32))
            .collect();
        let used_stem = entry(dir.path(), 0, hour * 1000);
        let used = HashSet::from([used_stem.clone()]);
        // What the cache does not write is never touched.
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        std::fs::write(dir.path().join("ABC-def.cwasm"), b"not an entry name").unwrap();
        std::os::unix::fs::symlink(
            dir.path().join(format!("{}.cwasm", stems[KEEP_UNUSED + 4])),
            dir.path().join(format!("{:032x}-{:016x}.cwasm", 99, 7)),
        )
        .unwrap();

        // The oldest entry's sum is a symlink to a file of ours elsewhere:
        // the entry goes, the link and its target stay.
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("victim");
        std::fs::write(&target, b"keep").unwrap();
        let oldest_sum = dir.path().join(format!("{}.sum", stems[KEEP_UNUSED + 4]));
        std::fs::remove_file(&oldest_sum).unwrap();
        std::os::unix::fs::symlink(&target, &oldest_sum).unwrap();

        assert_eq!(prune(dir.path(), &used), 2 * 5 - 1);
        assert!(
            std::fs::symlink_metadata(&oldest_sum).is_ok(),
            "the sum link"
        );
        assert!(target.exists());
        std::fs::remove_file(&oldest_sum).unwrap();
        let left = names(dir.path());
        for (i, stem) in stems.iter().enumerate() {
            let kept = i < KEEP_UNUSED;
            for ext in ["cwasm", "sum"] {
                assert_eq!(
                    left.contains(&format!("{stem}.{ext}")),
                    kept,
                    "{stem}.{ext}"
                );
            }
        }
        assert!(left.contains(&format!("{used_stem}.cwasm")));
        assert!(left.contains("notes.txt"));
        assert!(left.contains("ABC-def.cwasm"));
        assert!(
            left.contains(&format!("{:032x}-{:016x}.cwasm", 99, 7)),
            "the symlink"
        );
        // Within the quota now: a second pass removes nothing.
        assert_eq!(prune(dir.path(), &used), 0);
    }

    #[test]
    fn stale_temporaries_and_orphan_sums_go_fresh_temporaries_stay() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(format!(".tmp-{}", "ab".repeat(12)));
        let fresh = dir.path().join(format!(".tmp-{}", "cd".repeat(12)));
        for (path, age) in [(&stale, 7200), (&fresh, 10)] {
            std::fs::write(path, b"half").unwrap();
            let file = std::fs::File::options().write(true).open(path).unwrap();
            file.set_modified(SystemTime::now() - Duration::from_secs(age))
                .unwrap();
        }
        let orphan = format!("{:032x}-{:016x}.sum", 5, 7);
        std::fs::write(dir.path().join(&orphan), b"sum").unwrap();
        assert_eq!(prune(dir.path(), &HashSet::new()), 2);
        let left = names(dir.path());
        assert!(!left.contains(&orphan));
        assert!(!left.contains(stale.file_name().unwrap().to_str().unwrap()));
        assert!(left.contains(fresh.file_name().unwrap().to_str().unwrap()));
    }
}
