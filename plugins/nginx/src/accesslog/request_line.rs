//! The HTTP request line (`GET /path?q HTTP/1.1`) split into method, target and protocol.
//!
//! Invariants: the three parts are sub-slices of the input; nothing is dropped except the spaces
//! between them. A line that does not start with a method token is kept whole as the target (TLS
//! handshakes, binary probes, `-`), so detectors still see every byte the client sent.

/// The parts of a request line; empty when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestLine<'a> {
    /// The method token, e.g. `GET`.
    pub method: &'a str,
    /// The request target as sent (still percent-encoded).
    pub uri: &'a str,
    /// The protocol, e.g. `HTTP/1.1`; empty for HTTP/0.9-style lines.
    pub protocol: &'a str,
}

/// Longest method token accepted; longer first words are treated as garbage.
const MAX_METHOD_LEN: usize = 32;

/// Whether `word` looks like an HTTP method: a letter followed by letters, digits, `-` or `_`.
fn is_method(word: &str) -> bool {
    let b = word.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_METHOD_LEN
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// Splits a logged request line. `-` and blank lines give all-empty parts; a line that cannot be
/// split (no method token, or nothing after it) is returned whole as `uri`.
pub fn split(line: &str) -> RequestLine<'_> {
    let line = line.trim_matches(' ');
    if line.is_empty() || line == "-" {
        return RequestLine::default();
    }
    let whole = RequestLine {
        uri: line,
        ..RequestLine::default()
    };
    let Some((method, rest)) = line.split_once(' ') else {
        return whole;
    };
    let rest = rest.trim_start_matches(' ');
    if !is_method(method) || rest.is_empty() {
        return whole;
    }
    match rest.rsplit_once(' ') {
        Some((uri, protocol)) if protocol.starts_with("HTTP/") => RequestLine {
            method,
            uri: uri.trim_end_matches(' '),
            protocol,
        },
        _ => RequestLine {
            method,
            uri: rest,
            protocol: "",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(line: &str) -> (&str, &str, &str) {
        let r = split(line);
        (r.method, r.uri, r.protocol)
    }

    #[test]
    fn ordinary_lines() {
        assert_eq!(parts("GET /a?b=c HTTP/1.1"), ("GET", "/a?b=c", "HTTP/1.1"));
        assert_eq!(parts("M-SEARCH * HTTP/1.1"), ("M-SEARCH", "*", "HTTP/1.1"));
        assert_eq!(
            parts("CONNECT example.com:443 HTTP/1.0"),
            ("CONNECT", "example.com:443", "HTTP/1.0")
        );
    }

    #[test]
    fn missing_protocol_and_extra_spaces() {
        assert_eq!(parts("GET /index.html"), ("GET", "/index.html", ""));
        assert_eq!(parts("GET  /a  HTTP/1.1 "), ("GET", "/a", "HTTP/1.1"));
        assert_eq!(parts("GET /a b c"), ("GET", "/a b c", ""));
        assert_eq!(parts("GET /a b HTTP/1.1"), ("GET", "/a b", "HTTP/1.1"));
    }

    #[test]
    fn garbage_is_kept_whole() {
        assert_eq!(parts("-"), ("", "", ""));
        assert_eq!(parts(""), ("", "", ""));
        assert_eq!(parts("%16%03%01%00"), ("", "%16%03%01%00", ""));
        assert_eq!(parts("GET"), ("", "GET", ""));
        assert_eq!(parts("%16 %03 HTTP/1.1"), ("", "%16 %03 HTTP/1.1", ""));
        assert_eq!(parts("GET HTTP/1.1"), ("GET", "HTTP/1.1", ""));
    }
}
