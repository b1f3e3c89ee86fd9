//! A small direct-mapped cache of scan results for fields whose values repeat from request to
//! request (the path, the user agent and the referer).
//!
//! Invariants:
//! - A lookup costs one hash of the key and at most one string comparison: each key has exactly one
//!   slot, and a colliding key simply replaces the previous entry. Crafted collisions can only cause
//!   misses, never long chains.
//! - Only keys up to [`MAX_KEY_BYTES`] are cached; longer values are scanned every time.
//! - Entries are only valid for the rules they were computed with: [`Memo::clear`] on reconfigure.

use crate::book::Hit;
use crate::normalize::Anomalies;

/// Number of slots; a few hundred distinct user agents make up most of a site's traffic, and a
/// sparse table keeps two of them from sharing a slot.
const SLOTS: usize = 4096;

/// Longest value worth caching; longer ones are rare and often hostile.
pub const MAX_KEY_BYTES: usize = 512;

#[derive(Debug)]
struct Entry {
    key: Box<str>,
    hits: Vec<Hit>,
    anomalies: Anomalies,
}

/// The cache of one field.
#[derive(Debug, Default)]
pub struct Memo {
    slots: Vec<Option<Entry>>,
}

impl Memo {
    /// The hits and decoding anomalies cached for `key`, if any.
    pub fn get(&self, key: &str) -> Option<(&[Hit], Anomalies)> {
        let entry = self.slots.get(slot(key))?.as_ref()?;
        same(entry.key.as_bytes(), key.as_bytes()).then_some((entry.hits.as_slice(), entry.anomalies))
    }

    /// Caches `hits` and `anomalies` for `key` (ignored when the key is too long).
    pub fn put(&mut self, key: &str, hits: &[Hit], anomalies: Anomalies) {
        if key.len() > MAX_KEY_BYTES {
            return;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        let entry = Entry {
            key: key.into(),
            hits: hits.to_vec(),
            anomalies,
        };
        self.slots[slot(key)] = Some(entry);
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

/// `a == b`, eight bytes at a time: the guest's `memcmp` goes byte by byte, and keys that hit are
/// compared in full.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8-byte chunk"));
    wa.zip(wb).all(|(x, y)| word(x) == word(y)) && ra.iter().zip(rb).all(|(x, y)| x == y)
}

/// FNV-style hash over 8-byte words: fast, and good enough for a cache that tolerates collisions.
fn slot(key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ key.len() as u64;
    for chunk in key.as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    }
    (h ^ (h >> 32)) as usize % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Field;

    fn hit(rule: usize) -> Hit {
        Hit {
            rule,
            field: Field::UserAgent,
            evidence: "x".into(),
        }
    }

    #[test]
    fn stores_and_replaces() {
        let mut m = Memo::default();
        assert!(m.get("curl/8").is_none());
        m.put("curl/8", &[hit(3)], Anomalies::NULL_BYTE);
        assert_eq!(m.get("curl/8").unwrap(), (&[hit(3)][..], Anomalies::NULL_BYTE));
        assert!(m.get("curl/9").is_none());
        m.put("curl/8", &[], Anomalies::none());
        assert_eq!(m.get("curl/8").unwrap().0.len(), 0);
        m.clear();
        assert!(m.get("curl/8").is_none());
    }

    #[test]
    fn long_keys_are_not_cached() {
        let mut m = Memo::default();
        let long = "a".repeat(MAX_KEY_BYTES + 1);
        m.put(&long, &[hit(1)], Anomalies::none());
        assert!(m.get(&long).is_none());
    }
}
