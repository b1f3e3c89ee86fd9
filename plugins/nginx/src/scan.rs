//! Finding where each variable of a [`Format`] starts and ends in one line.
//!
//! The scanner walks the slots left to right. A variable ends where its terminator (the literal
//! after it) next appears; a quoted variable ends at the first `"` not preceded by a backslash,
//! because nginx writes `"` inside values as `\x22` and Apache as `\"`. If what follows does not
//! match, the scanner tries the next occurrence, at most [`MAX_RETRIES`] times per line.
//!
//! Each line is scanned twice at most: first strictly (addresses, timestamps, status and sizes must
//! look right, so text injected into `$remote_user` cannot shift the fields after it), then loosely
//! (any value, but no retries, so the first choice of every end is kept).
//!
//! From the request on, a line may end early (Apache `common` lines read with `combined`, lines cut
//! off by a length limit): the slots after that point are absent. Built-in formats also accept
//! fields appended by local formats: where the first candidate end of a slot after the request is
//! not followed by the expected literal, the known fields end there and the rest is ignored.
//! Neither applies once a later candidate had to be tried, so a value never swallows fields that
//! failed to match.
//!
//! Invariants: time is linear in the line (every retry costs at most one pass over it, and retries
//! are capped); every span starts and ends on a char boundary, since spans end at ASCII bytes, at
//! the start of a terminator or at the end of the line.

use crate::accesslog::time;
use crate::find;
use crate::format::{Format, Var};

/// Where a slot's value lies in the line; `None` when the line ended before it.
pub type Span = Option<(usize, usize)>;

/// Alternatives tried per line after a first choice failed; bounds the work on hostile lines.
const MAX_RETRIES: u32 = 16;

/// Longest run of digits accepted as `$body_bytes_sent` (u64 has 20 digits).
const MAX_SIZE_DIGITS: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Strict,
    Loose,
}

/// Why a line did not match, at the slot where it happened.
#[derive(Clone, Copy)]
enum Failure {
    NoTerminator,
    BadValue,
    TextAfter,
}

/// Fills `spans` (one per slot) for `line`, or says why the line does not match `format`.
pub fn scan(format: &Format, line: &str, spans: &mut Vec<Span>) -> Result<(), String> {
    if !has_prefix(line.as_bytes(), &format.prefix) {
        let prefix = String::from_utf8_lossy(&format.prefix);
        return Err(format!("line does not start with {prefix:?}"));
    }
    let mut furthest: Option<(usize, Failure)> = None;
    for pass in [Pass::Strict, Pass::Loose] {
        spans.clear();
        spans.resize(format.slots.len(), None);
        let retries = if pass == Pass::Strict { MAX_RETRIES } else { 0 };
        let mut scanner = Scanner {
            format,
            line,
            spans,
            pass,
            retries,
            furthest: None,
        };
        if scanner.slot(0, format.prefix.len()) {
            return Ok(());
        }
        if let Some((k, why)) = scanner.furthest
            && furthest.is_none_or(|(seen, _)| k > seen)
        {
            furthest = Some((k, why));
        }
    }
    Err(describe(format, furthest))
}

fn describe(format: &Format, furthest: Option<(usize, Failure)>) -> String {
    let Some((k, why)) = furthest else {
        return "line does not match the log format".to_owned();
    };
    let slot = &format.slots[k];
    match why {
        Failure::NoTerminator => {
            let terminator = String::from_utf8_lossy(&slot.terminator);
            format!("no {terminator:?} after ${}", slot.name)
        }
        Failure::BadValue => format!("bad value for ${}", slot.name),
        Failure::TextAfter => format!("unexpected text after ${}", slot.name),
    }
}

struct Scanner<'a> {
    format: &'a Format,
    line: &'a str,
    spans: &'a mut Vec<Span>,
    pass: Pass,
    retries: u32,
    furthest: Option<(usize, Failure)>,
}

