//! Identifying a log file by its content rather than its name.
//!
//! The fingerprint is a hash of the file's first line (at most [`FINGERPRINT_BYTES`] bytes). Log
//! files only grow, so the first line never changes: the fingerprint is stable while the file is
//! written, follows the file through renames, and differs for the new file that replaces it. A file
//! whose first line is not complete yet has no fingerprint and is not read until it has one.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Longest prefix hashed: a first line longer than this is identified by this many bytes.
pub const FINGERPRINT_BYTES: usize = 256;

/// A file's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The fingerprint of a file starting with `head`, or `None` while its first line is incomplete
    /// and shorter than [`FINGERPRINT_BYTES`].
    pub fn of_first_line(head: &[u8]) -> Option<Fingerprint> {
        let end = match memchr::memchr(b'\n', &head[..head.len().min(FINGERPRINT_BYTES)]) {
            Some(i) => i + 1,
            None if head.len() >= FINGERPRINT_BYTES => FINGERPRINT_BYTES,
            None => return None,
        };
        let digest = Sha256::digest(&head[..end]);
        Some(Fingerprint(u64::from_be_bytes(
            digest[..8].try_into().expect("8 bytes"),
        )))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_while_the_file_grows() {
        let a = Fingerprint::of_first_line(b"1.2.3.4 - - first\n").unwrap();
        let b = Fingerprint::of_first_line(b"1.2.3.4 - - first\nsecond line\n").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Fingerprint::of_first_line(b"5.6.7.8 - - other\n").unwrap());
    }

    #[test]
    fn incomplete_first_line_has_none_until_long_enough() {
        assert_eq!(Fingerprint::of_first_line(b"partial"), None);
        assert!(Fingerprint::of_first_line(&[b'x'; FINGERPRINT_BYTES]).is_some());
    }

    #[test]
    fn round_trips_through_text() {
        let fp = Fingerprint(0xdead_beef);
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
    }
}
