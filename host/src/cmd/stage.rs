//! The last stage of `logsec run` and `logsec replay`: stores analysed batches in the order they
//! were read, spools what the store refuses, counts, checkpoints, and shows decisions.
//!
//! Invariants: see `cmd::run`. A file's checkpoint moves only after the batch holding its lines is
//! stored or spooled.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::analysis::{Analysis, Event, STOP_WAIT};
use super::check::printable;
use super::run::{Batch, Done};
use crate::metrics::Metrics;
use crate::pipeline::{Flagged, Outcome};
use crate::runtime::bindings::ActionKind;
use crate::store::lazy::Lazy;
use crate::store::spool::Spool;
use crate::store::{Row, time};
use crate::tail::{Checkpoints, Fingerprint, TailLine};

/// How often checkpoints are written while lines flow.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Longest wait between two attempts to store a batch.
const STORE_RETRY_MAX: Duration = Duration::from_secs(30);
/// How often spooled batches are offered to the store again.
const SPOOL_RETRY: Duration = crate::store::lazy::RETRY;

/// What the store stage watches besides its own channel.
pub(super) struct Queues {
    pub(super) batches: crossbeam_channel::Receiver<Batch>,
}

/// The last stage: stores batches in order, counts, checkpoints.
pub(super) struct StoreStage<'a> {
    pub(super) metrics: &'a Metrics,
    pub(super) queue: Queues,
    pub(super) dry_run: bool,
    /// Store the requests' own log time as `created_at` (replay) instead of now.
    pub(super) log_time: bool,
    /// Print each decision on stdout.
    pub(super) announce: bool,
    /// The enforcer, when bans are decided (not in a replay).
    pub(super) enforcer: Option<&'a crate::enforce::Enforcer>,
}

impl StoreStage<'_> {
    /// Stores what `done_rx` brings until it closes; moves `checkpoints` (when given) past what
    /// was stored.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run(
        &self,
        db: &mut Lazy,
        spool: &mut Spool,
        done_rx: tokio::sync::mpsc::Receiver<Done>,
        checkpoints: Option<&Mutex<Checkpoints>>,
        stop: &AtomicBool,
        analysis: &mut Option<Analysis>,
    ) -> anyhow::Result<()> {
        store_loop(self, db, spool, done_rx, checkpoints, stop, analysis).await
    }

    fn count_run(&self, run: Option<(&PathBuf, [u64; 3])>) {
        if let Some((path, [read, parsed, unparsed])) = run {
            self.metrics.lines(&path.display().to_string(), read, parsed, unparsed);
        }
    }

    /// Counts a stored batch's lines, findings and decisions, and refreshes the gauges.
    fn count(&self, d: &Done) {
        // Lines of one file come in runs; count a run at once.
        let mut run: Option<(&PathBuf, [u64; 3])> = None;
        for (line, outcome) in d.lines.iter().zip(&d.outcomes) {
            if run.is_some_and(|(p, _)| p != &line.path) {
                self.count_run(run.take());
            }
            let (_, [read, parsed, unparsed]) = run.get_or_insert((&line.path, [0; 3]));
            *read += 1;
            match outcome {
                Outcome::Unparsed(_) => *unparsed += 1,
                // Blank lines and comments: read, nothing to parse.
                Outcome::Skipped => {}
                Outcome::Clean | Outcome::Allowed | Outcome::Flagged(_) | Outcome::Noted(_) => *parsed += 1,
            }
            if let Outcome::Flagged(f) = outcome {
                for finding in &f.findings {
                    self.metrics.finding(&finding.category);
                }
            }
        }
        self.count_run(run);
    }

    /// Refreshes the queue and spool gauges.
    fn gauges(&self, spool: &Spool, done_queue: usize) {
        self.metrics.gauge(
            "logsec_queue_batches",
            "Batches read and waiting for a worker.",
            self.queue.batches.len() as u64,
        );
        self.metrics.gauge(
            "logsec_queue_analysed",
            "Analysed batches waiting for the store.",
            done_queue as u64,
        );
        self.metrics.gauge(
            "logsec_store_spool_batches",
            "Batches waiting in the spool for the store.",
            spool.pending() as u64,
        );
    }
}

