//! The ban book: the decisions in force, how long a new ban lasts, when a block of addresses is
//! banned as a whole, and the change feed the decisions API serves. Pure bookkeeping, no I/O.
//!
//! Invariants:
//! - At most one decision per value is in force; a new one for a value already banned replaces
//!   it only when it ends later.
//! - An address inside a banned block is not banned again on its own.
//! - Every change gets the next sequence number: a reader that saw up to `n` asks for what came
//!   after `n` (new decisions, and ones that ended or were lifted) and misses nothing still kept.
//! - Ended and lifted decisions are kept for [`KEEP_REMOVED`] changes, so a bouncer that pulls
//!   now and then still hears of them.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::pipeline::memory::Cidr;
use crate::store::decisions::Decision;

/// Ended or lifted decisions kept for the change feed.
pub const KEEP_REMOVED: usize = 100_000;

/// How long bans last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The first ban of a value.
    pub ban_ttl_ms: i64,
    /// Each later ban lasts this many times longer than the one before (1 keeps them equal).
    pub factor: f64,
    /// No ban lasts longer.
    pub max_ms: i64,
    /// Ban the whole block (IPv4 /`v4_prefix`, IPv6 /`v6_prefix`) once this many of its addresses
    /// are banned; 0 never does.
    pub aggregate_after: u32,
    /// Block size for IPv4 aggregation.
    pub v4_prefix: u8,
    /// Block size for IPv6 aggregation.
    pub v6_prefix: u8,
}

impl Policy {
    /// The length of the `offence`-th ban (1-based): `ban_ttl × factor^(offence−1)`, at most `max`.
    pub fn ttl_ms(&self, offence: u32) -> i64 {
        let grown = self.ban_ttl_ms as f64 * self.factor.powi(offence.saturating_sub(1).min(64) as i32);
        let max = self.max_ms.max(self.ban_ttl_ms);
        if grown.is_finite() && grown < max as f64 {
            grown as i64
        } else {
            max
        }
    }

    /// The block `ip` is aggregated into.
    pub fn block_of(&self, ip: IpAddr) -> Cidr {
        Cidr::new(ip, if ip.is_ipv4() { self.v4_prefix } else { self.v6_prefix })
    }
}

/// One change of the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The decision is in force.
    New(Decision),
    /// The decision ended or was lifted.
    Removed(Decision),
}

/// What [`Book::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Nothing was in force for the value.
    New,
    /// It replaced a decision that ended sooner.
    Longer,
    /// A decision in force already covers it for at least as long (or it ended already).
    Covered,
}

/// The decisions in force, and recent changes.
#[derive(Debug, Default)]
pub struct Book {
    active: HashMap<Cidr, (u64, Decision)>,
    /// Values of the blocks (not single addresses) in force.
    blocks: Vec<Cidr>,
    removed: VecDeque<(u64, Decision)>,
    seq: u64,
}

impl Book {
    /// The decision in force at `now_ms` that covers `value` (itself, or a block holding it).
    pub fn covering(&self, value: &Cidr, now_ms: i64) -> Option<&Decision> {
        if let Some((_, d)) = self.active.get(value)
            && d.until_ms > now_ms
        {
            return Some(d);
        }
        self.blocks
            .iter()
            .filter(|b| b.covers(value))
            .filter_map(|b| self.active.get(b))
            .map(|(_, d)| d)
            .find(|d| d.until_ms > now_ms)
    }

    /// Whether a decision with this uuid is in force.
    pub fn has_uuid(&self, uuid: &str, value: &Cidr) -> bool {
        self.active.get(value).is_some_and(|(_, d)| d.uuid == uuid)
    }

    /// Puts `d` in force at `now_ms` unless something covers it already.
    pub fn insert(&mut self, d: Decision, now_ms: i64) -> Inserted {
        if d.until_ms <= now_ms {
            return Inserted::Covered;
        }
        if let Some(c) = self.covering(&d.value, now_ms)
            && c.until_ms >= d.until_ms
        {
            return Inserted::Covered;
        }
        self.seq += 1;
        let value = d.value;
        let was = self.active.insert(value, (self.seq, d));
        if !value.is_host() && !self.blocks.contains(&value) {
            self.blocks.push(value);
        }
        match was {
            Some((_, old)) => {
                let ended = old.until_ms <= now_ms;
                self.remember_removed(old);
                if ended { Inserted::New } else { Inserted::Longer }
            }
            None => Inserted::New,
        }
    }

    /// Takes out the decisions that ended by `now_ms`.
    pub fn expire(&mut self, now_ms: i64) -> Vec<Decision> {
        let ended: Vec<Cidr> = self
            .active
            .iter()
            .filter(|(_, (_, d))| d.until_ms <= now_ms)
            .map(|(v, _)| *v)
            .collect();
        ended.iter().filter_map(|v| self.remove(v)).collect()
    }

    /// Takes out the decision in force on exactly `value`.
    pub fn remove(&mut self, value: &Cidr) -> Option<Decision> {
        let (_, d) = self.active.remove(value)?;
        self.blocks.retain(|b| b != value);
        self.seq += 1;
        self.remember_removed(d.clone());
        Some(d)
    }

