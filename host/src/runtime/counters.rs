//! Windowed counters the host keeps for plugins (the `count` import).
//!
//! Invariants:
//! - Counters belong to a plugin *name*, not to an instance or a generation, so they survive hot swaps
//!   and are shared by every worker's instance of that plugin.
//! - Memory is bounded: at most [`MAX_KEYS`] keys in all, keys longer than [`MAX_KEY_BYTES`] are cut,
//!   and each key keeps at most [`BUCKETS`] buckets. When full, the least recently touched half of the
//!   keys is forgotten.
//! - A window is approximated with [`BUCKETS`] equal buckets, so a count is exact to within one bucket
//!   of the window's start.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Most keys kept across all plugins; about 100 bytes each.
pub const MAX_KEYS: usize = 200_000;
/// Longest key kept; longer keys are cut (attacker data often ends up in keys).
pub const MAX_KEY_BYTES: usize = 256;
/// Longest window a plugin may ask for, in seconds.
pub const MAX_WINDOW_SECONDS: u32 = 3600;
/// Buckets per window: the resolution of the sliding window.
const BUCKETS: u64 = 12;

#[derive(Default)]
struct Entry {
    /// (bucket number, count), oldest first; bucket number = elapsed seconds / bucket width.
    buckets: Vec<(u64, u64)>,
    width: u64,
    touched: u64,
}

/// All plugins' counters.
pub struct Counters {
    start: Instant,
    map: Mutex<HashMap<(String, String), Entry>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            start: Instant::now(),
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl Counters {
    /// Adds `delta` to `plugin`'s counter `key` and returns its total over the last `window_seconds`.
    pub fn add(&self, plugin: &str, key: &str, window_seconds: u32, delta: u32) -> u64 {
        let now = self.start.elapsed().as_secs();
        self.add_at(plugin, key, window_seconds, delta, now)
    }

    fn add_at(&self, plugin: &str, key: &str, window_seconds: u32, delta: u32, now: u64) -> u64 {
        let window = u64::from(window_seconds.clamp(1, MAX_WINDOW_SECONDS));
        let width = window.div_ceil(BUCKETS).max(1);
        let key = logsec_truncate(key, MAX_KEY_BYTES);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(&(plugin.to_owned(), key.to_owned())) {
            evict_oldest_half(&mut map);
        }
        let entry = map.entry((plugin.to_owned(), key.to_owned())).or_default();
        if entry.width != width {
            // A different window for the same key: start over rather than mix resolutions.
            entry.buckets.clear();
            entry.width = width;
        }
        entry.touched = now;
        let bucket = now / width;
        let oldest = bucket.saturating_sub(BUCKETS - 1);
        entry.buckets.retain(|(b, _)| *b >= oldest);
        match entry.buckets.last_mut() {
            Some((b, c)) if *b == bucket => *c = c.saturating_add(u64::from(delta)),
            _ => entry.buckets.push((bucket, u64::from(delta))),
        }
        entry.buckets.iter().map(|(_, c)| c).sum()
    }

    /// Number of keys currently kept.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn evict_oldest_half(map: &mut HashMap<(String, String), Entry>) {
    let mut touched: Vec<u64> = map.values().map(|e| e.touched).collect();
    let mid = touched.len() / 2;
    let (_, median, _) = touched.select_nth_unstable(mid);
    let cutoff = *median;
    map.retain(|_, e| e.touched > cutoff);
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn logsec_truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_window_and_forgets_after() {
        let c = Counters::default();
        assert_eq!(c.add_at("p", "k", 60, 1, 0), 1);
        assert_eq!(c.add_at("p", "k", 60, 2, 30), 3);
        assert_eq!(c.add_at("p", "k", 60, 1, 59), 4);
        // 200 s later everything older than a minute is gone.
        assert_eq!(c.add_at("p", "k", 60, 1, 200), 1);
    }

    #[test]
    fn plugins_do_not_share_keys() {
        let c = Counters::default();
        c.add_at("a", "k", 60, 5, 0);
        assert_eq!(c.add_at("b", "k", 60, 1, 0), 1);
    }

    #[test]
    fn stays_bounded() {
        let c = Counters::default();
        for i in 0..(MAX_KEYS + 10) {
            c.add_at("p", &format!("k{i}"), 60, 1, i as u64);
        }
        assert!(c.len() <= MAX_KEYS);
        let long = "x".repeat(10_000);
        c.add_at("p", &long, 60, 1, 0);
    }

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(logsec_truncate("aé", 2), "a");
    }
}
