//! Normalisation of attacker-controlled text before rules see it.
//!
//! Attack tools hide payloads behind encodings a server or an application undoes later: double and
//! triple percent-encoding, IIS `%uXXXX`, overlong UTF-8, HTML entities, JavaScript escapes, SQL
//! comments, shell quoting. [`decode`] undoes the encodings and folds case, look-alike characters and
//! whitespace; [`View`]s then derive the shapes the rule families are written against.
//!
//! Invariants:
//! - Every function here runs in time linear in its input: decoding makes at most
//!   [`MAX_DECODE_ROUNDS`] passes, every other transform makes one, and nothing backtracks. Output is
//!   never longer than a small constant times the input.
//! - Decoded text is lower case and holds no NUL, no control character but `\r` and no run of
//!   whitespace: a line break (CR, LF, VT, FF, U+2028, U+2029) becomes `\r`, any other whitespace
//!   one space, and a run of either collapses to one character (`\r` when it held a line break).
//! - `\n` never occurs in a view; the detector uses it to separate query arguments.

mod anomalies;
mod escapes;
mod shapes;

pub use anomalies::Anomalies;
pub use escapes::MAX_DECODE_ROUNDS;

use escapes::decode_rounds;
use shapes::{file_shape, shell_shape, strip_sql_comments};

/// A shape of the decoded text that one family of rules is written against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// The decoded text itself.
    Plain,
    /// SQL comments removed: `/**/` and `/*…*/` become a space, `/*!50000 x*/` keeps `x`, `-- ` and
    /// `#` comments end at the next line break.
    Sql,
    /// File-path shape: `\` becomes `/`, and `0x2e`, `0x2f`, `0x5c` become `.`, `/`, `/`.
    File,
    /// Shell shape: quoting and escaping (`\ ' " ^`, empty backticks) removed, a literal `\n` or `\r`
    /// becomes a line break, `$IFS`/`${IFS}` a space, expansions that are empty or only pad a word
    /// (`$@`, `$1`, `$!`, `$()`, `${x}`) vanish, `{ , } +` become spaces and `[c]` becomes `c`.
    Shell,
}

impl View {
    /// Every view, in index order.
    pub const ALL: [View; 4] = [View::Plain, View::Sql, View::File, View::Shell];

    /// Dense index of the view, for per-view arrays.
    pub const fn index(self) -> usize {
        match self {
            View::Plain => 0,
            View::Sql => 1,
            View::File => 2,
            View::Shell => 3,
        }
    }

    /// Whether this view of `text` can differ from `text` itself. Cheap: a scan for trigger bytes.
    pub fn applies_to(self, text: &str) -> bool {
        let b = text.as_bytes();
        match self {
            View::Plain => false,
            View::Sql => memchr::memchr(b'#', b).is_some() || has_pair(b, b'/', b'*') || has_pair(b, b'-', b'-'),
            View::File => memchr::memchr(b'\\', b).is_some() || has_pair(b, b'0', b'x'),
            View::Shell => b.iter().any(|c| {
                matches!(
                    c,
                    b'\\' | b'\'' | b'"' | b'^' | b'$' | b'{' | b'}' | b',' | b'[' | b'`' | b'+'
                )
            }),
        }
    }

    /// Appends this view of `text` (plain decoded text, before whitespace collapsing for
    /// [`View::Sql`]; collapsed text for the others) to `out`.
    fn write(self, raw: &str, text: &str, out: &mut String) {
        match self {
            View::Plain => out.push_str(text),
            View::Sql => {
                let start = out.len();
                strip_sql_comments(raw, out);
                collapse_in_place(out, start);
            }
            View::File => file_shape(text, out),
            View::Shell => {
                let start = out.len();
                shell_shape(text, out);
                collapse_in_place(out, start);
            }
        }
    }
}

fn has_pair(b: &[u8], first: u8, second: u8) -> bool {
    memchr::memchr_iter(first, b).any(|i| b.get(i + 1) == Some(&second))
}

/// One input, decoded, with every view the rules may ask for. Buffers are reused between inputs.
#[derive(Debug, Default)]
pub struct Normalized {
    /// The decoded text before whitespace collapsing (line breaks as `\n`).
    raw: String,
    /// The decoded, collapsed text ([`View::Plain`]).
    text: String,
    bytes: Vec<u8>,
    spare: Vec<u8>,
    /// Which view triggers (`TRIGGER_*`) occur in `raw`.
    triggers: u8,
    /// Anomalies of the last input.
    pub anomalies: Anomalies,
}

