//! A straight-line scanner for the built-in `combined`/`main` format, tried before the general one.
//!
//! It accepts only lines laid out the way nginx and Apache write them (every field present in its
//! usual shape, the line ending after the user agent or after the X-Forwarded-For field) and
//! returns `false` for anything else, which then goes to the general scanner. Invariant: whenever
//! it returns `true`, the spans are exactly those the general scanner's strict pass finds, because
//! it takes the same first choice for every field and checks the same shapes; a test compares both.

use crate::accesslog::time::looks_like_clf;
use crate::find;
use crate::scan::Span;

/// Slots of the built-in format, in order.
const SLOTS: usize = 9;

/// Fills `spans` for a canonical `combined`/`main` line and returns `true`, or returns `false`.
pub fn scan_main(line: &str, spans: &mut Vec<Span>) -> bool {
    spans.clear();
    spans.resize(SLOTS, None);
    let b = line.as_bytes();
    fields(b, spans).is_some()
}

fn fields(b: &[u8], spans: &mut [Span]) -> Option<()> {
    let addr_end = find::byte(b' ', b).filter(|&p| p > 0)?;
    expect(b, addr_end, b" - ")?;
    spans[0] = Some((0, addr_end));
    let user = addr_end + 3;
    let user_end = user_end(b, user)?;
    spans[1] = Some((user, user_end));
    let time = user_end + 2;
    let time_end = time + 26;
    if !looks_like_clf(b.get(time..time_end)?) {
        return None;
    }
    expect(b, time_end, b"] \"")?;
    spans[2] = Some((time, time_end));
    let request = time_end + 3;
    let request_end = quote(b, request)?;
    expect(b, request_end, b"\" ")?;
    spans[3] = Some((request, request_end));
    let status = request_end + 2;
    let status_end = status + find::byte(b' ', &b[status..])?;
    if !(1..=3).contains(&(status_end - status)) || !b[status..status_end].iter().all(u8::is_ascii_digit) {
        return None;
    }
    spans[4] = Some((status, status_end));
    let size = status_end + 1;
    let size_end = size + find::byte(b' ', &b[size..]).unwrap_or(b.len() - size);
    let digits = &b[size..size_end];
    if !(digits == b"-" || (1..=20).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)) {
        return None;
    }
    spans[5] = Some((size, size_end));
    if size_end == b.len() {
        return Some(());
    }
    expect(b, size_end, b" \"")?;
    let referer = size_end + 2;
    let referer_end = quote(b, referer)?;
    expect(b, referer_end, b"\" \"")?;
    spans[6] = Some((referer, referer_end));
    let agent = referer_end + 3;
    let agent_end = quote(b, agent)?;
    spans[7] = Some((agent, agent_end));
    if agent_end + 1 == b.len() {
        return Some(());
    }
    expect(b, agent_end, b"\" \"")?;
    let forwarded = agent_end + 3;
    let forwarded_end = quote(b, forwarded)?;
    spans[8] = Some((forwarded, forwarded_end));
    Some(())
}

/// `Some` when `b[at..]` starts with `literal` (compared inline: a `memcmp` call costs more).
fn expect(b: &[u8], at: usize, literal: &[u8]) -> Option<()> {
    let found = b.get(at..at + literal.len())?;
    found.iter().zip(literal).all(|(x, y)| x == y).then_some(())
}

/// End of `$remote_user`: the first ` [` at or after `from`.
fn user_end(b: &[u8], from: usize) -> Option<usize> {
    if b.get(from..from + 3) == Some(b"- [") {
        return Some(from + 1);
    }
    let mut at = from;
    loop {
        let p = at + find::byte(b' ', b.get(at..)?)?;
        if b.get(p + 1) == Some(&b'[') {
            return Some(p);
        }
        at = p + 1;
    }
}