impl Scanner<'_> {
    /// Matches slot `k` and everything after it, the value starting at byte `pos`.
    fn slot(&mut self, k: usize, pos: usize) -> bool {
        let Some(slot) = self.format.slots.get(k) else {
            return true;
        };
        let len = self.line.len();
        let term = &*slot.terminator;
        if term.is_empty() {
            return self.accept(k, pos, len);
        }
        let may_end = k >= self.format.truncate_from;
        let last = k + 1 == self.format.slots.len();
        // Fields appended by local formats come after the request; inside the request a quote
        // that does not close it is more likely part of it (a raw `"` from a log writer that does
        // not escape), so the scan goes on to the next one.
        let appended = self.format.trailing && k > self.format.truncate_from;
        let mut from = pos;
        let mut first = true;
        let mut tried = false;
        while let Some(p) = self.next_stop(k, from) {
            let rest = &self.line.as_bytes()[p..];
            if has_prefix(rest, term) {
                tried = true;
                let after = p + term.len();
                if last && after != len && !self.format.trailing {
                    self.fail(k, Failure::TextAfter);
                } else if self.accept(k, pos, p) && self.slot(k + 1, after) {
                    return true;
                } else if self.retries == 0 {
                    return false;
                } else {
                    self.retries -= 1;
                }
            } else if may_end && !tried && (has_prefix(term, rest) || (first && appended)) {
                // The line ends inside the terminator, or a built-in format meets fields it does
                // not know: the remaining slots are absent. Not after a full match was tried,
                // which would make this value swallow the fields that did not fit.
                return self.end_early(k, pos, p);
            }
            first = false;
            from = p + 1;
        }
        if may_end && first {
            return self.end_early(k, pos, len);
        }
        self.fail(k, Failure::NoTerminator);
        false
    }

    /// The next position at or after `from` where slot `k` may end: the first byte of its
    /// terminator, or for a quoted slot the next unescaped `"`.
    fn next_stop(&self, k: usize, from: usize) -> Option<usize> {
        let slot = &self.format.slots[k];
        let line = self.line.as_bytes();
        if !slot.quoted {
            let first = *slot.terminator.first()?;
            return find::byte(first, line.get(from..)?).map(|p| from + p);
        }
        let mut i = from;
        while i < line.len() {
            let p = i + find::either(b'"', b'\\', &line[i..])?;
            if line[p] == b'"' {
                return Some(p);
            }
            i = p + 2;
        }
        None
    }

    /// Slot `k` takes the rest up to `end`; the slots after it are absent.
    fn end_early(&mut self, k: usize, pos: usize, end: usize) -> bool {
        if !self.accept(k, pos, end) {
            return false;
        }
        self.spans[k + 1..].fill(None);
        true
    }

    /// Records `line[start..end]` as slot `k`'s value if it is acceptable in this pass.
    fn accept(&mut self, k: usize, start: usize, end: usize) -> bool {
        if self.pass == Pass::Strict {
            let value = self.line.get(start..end).unwrap_or_default();
            if !plausible(&self.format.slots[k].var, value) {
                self.fail(k, Failure::BadValue);
                return false;
            }
        }
        self.spans[k] = Some((start, end));
        true
    }

    /// Remembers the failure at the furthest slot; the first reason given for a slot wins.
    fn fail(&mut self, k: usize, why: Failure) {
        if self.furthest.is_none_or(|(seen, _)| k > seen) {
            self.furthest = Some((k, why));
        }
    }
}

/// Whether `value` looks like what `var` holds; `-` stands for a missing value everywhere.
fn plausible(var: &Var, value: &str) -> bool {
    let digits = |max: usize| (1..=max).contains(&value.len()) && value.bytes().all(|c| c.is_ascii_digit());
    match var {
        Var::RemoteAddr => !value.is_empty() && !value.contains(' '),
        _ if value == "-" => true,
        Var::TimeLocal => time::looks_like_clf(value.as_bytes()),
        Var::TimeIso8601 => time::parse_iso8601(value).is_some(),
        Var::Msec => time::parse_epoch_seconds(value).is_some(),
        Var::Status => digits(3),
        Var::BodyBytesSent | Var::BytesSent => digits(MAX_SIZE_DIGITS),
        _ => true,
    }
}

/// `haystack.starts_with(prefix)` without a call to `memcmp`, which costs more than the compare
/// for the few bytes literals between variables usually have.
fn has_prefix(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack.iter().zip(prefix).all(|(a, b)| a == b)
}
