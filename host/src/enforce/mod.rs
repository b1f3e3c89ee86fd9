//! Enforcement: turning `block` decisions into bans, keeping them through restarts, sharing them
//! with the fleet, and checking that the firewall holds them.
//!
//! Invariants:
//! - A ban is a [`Decision`] in the store (table `decisions`), the source of truth: at start-up the
//!   ones in force are restored in bulk (one nft transaction per 2,000 bans, one Azure update).
//! - The firewall is reconciled against the book every [`RECONCILE_EVERY`] (Azure: every
//!   minute, to spare Resource Manager's read limits): a lost ruleset
//!   (`nft flush ruleset`, a reboot of the firewall service) heals by itself. The store is read
//!   at the same pace, so `logsec decisions add|delete` reach a running daemon within seconds.
//! - Every ban written is read back from the firewall; one that did not take is logged and counted,
//!   and retried at the next reconcile.
//! - Allowlisted addresses are never banned, whatever decided the block (this agent, an operator
//!   or another agent); a block that holds an allowlisted address is never banned as a whole.
//! - Repeat offenders get longer bans ([`book::Policy`]): the store counts every ban a value had.
//! - A failing backend (permission, missing binary, Azure 4xx/5xx) is reported, counted and
//!   retried; it never stops the daemon or its analysis. A store or Redis that is down delays
//!   writing or sharing decisions, never applying them.

pub mod backend;
pub mod book;
pub mod fleet;
pub mod ipset;
pub mod nft;

#[cfg(feature = "azure")]
pub mod azure;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::pipeline::memory::{Allowlist, Cidr};
use crate::store::Store;
use crate::store::decisions::Decision;
use crate::store::lazy::Lazy;
use crate::store::time;
use backend::{Backend, Ban};
use book::{Book, Inserted, Policy};
use fleet::{Fleet, Message, Op};

pub use backend::LogBackend;

/// How often the firewall is compared with the book, and the store read for decisions made
/// elsewhere.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// How often ended bans are taken out of the book.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);
/// How far back restored history goes for the decisions API's deleted lists (a day).
const REMEMBER_REMOVED_MS: i64 = 24 * 3600 * 1000;
/// Decisions kept in memory while the store is unreachable.
const MAX_UNSAVED: usize = 100_000;

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
    /// Bans that ended or were lifted.
    pub lifted: AtomicU64,
    /// Decisions shared with the fleet.
    pub fleet_sent: AtomicU64,
    /// Decisions received from the fleet.
    pub fleet_received: AtomicU64,
    /// Backend operations that failed.
    pub backend_errors: AtomicU64,
    /// 1 when the backend answered its last operation.
    pub backend_up: AtomicU64,
}

/// What the enforcer needs.
pub struct Options {
    /// The firewall.
    pub backend: Box<dyn Backend>,
    /// Never banned.
    pub allowlist: Arc<Allowlist>,
    /// Ban lengths and aggregation.
    pub policy: Policy,
    /// The store decisions live in (`None`: kept in memory only, as in tests).
    pub store_url: Option<String>,
    /// The fleet to share decisions with.
    pub fleet: Option<Fleet>,
    /// This agent's name in decisions.
    pub host: String,
}

enum Command {
    Block { ip: IpAddr, reason: String },
}

