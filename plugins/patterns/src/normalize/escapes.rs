//! Undoing escapes: percent-encoding (`%HH`, `%uHHHH`), overlong UTF-8, HTML entities and
//! JavaScript escapes, repeated to a fixed point.
//!
//! Invariants: each round is one linear pass whose output is no longer than a small constant times
//! its input, and at most [`MAX_DECODE_ROUNDS`] rounds run.

use super::Anomalies;

/// Most percent-decoding passes made over one input; triple encoding (`%25252e`) needs three, one more
/// confirms nothing is left. A bound, so a `%25252525…` bomb costs a fixed number of linear passes.
pub const MAX_DECODE_ROUNDS: usize = 4;

/// Decodes `input` into `cur`: percent escapes, `%uXXXX`, overlong UTF-8, HTML entities and
/// JavaScript escapes, repeated until nothing changes or [`MAX_DECODE_ROUNDS`]. `next` is scratch.
pub(super) fn decode_rounds(
    input: &[u8],
    plus_is_space: bool,
    cur: &mut Vec<u8>,
    next: &mut Vec<u8>,
    flags: &mut Anomalies,
) {
    cur.clear();
    cur.extend_from_slice(input);
    if plus_is_space {
        for b in cur.iter_mut() {
            if *b == b'+' {
                *b = b' ';
            }
        }
    }
    for round in 0..MAX_DECODE_ROUNDS {
        let mut changed = false;
        if memchr::memchr(b'%', cur).is_some() {
            next.clear();
            if percent_round(cur, next, flags) {
                std::mem::swap(cur, next);
                changed = true;
                if round > 0 {
                    flags.insert(Anomalies::MULTI_ENCODED);
                }
            }
        }
        if cur.iter().any(|&b| b >= 0xc0) && overlong_round(cur) {
            flags.insert(Anomalies::OVERLONG_UTF8);
            changed = true;
        }
        if memchr::memchr(b'&', cur).is_some() {
            next.clear();
            if entity_round(cur, next, flags) {
                std::mem::swap(cur, next);
                changed = true;
            }
        }
        if memchr::memchr(b'\\', cur).is_some() {
            next.clear();
            if js_escape_round(cur, next, flags) {
                std::mem::swap(cur, next);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_pair(src: &[u8], i: usize) -> Option<u8> {
    Some(hex_val(*src.get(i)?)? << 4 | hex_val(*src.get(i + 1)?)?)
}

fn hex4(src: &[u8], i: usize) -> Option<u32> {
    let mut v = 0u32;
    for k in 0..4 {
        v = v << 4 | u32::from(hex_val(*src.get(i + k)?)?);
    }
    Some(v)
}

fn push_char(dst: &mut Vec<u8>, cp: u32) {
    let c = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
    let mut buf = [0u8; 4];
    dst.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// One pass of `%HH` and `%uHHHH` decoding. Returns whether an escape was decoded.
fn percent_round(src: &[u8], dst: &mut Vec<u8>, flags: &mut Anomalies) -> bool {
    let mut changed = false;
    let mut i = 0;
    while i < src.len() {
        let b = src[i];
        if b == b'%' {
            if let Some(v) = hex_pair(src, i + 1) {
                dst.push(v);
                i += 3;
                changed = true;
                continue;
            }
            if matches!(src.get(i + 1), Some(b'u' | b'U'))
                && let Some(cp) = hex4(src, i + 2)
            {
                push_char(dst, cp);
                flags.insert(Anomalies::PERCENT_U);
                i += 6;
                changed = true;
                continue;
            }
        }
        dst.push(b);
        i += 1;
    }
    changed
}

fn is_cont(b: u8) -> bool {
    b & 0xc0 == 0x80
}

/// Replaces, in place, overlong UTF-8 encodings of ASCII characters by the character: `c0 ae` and
/// IIS's lenient `c0 ee` become `.`, `e0 80 af` and `f0 80 80 af` become `/`, five- and six-byte
/// forms likewise. Returns whether anything was replaced.
fn overlong_round(buf: &mut Vec<u8>) -> bool {
    let mut changed = false;
    let (mut r, mut w) = (0, 0);
    while r < buf.len() {
        let b = buf[r];
        let (len, ascii) = match b {
            0xc0 | 0xc1 if buf.get(r + 1).is_some_and(|&c| c >= 0x80) => (2, (b & 1) << 6 | (buf[r + 1] & 0x3f)),
            0xe0 if buf.get(r + 1).is_some_and(|&c| (0x80..0xa0).contains(&c))
                && buf.get(r + 2).is_some_and(|&c| is_cont(c))
                && buf[r + 1] & 0x3f <= 1 =>
            {
                (3, (buf[r + 1] & 1) << 6 | (buf[r + 2] & 0x3f))
            }
            0xf0 if buf.get(r + 1) == Some(&0x80)
                && buf.get(r + 2).is_some_and(|&c| c & 0xfe == 0x80)
                && buf.get(r + 3).is_some_and(|&c| is_cont(c)) =>
            {
                (4, (buf[r + 2] & 1) << 6 | (buf[r + 3] & 0x3f))
            }
            0xf8 if buf[r + 1..].iter().take(4).filter(|&&c| is_cont(c)).count() == 4
                && buf[r + 1] == 0x80
                && buf[r + 2] == 0x80
                && buf[r + 3] & 0xfe == 0x80 =>
            {
                (5, (buf[r + 3] & 1) << 6 | (buf[r + 4] & 0x3f))
            }
            0xfc if buf[r + 1..].iter().take(5).filter(|&&c| is_cont(c)).count() == 5
                && buf[r + 1..r + 4].iter().all(|&c| c == 0x80)
                && buf[r + 4] & 0xfe == 0x80 =>
            {
                (6, (buf[r + 4] & 1) << 6 | (buf[r + 5] & 0x3f))
            }
            _ => (0, 0),
        };
        if len > 0 {
            buf[w] = ascii;
            w += 1;
            r += len;
            changed = true;
        } else {
            buf[w] = b;
            w += 1;
            r += 1;
        }
    }
    buf.truncate(w);
    changed
}

/// Named entities decoded with or without a trailing `;` (the ones browsers accept bare).
const LEGACY_ENTITIES: [&str; 5] = ["lt", "gt", "amp", "quot", "nbsp"];

fn named_entity(name: &[u8]) -> Option<char> {
    let mut lower = [0u8; 12];
    if name.len() > lower.len() {
        return None;
    }
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    Some(match &lower[..name.len()] {
        b"lt" => '<',
        b"gt" => '>',
        b"amp" => '&',
        b"quot" => '"',
        b"apos" => '\'',
        b"nbsp" => ' ',
        b"tab" => '\t',
        b"newline" => '\n',
        b"colon" => ':',
        b"sol" => '/',
        b"bsol" => '\\',
        b"lpar" => '(',
        b"rpar" => ')',
        b"semi" => ';',
        b"comma" => ',',
        b"period" => '.',
        b"excl" => '!',
        b"quest" => '?',
        b"num" => '#',
        b"dollar" => '$',
        b"percnt" => '%',
        b"equals" => '=',
        b"plus" => '+',
        b"commat" => '@',
        b"lsqb" | b"lbrack" => '[',
        b"rsqb" | b"rbrack" => ']',
        b"lcub" | b"lbrace" => '{',
        b"rcub" | b"rbrace" => '}',
        b"grave" => '`',
        b"hat" => '^',
        b"verbar" | b"vert" => '|',
        b"lowbar" => '_',
        b"ast" | b"midast" => '*',
        b"hyphen" | b"dash" => '-',
        _ => return None,
    })
}

/// One pass of HTML entity decoding: named (`&lt;`, `&colon;`, legacy ones without `;`), decimal
/// (`&#60;`, `&#0000060`) and hexadecimal (`&#x3c`) references. Returns whether one was decoded.
fn entity_round(src: &[u8], dst: &mut Vec<u8>, flags: &mut Anomalies) -> bool {
    let mut changed = false;
    let mut i = 0;
    while i < src.len() {
        if src[i] == b'&'
            && let Some((cp, used)) = entity_at(&src[i + 1..])
        {
            note_markup(cp, flags);
            push_char(dst, cp);
            i += 1 + used;
            changed = true;
            continue;
        }
        dst.push(src[i]);
        i += 1;
    }
    changed
}

/// The code point and length of the entity reference after an `&`, if there is one.
fn entity_at(s: &[u8]) -> Option<(u32, usize)> {
    if s.first() == Some(&b'#') {
        let hex = matches!(s.get(1), Some(b'x' | b'X'));
        let start = if hex { 2 } else { 1 };
        let radix = if hex { 16 } else { 10 };
        let mut end = start;
        let mut cp: u32 = 0;
        while let Some(d) = s.get(end).and_then(|&b| (b as char).to_digit(radix)) {
            // Saturate instead of overflowing: leading zeros are free, huge values are invalid.
            cp = cp.saturating_mul(radix).saturating_add(d);
            end += 1;
        }
        if end == start {
            return None;
        }
        if s.get(end) == Some(&b';') {
            end += 1;
        }
        return Some((if cp > 0x10ffff { 0xfffd } else { cp }, end));
    }
    let len = s.iter().take(12).take_while(|b| b.is_ascii_alphanumeric()).count();
    if len == 0 {
        return None;
    }
    let name = &s[..len];
    if s.get(len) == Some(&b';')
        && let Some(c) = named_entity(name)
    {
        return Some((c as u32, len + 1));
    }
    // Legacy references need no `;` and, like in browsers, may run into the next word (`&ltscript`).
    LEGACY_ENTITIES
        .iter()
        .find(|l| name.len() >= l.len() && name[..l.len()].eq_ignore_ascii_case(l.as_bytes()))
        .and_then(|l| Some((named_entity(l.as_bytes())? as u32, l.len())))
}

/// One pass of JavaScript escape decoding: `\xHH` (as a raw byte, so `\xe2\x80\xa8` is U+2028),
/// `\uHHHH` and `\u{H…}`. Returns whether one was decoded.
fn js_escape_round(src: &[u8], dst: &mut Vec<u8>, flags: &mut Anomalies) -> bool {
    let mut changed = false;
    let mut i = 0;
    while i < src.len() {
        if src[i] == b'\\' {
            match src.get(i + 1) {
                Some(b'x' | b'X') => {
                    if let Some(v) = hex_pair(src, i + 2) {
                        note_markup(u32::from(v), flags);
                        dst.push(v);
                        i += 4;
                        changed = true;
                        continue;
                    }
                }
                Some(b'u' | b'U') => {
                    if let Some(cp) = hex4(src, i + 2) {
                        note_markup(cp, flags);
                        push_char(dst, cp);
                        i += 6;
                        changed = true;
                        continue;
                    }
                    if src.get(i + 2) == Some(&b'{') {
                        let digits = src[i + 3..]
                            .iter()
                            .take(7)
                            .take_while(|b| b.is_ascii_hexdigit())
                            .count();
                        if (1..=6).contains(&digits) && src.get(i + 3 + digits) == Some(&b'}') {
                            let cp = src[i + 3..i + 3 + digits]
                                .iter()
                                .fold(0u32, |v, &b| v << 4 | u32::from(hex_val(b).unwrap_or(0)));
                            note_markup(cp, flags);
                            push_char(dst, cp);
                            i += 4 + digits;
                            changed = true;
                            continue;
                        }
                    }
                }
                _ => {}
            }
        }
        dst.push(src[i]);
        i += 1;
    }
    changed
}

fn note_markup(cp: u32, flags: &mut Anomalies) {
    if cp == u32::from(b'<') || cp == u32::from(b'>') {
        flags.insert(Anomalies::ENCODED_MARKUP);
    }
}
