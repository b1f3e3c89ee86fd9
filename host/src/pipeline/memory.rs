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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
        Ok(Cidr::new(net, prefix))
    }
}

impl Cidr {
    /// The block of `prefix` bits around `ip` (host bits cleared); `prefix` is capped at the
    /// family's length.
    pub fn new(ip: IpAddr, prefix: u8) -> Cidr {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.min(bits);
        let net = match ip {
            IpAddr::V4(a) => IpAddr::V4(std::net::Ipv4Addr::from(
                (mask(u128::from(u32::from(a)), prefix, 32)) as u32,
            )),
            IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(mask(u128::from(a), prefix, 128))),
        };
        Cidr { net, prefix }
    }

    /// One address.
    pub fn host(ip: IpAddr) -> Cidr {
        Cidr::new(ip, 128)
    }

    /// The first address of the block.
    pub fn addr(&self) -> IpAddr {
        self.net
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether the block is a single address.
    pub fn is_host(&self) -> bool {
        self.prefix == if self.net.is_ipv4() { 32 } else { 128 }
    }

    /// Whether `other` lies wholly inside this block.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.net)
    }

    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_eq(u32::from(n).into(), u32::from(a).into(), self.prefix, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_eq(u128::from(n), u128::from(a), self.prefix, 128),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    /// `203.0.113.7` for one address, `203.0.113.0/24` for a block.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.net)
        } else {
            write!(f, "{}/{}", self.net, self.prefix)
        }
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `a` (of `bits` bits) with all but the first `prefix` bits cleared.
fn mask(a: u128, prefix: u8, bits: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let shift = bits - prefix;
    (a >> shift) << shift
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

    /// Adds the host's own addresses (from `/proc/net/fib_trie` and `/proc/net/if_inet6`), so
    /// the agent never bans the machine it protects. Returns how many it added.
    pub fn add_own_addresses(&mut self) -> usize {
        let own = own_addresses();
        let n = own.len();
        self.blocks.extend(own.into_iter().map(Cidr::host));
        n
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether `ip` (as logged) is allowlisted. Text that is not an address is not.
    pub fn contains(&self, ip: &str) -> bool {
        !self.blocks.is_empty() && canonical(ip).is_some_and(|a| self.contains_addr(a))
    }

    /// Whether any address of `block` is allowlisted (a block holding one is never banned whole).
    pub fn overlaps(&self, block: &Cidr) -> bool {
        self.blocks.iter().any(|b| b.covers(block) || block.covers(b))
    }

    /// Whether the canonical address `a` is allowlisted.
    pub fn contains_addr(&self, a: IpAddr) -> bool {
        self.blocks.iter().any(|b| b.contains(a))
    }
}

/// The addresses of this host's interfaces: IPv4 ones are the `/32 host LOCAL` entries of the
/// kernel's FIB, IPv6 ones the lines of `if_inet6` (32 hex digits first).
pub fn own_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<IpAddr> = None;
        for line in trie.lines() {
            let t = line.trim_start_matches([' ', '|', '+', '-', '`']).trim();
            if let Ok(a) = t.parse::<IpAddr>() {
                last = Some(a);
            } else if t.starts_with("/32 host LOCAL")
                && let Some(a) = last
                && !out.contains(&a)
            {
                out.push(a);
            }
        }
    }
    if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in v6.lines() {
            let Some(hex) = line.split_whitespace().next() else {
                continue;
            };
            if let Ok(n) = u128::from_str_radix(hex, 16) {
                out.push(IpAddr::V6(std::net::Ipv6Addr::from(n)));
            }
        }
    }
    out
}

/// The `X-Forwarded-For` header's name among a request's extra fields (nginx's variable name).
const XFF_FIELD: &str = "http_x_forwarded_for";