    /// Records decisions that were lifted or ended before this process started (from the
    /// store), so a bouncer that pulled from an earlier run hears of them.
    pub fn seed_removed(&mut self, decisions: Vec<Decision>) {
        for d in decisions {
            self.seq += 1;
            self.remember_removed(d);
        }
    }

    /// Decisions removed (lifted or ended) that are still remembered, oldest first, with the
    /// sequence number of their removal.
    pub fn removed(&self) -> impl Iterator<Item = (u64, &Decision)> {
        self.removed.iter().map(|(s, d)| (*s, d))
    }

    fn remember_removed(&mut self, d: Decision) {
        if self.removed.len() >= KEEP_REMOVED {
            self.removed.pop_front();
        }
        self.removed.push_back((self.seq, d));
    }

    /// How many single addresses inside `block` are banned.
    pub fn banned_inside(&self, block: &Cidr) -> usize {
        self.active.keys().filter(|v| v.is_host() && block.covers(v)).count()
    }

    /// Every decision in force.
    pub fn active(&self) -> impl Iterator<Item = &Decision> {
        self.active.values().map(|(_, d)| d)
    }

    /// Every decision in force, with the sequence number it came with.
    pub fn active_numbered(&self) -> impl Iterator<Item = (u64, &Decision)> {
        self.active.values().map(|(s, d)| (*s, d))
    }

    /// Number of decisions in force.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Whether nothing is in force.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// The latest sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The changes after sequence number `after`: decisions in force that came later, and
    /// decisions removed later (oldest first). A decision that came and went is only removed.
    pub fn changes_after(&self, after: u64) -> Vec<(u64, Change)> {
        let mut out: Vec<(u64, Change)> = self
            .active
            .values()
            .filter(|(s, _)| *s > after)
            .map(|(s, d)| (*s, Change::New(d.clone())))
            .collect();
        let start = self.removed.partition_point(|(s, _)| *s <= after);
        out.extend(
            self.removed
                .range(start..)
                .map(|(s, d)| (*s, Change::Removed(d.clone()))),
        );
        out.sort_by_key(|(s, _)| *s);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            ban_ttl_ms: 3_600_000,
            factor: 2.0,
            max_ms: 86_400_000,
            aggregate_after: 3,
            v4_prefix: 24,
            v6_prefix: 64,
        }
    }

    fn decision(value: &str, until_ms: i64) -> Decision {
        Decision {
            uuid: format!("u-{value}-{until_ms}"),
            value: value.parse().unwrap(),
            origin: "logsec".into(),
            host: "h".into(),
            reason: "sqli".into(),
            offence: 1,
            created_ms: 0,
            until_ms,
        }
    }

    #[test]
    fn repeat_offenders_get_longer_bans_up_to_the_maximum() {
        let p = policy();
        assert_eq!(p.ttl_ms(1), 3_600_000);
        assert_eq!(p.ttl_ms(2), 7_200_000);
        assert_eq!(p.ttl_ms(4), 28_800_000);
        assert_eq!(p.ttl_ms(6), 86_400_000);
        assert_eq!(p.ttl_ms(u32::MAX), 86_400_000);
        let flat = Policy { factor: 1.0, ..p };
        assert_eq!(flat.ttl_ms(9), 3_600_000);
    }

    #[test]
    fn blocks_are_the_aggregation_prefix_of_the_address() {
        let p = policy();
        assert_eq!(
            p.block_of("203.0.113.77".parse().unwrap()).to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            p.block_of("2001:db8:1:2:3:4:5:6".parse().unwrap()).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn a_ban_in_force_covers_later_ones_until_a_longer_one_comes() {
        let mut b = Book::default();
        assert_eq!(b.insert(decision("203.0.113.7", 100), 0), Inserted::New);
        assert_eq!(b.insert(decision("203.0.113.7", 50), 0), Inserted::Covered);
        assert_eq!(b.insert(decision("203.0.113.7", 200), 0), Inserted::Longer);
        assert_eq!(b.len(), 1);
        assert_eq!(b.insert(decision("203.0.113.0/24", 300), 0), Inserted::New);
        assert_eq!(b.insert(decision("203.0.113.9", 250), 0), Inserted::Covered);
        assert_eq!(b.banned_inside(&"203.0.113.0/24".parse().unwrap()), 1);
        assert_eq!(
            b.insert(decision("198.51.100.1", 5), 10),
            Inserted::Covered,
            "already ended"
        );
    }

    #[test]
    fn the_change_feed_reports_new_and_removed_decisions_in_order() {
        let mut b = Book::default();
        b.insert(decision("203.0.113.7", 100), 0);
        let mark = b.seq();
        b.insert(decision("198.51.100.1", 100), 0);
        b.insert(decision("198.51.100.2", 50), 0);
        assert_eq!(b.expire(60).len(), 1);
        assert!(b.remove(&"203.0.113.7".parse().unwrap()).is_some());
        let changes = b.changes_after(mark);
        let names: Vec<String> = changes
            .iter()
            .map(|(_, c)| match c {
                Change::New(d) => format!("+{}", d.value),
                Change::Removed(d) => format!("-{}", d.value),
            })
            .collect();
        assert_eq!(names, ["+198.51.100.1", "-198.51.100.2", "-203.0.113.7"]);
        assert_eq!(b.changes_after(0).len(), 3, "from the start: one in force, two removed");
        assert!(b.changes_after(b.seq()).is_empty());
    }
}
