//! How file bytes travel in JSON: UTF-8 text, or base64 for anything.

use base64ct::{Base64, Encoding as _};
use mcp_ssh_guest::{Deserialize, JsonSchema};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(crate = "mcp_ssh_guest::serde", rename_all = "lowercase")]
#[schemars(crate = "mcp_ssh_guest::schemars")]
pub enum Encoding {
    #[default]
    Text,
    Base64,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Text => "text",
            Encoding::Base64 => "base64",
        }
    }
}

/// `data` as `encoding`, and how many of its bytes that covers. A text
/// read that is not the end of the file may stop inside a character: it
/// is cut before that character, which the next read starts with. `Err`
/// holds the offset (in `data`) of the first byte that is not UTF-8.
pub fn encode(data: &[u8], encoding: Encoding, eof: bool) -> Result<(String, usize), usize> {
    match encoding {
        Encoding::Base64 => Ok((Base64::encode_string(data), data.len())),
        Encoding::Text => match std::str::from_utf8(data) {
            Ok(s) => Ok((s.to_string(), data.len())),
            // `error_len() == None`: the bytes end in the middle of a
            // character, which more bytes may complete.
            Err(e) if e.error_len().is_none() && !eof && e.valid_up_to() > 0 => {
                let used = e.valid_up_to();
                Ok((String::from_utf8_lossy(&data[..used]).into_owned(), used))
            }
            Err(e) => Err(e.valid_up_to()),
        },
    }
}

/// The bytes `content` stands for.
pub fn decode(content: String, encoding: Encoding) -> Result<Vec<u8>, String> {
    match encoding {
        Encoding::Text => Ok(content.into_bytes()),
        Encoding::Base64 => {
            // Clients wrap long base64 in lines; the alphabet has no blanks.
            let compact: String = content.split_ascii_whitespace().collect();
            Base64::decode_vec(&compact)
                .map_err(|e| format!("content is not valid base64 ({e}); nothing was written"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cut_inside_a_character_ends_before_it_unless_at_eof() {
        let data = "aé".as_bytes();
        assert_eq!(
            encode(&data[..2], Encoding::Text, false),
            Ok(("a".into(), 1))
        );
        assert_eq!(encode(&data[..2], Encoding::Text, true), Err(1));
        assert_eq!(encode(b"a\xffb", Encoding::Text, false), Err(1));
        assert_eq!(encode(data, Encoding::Text, true), Ok(("aé".into(), 3)));
    }

    #[test]
    fn base64_round_trips_any_bytes() {
        let bytes: Vec<u8> = (0..=255).collect();
        let (text, used) = encode(&bytes, Encoding::Base64, true).unwrap_or_default();
        assert_eq!(used, 256);
        let wrapped = format!("{}\n{}", &text[..76], &text[76..]);
        assert_eq!(decode(wrapped, Encoding::Base64), Ok(bytes));
        assert!(decode("not base64!".into(), Encoding::Base64).is_err());
    }
}
