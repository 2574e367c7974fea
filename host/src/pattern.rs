//! OpenSSH-style glob patterns, shared by known_hosts matching, ssh_config
//! and grants.
//!
//! ssh_config and known_hosts keep OpenSSH's meaning, where `*` runs across
//! dots. Grants bound where a component may go, so there `*` and `?` stay
//! within one DNS label ([`label_glob_match`]): `10.0.0.*` must not match
//! `10.0.0.1.attacker.example`.

/// OpenSSH's `match_pattern`: `*` is any run, `?` any one character.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A glob whose `*` and `?` never match a `.`: the pattern and the text
/// must have as many labels, matched label by label. Neither side is
/// case-folded here.
pub(crate) fn label_glob_match(pattern: &str, text: &str) -> bool {
    pattern.split('.').count() == text.split('.').count()
        && pattern
            .split('.')
            .zip(text.split('.'))
            .all(|(p, t)| glob_match(p, t))
}

/// OpenSSH's `match_pattern_list`: any pattern matches and no negated one
/// (`!pattern`) does, case-insensitively; a negated match wins over
/// everything.
pub(crate) fn list_match<P: AsRef<str>>(patterns: impl IntoIterator<Item = P>, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut matched = false;
    for p in patterns {
        let p = p.as_ref().to_ascii_lowercase();
        match p.strip_prefix('!') {
            Some(negated) if glob_match(negated, &name) => return false,
            Some(_) => {}
            None => matched |= glob_match(&p, &name),
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_negate_and_ignore_case() {
        assert!(list_match(["*.CORP", "!bad.corp"], "web.corp"));
        assert!(!list_match(["*.corp", "!BAD.corp"], "bad.corp"));
        assert!(!list_match(["!x"], "y"));
    }

    #[test]
    fn label_globs_never_cross_a_dot() {
        assert!(label_glob_match("10.0.0.*", "10.0.0.1"));
        assert!(!label_glob_match("10.0.0.*", "10.0.0.1.attacker.example"));
        assert!(label_glob_match("db-*", "db-x"));
        assert!(!label_glob_match("db-*", "db-x.attacker.example"));
        assert!(!label_glob_match("db-?", "db-."));
        assert!(label_glob_match("*.example.com", "web.example.com"));
        assert!(!label_glob_match("*.example.com", "a.b.example.com"));
        assert!(!label_glob_match("*.example.com", "example.com"));
        assert!(!label_glob_match("web.*", "web.example.com."));
        assert!(label_glob_match("*", "localhost"));
        assert!(!label_glob_match("*", "evil.example"));
    }

    #[test]
    fn glob_follows_openssh() {
        assert!(glob_match("*.example.com", "db.example.com"));
        assert!(glob_match("[10.0.0.?]:22?2", "[10.0.0.7]:2202"));
        assert!(!glob_match("*.example.com", "example.com"));
        assert!(glob_match("*", ""));
        assert!(glob_match("status", "status"));
        assert!(!glob_match("status", "status;"));
    }
}