/// Position of the first `"` at or after `from` that no backslash escapes. Quoted fields are long
/// (request, referer, user agent), so this goes straight to the vectorised search.
fn quote(b: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at < b.len() {
        let p = at + memchr::memchr2(b'"', b'\\', &b[at..])?;
        if b[p] == b'"' {
            return Some(p);
        }
        at = p + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use crate::scan::scan;

    /// Lines of every shape the fast path has to get right or hand over.
    fn variants() -> Vec<String> {
        let base = r#"203.0.113.7 - alice [10/Oct/2000:13:55:36 -0700] "GET /a?b=1 HTTP/1.0" 200 2326 "http://x/" "Mozilla/4.08 [en]""#;
        let mut lines: Vec<String> = [
            base.to_owned(),
            format!(r#"{base} "1.1.1.1, 10.0.0.1""#),
            format!(r#"{base} "1.1.1.1" rt=0.1"#),
            format!("{base} rt=0.1"),
            format!("{base} "),
            base.replace(" 2326 ", " - "),
            base.replace(" 200 ", " - "),
            base.replace(" 200 ", " abc "),
            base.replace(" 200 ", " 2000 "),
            base.replace("alice", "a [01/Jan/1990:00:00:00 +0000] x"),
            base.replace("alice", "a b"),
            base.replace("alice", ""),
            base.replace(r#""GET /a?b=1 HTTP/1.0""#, r#""GET /\"a\\ HTTP/1.0""#),
            base.replace(r#""GET /a?b=1 HTTP/1.0""#, r#""GET /a"b HTTP/1.0""#),
            base.replace("Mozilla/4.08 [en]", r#"say \"hi\""#),
            base.replace("Mozilla/4.08 [en]", r#"raw "quote" inside"#),
            base.replace("10/Oct/2000:13:55:36 -0700", "10/Oct/2000:13:55:36 -07]0"),
            base.replace("10/Oct/2000:13:55:36 -0700", "bad"),
            base.replace("203.0.113.7 -", "203.0.113.7 x"),
            base.replace("203.0.113.7", ""),
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /x HTTP/1.0" 200 2326"#.to_owned(),
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /x HTTP/1.0" 200"#.to_owned(),
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /cut"#.to_owned(),
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1 "-" "ua" "unterminated"#.to_owned(),
            "é - - [10/Oct/2000:13:55:36 -0700] \"GET /é HTTP/1.1\" 200 1 \"é\" \"é\"".to_owned(),
            "1.2.3.4 - - [10/Oct/2000:13:55:36 -07é] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"".to_owned(),
        ]
        .into();
        for data in ["../../shared/data/dev/benign.log", "../../shared/data/dev/access.log"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(data);
            if let Ok(text) = std::fs::read_to_string(path) {
                lines.extend(text.lines().map(str::to_owned));
            }
        }
        lines
    }

    #[test]
    fn agrees_with_the_general_scanner() {
        let format = Format::default();
        let (mut fast, mut general) = (Vec::new(), Vec::new());
        let mut taken = 0;
        for line in variants() {
            if scan_main(&line, &mut fast) {
                taken += 1;
                assert_eq!(scan(&format, &line, &mut general), Ok(()), "{line}");
                assert_eq!(fast, general, "{line}");
            }
        }
        assert!(taken >= 10, "the fast path took only {taken} lines");
    }

    #[test]
    fn agrees_with_the_general_scanner_on_mutated_lines() {
        const ALPHABET: &[u8] = b"\" \\[]-x0 9/:";
        let base = r#"1.2.3.4 - u [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 12 "r" "ua" "5.6.7.8""#;
        let format = Format::default();
        let (mut fast, mut general) = (Vec::new(), Vec::new());
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |bound: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % bound
        };
        for _ in 0..20_000 {
            let mut line = base.as_bytes().to_vec();
            for _ in 0..1 + next(3) {
                let at = next(line.len());
                match next(3) {
                    0 => line[at] = ALPHABET[next(ALPHABET.len())],
                    1 => line.insert(at, ALPHABET[next(ALPHABET.len())]),
                    _ => line.truncate(at.max(1)),
                }
            }
            let line = String::from_utf8(line).expect("ASCII mutations");
            if scan_main(&line, &mut fast) {
                assert_eq!(scan(&format, &line, &mut general), Ok(()), "{line}");
                assert_eq!(fast, general, "{line}");
            }
        }
    }
}
