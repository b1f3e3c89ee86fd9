//! Reading log lines safely: bounded length, any bytes.
//!
//! Invariants:
//! - A line never costs more than [`LineReader::max_bytes`] of memory: the rest of an over-long line
//!   is read and discarded, and the cut is counted.
//! - Every line becomes valid UTF-8 without losing information an analyst needs: bytes that are not
//!   UTF-8 become the four characters `\xHH`, as nginx writes them. A trailing `\r` is dropped.

use std::io::{self, BufRead};

/// Default longest line kept, in bytes. nginx refuses request lines over 8 KiB by default
/// (`large_client_header_buffers`), so a log line this long is already anomalous.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// Splits a byte stream into lines.
pub struct LineReader<R> {
    inner: R,
    /// Longest line kept.
    pub max_bytes: usize,
    /// Lines cut to `max_bytes`.
    pub truncated: u64,
    /// Lines that held bytes that were not UTF-8.
    pub invalid_utf8: u64,
    /// Bytes of the stream consumed so far: after a line, the offset just past its newline.
    pub offset: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    /// A reader keeping at most `max_bytes` of each line.
    pub fn new(inner: R, max_bytes: usize) -> Self {
        LineReader {
            inner,
            max_bytes,
            truncated: 0,
            invalid_utf8: 0,
            offset: 0,
            buf: Vec::new(),
        }
    }

    /// The next line as text, or `None` at the end of the stream. A last line without a newline is
    /// still returned.
    pub fn next_line(&mut self) -> io::Result<Option<String>> {
        self.buf.clear();
        let mut cut = false;
        let mut seen_any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !seen_any {
                    return Ok(None);
                }
                break;
            }
            seen_any = true;
            let (chunk, done) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            let room = self.max_bytes.saturating_sub(self.buf.len());
            if chunk.len() > room {
                cut = true;
            }
            self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let consumed = done.unwrap_or(available.len());
            self.inner.consume(consumed);
            self.offset += consumed as u64;
            if done.is_some() {
                break;
            }
        }
        if cut {
            self.truncated += 1;
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let (text, lossy) = to_text(&self.buf);
        if lossy {
            self.invalid_utf8 += 1;
        }
        Ok(Some(text))
    }
}

/// `bytes` as a `String`, with bytes that are not UTF-8 written as `\xHH`; the flag says whether
/// any were.
pub fn to_text(bytes: &[u8]) -> (String, bool) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (s.to_owned(), false);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> (Vec<String>, u64, u64) {
        let mut r = LineReader::new(io::BufReader::with_capacity(7, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        (out, r.truncated, r.invalid_utf8)
    }

    #[test]
    fn splits_and_keeps_last_line_without_newline() {
        let (l, _, _) = lines(b"a\r\nbb\n\nccc", 100);
        assert_eq!(l, ["a", "bb", "", "ccc"]);
    }

    #[test]
    fn cuts_long_lines_and_counts_them() {
        let mut input = vec![b'x'; 1000];
        input.extend_from_slice(b"\nnext\n");
        let (l, truncated, _) = lines(&input, 10);
        assert_eq!(l, ["x".repeat(10), "next".into()]);
        assert_eq!(truncated, 1);
    }

    #[test]
    fn escapes_invalid_utf8_like_nginx() {
        let (l, _, bad) = lines(b"GET /a?q=\xff\xfe\xc0 ok \xc3\xa9\n", 100);
        assert_eq!(l, ["GET /a?q=\\xFF\\xFE\\xC0 ok \u{e9}"]);
        assert_eq!(bad, 1);
    }

    #[test]
    fn empty_input_has_no_lines() {
        assert!(lines(b"", 10).0.is_empty());
    }
}