/// When `r` came through a trusted proxy, makes it the client's request: `r.ip` becomes the
/// address the proxies reported (the rightmost address of `X-Forwarded-For` that is not itself
/// a trusted proxy; the parser's `forwarded-for` when the header is not among the extra fields),
/// and the proxy's address is kept as the extra field `proxy`. A request from an untrusted
/// address is left alone: anyone can send an `X-Forwarded-For` header.
pub fn attribute_to_client(r: &mut crate::runtime::bindings::Request, proxies: &Allowlist) {
    if proxies.blocks.is_empty() || !proxies.contains(&r.ip) {
        return;
    }
    let header = r.extra.iter().find(|f| f.name == XFF_FIELD).map(|f| f.value.as_str());
    let client = match header {
        Some(h) => h
            .rsplit(',')
            .filter_map(canonical)
            .find(|a| !proxies.contains_addr(*a))
            .map(|a| a.to_string()),
        None => r
            .forwarded_for
            .as_deref()
            .and_then(canonical)
            .filter(|a| !proxies.contains_addr(*a))
            .map(|a| a.to_string()),
    };
    if let Some(client) = client {
        let proxy = std::mem::replace(&mut r.ip, client);
        r.extra.push(crate::runtime::bindings::Field {
            name: "proxy".into(),
            value: proxy,
        });
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
    use crate::runtime::bindings::{Field, Request};

    fn via(ip: &str, xff: Option<&str>, forwarded_for: Option<&str>) -> Request {
        Request {
            ip: ip.into(),
            forwarded_for: forwarded_for.map(Into::into),
            extra: xff
                .map(|h| {
                    vec![Field {
                        name: XFF_FIELD.into(),
                        value: h.into(),
                    }]
                })
                .unwrap_or_default(),
            ..Request::empty()
        }
    }

    #[test]
    fn requests_through_trusted_proxies_are_the_clients() {
        let proxies = Allowlist::parse(&["10.0.0.0/8".into()]).unwrap();
        // Two proxies of ours in a row: the client is the rightmost address that is not one.
        let mut r = via("10.0.0.2", Some("203.0.113.9, 10.0.0.7"), Some("10.0.0.7"));
        attribute_to_client(&mut r, &proxies);
        assert_eq!(r.ip, "203.0.113.9");
        assert!(r.extra.iter().any(|f| f.name == "proxy" && f.value == "10.0.0.2"));
        // A client cannot pick who gets banned by sending its own header: only the address our
        // proxy appended (rightmost) counts.
        let mut r = via("10.0.0.2", Some("198.51.100.1, 203.0.113.9"), None);
        attribute_to_client(&mut r, &proxies);
        assert_eq!(r.ip, "203.0.113.9");
        // Without the header among the extra fields, the parser's forwarded-for is used.
        let mut r = via("10.0.0.2", None, Some("203.0.113.10"));
        attribute_to_client(&mut r, &proxies);
        assert_eq!(r.ip, "203.0.113.10");
        // Not from a trusted proxy: the header is ignored.
        let mut r = via("198.51.100.4", Some("203.0.113.9"), Some("203.0.113.9"));
        attribute_to_client(&mut r, &proxies);
        assert_eq!(r.ip, "198.51.100.4");
        // Junk or only proxies in the header: the request stays the proxy's.
        let mut r = via("10.0.0.2", Some("unknown, 10.1.1.1"), None);
        attribute_to_client(&mut r, &proxies);
        assert_eq!(r.ip, "10.0.0.2");
    }

    #[test]
    fn the_host_knows_its_own_addresses() {
        let own = own_addresses();
        assert!(own.contains(&"127.0.0.1".parse().unwrap()), "{own:?}");
    }

    #[test]
    fn blocks_are_normalised_and_compared() {
        let b: Cidr = "203.0.113.77/24".parse().unwrap();
        assert_eq!(b.to_string(), "203.0.113.0/24");
        assert!(b.covers(&"203.0.113.5".parse().unwrap()));
        assert!(!b.covers(&"203.0.0.0/16".parse().unwrap()));
        assert_eq!("::ffff:192.0.2.1".parse::<Cidr>().unwrap().to_string(), "192.0.2.1");
        assert_eq!(
            Cidr::new("2001:db8::1".parse().unwrap(), 64).to_string(),
            "2001:db8::/64"
        );
        let list = Allowlist::parse(&["192.0.2.8/32".into()]).unwrap();
        assert!(list.overlaps(&"192.0.2.0/24".parse().unwrap()));
        assert!(!list.overlaps(&"198.51.100.0/24".parse().unwrap()));
    }

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