/// The running enforcer; dropping it stops its thread after writing what it holds.
pub struct Enforcer {
    tx: Option<UnboundedSender<Command>>,
    allowlist: Arc<Allowlist>,
    /// Its counters.
    pub stats: Arc<EnforceStats>,
    /// The decisions in force and recent changes (read by the decisions API).
    pub book: Arc<Mutex<Book>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Enforcer {
    /// Starts the enforcer thread and returns once it has restored the bans in force from the
    /// store; it then applies new ones as they come.
    pub fn start(options: Options) -> anyhow::Result<Enforcer> {
        let (tx, rx) = unbounded_channel();
        let (restored_tx, restored_rx) = std::sync::mpsc::channel::<()>();
        let stats = Arc::new(EnforceStats::default());
        let book = Arc::new(Mutex::new(Book::default()));
        let allowlist = options.allowlist.clone();
        let worker = Worker {
            backend: options.backend,
            allowlist: options.allowlist,
            policy: options.policy,
            host: options.host,
            instance: options
                .fleet
                .as_ref()
                .map_or_else(instance_id, |f| f.instance().to_owned()),
            store_url: options.store_url,
            store: None,
            fleet: options.fleet,
            book: book.clone(),
            stats: stats.clone(),
            saver: None,
            offences: HashMap::new(),
            last_id: 0,
            lifted_checked_ms: time::now_ms(),
            prepared: false,
            failed: false,
            minted: 0,
        };
        let thread = std::thread::Builder::new().name("enforce".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "the enforcer cannot start its runtime; nothing will be banned");
                    return;
                }
            };
            rt.block_on(worker.run(rx, restored_tx));
        })?;
        // The restore is part of start-up: the book is complete before the decisions API serves
        // it and before lines are analysed. An error means the thread ended; its log says why.
        let _ = restored_rx.recv();
        Ok(Enforcer {
            tx: Some(tx),
            allowlist,
            stats,
            book,
            thread: Some(thread),
        })
    }

    /// Bans `ip` for `reason` (ignored for allowlisted or unparsable addresses, and for ones
    /// banned already).
    pub fn ban(&self, ip: &str, reason: &str) {
        let Some(ip) = crate::pipeline::memory::canonical(ip) else {
            return;
        };
        if self.allowlist.contains_addr(ip) {
            return;
        }
        let now = time::now_ms();
        if self
            .book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .covering(&Cidr::host(ip), now)
            .is_some()
        {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Command::Block {
                ip,
                reason: reason.to_owned(),
            });
        }
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A random id for this process.
pub fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Opens the store at `url`, if there is one; the enforcer works without it (in tests) and
/// waits for it when it is down.
async fn open_store(url: Option<&str>, meanwhile: &'static str) -> Option<Lazy> {
    match url {
        Some(u) => Some(Lazy::open(u, meanwhile).await),
        None => None,
    }
}

/// The store of `lazy`, when there is one and it answers.
async fn connected(lazy: &mut Option<Lazy>) -> Option<&Store> {
    match lazy {
        Some(l) => l.get().await,
        None => None,
    }
}

/// Reports a query the store refused (the pool reconnects by itself).
fn refused(e: &anyhow::Error) {
    tracing::warn!(error = %format!("{e:#}"), "the store refused the enforcer's query");
}

/// Writes decisions to the store off the enforcer's path, so a slow disk (an fsync at a WAL
/// checkpoint took 1.5 s here) or an unreachable store never delays a ban or its sharing.
/// Decisions the store refuses are kept (at most [`MAX_UNSAVED`]) and tried again every
/// [`RECONCILE_EVERY`]; when the channel closes, it tries once more and ends.
async fn save_loop(url: Option<String>, mut rx: UnboundedReceiver<Vec<Decision>>) {
    let mut store = open_store(url.as_deref(), "ban decisions are kept in memory until it answers").await;
    let mut unsaved: Vec<Decision> = Vec::new();
    loop {
        let got = if unsaved.is_empty() {
            rx.recv().await
        } else {
            tokio::time::timeout(RECONCILE_EVERY, rx.recv())
                .await
                .unwrap_or(Some(Vec::new()))
        };
        let closed = got.is_none();
        unsaved.extend(got.into_iter().flatten());
        while let Ok(more) = rx.try_recv() {
            unsaved.extend(more);
        }
        if !unsaved.is_empty() {
            if let Some(s) = connected(&mut store).await {
                match s.insert_decisions(&unsaved).await {
                    Ok(_) => unsaved.clear(),
                    Err(e) => refused(&e),
                }
            }
            if unsaved.len() > MAX_UNSAVED {
                let drop = unsaved.len() - MAX_UNSAVED;
                unsaved.drain(..drop);
                tracing::error!(
                    dropped = drop,
                    "the store has been unreachable for long: the oldest unsaved decisions are forgotten (their bans stay in force)"
                );
            }
        }
        if closed {
            if !unsaved.is_empty() {
                tracing::error!(
                    decisions = unsaved.len(),
                    "stopping with decisions the store did not take"
                );
            }
            return;
        }
    }
}

