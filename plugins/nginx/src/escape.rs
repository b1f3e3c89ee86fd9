//! Logged values turned back into the text the client sent.
//!
//! nginx writes `"`, `\`, control characters and bytes `>= 0x7f` as `\xHH`; Apache writes `\"`,
//! `\\`, `\n`-style escapes and `\xHH`; the host writes bytes that were not UTF-8 as `\xHH` too.
//! Decoding rules, chosen so the result is valid UTF-8 and no byte is lost: printable ASCII becomes
//! the character, bytes `>= 0x80` that form valid UTF-8 become the characters, and any other byte
//! becomes `%HH` so a URL decoder downstream sees it. A backslash that starts no known escape stays.

use crate::accesslog::bytes::{hex_escape, push_high_escapes, push_percent};
use crate::find;
use std::borrow::Cow;

/// The decoded form of a logged value; borrowed when the value holds no backslash.
pub fn decode(value: &str) -> Cow<'_, str> {
    let b = value.as_bytes();
    let Some(first) = find::byte(b'\\', b) else {
        return Cow::Borrowed(value);
    };
    let mut out = String::with_capacity(value.len());
    out.push_str(&value[..first]);
    let mut i = first;
    while i < b.len() {
        // Here b[i] is a backslash.
        i += decode_escape(&mut out, &b[i..]);
        let next = find::byte(b'\\', &b[i..]).map_or(b.len(), |p| i + p);
        out.push_str(&value[i..next]);
        i = next;
    }
    Cow::Owned(out)
}

/// Decodes the escape at the start of `s` (which starts with a backslash) into `out`; returns how
/// many bytes it took. Every branch consumes only ASCII, so the caller stays on a char boundary.
fn decode_escape(out: &mut String, s: &[u8]) -> usize {
    let taken = push_high_escapes(out, s);
    if taken > 0 {
        return taken;
    }
    if let Some(byte) = hex_escape(s) {
        push_ascii(out, byte);
        return 4;
    }
    let control = match s.get(1) {
        Some(b'"') => b'"',
        Some(b'\\') => b'\\',
        Some(b'n') => b'\n',
        Some(b'r') => b'\r',
        Some(b't') => b'\t',
        Some(b'b') => 0x08,
        Some(b'v') => 0x0b,
        _ => {
            out.push('\\');
            return 1;
        }
    };
    push_ascii(out, control);
    2
}

/// Printable ASCII as the character, anything else as `%HH`.
fn push_ascii(out: &mut String, byte: u8) {
    if (0x20..0x7f).contains(&byte) {
        out.push(char::from(byte));
    } else {
        push_percent(out, byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_are_borrowed() {
        assert!(matches!(decode("Mozilla/5.0 (X11)"), Cow::Borrowed(_)));
    }

    #[test]
    fn nginx_hex_escapes() {
        assert_eq!(decode(r"a\x22b\x5Cc"), "a\"b\\c");
        assert_eq!(decode(r"\x16\x03\x01\x00"), "%16%03%01%00");
        assert_eq!(decode(r"caf\xC3\xA9!"), "café!");
        assert_eq!(decode(r"\xC3(\xFF"), "%C3(%FF");
        assert_eq!(decode(r"\x7F\x25"), "%7F%");
    }

    #[test]
    fn apache_escapes() {
        assert_eq!(decode(r#"say \"hi\" \\ there"#), r#"say "hi" \ there"#);
        assert_eq!(decode(r"a\nb\tc"), "a%0Ab%09c");
        assert_eq!(decode(r"\\x41"), r"\x41");
    }

    #[test]
    fn stray_backslashes_stay() {
        assert_eq!(decode(r"a\qb"), r"a\qb");
        assert_eq!(decode("end\\"), "end\\");
        assert_eq!(decode(r"\x4"), r"\x4");
        assert_eq!(decode("é\\é"), "é\\é");
    }
}
