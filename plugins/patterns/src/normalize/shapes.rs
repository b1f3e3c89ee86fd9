//! The text transforms behind [`View::Sql`](super::View::Sql), [`View::File`](super::View::File)
//! and [`View::Shell`](super::View::Shell). Each is one linear pass.

/// Appends `raw` with SQL comments removed to `out` (see [`View::Sql`](super::View::Sql)). Quotes are not tracked:
/// injected quotes are unbalanced by nature.
pub(super) fn strip_sql_comments(raw: &str, out: &mut String) {
    let b = raw.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let skip_to = if c == b'/' && next == Some(b'*') {
            out.push_str(&raw[copied..i]);
            if b.get(i + 2) == Some(&b'!') {
                // MySQL executable comment: keep the body, drop the optional version number.
                let mut j = i + 3;
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
                out.push(' ');
                let end = memchr::memmem::find(&b[j..], b"*/").map_or(b.len(), |k| j + k);
                out.push_str(&raw[j..end]);
                out.push(' ');
                (end + 2).min(b.len())
            } else {
                out.push(' ');
                memchr::memmem::find(&b[i + 2..], b"*/").map_or(b.len(), |k| i + 2 + k + 2)
            }
        } else if c == b'#' || (c == b'-' && next == Some(b'-')) {
            out.push_str(&raw[copied..i]);
            out.push(' ');
            memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |k| i + k)
        } else {
            i += 1;
            continue;
        };
        i = skip_to;
        copied = skip_to;
    }
    out.push_str(&raw[copied..]);
}

/// Appends the file-path shape of `text` to `out` (see [`View::File`](super::View::File)).
pub(super) fn file_shape(text: &str, out: &mut String) {
    let b = text.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let repl = match b[i] {
            b'\\' => Some(('/', 1)),
            b'0' if b.get(i + 1) == Some(&b'x') => match (b.get(i + 2), b.get(i + 3)) {
                (Some(b'2'), Some(b'e')) => Some(('.', 4)),
                (Some(b'2'), Some(b'f')) | (Some(b'5'), Some(b'c')) => Some(('/', 4)),
                _ => None,
            },
            _ => None,
        };
        if let Some((c, len)) = repl {
            out.push_str(&text[copied..i]);
            out.push(c);
            i += len;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
}

/// Appends the shell shape of `text` to `out` (see [`View::Shell`](super::View::Shell)); the caller collapses spaces.
pub(super) fn shell_shape(text: &str, out: &mut String) {
    let b = text.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        // (replacement, bytes consumed) for the construct at `i`, if any.
        let repl: Option<(&str, usize)> = match b[i] {
            b'\\' => match b.get(i + 1) {
                Some(b'n' | b'r') => Some(("\r", 2)),
                Some(b't') => Some((" ", 2)),
                _ => Some(("", 1)),
            },
            b'\'' | b'"' | b'^' => Some(("", 1)),
            b'`' if b.get(i + 1) == Some(&b'`') => Some(("", 2)),
            b'{' | b'}' | b',' | b'+' => Some((" ", 1)),
            b'$' => shell_dollar(&b[i..]),
            b'[' if b.get(i + 2) == Some(&b']') && !matches!(b.get(i + 1), Some(b'!' | b'^' | b']')) => {
                out.push_str(&text[copied..i]);
                out.push(char::from(b[i + 1]));
                i += 3;
                copied = i;
                continue;
            }
            _ => None,
        };
        if let Some((r, len)) = repl {
            out.push_str(&text[copied..i]);
            out.push_str(r);
            i += len;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
}

/// The replacement for a shell expansion starting at `s[0] == b'$'` that only pads or hides a word.
fn shell_dollar(s: &[u8]) -> Option<(&'static str, usize)> {
    if s.starts_with(b"${ifs}") {
        return Some((" ", 6));
    }
    if s.starts_with(b"$ifs") {
        return Some((" ", 4));
    }
    match s.get(1) {
        Some(b'@' | b'*' | b'!' | b'#' | b'?' | b'-' | b'$' | b'0'..=b'9') => Some(("", 2)),
        // A one-letter variable that is almost never set (`$u wget`, `w$u'h'o`): evasion padding.
        Some(b'a'..=b'z') if !s.get(2).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') => Some(("", 2)),
        Some(b'_') if !s.get(2).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') => Some(("", 2)),
        Some(b'(') if s.get(2) == Some(&b')') => Some(("", 3)),
        Some(b'{') => {
            let name = s[2..]
                .iter()
                .take(3)
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            (s.get(2 + name) == Some(&b'}') && name <= 2).then_some(("", 3 + name))
        }
        _ => None,
    }
}