struct Worker {
    backend: Box<dyn Backend>,
    allowlist: Arc<Allowlist>,
    policy: Policy,
    host: String,
    instance: String,
    /// The store's URL (`None`: no store).
    store_url: Option<String>,
    /// The store, opened when the worker starts.
    store: Option<Lazy>,
    fleet: Option<Fleet>,
    book: Arc<Mutex<Book>>,
    stats: Arc<EnforceStats>,
    /// Where decisions go to be written to the store.
    saver: Option<UnboundedSender<Vec<Decision>>>,
    /// Bans each value had (from the store, then counted here).
    offences: HashMap<Cidr, u32>,
    /// The highest store row id seen.
    last_id: i64,
    /// When lifted decisions were last looked for.
    lifted_checked_ms: i64,
    /// Whether the backend's table and rules are known to be in place.
    prepared: bool,
    /// Whether a backend operation failed since the last reconcile (which then comes sooner).
    failed: bool,
    /// Decisions made by this process (for their uuids).
    minted: u64,
}

impl Worker {
    async fn run(mut self, mut rx: UnboundedReceiver<Command>, restored: std::sync::mpsc::Sender<()>) {
        let (save_tx, save_rx) = unbounded_channel();
        self.saver = Some(save_tx);
        let saver = tokio::spawn(save_loop(self.store_url.clone(), save_rx));
        self.store = open_store(
            self.store_url.as_deref(),
            "bans are applied, and decisions made elsewhere are picked up when it answers",
        )
        .await;
        self.prepare();
        self.restore().await;
        let _ = restored.send(());
        let (fleet_tx, mut fleet_rx) = unbounded_channel();
        if let Some(f) = self.fleet.clone() {
            // On a thread of its own: its XREAD blocks.
            let spawned = std::thread::Builder::new()
                .name("fleet".into())
                .spawn(move || f.follow(fleet_tx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot follow the fleet");
            }
        }
        let mut expire = tokio::time::interval(EXPIRE_EVERY);
        let (mut last_sync, mut last_reconcile) = (Instant::now(), Instant::now());
        let reconcile_every = self.backend.reconcile_every();
        loop {
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(first) = cmd else { break };
                    let mut all = vec![first];
                    while let Ok(c) = rx.try_recv() {
                        all.push(c);
                    }
                    self.blocks(all).await;
                }
                Some(first) = fleet_rx.recv() => {
                    let mut all = vec![first];
                    while let Ok(m) = fleet_rx.try_recv() {
                        all.push(m);
                    }
                    self.fleet_messages(all).await;
                }
                _ = expire.tick() => {
                    self.expire();
                    if last_sync.elapsed() >= RECONCILE_EVERY {
                        last_sync = Instant::now();
                        self.sync_store().await;
                        // After a failure the retry does not wait for the backend's pace.
                        if self.failed || last_reconcile.elapsed() >= reconcile_every {
                            last_reconcile = Instant::now();
                            self.failed = false;
                            self.reconcile();
                        }
                    }
                }
            }
        }
        // The saver writes what it holds, then ends.
        self.saver = None;
        let _ = saver.await;
    }

    /// Runs a backend operation, counting failures and keeping `backend_up`.
    fn backend_op(&mut self, what: &str, op: impl FnOnce(&mut dyn Backend) -> Result<(), String>) -> bool {
        if !self.prepared {
            self.prepare();
            if !self.prepared {
                return false;
            }
        }
        match op(self.backend.as_mut()) {
            Ok(()) => {
                self.stats.backend_up.store(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.failed = true;
                self.stats.backend_errors.fetch_add(1, Ordering::Relaxed);
                self.stats.backend_up.store(0, Ordering::Relaxed);
                tracing::error!(backend = self.backend.name(), error = %e, "{what} failed; retrying at the next reconcile");
                false
            }
        }
    }

    fn prepare(&mut self) {
        match self.backend.prepare() {
            Ok(()) => {
                self.prepared = true;
                self.stats.backend_up.store(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.prepared = false;
                self.failed = true;
                self.stats.backend_errors.fetch_add(1, Ordering::Relaxed);
                self.stats.backend_up.store(0, Ordering::Relaxed);
                tracing::error!(backend = self.backend.name(), error = %e, "the firewall backend cannot set itself up; analysis goes on, and bans are applied once it can");
            }
        }
    }

    /// Puts the decisions in force from the store into the book and the firewall, in bulk.
    async fn restore(&mut self) {
        let started = Instant::now();
        let now = time::now_ms();
        let stored = match connected(&mut self.store).await {
            Some(s) => match s.active_decisions(now).await {
                Ok(d) => d,
                Err(e) => {
                    refused(&e);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        self.last_id = stored.iter().map(|d| d.id).max().unwrap_or(0);
        // What ended or was lifted in the last day, for bouncers that pulled before a restart.
        if let Some(s) = connected(&mut self.store).await {
            match s.removed_between(now - REMEMBER_REMOVED_MS, now).await {
                Ok(gone) => self
                    .book
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .seed_removed(gone.into_iter().map(|s| s.decision).collect()),
                Err(e) => refused(&e),
            }
        }
        let decisions: Vec<Decision> = stored
            .into_iter()
            .map(|s| s.decision)
            .filter(|d| !self.allowlist.overlaps(&d.value))
            .collect();
        let bans = {
            let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
            decisions
                .into_iter()
                .filter(|d| book.insert(d.clone(), now) != Inserted::Covered)
                .map(|d| Ban {
                    value: d.value,
                    until_ms: d.until_ms,
                })
                .collect::<Vec<_>>()
        };
        // Called even with nothing to restore: a backend without timeouts (Azure) drops what an
        // earlier run left that is no longer in force.
        if self.backend_op("restoring bans", |b| b.add(&bans)) && !bans.is_empty() {
            self.stats.restored.fetch_add(bans.len() as u64, Ordering::Relaxed);
            tracing::info!(
                bans = bans.len(),
                ms = started.elapsed().as_millis() as u64,
                "bans restored from the store"
            );
        }
        self.gauge();
    }

    /// How many bans `value` had before.
    async fn past_offences(&mut self, value: &Cidr) -> u32 {
        if let Some(n) = self.offences.get(value) {
            return *n;
        }
        let n = match connected(&mut self.store).await {
            Some(s) => match s.offences(value).await {
                Ok(n) => n,
                Err(e) => {
                    refused(&e);
                    0
                }
            },
            None => 0,
        };
        self.offences.insert(*value, n);
        n
    }

    fn mint(&mut self, value: Cidr, reason: String, offence: u32, now: i64) -> Decision {
        self.minted += 1;
        Decision {
            uuid: format!("{}-{:x}-{:x}", self.instance, now, self.minted),
            value,
            origin: "logsec".into(),
            host: self.host.clone(),
            reason,
            offence,
            created_ms: now,
            until_ms: now.saturating_add(self.policy.ttl_ms(offence)),
        }
    }

    /// Decides bans for addresses the pipeline blocked (and for their blocks, when aggregation
    /// says so), then enacts them.
    async fn blocks(&mut self, commands: Vec<Command>) {
        let now = time::now_ms();
        let mut fresh: Vec<Decision> = Vec::new();
        for Command::Block { ip, reason } in commands {
            let value = Cidr::host(ip);
            let book = self.book.clone();
            let covered = |fresh: &[Decision], v: &Cidr| {
                fresh.iter().any(|d| d.value.covers(v))
                    || book
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .covering(v, now)
                        .is_some()
            };
            if self.allowlist.contains_addr(ip) || covered(&fresh, &value) {
                continue;
            }
            let offence = self.past_offences(&value).await + 1;
            fresh.push(self.mint(value, reason, offence, now));
            if self.policy.aggregate_after == 0 {
                continue;
            }
            let block = self.policy.block_of(ip);
            let inside = self
                .book
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .banned_inside(&block)
                + fresh
                    .iter()
                    .filter(|d| d.value.is_host() && block.covers(&d.value))
                    .count();
            if inside >= self.policy.aggregate_after as usize
                && !covered(&fresh, &block)
                && !self.allowlist.overlaps(&block)
            {
                let offence = self.past_offences(&block).await + 1;
                let why = format!("{inside} addresses of the block banned");
                fresh.push(self.mint(block, why, offence, now));
            }
        }
        self.enact(fresh, true).await;
    }

    /// Applies decisions from other agents.
    async fn fleet_messages(&mut self, messages: Vec<Message>) {
        let mut add = Vec::new();
        for m in messages {
            self.stats.fleet_received.fetch_add(1, Ordering::Relaxed);
            let d = m.decision;
            if self.allowlist.overlaps(&d.value) {
                tracing::warn!(value = %d.value, from = %d.host, "the fleet asked to ban an allowlisted address; ignored");
                continue;
            }
            match m.op {
                Op::Add => add.push(Decision {
                    origin: "fleet".into(),
                    ..d
                }),
                Op::Lift => self.lift_local(&d).await,
            }
        }
        self.enact(add, false).await;
    }

    /// Lifts `d` here if it is the decision in force on its value.
    async fn lift_local(&mut self, d: &Decision) {
        let removed = {
            let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
            if book.has_uuid(&d.uuid, &d.value) {
                book.remove(&d.value)
            } else {
                None
            }
        };
        if let Some(gone) = removed {
            self.stats.lifted.fetch_add(1, Ordering::Relaxed);
            self.backend_op("lifting a ban", |b| b.remove(&[gone.value]));
            tracing::info!(value = %gone.value, "ban lifted");
            if let Some(s) = connected(&mut self.store).await
                && let Err(e) = s.lift(&gone.value, time::now_ms()).await
            {
                refused(&e);
            }
            self.gauge();
        }
    }

    /// Puts `decisions` in the book, the firewall and the store, and shares them when `share`.
    async fn enact(&mut self, decisions: Vec<Decision>, share: bool) {
        if decisions.is_empty() {
            return;
        }
        let now = time::now_ms();
        let (mut new, mut longer) = (Vec::new(), Vec::new());
        {
            let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
            for d in decisions {
                match book.insert(d.clone(), now) {
                    Inserted::New => new.push(d),
                    Inserted::Longer => longer.push(d),
                    Inserted::Covered => {}
                }
            }
        }
        let bans = |ds: &[Decision]| -> Vec<Ban> {
            ds.iter()
                .map(|d| Ban {
                    value: d.value,
                    until_ms: d.until_ms,
                })
                .collect()
        };
        if !new.is_empty() {
            self.apply_and_verify(&bans(&new));
        }
        if !longer.is_empty() {
            let b = bans(&longer);
            self.backend_op("lengthening bans", |be| be.renew(&b));
        }
        for d in new.iter().chain(&longer) {
            self.offences.insert(d.value, d.offence);
            tracing::info!(value = %d.value, until = %time::rfc3339(d.until_ms), offence = d.offence, origin = %d.origin, host = %d.host, reason = %d.reason, "ban decided");
        }
        let all: Vec<Decision> = new.into_iter().chain(longer).collect();
        if share && let Some(f) = self.fleet.as_mut() {
            for d in &all {
                match f.publish(Op::Add, d) {
                    Ok(()) => {
                        self.stats.fleet_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), value = %d.value, "cannot share a decision with the fleet")
                    }
                }
            }
        }
        if let Some(saver) = &self.saver {
            let _ = saver.send(all);
        }
        self.gauge();
    }

    fn apply_and_verify(&mut self, bans: &[Ban]) {
        if !self.backend_op("banning", |b| b.add(bans)) {
            self.stats.failed.fetch_add(bans.len() as u64, Ordering::Relaxed);
            return;
        }
        self.stats.applied.fetch_add(bans.len() as u64, Ordering::Relaxed);
        match self.backend.present() {
            Ok(Some(present)) => {
                for b in bans {
                    if present.contains(&b.value) {
                        self.stats.verified.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(value = %b.value, backend = self.backend.name(), "a ban did not take: the firewall does not hold it after adding it");
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the bans back"),
        }
    }

    /// Takes ended bans out of the book (and out of a firewall that does not end them itself).
    fn expire(&mut self) {
        let ended = self
            .book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expire(time::now_ms());
        if ended.is_empty() {
            return;
        }
        self.stats.lifted.fetch_add(ended.len() as u64, Ordering::Relaxed);
        if !self.backend.expires_by_itself() {
            let values: Vec<Cidr> = ended.iter().map(|d| d.value).collect();
            self.backend_op("removing ended bans", |b| b.remove(&values));
        }
        self.gauge();
    }

    /// Picks up decisions other processes wrote to the store (`logsec decisions add`, another
    /// agent on the same database) and ones an operator lifted.
    async fn sync_store(&mut self) {
        let now = time::now_ms();
        let Some(store) = connected(&mut self.store).await else {
            return;
        };
        let (added, lifted) = match (
            store.decisions_after(self.last_id, 10_000).await,
            store.lifted_since(self.lifted_checked_ms - 1000).await,
        ) {
            (Ok(a), Ok(l)) => (a, l),
            (Err(e), _) | (_, Err(e)) => {
                refused(&e);
                return;
            }
        };
        self.lifted_checked_ms = now;
        self.last_id = added.iter().map(|d| d.id).max().unwrap_or(self.last_id);
        let fresh: Vec<Decision> = added
            .into_iter()
            .filter(|s| s.deleted_ms.is_none() && s.decision.until_ms > now)
            .map(|s| s.decision)
            .filter(|d| !self.allowlist.overlaps(&d.value))
            .collect();
        self.enact(fresh, false).await;
        for s in lifted {
            self.lift_local(&s.decision).await;
        }
    }

    /// Re-adds bans the firewall lost.
    fn reconcile(&mut self) {
        if !self.prepared {
            self.prepare();
        }
        let active: Vec<Ban> = {
            let book = self.book.lock().unwrap_or_else(|p| p.into_inner());
            if book.is_empty() {
                return;
            }
            book.active()
                .map(|d| Ban {
                    value: d.value,
                    until_ms: d.until_ms,
                })
                .collect()
        };
        let present = match self.backend.present() {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                self.failed = true;
                self.stats.backend_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot read the firewall to reconcile");
                return;
            }
        };
        let missing: Vec<Ban> = active.into_iter().filter(|b| !present.contains(&b.value)).collect();
        if missing.is_empty() {
            return;
        }
        tracing::warn!(
            missing = missing.len(),
            "bans missing from the firewall; re-adding them"
        );
        if self.backend_op("re-adding lost bans", |b| b.add(&missing)) {
            self.stats.healed.fetch_add(missing.len() as u64, Ordering::Relaxed);
        }
    }

    fn gauge(&self) {
        let n = self.book.lock().unwrap_or_else(|p| p.into_inner()).len();
        self.stats.active.store(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// A firewall that takes every ban but holds only some: what a ban that did not take looks
    /// like to the enforcer.
    struct Lossy {
        held: Arc<Mutex<HashSet<Cidr>>>,
        drops: Cidr,
    }

    impl Backend for Lossy {
        fn name(&self) -> &'static str {
            "lossy"
        }
        fn prepare(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn add(&mut self, bans: &[Ban]) -> Result<(), String> {
            let mut held = self.held.lock().unwrap();
            held.extend(bans.iter().map(|b| b.value).filter(|v| *v != self.drops));
            Ok(())
        }
        fn remove(&mut self, values: &[Cidr]) -> Result<(), String> {
            let mut held = self.held.lock().unwrap();
            for v in values {
                held.remove(v);
            }
            Ok(())
        }
        fn present(&mut self) -> Result<Option<HashSet<Cidr>>, String> {
            Ok(Some(self.held.lock().unwrap().clone()))
        }
        fn expires_by_itself(&self) -> bool {
            false
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_ban_that_did_not_take_is_counted_and_the_allowlist_holds() {
        let held = Arc::new(Mutex::new(HashSet::new()));
        let enforcer = Enforcer::start(Options {
            backend: Box::new(Lossy {
                held: held.clone(),
                drops: "203.0.113.2".parse().unwrap(),
            }),
            allowlist: Arc::new(Allowlist::parse(&["192.0.2.0/24".into()]).unwrap()),
            policy: Policy {
                ban_ttl_ms: 60_000,
                factor: 2.0,
                max_ms: 600_000,
                aggregate_after: 0,
                v4_prefix: 24,
                v6_prefix: 64,
            },
            store_url: None,
            fleet: None,
            host: "test".into(),
        })
        .unwrap();
        for ip in [
            "203.0.113.1",
            "203.0.113.2",
            "192.0.2.9",
            "not an address",
            "::ffff:203.0.113.1",
        ] {
            enforcer.ban(ip, "sqli");
        }
        let stats = enforcer.stats.clone();
        wait_for(|| stats.verified.load(Ordering::Relaxed) + stats.failed.load(Ordering::Relaxed) >= 2);
        assert_eq!(stats.verified.load(Ordering::Relaxed), 1);
        assert_eq!(stats.failed.load(Ordering::Relaxed), 1, "the dropped ban is reported");
        let held_now: Vec<String> = held.lock().unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(held_now, ["203.0.113.1"], "the allowlisted address was never banned");
        assert_eq!(enforcer.book.lock().unwrap().len(), 2);
    }
}