async fn store_loop(
    stage: &StoreStage<'_>,
    db: &mut Lazy,
    spool: &mut Spool,
    mut done_rx: tokio::sync::mpsc::Receiver<Done>,
    checkpoints: Option<&Mutex<Checkpoints>>,
    stop: &AtomicBool,
    analysis: &mut Option<Analysis>,
) -> anyhow::Result<()> {
    let mut pending: HashMap<u64, Done> = HashMap::new();
    let mut next = 0u64;
    let mut last_flush = Instant::now();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut spool_retry = tokio::time::interval(SPOOL_RETRY);
    if let Some(a) = analysis.as_mut() {
        for (file, rows) in a.leftovers()? {
            tracing::info!(
                rows = rows.len(),
                "storing rows a previous run left waiting for the analysts, as fallbacks"
            );
            stage.store_settled(db, spool, a, &rows, vec![file], stop).await;
        }
    }
    loop {
        let done = tokio::select! {
            d = done_rx.recv() => d,
            event = next_event(analysis) => {
                let a = analysis.as_mut().expect("events come only with analysis");
                match event {
                    Event::Answer(id, answer) => {
                        let (rows, files) = a.answered(id, &answer);
                        stage.store_settled(db, spool, a, &rows, files, stop).await;
                    }
                    Event::Correlated(c) => {
                        let (row, flagged) = *c;
                        let rows = a.offer(vec![(row, &flagged)]);
                        stage.store_rows(db, spool, &rows, stop).await;
                    }
                }
                continue;
            }
            _ = spool_retry.tick() => {
                drain_spool(spool, db).await;
                stage.gauges(spool, done_rx.len());
                continue;
            }
            _ = terminate.recv() => { stop_reading(stop, "SIGTERM"); continue; }
            _ = tokio::signal::ctrl_c() => { stop_reading(stop, "SIGINT"); continue; }
        };
        let Some(done) = done else { break };
        pending.insert(done.seq, done);
        while let Some(d) = pending.remove(&next) {
            next += 1;
            let rows = stage.rows_of(&d, analysis.as_mut());
            stage.count(&d);
            stage.store_rows(db, spool, &rows, stop).await;
            let Some(checkpoints) = checkpoints else { continue };
            let mut c = checkpoints.lock().unwrap_or_else(|p| p.into_inner());
            let mut ends: HashMap<Fingerprint, (&PathBuf, u64)> = HashMap::new();
            for l in &d.lines {
                ends.insert(l.file, (&l.path, l.offset));
            }
            for (fp, (path, offset)) in ends {
                c.set(fp, path, offset);
            }
            stage.gauges(spool, done_rx.len());
            if last_flush.elapsed() >= CHECKPOINT_EVERY {
                if let Err(e) = c.flush() {
                    tracing::warn!(error = %e, "cannot write the checkpoints");
                }
                last_flush = Instant::now();
            }
        }
    }
    if let Some(a) = analysis.as_mut() {
        // Open questions get a little time to finish; the rest are stored as fallbacks.
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        while a.open_questions() > 0 {
            let Ok((id, answer)) = tokio::time::timeout_at(deadline, a.next_answer()).await else {
                break;
            };
            let (rows, files) = a.answered(id, &answer);
            stage.store_settled(db, spool, a, &rows, files, stop).await;
        }
        let (rows, files) = a.abandon();
        if !rows.is_empty() {
            tracing::info!(
                rows = rows.len(),
                "the analysts did not answer before the stop; storing the rules verdicts"
            );
        }
        stage.store_settled(db, spool, a, &rows, files, stop).await;
    }
    Ok(())
}

/// The next event of the analysis side; pending forever without analysis.
async fn next_event(analysis: &mut Option<Analysis>) -> Event {
    match analysis {
        Some(a) => a.next_event().await,
        None => std::future::pending().await,
    }
}

/// Offers spooled batches to the store; what it refuses stays spooled.
pub(super) async fn drain_spool(spool: &mut Spool, db: &mut Lazy) {
    if spool.pending() == 0 {
        return;
    }
    let Some(store) = db.get().await else { return };
    match spool.drain(store).await {
        Ok(rows) => tracing::info!(rows, "spooled rows written to the store"),
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), pending = spool.pending(), "the store still refuses spooled rows")
        }
    }
}

pub(super) fn stop_reading(stop: &AtomicBool, why: &str) {
    if !stop.swap(true, Ordering::Relaxed) {
        tracing::info!(signal = why, "stopping: draining the pipeline");
    }
}

async fn store_with_retry(db: &mut Lazy, rows: &[Row], stop: &AtomicBool) {
    let mut wait = Duration::from_millis(200);
    loop {
        match db.insert(rows).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), rows = rows.len(), retry_in_ms = wait.as_millis() as u64, "storing failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(STORE_RETRY_MAX);
                if stop.load(Ordering::Relaxed) && wait == STORE_RETRY_MAX {
                    tracing::error!(
                        rows = rows.len(),
                        "the store is still unreachable while stopping; these rows stay unstored and are read again at the next start"
                    );
                    return;
                }
            }
        }
    }
}

