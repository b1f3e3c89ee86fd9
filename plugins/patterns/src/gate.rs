//! Byte gates: a cheap test that rules out whole regex sets for most benign text.
//!
//! Most attack grammar needs a character ordinary URLs rarely contain: a quote, a bracket, a
//! semicolon, a pipe, a dollar sign, a space. For every rule, [`rule_gate`] derives from the regex
//! syntax a set of such "rare" bytes of which every match must contain at least one; [`text_gate`]
//! lists the rare bytes a text holds. A set whose rules' gates share no byte with the text cannot
//! match it and is skipped.
//!
//! Invariants:
//! - Sound: when `rule_gate(p)` is `Some(g)`, every match of `p` (compiled as the rule builder
//!   compiles it) contains a byte whose bit is in `g`. When unsure, the answer is `None` (ungated).
//! - `text_gate` is one table lookup per byte.

use regex_syntax::hir::{Class, Hir, HirKind};

/// The gate bytes, one bit each. Letters, digits and `/ . - _` are deliberately absent: URLs are
/// made of them. All whitespace is included so that `\s` gates soundly.
const RARE: &[u8] = b"'\"`<>();|${}[]\\*^~@!#%&+,:=? \r\t\n\x0b\x0c";

/// `BIT[b]`: the gate bit of byte `b`, 0 when `b` is not a gate byte.
static BIT: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < RARE.len() {
        t[RARE[i] as usize] = 1 << i;
        i += 1;
    }
    t
};

/// The gate bits of the bytes in `text`.
pub fn text_gate(text: &[u8]) -> u64 {
    text.iter().fold(0, |m, &b| m | BIT[usize::from(b)])
}

/// The gate of a pattern: the rare bytes every match contains at least one of, or `None`.
pub fn rule_gate(pattern: &str) -> Option<u64> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(true)
        .multi_line(true)
        .build()
        .parse(pattern)
        .ok()?;
    required(&hir).map(|(bits, _)| bits)
}

/// Bytes one of which every match of `hir` contains, as gate bits and their count; `None` when some
/// match may consist of common bytes only (or the analysis cannot tell).
fn required(hir: &Hir) -> Option<(u64, u32)> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Literal(lit) => lit.0.iter().filter_map(|&b| single(b)).min_by_key(|&(_, n)| n),
        HirKind::Class(Class::Bytes(class)) => {
            let mut bits = 0u64;
            for range in class.iter() {
                for b in range.start()..=range.end() {
                    let bit = BIT[usize::from(b)];
                    if bit == 0 {
                        return None;
                    }
                    bits |= bit;
                }
            }
            Some((bits, bits.count_ones()))
        }
        HirKind::Class(Class::Unicode(class)) => {
            let mut bits = 0u64;
            for range in class.iter() {
                for c in range.start()..=range.end() {
                    let bit = u8::try_from(u32::from(c)).map_or(0, |b| BIT[usize::from(b)]);
                    if bit == 0 {
                        return None;
                    }
                    bits |= bit;
                }
            }
            Some((bits, bits.count_ones()))
        }
        HirKind::Repetition(rep) if rep.min >= 1 => required(&rep.sub),
        HirKind::Repetition(_) => None,
        HirKind::Capture(cap) => required(&cap.sub),
        // Any child's requirement holds; the narrowest one gates best.
        HirKind::Concat(subs) => subs.iter().filter_map(required).min_by_key(|&(_, n)| n),
        // Every branch must be covered.
        HirKind::Alternation(subs) => subs.iter().try_fold((0u64, 0u32), |(bits, _), sub| {
            let (b, _) = required(sub)?;
            let all = bits | b;
            Some((all, all.count_ones()))
        }),
    }
}

fn single(b: u8) -> Option<(u64, u32)> {
    let bit = BIT[usize::from(b)];
    (bit != 0).then_some((bit, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(s: &[u8]) -> u64 {
        text_gate(s)
    }

    #[test]
    fn gates_follow_the_grammar() {
        assert_eq!(rule_gate(r"<\s*script\b"), Some(bits(b"<")));
        assert_eq!(rule_gate(r"\bunion\s+select\b"), Some(bits(b" \t\r\n\x0b\x0c")));
        assert_eq!(rule_gate(r"(?:'|\x22)\s*or"), Some(bits(b"'\"")));
        assert_eq!(rule_gate(r"/\.git/"), None);
        assert_eq!(rule_gate(r"whoami|;id"), None);
        assert_eq!(rule_gate(r"a?'"), Some(bits(b"'")));
        assert_eq!(rule_gate(r"(?:\$|\{)+x"), Some(bits(b"${")));
    }

    #[test]
    fn text_gate_sees_rare_bytes_only() {
        assert_eq!(text_gate(b"/blog/2024/post-1.html"), 0);
        assert_ne!(text_gate(b"/q?x=1"), 0);
    }
}
