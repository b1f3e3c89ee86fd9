//! Enforcement: turning `block` decisions into firewall bans, keeping them through restarts, and
//! checking that they took.
//!
//! Invariants:
//! - Bans live in the store (rows with `action = 'block'`): at start-up the unexpired ones are
//!   restored in one transaction, with the time they have left.
//! - The firewall is reconciled against what should be banned every [`RECONCILE_EVERY`]: a lost
//!   ruleset (`nft flush ruleset`, a reboot of the firewall service) heals by itself.
//! - Every ban is read back from the firewall; a ban that did not take is logged and counted, and
//!   retried at the next reconcile.
//! - Allowlisted addresses are never banned, whatever decided the block.
//! - A later block of a banned address lengthens its ban in the firewall too.
//! - A failing backend (permission, missing binary) is reported and retried; analysis goes on.

pub mod nft;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::pipeline::memory::Allowlist;
use crate::store::time;
use nft::{Element, Nft};

/// How often the firewall is compared with the bans that should be in it.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// One ban: an address until a time (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    /// The address.
    pub ip: IpAddr,
    /// When the ban ends.
    pub until_ms: i64,
}

/// Counters of the enforcer, for `/metrics`.
#[derive(Debug, Default)]
pub struct EnforceStats {
    /// Bans written to the firewall.
    pub applied: AtomicU64,
    /// Bans read back from the firewall after being written.
    pub verified: AtomicU64,
    /// Bans that were not found in the firewall after being written, or could not be written.
    pub failed: AtomicU64,
    /// Bans restored at start-up.
    pub restored: AtomicU64,
    /// Bans re-added by a reconcile (the firewall had lost them).
    pub healed: AtomicU64,
    /// Bans in force.
    pub active: AtomicU64,
}

/// The running enforcer; dropping it stops its thread.
pub struct Enforcer {
    tx: Sender<Ban>,
    allowlist: Arc<Allowlist>,
    /// Its counters.
    pub stats: Arc<EnforceStats>,
}

impl Enforcer {
    /// Starts the `nftables` enforcer with `restore` (bans from the store) applied first.
    pub fn nftables(restore: Vec<Ban>, allowlist: Arc<Allowlist>) -> anyhow::Result<Enforcer> {
        let nft = Nft::default();
        // Fail at start-up when nft cannot work at all (missing binary, no permission).
        nft.apply(&[])
            .map_err(|e| anyhow::anyhow!("the nftables backend cannot manage its table: {e}"))?;
        let (tx, rx) = unbounded();
        let stats = Arc::new(EnforceStats::default());
        let (s, list) = (stats.clone(), allowlist.clone());
        std::thread::Builder::new()
            .name("enforce".into())
            .spawn(move || enforce_loop(nft, rx, restore, &list, &s))?;
        Ok(Enforcer { tx, allowlist, stats })
    }

    /// Bans `ip` until `until_ms` (ignored for allowlisted or unparsable addresses, or a time past).
    pub fn ban(&self, ip: &str, until_ms: i64) {
        let Some(ip) = crate::pipeline::memory::canonical(ip) else {
            return;
        };
        if self.allowlist.contains_addr(ip) || until_ms <= time::now_ms() {
            return;
        }
        let _ = self.tx.send(Ban { ip, until_ms });
    }
}

