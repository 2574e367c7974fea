//! Remote path patterns of a grant (`read_paths`, `write_paths`).
//!
//! A pattern is an absolute path whose segments are globs: `*` and `?`
//! stay within one segment, and a segment `**` matches any number of
//! segments, none included (`/srv/app/**` matches `/srv/app` and
//! everything below it). A path a component gives is checked by name,
//! before the remote resolves it: it must be absolute, and a `..` segment
//! is refused outright, since `a/..` means the parent of wherever a
//! symlink `a` points, which no lexical rule can know. `.` segments and
//! repeated slashes are dropped. A symlink on the remote inside a granted
//! tree still leads wherever it points: a grant confines names, the remote
//! account's permissions confine files.

use crate::pattern::glob_match;

/// Why a pattern in a grant is unusable, or `Ok`.
pub(super) fn check_pattern(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err("a path pattern must be absolute (start with /)".into());
    }
    if pattern.contains('\0') {
        return Err("a path pattern must not contain NUL".into());
    }
    if pattern.split('/').any(|s| s == "..") {
        return Err("a path pattern must not contain a .. segment".into());
    }
    Ok(())
}

/// The segments of `path` as a grant matches them, or why it cannot be
/// matched at all.
pub(super) fn segments(path: &str) -> Result<Vec<&str>, String> {
    if path.contains('\0') {
        return Err("a path must not contain NUL".into());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "path {path:?} is relative: this component's grant names absolute paths, so give \
             one"
        ));
    }
    let mut out = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "path {path:?} has a .. segment, which a grant cannot check: give the path \
                     without it"
                ));
            }
            s => out.push(s),
        }
    }
    Ok(out)
}

/// Whether `pattern` matches the path of `segments`.
pub(super) fn matches(pattern: &str, segments: &[&str]) -> bool {
    let pattern: Vec<&str> = pattern
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    match_from(&pattern, segments)
}

fn match_from(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_from(rest, &path[skip..])),
        Some((p, rest)) => match path.split_first() {
            Some((s, path_rest)) => glob_match(p, s) && match_from(rest, path_rest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(pattern: &str, path: &str) -> bool {
        segments(path).is_ok_and(|s| matches(pattern, &s))
    }

    #[test]
    fn star_stays_in_a_segment_and_double_star_spans_them() {
        assert!(allowed("/var/log/*.log", "/var/log/syslog.log"));
        assert!(!allowed("/var/log/*.log", "/var/log/nginx/access.log"));
        assert!(allowed("/srv/app/**", "/srv/app"));
        assert!(allowed("/srv/app/**", "/srv/app/a/b/c.txt"));
        assert!(!allowed("/srv/app/**", "/srv/application"));
        assert!(allowed("/srv/**/*.conf", "/srv/x/y/z.conf"));
        assert!(allowed("/**", "/etc/shadow"));
        assert!(allowed("/srv//./app/**", "/srv/app/x"));
        assert!(allowed("/srv/app/**", "//srv/./app//x"));
    }

    #[test]
    fn relative_paths_dot_dot_and_nul_are_refused() {
        assert!(segments("notes.txt").is_err());
        assert!(segments("~/notes.txt").is_err());
        let err = segments("/srv/app/../../etc/shadow").unwrap_err();
        assert!(err.contains(".."), "{err}");
        assert!(!allowed("/srv/app/**", "/srv/app/../../etc/shadow"));
        assert!(segments("/srv/app/a\0b").is_err());
        assert!(check_pattern("srv/**").is_err());
        assert!(check_pattern("/srv/../etc").is_err());
        assert!(check_pattern("/srv/**").is_ok());
    }
}
