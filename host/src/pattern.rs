//! OpenSSH-style glob patterns, shared by known_hosts matching, ssh_config
//! and grants.

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
    fn glob_follows_openssh() {
        assert!(glob_match("*.example.com", "db.example.com"));
        assert!(glob_match("[10.0.0.?]:22?2", "[10.0.0.7]:2202"));
        assert!(!glob_match("*.example.com", "example.com"));
        assert!(glob_match("*", ""));
        assert!(glob_match("status", "status"));
        assert!(!glob_match("status", "status;"));
    }
}
