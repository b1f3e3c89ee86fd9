//! The client address an `X-Forwarded-For` header reports.
//!
//! Every proxy appends the address it received the request from, so the right-most entry was
//! written by the proxy nearest to us, while entries to its left may have been made up by the client.
//! Invariant: the result is always a syntactically valid IP address in canonical text form, or none.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One list entry as an address: a bare IPv4 or IPv6 address, `[v6]`, `[v6]:port` or `v4:port`.
fn entry_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(bracketed) = entry.strip_prefix('[') {
        let (v6, after) = bracketed.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok.then(|| v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6)).flatten();
    }
    let (v4, port) = entry.split_once(':')?;
    is_port(port)
        .then(|| v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4))
        .flatten()
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|c| c.is_ascii_digit())
}

/// The right-most entry of an `X-Forwarded-For` value that is a valid IP address, canonicalised
/// (ports and brackets removed). Entries such as `unknown`, `-` or garbage are skipped.
pub fn rightmost_ip(header: &str) -> Option<String> {
    header
        .rsplit(',')
        .find_map(|entry| entry_address(entry.trim_matches([' ', '\t'])))
        .map(|ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_rightmost_valid_entry() {
        assert_eq!(rightmost_ip("203.0.113.9, 10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(rightmost_ip("1.1.1.1, 10.0.0.1, garbage").as_deref(), Some("10.0.0.1"));
        assert_eq!(rightmost_ip("1.1.1.1,unknown").as_deref(), Some("1.1.1.1"));
        assert_eq!(rightmost_ip("2001:db8::1").as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn strips_ports_and_brackets() {
        assert_eq!(rightmost_ip("198.51.100.7:4711").as_deref(), Some("198.51.100.7"));
        assert_eq!(rightmost_ip("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
        assert_eq!(rightmost_ip("[2001:DB8:0::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(rightmost_ip("::ffff:1.2.3.4").as_deref(), Some("::ffff:1.2.3.4"));
    }

    #[test]
    fn rejects_non_addresses() {
        assert_eq!(rightmost_ip("-"), None);
        assert_eq!(rightmost_ip(""), None);
        assert_eq!(rightmost_ip("unknown, evil.example"), None);
        assert_eq!(rightmost_ip("1.2.3.4:99999x"), None);
        assert_eq!(rightmost_ip("01.2.3.4"), None);
        assert_eq!(rightmost_ip("1.2.3.4.5"), None);
        assert_eq!(rightmost_ip("[1.2.3.4]"), None);
    }
}
