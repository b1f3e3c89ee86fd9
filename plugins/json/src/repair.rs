//! Host escapes of bytes that were not UTF-8, rewritten so the line is JSON again.
//!
//! nginx's `escape=json` writes bytes `>= 0x80` as they are; when they do not form UTF-8 the host
//! replaces each by the text `\xHH`, which JSON does not allow. Left alone, any client could make
//! its request unparseable by sending one such byte. Rewriting rules, the same as the nginx
//! parser's: bytes that form valid UTF-8 become the characters, other bytes `>= 0x80` become `%HH`,
//! and an ASCII byte becomes the JSON escape `\u00HH`. Escapes JSON allows are left untouched, and a
//! line without `\x` is returned as it is.

use crate::accesslog::bytes::{hex_escape, push_high_escapes};
use memchr::memchr;
use std::borrow::Cow;
use std::fmt::Write;

/// `line` with every `\xHH` outside a JSON escape rewritten as described in the module docs.
pub fn repair(line: &str) -> Cow<'_, str> {
    let b = line.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while let Some(p) = b.get(i..).and_then(|rest| memchr(b'\\', rest)) {
        let at = i + p;
        let Some(byte) = hex_escape(&b[at..]) else {
            // A JSON escape (or a broken one): skip the backslash and the character it escapes.
            i = at + 2;
            continue;
        };
        let text = out.get_or_insert_with(|| String::with_capacity(line.len() + 16));
        text.push_str(&line[copied..at]);
        let taken = push_high_escapes(text, &b[at..]);
        if taken == 0 {
            // Writing to a String cannot fail.
            let _ = write!(text, "\\u{byte:04x}");
            i = at + 4;
        } else {
            i = at + taken;
        }
        copied = i;
    }
    match out {
        None => Cow::Borrowed(line),
        Some(mut text) => {
            text.push_str(&line[copied..]);
            Cow::Owned(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_without_host_escapes_are_borrowed() {
        let line = r#"{"a":"b\\x41\"\u00e9"}"#;
        assert!(matches!(repair(line), Cow::Borrowed(_)));
    }

    #[test]
    fn host_escapes_become_json() {
        assert_eq!(repair(r#"{"u":"/\xC3\xA9\xFF"}"#), r#"{"u":"/é%FF"}"#);
        assert_eq!(repair(r#"{"u":"\x22"}"#), r#"{"u":"\u0022"}"#);
        assert_eq!(repair(r#"{"u":"a\\\xC3"}"#), r#"{"u":"a\\%C3"}"#);
        assert_eq!(repair(r"\xC3"), "%C3");
        assert_eq!(repair(r"ends with \"), r"ends with \");
    }
}
