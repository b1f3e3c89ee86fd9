//! What a firewall backend does for the enforcer, and the dry-run backend.

use std::collections::HashSet;

use crate::pipeline::memory::Cidr;
use crate::store::time;

/// One ban for a backend: an address or block until a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    /// The address or block.
    pub value: Cidr,
    /// When the ban ends (Unix ms).
    pub until_ms: i64,
}

impl Ban {
    /// Whole seconds left at `now_ms` (rounded up; 0 when ended).
    pub fn seconds_left(&self, now_ms: i64) -> u64 {
        ((self.until_ms - now_ms).max(0) as u64).div_ceil(1000)
    }
}

/// Which of a backend's four sets holds `v`: 0 single IPv4 addresses, 1 single IPv6 addresses,
/// 2 IPv4 blocks, 3 IPv6 blocks.
pub fn set_index(v: &Cidr) -> usize {
    usize::from(!v.addr().is_ipv4()) + if v.is_host() { 0 } else { 2 }
}

/// A firewall the enforcer drives. Errors are one line for the operator; the enforcer logs them,
/// counts them and tries again at the next reconcile.
pub trait Backend: Send {
    /// Its name in logs and metrics.
    fn name(&self) -> &'static str;

    /// Creates what it needs (table, sets, rules) if missing. Idempotent; also the check that it
    /// can work at all (binary present, permission).
    fn prepare(&mut self) -> Result<(), String>;

    /// Bans `bans`.
    fn add(&mut self, bans: &[Ban]) -> Result<(), String>;

    /// Gives `bans`, already banned, their new (later) end.
    fn renew(&mut self, bans: &[Ban]) -> Result<(), String> {
        self.add(bans)
    }

    /// Lifts the bans on `values` (ones not there are fine).
    fn remove(&mut self, values: &[Cidr]) -> Result<(), String>;

    /// What the firewall holds now; `None` when there is nothing to read back (dry run).
    fn present(&mut self) -> Result<Option<HashSet<Cidr>>, String>;

    /// Whether the firewall ends bans by itself (kernel timeouts); otherwise the enforcer removes
    /// them when they end.
    fn expires_by_itself(&self) -> bool;

    /// How often the firewall is read back and compared with the bans in force.
    fn reconcile_every(&self) -> std::time::Duration {
        super::RECONCILE_EVERY
    }
}

/// `backend = "log"`: a dry run that says what it would do.
#[derive(Debug, Default)]
pub struct LogBackend;

impl Backend for LogBackend {
    fn name(&self) -> &'static str {
        "log"
    }
    fn prepare(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn add(&mut self, bans: &[Ban]) -> Result<(), String> {
        for b in bans {
            tracing::info!(value = %b.value, until = %time::rfc3339(b.until_ms), "would ban (dry run)");
        }
        Ok(())
    }
    fn remove(&mut self, values: &[Cidr]) -> Result<(), String> {
        for v in values {
            tracing::info!(value = %v, "would lift the ban (dry run)");
        }
        Ok(())
    }
    fn present(&mut self) -> Result<Option<HashSet<Cidr>>, String> {
        Ok(None)
    }
    fn expires_by_itself(&self) -> bool {
        false
    }
}
