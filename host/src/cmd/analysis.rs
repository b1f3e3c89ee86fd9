//! The store stage's side of the analysts: flagged requests wait for their verdict beside the
//! pipeline, never in it.
//!
//! Invariants:
//! - A request put to the analysts is held here, and its row is written to `DATA_DIR/pending/`
//!   before its file's checkpoint moves past it; the row is stored when the answer comes. An agent
//!   that stops (or crashes) before the answer stores the row as a `fallback` at its next start:
//!   no row is lost.
//! - Requests with the same address and rule signature while a question is open join that question
//!   instead of asking again.
//! - At most [`MAX_OPEN_QUESTIONS`] are open; beyond that requests fall back to the rules at once.
//! - Allowlisted addresses are never blocked, whatever an analyst says.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::analyst::brain::canonical;
use crate::analyst::{Analysts, Answer, Question, signature};
use crate::pipeline::memory::Verdict as CachedVerdict;
use crate::pipeline::{Flagged, Settings, Worker};
use crate::runtime::Registry;
use crate::runtime::bindings::{ActionKind, Assessment, Finding, Request};
use crate::store::spool::Spool;
use crate::store::{Row, time};

/// Questions open at once; more fall back to the rules verdict.
const MAX_OPEN_QUESTIONS: usize = 256;
/// How long a stopping agent waits for open questions before storing them as fallbacks.
pub(super) const STOP_WAIT: Duration = Duration::from_secs(5);

/// Open questions and what to do with their answers.
pub(super) struct Analysis {
    analysts: Arc<Analysts>,
    pending: Spool,
    open: HashMap<u64, Open>,
    by_key: HashMap<(String, String), u64>,
    next_id: u64,
    tx: mpsc::UnboundedSender<(u64, Answer)>,
    rx: mpsc::UnboundedReceiver<(u64, Answer)>,
    correlated_tx: mpsc::UnboundedSender<(Row, Flagged)>,
    correlated_rx: mpsc::UnboundedReceiver<(Row, Flagged)>,
    correlate_after: u64,
    policy: Worker,
    settings: Settings,
    log_time: bool,
}

/// What the analysis side has for the store stage.
pub(super) enum Event {
    /// Question `id` was answered.
    Answer(u64, Answer),
    /// This request's address crossed `correlate_after`: put it to the analysts.
    Correlated(Box<(Row, Flagged)>),
}

/// One open question and the rows waiting for its answer.
#[derive(Default)]
struct Open {
    rows: Vec<Held>,
    files: Vec<PathBuf>,
}

struct Held {
    row: Row,
    request: Request,
    findings: Vec<Finding>,
    score: u8,
}