impl Normalized {
    /// Decodes `input` (see [`decode`]) into this buffer set, replacing what it held.
    pub fn set(&mut self, input: &str, plus_is_space: bool) {
        let mut flags = Anomalies::none();
        let src = input.as_bytes();
        let mut out = std::mem::take(&mut self.raw).into_bytes();
        out.clear();
        let needs_decoding = src
            .iter()
            .any(|&b| NEEDS_DECODING[usize::from(b)] || (plus_is_space && b == b'+'));
        self.triggers = if needs_decoding {
            decode_rounds(src, plus_is_space, &mut self.bytes, &mut self.spare, &mut flags);
            fold(&self.bytes, &mut out, &mut flags)
        } else {
            fold(src, &mut out, &mut flags)
        };
        // `fold` writes ASCII and whole UTF-8 sequences only.
        self.raw = String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        if self.triggers & TRIGGER_BREAK != 0 {
            flags.insert(Anomalies::LINE_BREAK);
        }
        self.anomalies = flags;
        self.text.clear();
        collapse_into(&self.raw, &mut self.text);
    }

    /// The decoded, collapsed text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `view` of this text can differ from [`Normalized::text`].
    pub fn has_view(&self, view: View) -> bool {
        let bit = match view {
            View::Plain => return false,
            View::Sql => TRIGGER_SQL,
            View::File => TRIGGER_FILE,
            View::Shell => TRIGGER_SHELL,
        };
        self.triggers & bit != 0 && view.applies_to(&self.raw)
    }

    /// Appends `view` of this text to `out`.
    pub fn write_view(&self, view: View, out: &mut String) {
        view.write(&self.raw, &self.text, out);
    }
}

/// Bytes that may start an escape [`decode_rounds`] undoes; input without them skips decoding.
static NEEDS_DECODING: [bool; 256] = {
    let mut t = [false; 256];
    t[b'%' as usize] = true;
    t[b'&' as usize] = true;
    t[b'\\' as usize] = true;
    let mut b = 0xc0;
    while b < 256 {
        t[b] = true;
        b += 1;
    }
    t
};

/// `raw` may have a distinct [`View::Sql`] (it holds `#`, `/` or `-`).
const TRIGGER_SQL: u8 = 1;
/// `raw` may have a distinct [`View::File`] (it holds `\` or `0`).
const TRIGGER_FILE: u8 = 1 << 1;
/// `raw` may have a distinct [`View::Shell`].
const TRIGGER_SHELL: u8 = 1 << 2;
/// `raw` holds a line break.
const TRIGGER_BREAK: u8 = 1 << 3;

/// What each ASCII byte becomes in decoded text (0: dropped) and which view triggers it sets.
static ASCII_FOLD: [(u8, u8); 128] = {
    let mut t = [(0u8, 0u8); 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = match c {
            0 => (0, 0),
            b'\n' | b'\r' | 0x0b | 0x0c => (b'\n', TRIGGER_BREAK),
            0x01..=0x1f | 0x7f => (b' ', 0),
            b'A'..=b'Z' => (c + 32, 0),
            b'#' | b'/' | b'-' => (c, TRIGGER_SQL),
            b'0' => (c, TRIGGER_FILE),
            b'\\' => (c, TRIGGER_FILE | TRIGGER_SHELL),
            b'\'' | b'"' | b'^' | b'$' | b'{' | b'}' | b',' | b'[' | b'`' | b'+' => (c, TRIGGER_SHELL),
            _ => (c, 0),
        };
        b += 1;
    }
    t
};

/// Decodes `input` completely and returns the collapsed text with its anomalies; a convenience
/// over [`Normalized`] for tests and tools.
pub fn decode(input: &str, plus_is_space: bool) -> (String, Anomalies) {
    let mut n = Normalized::default();
    n.set(input, plus_is_space);
    (n.text, n.anomalies)
}

/// Returns `view` of the decoded `input`; a convenience for tests and tools.
pub fn view_of(input: &str, plus_is_space: bool, view: View) -> String {
    let mut n = Normalized::default();
    n.set(input, plus_is_space);
    let mut out = String::new();
    n.write_view(view, &mut out);
    out
}

/// What one character becomes in decoded text.
enum Fold {
    Keep(char),
    Space,
    Break,
    Drop,
}

fn fold_char(c: char) -> Fold {
    match c {
        '\0' => Fold::Drop,
        '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}' => Fold::Break,
        '\u{01}'..='\u{1f}' | '\u{7f}' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}' => Fold::Space,
        '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{fffe}' | '\u{ffff}' => Fold::Space,
        // Invisible characters inserted to split keywords (`java\u200bscript`).
        '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}' => Fold::Drop,
        'A'..='Z' => Fold::Keep(c.to_ascii_lowercase()),
        c if c.is_ascii() => Fold::Keep(c),
        // Fullwidth ASCII (`％`, `．`, `／`, `Ａ`).
        '\u{ff01}'..='\u{ff5e}' => Fold::Keep(char::from_u32(c as u32 - 0xfee0).map_or(c, |a| a.to_ascii_lowercase())),
        '\u{3002}' | '\u{ff61}' | '\u{fe52}' | '\u{2024}' => Fold::Keep('.'),
        '\u{2215}' | '\u{2044}' | '\u{29f8}' => Fold::Keep('/'),
        '\u{2216}' | '\u{fe68}' | '\u{29f5}' | '\u{29f9}' => Fold::Keep('\\'),
        '\u{2018}' | '\u{2019}' | '\u{201b}' | '\u{2032}' | '\u{02bc}' => Fold::Keep('\''),
        '\u{201c}' | '\u{201d}' | '\u{201f}' | '\u{2033}' => Fold::Keep('"'),
        // Enclosed alphanumerics (`①`, `⓪`, `ⓐ`, `Ⓐ`) used to spell hosts and addresses.
        '\u{2460}'..='\u{2468}' => Fold::Keep(char::from(b'1' + (c as u32 - 0x2460) as u8)),
        '\u{24ea}' => Fold::Keep('0'),
        '\u{24b6}'..='\u{24cf}' => Fold::Keep(char::from(b'a' + (c as u32 - 0x24b6) as u8)),
        '\u{24d0}'..='\u{24e9}' => Fold::Keep(char::from(b'a' + (c as u32 - 0x24d0) as u8)),
        c if c.is_whitespace() => Fold::Space,
        c => Fold::Keep(c),
    }
}