fn enforce_loop(nft: Nft, rx: Receiver<Ban>, restore: Vec<Ban>, allowlist: &Allowlist, stats: &EnforceStats) {
    let mut active: HashMap<IpAddr, i64> = HashMap::new();
    let started = Instant::now();
    let restore: Vec<Ban> = restore.into_iter().filter(|b| !allowlist.contains_addr(b.ip)).collect();
    for b in &restore {
        let until = active.entry(b.ip).or_insert(b.until_ms);
        *until = (*until).max(b.until_ms);
    }
    if !active.is_empty() {
        let all: Vec<Ban> = active
            .iter()
            .map(|(ip, until)| Ban {
                ip: *ip,
                until_ms: *until,
            })
            .collect();
        match nft.apply(&elements(&all)) {
            Ok(()) => {
                stats.restored.fetch_add(all.len() as u64, Ordering::Relaxed);
                tracing::info!(
                    bans = all.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "bans restored from the store"
                );
            }
            Err(e) => tracing::error!(error = %e, "restoring bans failed; retrying at the next reconcile"),
        }
    }
    let mut last_reconcile = Instant::now();
    loop {
        let mut fresh = Vec::new();
        match rx.recv_timeout(RECONCILE_EVERY) {
            Ok(b) => fresh.push(b),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        fresh.extend(rx.try_iter());
        let now = time::now_ms();
        active.retain(|_, until| *until > now);
        // The latest end asked for each address, then: not banned yet, or banned for less.
        let mut latest: HashMap<IpAddr, i64> = HashMap::new();
        for b in fresh {
            let until = latest.entry(b.ip).or_insert(b.until_ms);
            *until = (*until).max(b.until_ms);
        }
        let (mut new, mut renewed) = (Vec::new(), Vec::new());
        for (ip, until_ms) in latest {
            let ban = Ban { ip, until_ms };
            match active.entry(ip) {
                Entry::Vacant(v) => {
                    v.insert(until_ms);
                    new.push(ban);
                }
                Entry::Occupied(mut o) if *o.get() < until_ms => {
                    o.insert(until_ms);
                    renewed.push(ban);
                }
                Entry::Occupied(_) => {}
            }
        }
        if !new.is_empty() {
            apply_and_verify(&nft, &new, stats);
        }
        if !renewed.is_empty()
            && let Err(e) = nft.renew(&elements(&renewed))
        {
            tracing::warn!(error = %e, bans = renewed.len(), "lengthening bans failed; the reconcile re-adds them when they lapse");
        }
        if last_reconcile.elapsed() >= RECONCILE_EVERY {
            last_reconcile = Instant::now();
            reconcile(&nft, &active, stats);
        }
        stats.active.store(active.len() as u64, Ordering::Relaxed);
    }
}

fn elements(bans: &[Ban]) -> Vec<Element> {
    let now = time::now_ms();
    bans.iter()
        .map(|b| Element {
            ip: b.ip,
            timeout_s: ((b.until_ms - now).max(0) as u64).div_ceil(1000),
        })
        .collect()
}

fn apply_and_verify(nft: &Nft, bans: &[Ban], stats: &EnforceStats) {
    if let Err(e) = nft.apply(&elements(bans)) {
        stats.failed.fetch_add(bans.len() as u64, Ordering::Relaxed);
        tracing::error!(error = %e, bans = bans.len(), "banning failed; retrying at the next reconcile");
        return;
    }
    stats.applied.fetch_add(bans.len() as u64, Ordering::Relaxed);
    match nft.list() {
        Ok(present) => {
            for b in bans {
                if present.contains(&b.ip) {
                    stats.verified.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(ip = %b.ip, until = %time::rfc3339(b.until_ms), "banned");
                } else {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(ip = %b.ip, "a ban did not take: the address is not in the set after adding it");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the bans back"),
    }
}

fn reconcile(nft: &Nft, active: &HashMap<IpAddr, i64>, stats: &EnforceStats) {
    if active.is_empty() {
        return;
    }
    let present = match nft.list() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the firewall to reconcile");
            return;
        }
    };
    let missing: Vec<Ban> = active
        .iter()
        .filter(|(ip, _)| !present.contains(ip))
        .map(|(ip, until)| Ban {
            ip: *ip,
            until_ms: *until,
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    tracing::warn!(
        missing = missing.len(),
        "bans missing from the firewall; re-adding them"
    );
    match nft.apply(&elements(&missing)) {
        Ok(()) => {
            stats.healed.fetch_add(missing.len() as u64, Ordering::Relaxed);
        }
        Err(e) => tracing::error!(error = %e, "re-adding bans failed"),
    }
}
