//! Bytes written as `\xHH` escapes turned back into text that stays valid UTF-8.
//!
//! Invariant: whatever the input, the output is valid UTF-8 and loses no byte: a byte that is part
//! of a valid UTF-8 sequence becomes its character, any other byte becomes `%HH`, which a URL
//! decoder downstream turns back into the byte.

/// The value of one hexadecimal digit.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The byte written as `\xHH` at the start of `s`, when `s` starts with such an escape.
pub fn hex_escape(s: &[u8]) -> Option<u8> {
    match s {
        [b'\\', b'x' | b'X', hi, lo, ..] => Some(hex_digit(*hi)? << 4 | hex_digit(*lo)?),
        _ => None,
    }
}

/// Appends `byte` as `%HH` (upper-case hex).
pub fn push_percent(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

/// Decodes the run of `\xHH` escapes of bytes `>= 0x80` at the start of `s` into `out`: sequences
/// that form valid UTF-8 as their characters, every other byte as `%HH`. Returns how many bytes of
/// `s` the run took; 0 when `s` does not start with such an escape.
pub fn push_high_escapes(out: &mut String, s: &[u8]) -> usize {
    let mut taken = 0;
    let mut raw = Vec::new();
    while let Some(byte) = hex_escape(&s[taken..]).filter(|b| *b >= 0x80) {
        raw.push(byte);
        taken += 4;
    }
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for &byte in chunk.invalid() {
            push_percent(out, byte);
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn high(s: &str) -> (String, usize) {
        let mut out = String::new();
        let n = push_high_escapes(&mut out, s.as_bytes());
        (out, n)
    }

    #[test]
    fn reads_single_escapes() {
        assert_eq!(hex_escape(b"\\x22rest"), Some(b'"'));
        assert_eq!(hex_escape(b"\\x5c"), Some(b'\\'));
        assert_eq!(hex_escape(b"\\xG1"), None);
        assert_eq!(hex_escape(b"\\x2"), None);
        assert_eq!(hex_escape(b"x22"), None);
    }

    #[test]
    fn valid_utf8_runs_become_characters() {
        assert_eq!(high("\\xC3\\xA9t\\xC3\\xA9"), ("é".to_owned(), 8));
        assert_eq!(high("\\xE2\\x82\\xAC"), ("€".to_owned(), 12));
    }

    #[test]
    fn other_bytes_become_percent_escapes() {
        assert_eq!(high("\\xC3\\x28"), ("%C3".to_owned(), 4));
        assert_eq!(high("\\xFF\\xC3\\xA9\\xC3"), ("%FFé%C3".to_owned(), 16));
        assert_eq!(high("\\x41"), (String::new(), 0));
    }
}
