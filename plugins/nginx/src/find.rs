//! Byte search tuned for the short fields of access-log lines.
//!
//! Most values between two literals are a few bytes long (`-`, a status, a size), where calling a
//! vectorised `memchr` costs more than looking at the bytes one by one. These helpers look at the
//! first [`SHORT`] bytes directly and hand longer haystacks to `memchr`, so long values still take
//! linear time at vector speed.

/// How many bytes are examined one by one before `memchr` takes over.
const SHORT: usize = 16;

/// Position of the first `needle` in `haystack`.
#[inline]
pub fn byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    let head = &haystack[..haystack.len().min(SHORT)];
    if let Some(p) = head.iter().position(|&c| c == needle) {
        return Some(p);
    }
    memchr::memchr(needle, &haystack[head.len()..]).map(|p| head.len() + p)
}

/// Position of the first `a` or `b` in `haystack`.
#[inline]
pub fn either(a: u8, b: u8, haystack: &[u8]) -> Option<usize> {
    let head = &haystack[..haystack.len().min(SHORT)];
    if let Some(p) = head.iter().position(|&c| c == a || c == b) {
        return Some(p);
    }
    memchr::memchr2(a, b, &haystack[head.len()..]).map(|p| head.len() + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_in_the_head_and_the_tail() {
        let long = format!("{}x{}", "a".repeat(40), "x");
        assert_eq!(byte(b'x', long.as_bytes()), Some(40));
        assert_eq!(byte(b'a', b"bba"), Some(2));
        assert_eq!(byte(b'z', long.as_bytes()), None);
        assert_eq!(byte(b'z', b""), None);
        assert_eq!(either(b'"', b'\\', br#"abc\"#), Some(3));
        assert_eq!(
            either(b'"', b'\\', format!("{}\"", "a".repeat(100)).as_bytes()),
            Some(100)
        );
        assert_eq!(either(b'"', b'\\', b"plain"), None);
    }
}