impl Analysis {
    /// Analysis with `analysts`; rows wait in `data_dir/pending`.
    pub(super) fn new(
        analysts: Arc<Analysts>,
        data_dir: &Path,
        registry: Arc<Registry>,
        settings: Settings,
        log_time: bool,
        correlate_after: u32,
    ) -> anyhow::Result<Analysis> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (correlated_tx, correlated_rx) = mpsc::unbounded_channel();
        Ok(Analysis {
            analysts,
            correlated_tx,
            correlated_rx,
            correlate_after: u64::from(correlate_after.max(1)),
            pending: Spool::open_named(data_dir, "pending")?,
            open: HashMap::new(),
            by_key: HashMap::new(),
            next_id: 0,
            tx,
            rx,
            policy: Worker::new(registry, settings.clone()),
            settings,
            log_time,
        })
    }

    /// Rows a previous run left waiting for an answer, as fallbacks, with the files to remove once
    /// they are stored.
    pub(super) fn leftovers(&self) -> anyhow::Result<Vec<(PathBuf, Vec<Row>)>> {
        Ok(self
            .pending
            .files()?
            .into_iter()
            .map(|(file, rows)| {
                let rows = rows
                    .into_iter()
                    .map(|r| fallback(r, "the agent stopped before the analysts answered"))
                    .collect();
                (file, rows)
            })
            .collect())
    }

    /// Removes a pending file whose rows are stored.
    pub(super) fn forget(&mut self, file: &Path) {
        self.pending.remove(file);
    }

    /// Questions open.
    pub(super) fn open_questions(&self) -> usize {
        self.open.len()
    }

    /// Takes the rules-decided rows of one batch: the ones the analysts will decide are held,
    /// the others come back to be stored now.
    pub(super) fn offer(&mut self, flagged: Vec<(Row, &Flagged)>) -> Vec<Row> {
        let mut now = Vec::new();
        let mut fresh: HashMap<u64, Vec<Held>> = HashMap::new();
        for (row, f) in flagged {
            let ip = canonical(&f.request.ip).unwrap_or_else(|| f.request.ip.clone());
            let key = (ip, signature(&f.findings));
            let id = match self.by_key.get(&key) {
                Some(id) => *id,
                None if self.open.len() >= MAX_OPEN_QUESTIONS => {
                    now.push(fallback(row, "too many questions open"));
                    continue;
                }
                None if !self.analysts.available() => {
                    now.push(fallback(row, "no tier available (budget spent or unreachable)"));
                    continue;
                }
                None => {
                    let id = self.ask(f);
                    self.by_key.insert(key, id);
                    id
                }
            };
            fresh.entry(id).or_default().push(Held {
                row,
                request: f.request.clone(),
                findings: f.findings.clone(),
                score: f.score,
            });
        }
        for (id, held) in fresh {
            let rows: Vec<Row> = held.iter().map(|h| h.row.clone()).collect();
            let open = self.open.entry(id).or_default();
            match self.pending.push_file(&rows) {
                Ok(file) => open.files.push(file),
                Err(e) => tracing::error!(
                    error = %format!("{e:#}"),
                    "cannot write rows waiting for the analysts to disk; they are lost if the agent stops now"
                ),
            }
            open.rows.extend(held);
        }
        now
    }

    /// Counts a request that scored below `escalate_at` in the brain; the one that makes
    /// `correlate_after` within the brain's ttl comes back from [`Analysis::next_event`] to be
    /// put to the analysts. (Counted in its own task: a slow brain never holds the pipeline.)
    pub(super) fn note(&self, mut row: Row, f: Flagged) {
        if !self.analysts.available() {
            return;
        }
        let (brain, tx, after) = (
            self.analysts.brain().clone(),
            self.correlated_tx.clone(),
            self.correlate_after,
        );
        tokio::spawn(async move {
            let entry = serde_json::json!({
                "at_ms": time::now_ms(),
                "by": "rules",
                "score": f.score,
                "rules": f.findings.iter().map(|x| x.rule_id.as_str()).collect::<Vec<_>>(),
            });
            brain.remember(&f.request.ip, entry).await;
            let n = brain.count_event(&f.request.ip).await;
            if n == after {
                row.reasoning = format!(
                    "{} ({n} low-scoring requests from this address within the brain's ttl)",
                    row.reasoning
                );
                let _ = tx.send((row, f));
            }
        });
    }

    fn ask(&mut self, f: &Flagged) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(id, Open::default());
        let question = Question {
            request: f.request.clone(),
            findings: f.findings.clone(),
            score: f.score,
        };
        let (analysts, tx) = (self.analysts.clone(), self.tx.clone());
        tokio::spawn(async move {
            let answer = analysts.decide(&question).await;
            let _ = tx.send((id, answer));
        });
        id
    }

    /// The next answer, or the next request whose address crossed `correlate_after`.
    pub(super) async fn next_event(&mut self) -> Event {
        tokio::select! {
            Some((id, answer)) = self.rx.recv() => Event::Answer(id, answer),
            Some(c) = self.correlated_rx.recv() => Event::Correlated(Box::new(c)),
        }
    }

    /// The next answer (pending forever when no question is open).
    pub(super) async fn next_answer(&mut self) -> (u64, Answer) {
        match self.rx.recv().await {
            Some(a) => a,
            None => std::future::pending().await,
        }
    }

    /// The rows `answer` decides, and the pending files to remove once they are stored.
    pub(super) fn answered(&mut self, id: u64, answer: &Answer) -> (Vec<Row>, Vec<PathBuf>) {
        let Some(open) = self.open.remove(&id) else {
            return (Vec::new(), Vec::new());
        };
        self.by_key.retain(|_, v| *v != id);
        let rows = open.rows.into_iter().map(|h| self.apply(answer, h)).collect();
        (rows, open.files)
    }

    /// Every open question as a fallback (the agent is stopping).
    pub(super) fn abandon(&mut self) -> (Vec<Row>, Vec<PathBuf>) {
        let mut rows = Vec::new();
        let mut files = Vec::new();
        for (_, open) in self.open.drain() {
            rows.extend(
                open.rows
                    .into_iter()
                    .map(|h| fallback(h.row, "the agent stopped before the analysts answered")),
            );
            files.extend(open.files);
        }
        self.by_key.clear();
        (rows, files)
    }

    fn apply(&mut self, answer: &Answer, h: Held) -> Row {
        let mut row = h.row;
        if !self.log_time {
            row.created_at_ms = time::now_ms();
        }
        row.tool_results = answer.tool_results.clone();
        let notes = answer.notes.join("; ");
        let Some(v) = &answer.verdict else {
            let row = fallback(
                row,
                if notes.is_empty() {
                    "no analyst answered"
                } else {
                    &notes
                },
            );
            if row.action == "block" {
                self.remember(&h.request.ip, h.score, &row.threat_type, &h.request);
            }
            return row;
        };
        row.decided_by = answer.decided_by.into();
        row.confidence = i32::from(v.confidence);
        if !v.malicious {
            row.threat_type = "none".into();
        } else if !matches!(v.threat_type.as_str(), "other" | "none") {
            row.threat_type = v.threat_type.clone();
        }
        // The analyst's reasoning first; what the rules said after it.
        row.reasoning = if notes.is_empty() {
            format!("{}: {} | {}", answer.decided_by, v.reasoning, row.reasoning)
        } else {
            format!("{}: {} ({notes}) | {}", answer.decided_by, v.reasoning, row.reasoning)
        };
        let assessment = Assessment {
            request: h.request.clone(),
            findings: h.findings,
            score: h.score,
            confidence: v.confidence,
            malicious: v.malicious,
            decided_by: answer.decided_by.into(),
        };
        let mut kind = self
            .policy
            .decide(std::slice::from_ref(&assessment))
            .pop()
            .map_or(ActionKind::None, |a| a.kind);
        if kind == ActionKind::Block && self.settings.allowlist.contains(&h.request.ip) {
            kind = ActionKind::None;
        }
        row.action = super::stage::action_name(kind).into();
        if kind == ActionKind::Block {
            self.remember(&h.request.ip, v.confidence, &row.threat_type, &h.request);
        }
        row
    }

    /// Puts a blocked address into the request cache.
    fn remember(&self, ip: &str, score: u8, threat_type: &str, request: &Request) {
        if let Some(cache) = &self.settings.cache {
            let verdict = CachedVerdict {
                score,
                threat_type: threat_type.to_owned(),
            };
            cache.insert(ip, verdict, self.settings.cache_time(request, time::now_ms()));
        }
    }
}

/// `row` decided by the rules after all, with why.
fn fallback(mut row: Row, why: &str) -> Row {
    row.decided_by = "fallback".into();
    row.reasoning = format!("{} (analysts: {why})", row.reasoning);
    row
}