impl StoreStage<'_> {
    /// The rows of a batch's flagged requests to store now; the ones the analysts decide are handed
    /// to `analysis` and stored when they answer.
    fn rows_of(&self, d: &Done, analysis: Option<&mut Analysis>) -> Vec<Row> {
        let now = time::now_ms();
        let mut rows = Vec::new();
        let mut ask = Vec::new();
        let created = |f: &Flagged| time::event_time(self.log_time, f.request.timestamp_ms, now);
        for (line, outcome) in d.lines.iter().zip(&d.outcomes) {
            match (outcome, analysis.as_ref()) {
                (Outcome::Noted(f), Some(a)) => a.note(row(line, f, created(f)), (**f).clone()),
                (Outcome::Flagged(f), Some(_)) if f.decided_by == "rules" => ask.push((row(line, f, created(f)), &**f)),
                (Outcome::Flagged(f), _) => rows.push(row(line, f, created(f))),
                _ => {}
            }
        }
        if let Some(a) = analysis {
            rows.extend(a.offer(ask));
        }
        rows
    }

    /// Stores rows the analysis side settled, then removes the pending files that held them.
    async fn store_settled(
        &self,
        db: &mut Lazy,
        spool: &mut Spool,
        analysis: &mut Analysis,
        rows: &[Row],
        files: Vec<PathBuf>,
        stop: &AtomicBool,
    ) {
        self.store_rows(db, spool, rows, stop).await;
        for f in files {
            analysis.forget(&f);
        }
    }

    /// Stores final rows (spooling what the store refuses), counts their decisions, and shows them.
    async fn store_rows(&self, db: &mut Lazy, spool: &mut Spool, rows: &[Row], stop: &AtomicBool) {
        if rows.is_empty() {
            return;
        }
        for r in rows {
            self.metrics.decision(&r.decided_by);
            if let (Some(e), "block") = (self.enforcer, r.action.as_str()) {
                e.ban(&r.ip_address, &r.threat_type);
            }
            if self.announce {
                announce(r, self.dry_run);
            }
        }
        match db.insert(rows).await {
            Ok(n) => {
                self.metrics.rows_stored.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), rows = rows.len(), "the store refused a batch; spooling it");
                if let Err(e) = spool.push(rows) {
                    tracing::error!(error = %format!("{e:#}"), "cannot spool either; retrying the store");
                    store_with_retry(db, rows, stop).await;
                }
            }
        }
    }
}

fn row(line: &TailLine, f: &Flagged, now: i64) -> Row {
    let top = f.findings.iter().max_by_key(|x| x.score);
    let rules: Vec<&str> = f.findings.iter().map(|x| x.rule_id.as_str()).collect();
    Row {
        ip_address: f.request.ip.clone(),
        method: f.request.method.clone(),
        url: f.request.uri.clone(),
        user_agent: f.request.user_agent.clone(),
        status: i32::from(f.request.status),
        threat_type: top.map(|t| t.category.clone()).unwrap_or_default(),
        confidence: i32::from(f.score),
        reasoning: match f.decided_by {
            "cache" => "address already decided malicious (request cache)".into(),
            _ => format!("rules: {}", rules.join(", ")),
        },
        decided_by: f.decided_by.into(),
        action: action_name(f.action.kind).into(),
        source: line.path.display().to_string(),
        created_at_ms: now,
        logged_at_ms: f.request.timestamp_ms,
        score: i32::from(f.score),
        rules: serde_json::to_string(&rules).unwrap_or_default(),
        source_file: line.file.to_string(),
        source_offset: line.offset as i64,
        tool_results: String::new(),
    }
}

pub(super) fn action_name(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Block => "block",
        ActionKind::Monitor => "monitor",
        ActionKind::None => "none",
    }
}

/// One line per decision on stdout, for the person watching.
fn announce(r: &Row, dry_run: bool) {
    let what = match (r.action.as_str(), dry_run) {
        ("block", true) => "WOULD BLOCK",
        ("block", false) => "BLOCK",
        ("monitor", _) => "MONITOR",
        _ => "FLAG",
    };
    println!(
        "{:<11} {:<15} {:<8} conf {:>2}  {:<18} {} {}",
        what,
        printable(&r.ip_address, 45),
        r.decided_by,
        r.confidence,
        printable(&r.threat_type, 18),
        printable(&r.method, 10),
        printable(&r.url, 120)
    );
}
