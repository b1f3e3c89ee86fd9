//! What the pipeline remembers about addresses: the allowlist (never analysed further, never
//! blocked) and the request cache (an address decided malicious stays decided for a while).
//!
//! Invariants:
//! - The allowlist is checked before anything else; an allowlisted address is never cached.
//! - The cache is bounded ([`MAX_CACHED`] addresses); when full, expired entries go first, then the
//!   entries closest to expiry.
//! - Addresses are compared in canonical form (`std::net::IpAddr`), so `::ffff:192.0.2.1`,
//!   `192.0.2.1` and zero-padded spellings cannot dodge either list.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Most addresses the cache holds (about 64 bytes each).
pub const MAX_CACHED: usize = 1_000_000;

/// A parsed CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net = canonical(addr).ok_or_else(|| format!("{s:?} is not an address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: bad prefix length"))?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_eq(u32::from(n).into(), u32::from(a).into(), self.prefix, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_eq(u128::from(n), u128::from(a), self.prefix, 128),
            _ => false,
        }
    }
}

fn mask_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (a >> shift) == (b >> shift)
}

/// `text` as a canonical address: IPv4-mapped IPv6 becomes IPv4; surrounding brackets are dropped.
pub fn canonical(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = t.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// Addresses never analysed further and never blocked.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    blocks: Vec<Cidr>,
}

impl Allowlist {
    /// Parses every entry; the first bad one is an error naming it.
    pub fn parse(entries: &[String]) -> Result<Allowlist, String> {
        Ok(Allowlist {
            blocks: entries.iter().map(|e| e.parse()).collect::<Result<_, _>>()?,
        })
    }

    /// Whether `ip` (as logged) is allowlisted. Text that is not an address is not.
    pub fn contains(&self, ip: &str) -> bool {
        !self.blocks.is_empty() && canonical(ip).is_some_and(|a| self.contains_addr(a))
    }

    /// Whether the canonical address `a` is allowlisted.
    pub fn contains_addr(&self, a: IpAddr) -> bool {
        self.blocks.iter().any(|b| b.contains(a))
    }
}

/// What the cache remembers of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The score of the request that decided it.
    pub score: u8,
    /// Its main category.
    pub threat_type: String,
}

/// Addresses decided malicious, each until its time to live runs out. Time is Unix milliseconds
/// given by the caller: the wall clock while tailing, the logs' own time in a replay.
pub struct RequestCache {
    ttl_ms: i64,
    map: Mutex<HashMap<IpAddr, (i64, Verdict)>>,
}

impl std::fmt::Debug for RequestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCache")
            .field("ttl_ms", &self.ttl_ms)
            .field("addresses", &self.len())
            .finish()
    }
}

impl RequestCache {
    /// A cache keeping verdicts for `ttl`.
    pub fn new(ttl: Duration) -> RequestCache {
        RequestCache {
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The verdict for `ip` live at `now` (Unix ms), if any.
    pub fn get(&self, ip: &str, now: i64) -> Option<Verdict> {
        let ip = canonical(ip)?;
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).filter(|(until, _)| *until > now).map(|(_, v)| v.clone())
    }

    /// Remembers that `ip` was decided malicious at `now` (Unix ms).
    pub fn insert(&self, ip: &str, verdict: Verdict, now: i64) {
        let Some(ip) = canonical(ip) else { return };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED && !map.contains_key(&ip) {
            map.retain(|_, (until, _)| *until > now);
            if map.len() >= MAX_CACHED {
                let mut expiries: Vec<i64> = map.values().map(|(u, _)| *u).collect();
                let mid = expiries.len() / 2;
                let cutoff = *expiries.select_nth_unstable(mid).1;
                map.retain(|_, (until, _)| *until > cutoff);
            }
        }
        map.insert(ip, (now.saturating_add(self.ttl_ms), verdict));
    }

    /// Addresses held (live or not yet evicted).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_match_both_families() {
        let list = Allowlist::parse(&["127.0.0.0/8".into(), "::1".into(), "2001:db8::/32".into()]).unwrap();
        assert!(list.contains("127.1.2.3"));
        assert!(list.contains("::ffff:127.0.0.1"));
        assert!(list.contains("[::1]"));
        assert!(list.contains("2001:db8:ffff::7"));
        assert!(!list.contains("128.0.0.1"));
        assert!(!list.contains("2001:db9::1"));
        assert!(!list.contains("not an address"));
        assert!(
            Allowlist::parse(&["10.0.0.0/33".into()])
                .unwrap_err()
                .contains("prefix")
        );
        assert!(Allowlist::parse(&["bogus".into()]).is_err());
    }

    #[test]
    fn cache_remembers_until_the_ttl() {
        let c = RequestCache::new(Duration::from_millis(50));
        let v = Verdict {
            score: 9,
            threat_type: "sqli".into(),
        };
        let t0 = 1_764_000_000_000;
        c.insert("203.0.113.5", v.clone(), t0);
        assert_eq!(c.get("::ffff:203.0.113.5", t0 + 49), Some(v));
        assert_eq!(c.get("203.0.113.6", t0), None);
        assert_eq!(c.get("203.0.113.5", t0 + 50), None);
    }
}
