//! The lines of an ssh_config file: `Key value` and `Key=value`, double
//! quotes grouping words, `#` comments, and `ProxyCommand`'s shell line kept
//! as written. What the words mean is [`super::values`]' and
//! [`super::resolve`]'s business.

/// One meaningful line of an ssh_config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    /// Lowercased: keywords are case-insensitive.
    pub keyword: String,
    /// The keyword as written, for messages.
    pub name: String,
    pub args: Vec<String>,
    /// The value as written: `ProxyCommand` is a shell line, kept verbatim.
    pub raw: String,
}

/// Splits `raw` into a [`Line`]; `None` for a blank or comment line.
/// `ProxyCommand` follows the shell's quoting, not ssh_config's, so its
/// line is taken verbatim even where ssh_config's quotes do not balance.
pub(super) fn line(raw: &str) -> Result<Option<Line>, String> {
    match split_line(raw) {
        Err(_) if keyword_of(raw).eq_ignore_ascii_case("proxycommand") => {
            let (name, rest) = raw.trim().split_at("proxycommand".len());
            let rest = rest.trim_start();
            Ok(Some(Line {
                keyword: "proxycommand".into(),
                name: name.to_string(),
                args: vec![rest.to_string()],
                raw: rest.strip_prefix('=').unwrap_or(rest).trim().to_string(),
            }))
        }
        other => other,
    }
}

/// Whether a line starts a `Host` or `Match` block. Cheaper than [`line`]:
/// most lines of a large config sit in blocks for other hosts and are
/// skipped on this alone.
pub(super) fn opens_block(raw: &str) -> bool {
    let keyword = keyword_of(raw);
    keyword.eq_ignore_ascii_case("host") || keyword.eq_ignore_ascii_case("match")
}

fn keyword_of(raw: &str) -> &str {
    let line = raw.trim_start();
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    &line[..end]
}

/// Double quotes group words, as in OpenSSH.
fn split_line(line: &str) -> Result<Option<Line>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (keyword, rest) = match line.find(|c: char| c.is_whitespace() || c == '=') {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, ""),
    };
    // One `=` may separate the keyword from its value.
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in rest.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    args.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            '#' if !quoted && !in_word => break,
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unbalanced quotes".into());
    }
    if in_word {
        args.push(current);
    }
    Ok(Some(Line {
        keyword: keyword.to_ascii_lowercase(),
        name: keyword.to_string(),
        args,
        raw: rest.trim_end().to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(raw: &str) -> Vec<String> {
        line(raw).unwrap().unwrap().args
    }

    #[test]
    fn equals_quotes_and_comments_split_like_openssh() {
        let l = line("  IdentityFile=\"/path with space/b\" # why")
            .unwrap()
            .unwrap();
        assert_eq!(l.keyword, "identityfile");
        assert_eq!(l.args, ["/path with space/b"]);
        assert_eq!(args("Host a b  c"), ["a", "b", "c"]);
        assert_eq!(args("User = u"), ["u"]);
        assert_eq!(line("   # only a comment").unwrap(), None);
        assert_eq!(line("").unwrap(), None);
        assert!(line("User \"u").is_err());
    }

    #[test]
    fn proxy_command_keeps_the_shell_line() {
        let l = line("ProxyCommand sh -c 'echo \"x' %h").unwrap().unwrap();
        assert_eq!(l.keyword, "proxycommand");
        assert_eq!(l.raw, "sh -c 'echo \"x' %h");
        let l = line("ProxyCommand=nc %h %p").unwrap().unwrap();
        assert_eq!(l.raw, "nc %h %p");
    }

    #[test]
    fn blocks_open_on_host_and_match_only() {
        assert!(opens_block("  host x"));
        assert!(opens_block("Match=all"));
        assert!(!opens_block("HostName x"));
        assert!(!opens_block("  User u"));
    }
}