/// Turns decoded bytes into text appended to `out`: ASCII through [`ASCII_FOLD`], other characters
/// through [`fold_char`], invalid UTF-8 as U+FFFD (a lone `0xa0` or `0x85` as a space). Line breaks
/// stay `\n`, other whitespace becomes a space; runs are collapsed later. Returns the view
/// triggers seen. Writes only whole UTF-8 sequences.
fn fold(bytes: &[u8], out: &mut Vec<u8>, flags: &mut Anomalies) -> u8 {
    out.reserve(bytes.len());
    let mut triggers = 0u8;
    if bytes.is_ascii() {
        let start = out.len();
        out.extend_from_slice(bytes);
        let tail = &mut out[start..];
        tail.make_ascii_lowercase();
        let mut control = false;
        for &b in tail.iter() {
            triggers |= ASCII_FOLD[usize::from(b)].1;
            control |= b < 0x20 || b == 0x7f;
        }
        if control {
            // Rare: map controls to spaces and line breaks, drop NULs.
            out.truncate(start);
            for &b in bytes {
                let (c, _) = ASCII_FOLD[usize::from(b)];
                if c != 0 {
                    out.push(c);
                } else {
                    flags.insert(Anomalies::NULL_BYTE);
                }
            }
        }
        return triggers;
    }
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut rest = valid;
        while !rest.is_empty() {
            // ASCII run: table lookups, no char decoding.
            let ascii = rest.bytes().take_while(u8::is_ascii).count();
            for &b in &rest.as_bytes()[..ascii] {
                let (c, t) = ASCII_FOLD[usize::from(b)];
                triggers |= t;
                if c != 0 {
                    out.push(c);
                } else {
                    flags.insert(Anomalies::NULL_BYTE);
                }
            }
            rest = &rest[ascii..];
            let Some(c) = rest.chars().next() else { break };
            rest = &rest[c.len_utf8()..];
            let mut buf = [0u8; 4];
            match fold_char(c) {
                Fold::Keep(k) if k.is_ascii() => {
                    let (c, t) = ASCII_FOLD[k as usize];
                    triggers |= t;
                    out.push(c);
                }
                Fold::Keep(k) => {
                    for l in k.to_lowercase() {
                        out.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
                    }
                }
                Fold::Space => out.push(b' '),
                Fold::Break => {
                    triggers |= TRIGGER_BREAK;
                    out.push(b'\n');
                }
                Fold::Drop => {}
            }
        }
        for &b in chunk.invalid() {
            if b == 0xa0 || b == 0x85 {
                out.push(b' ');
            } else {
                out.extend_from_slice(char::REPLACEMENT_CHARACTER.encode_utf8(&mut [0u8; 4]).as_bytes());
                flags.insert(Anomalies::INVALID_UTF8);
            }
        }
    }
    triggers
}

/// Appends `src` to `out` with every run of spaces and line breaks collapsed into one character
/// (`\r` when the run held a line break, a space otherwise), runs at both ends trimmed.
fn collapse_into(src: &str, out: &mut String) {
    if memchr::memchr3(b' ', b'\n', b'\r', src.as_bytes()).is_none() {
        out.push_str(src);
        return;
    }
    let start = out.len();
    let mut pending: Option<char> = None;
    let mut copied = 0;
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b' ' || c == b'\n' || c == b'\r' {
            out.push_str(&src[copied..i]);
            let brk = c != b' ' || pending == Some('\r');
            pending = Some(if brk { '\r' } else { ' ' });
            i += 1;
            copied = i;
            continue;
        }
        if let Some(p) = pending.take()
            && out.len() > start
        {
            out.push(p);
        }
        i += 1;
    }
    out.push_str(&src[copied..]);
}

/// Collapses whitespace in `s[start..]` in place (see [`collapse_into`]).
fn collapse_in_place(s: &mut String, start: usize) {
    let tail = s.split_off(start);
    collapse_into(&tail, s);
}

#[cfg(test)]
mod tests;
