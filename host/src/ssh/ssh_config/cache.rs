//! Resolutions remembered per query, each valid while the files and
//! directories it was read from are unchanged. Every tool call resolves
//! its target; with this, a call costs a few `stat`s instead of reading
//! and parsing every config file (and listing every `Include` directory).
//!
//! The cache stamps what [`super::resolve`] reports as it reads; the
//! resolver knows nothing of stamps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::resolve::{self, Source};
use super::{Error, Files, HostOptions, Query};

/// Entries kept at most; past it the cache starts over.
const ENTRIES: usize = 1024;

type Key = (String, Option<String>, Option<u16>, String);
type Entries = HashMap<Key, (Vec<Dependency>, HostOptions)>;

/// Resolved [`HostOptions`] per query, checked against the files on
/// every lookup.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<Entries>,
}

impl Cache {
    pub fn resolve(&self, files: &Files, query: &Query<'_>) -> Result<HostOptions, Error> {
        let key: Key = (
            query.host.to_string(),
            query.user.map(str::to_string),
            query.port,
            query.local_user.to_string(),
        );
        if let Some((deps, options)) = self.lock().get(&key)
            && deps.iter().all(Dependency::unchanged)
        {
            return Ok(options.clone());
        }
        // `None` once the answer depends on more than can be stamped.
        let mut deps = Some(Vec::new());
        let options = resolve::resolve(files, query, &mut |source| match source {
            Source::Path(path) => {
                if let Some(deps) = &mut deps {
                    deps.push(Dependency::of(path));
                }
            }
            Source::Untracked => deps = None,
        })?;
        if let Some(deps) = deps {
            let mut entries = self.lock();
            if entries.len() >= ENTRIES {
                entries.clear();
            }
            entries.insert(key, (deps, options.clone()));
        }
        Ok(options)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let files = Files {
            user: Some(main.clone()),
            system: Some(dir.path().join("missing")),
        };
        let cache = Cache::default();
        let port = || cache.resolve(&files, &Query::of("h")).unwrap().port;
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
    fn a_wildcard_directory_is_never_cached() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config");
        std::fs::write(
            &main,
            format!("Include {}/*/x.conf\n", dir.path().display()),
        )
        .unwrap();
        let files = Files {
            user: Some(main),
            system: None,
        };
        let cache = Cache::default();
        cache.resolve(&files, &Query::of("h")).unwrap();
        assert!(cache.lock().is_empty());
    }
}
