//! The analysis pipeline of one worker: lines → parser → detectors → score → response policy.
//!
//! Invariants:
//! - One output per input line, in order, whatever the plugins do.
//! - Parsers and detectors fail open: a line the parser could not handle is `Unparsed` (counted), a
//!   detector that failed contributes no findings (counted). The policy fails closed: no action.
//! - The plugin set is read once per batch, so a hot swap takes effect between batches.

pub mod memory;
pub mod score;
pub mod slots;

use std::sync::Arc;

use crate::runtime::bindings::{Action, ActionKind, Assessment, Finding, ParseResult, Request};
use crate::runtime::{Instance, Registry};
use memory::{Allowlist, RequestCache, Verdict};
pub use score::combined_score;
use slots::Slots;

/// The seven categories of the mission (ARCHITECTURE §8); detectors may add more.
pub const CATEGORIES: [&str; 7] = [
    "sqli",
    "xss",
    "path_traversal",
    "nosqli",
    "ssrf",
    "command_injection",
    "sensitive_file",
];

/// Lowest combined score that makes a request worth a decision (below it the request is benign and
/// only counted). Rules scored below this are informational.
pub const DEFAULT_ESCALATE_AT: u8 = 5;

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The parser to use (`format` of a source).
    pub format: String,
    /// See [`DEFAULT_ESCALATE_AT`].
    pub escalate_at: u8,
    /// The response policy to use when several are loaded.
    pub policy: String,
    /// Addresses never analysed further and never blocked.
    pub allowlist: Arc<Allowlist>,
    /// Proxies whose requests are attributed to the client they report (`X-Forwarded-For`).
    pub trusted_proxies: Arc<Allowlist>,
    /// Addresses decided malicious recently; `None` analyses every request afresh (`logsec check`).
    pub cache: Option<Arc<RequestCache>>,
    /// The cache's clock is the requests' own log time (replay) instead of the wall clock.
    pub log_clock: bool,
    /// Analysts decide flagged requests: the cache learns an address from their final verdict,
    /// not from the rules' action.
    pub analysts: bool,
}

impl Settings {
    /// The request cache's time for `r` (Unix ms): its own log time in a replay, else `wall`.
    pub fn cache_time(&self, r: &Request, wall: i64) -> i64 {
        crate::store::time::event_time(self.log_clock, r.timestamp_ms, wall)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            format: "nginx".into(),
            escalate_at: DEFAULT_ESCALATE_AT,
            policy: "threshold".into(),
            allowlist: Arc::default(),
            trusted_proxies: Arc::default(),
            cache: None,
            log_clock: false,
            analysts: false,
        }
    }
}

/// Which parser reads a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParserChoice {
    /// A loaded parser's name (a source's `format`).
    pub name: Arc<str>,
    /// The source's own settings for it (JSON), replacing the plugin's; `None` uses the plugin's.
    pub settings: Option<Arc<str>>,
}

impl ParserChoice {
    /// The parser `name` with its own settings.
    pub fn named(name: &str) -> ParserChoice {
        ParserChoice {
            name: name.into(),
            settings: None,
        }
    }
}

/// What became of one line.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to analyse (blank line, comment).
    Skipped,
    /// The line could not be parsed; why.
    Unparsed(String),
    /// Parsed and scored below `escalate_at`.
    Clean,
    /// From an allowlisted address: not analysed.
    Allowed,
    /// Scored at or above `escalate_at`.
    Flagged(Box<Flagged>),
    /// Scored above 0 but below `escalate_at`, with analysts configured: not stored, but counted in
    /// the brain, where several from one address escalate together.
    Noted(Box<Flagged>),
}

/// A request that reached the policy.
#[derive(Debug, Clone)]
pub struct Flagged {
    /// The request.
    pub request: Request,
    /// Every detector's findings.
    pub findings: Vec<Finding>,
    /// The combined score.
    pub score: u8,
    /// The policy's action (`none` when no policy is loaded or it failed).
    pub action: Action,
    /// `rules`, or `cache` when the address was already decided malicious.
    pub decided_by: &'static str,
}

/// Failures counted while processing one batch.
#[derive(Debug, Default, Clone, Copy)]
pub struct Errors {
    /// Lines a parser call failed on (they are `Unparsed`).
    pub parser: u64,
    /// Requests a detector call failed on.
    pub detector: u64,
    /// Assessments the policy failed on.
    pub policy: u64,
}

/// One worker: its warm instances and settings.
pub struct Worker {
    registry: Arc<Registry>,
    settings: Settings,
    slots: Slots,
}

impl Worker {
    /// A worker over `registry`'s plugins.
    pub fn new(registry: Arc<Registry>, settings: Settings) -> Worker {
        Worker {
            registry,
            settings,
            slots: Slots::default(),
        }
    }

    /// Linear memory held by this worker's warm instances.
    pub fn memory_bytes(&self) -> usize {
        self.slots.memory_bytes()
    }

    /// Analyses a batch of lines with the configured format; one outcome per line, in order.
    pub fn process(&mut self, lines: &[String]) -> (Vec<Outcome>, Errors) {
        let parser = ParserChoice::named(&self.settings.format);
        self.process_as(&parser, lines)
    }

    /// Analyses a batch of lines read by `parser`.
    pub fn process_as(&mut self, parser: &ParserChoice, lines: &[String]) -> (Vec<Outcome>, Errors) {
        let set = self.registry.snapshot();
        self.slots.refresh(&set);
        let runtime = self.registry.runtime().clone();
        let mut errors = Errors::default();

        let unparsed = |why: String| lines.iter().map(|_| Outcome::Unparsed(why.clone())).collect();
        let Some(loaded) = set.parser(&parser.name) else {
            return (unparsed(format!("no parser named {:?} is loaded", parser.name)), errors);
        };
        let loaded = match &parser.settings {
            None => loaded.clone(),
            Some(settings) => match self.registry.variant(loaded, settings) {
                Ok(v) => v,
                Err(e) => {
                    return (
                        unparsed(format!("parser {} refused this source's settings: {e}", parser.name)),
                        errors,
                    );
                }
            },
        };
        let parser = &loaded;
        let parsed = self.slots.call(&runtime, parser, lines, Instance::parse_batch);

        let wall = crate::store::time::now_ms();
        let mut outcomes = Vec::with_capacity(lines.len());
        let mut requests = Vec::new();
        let mut request_line = Vec::new();
        for (i, mut result) in parsed.into_iter().enumerate() {
            if let Ok(ParseResult::Request(r)) = &mut result {
                memory::attribute_to_client(r, &self.settings.trusted_proxies);
            }
            outcomes.push(match result {
                Ok(ParseResult::Request(r)) if self.settings.allowlist.contains(&r.ip) => Outcome::Allowed,
                Ok(ParseResult::Request(r)) => match self
                    .settings
                    .cache
                    .as_ref()
                    .and_then(|c| c.get(&r.ip, self.settings.cache_time(&r, wall)))
                {
                    Some(verdict) => cached(r, verdict),
                    None => {
                        requests.push(r);
                        request_line.push(i);
                        Outcome::Clean
                    }
                },
                Ok(ParseResult::Skip) => Outcome::Skipped,
                Ok(ParseResult::Invalid(why)) => Outcome::Unparsed(why),
                Err(e) => {
                    errors.parser += 1;
                    Outcome::Unparsed(format!("parser {}: {e}", parser.name))
                }
            });
        }

        let mut findings: Vec<Vec<Finding>> = vec![Vec::new(); requests.len()];
        for detector in set.detectors() {
            let found = self.slots.call(&runtime, detector, &requests, Instance::detect_batch);
            for (all, result) in findings.iter_mut().zip(found) {
                match result {
                    Ok(f) => all.extend(f),
                    Err(_) => errors.detector += 1,
                }
            }
        }

        let mut assessments = Vec::new();
        let mut flagged_index = Vec::new();
        for (i, (request, found)) in requests.iter_mut().zip(findings.iter_mut()).enumerate() {
            let score = combined_score(found);
            if score < self.settings.escalate_at {
                if score > 0 && self.settings.analysts {
                    // Below the bar alone; the brain correlates several from one address.
                    outcomes[request_line[i]] = Outcome::Noted(Box::new(Flagged {
                        request: std::mem::replace(request, Request::empty()),
                        findings: std::mem::take(found),
                        score,
                        action: no_action("below escalate_at".into()),
                        decided_by: "rules",
                    }));
                }
                continue;
            }
            flagged_index.push(i);
            assessments.push(Assessment {
                request: std::mem::replace(request, Request::empty()),
                findings: std::mem::take(found),
                score,
                confidence: score,
                malicious: true,
                decided_by: "rules".into(),
            });
        }
        if assessments.is_empty() {
            return (outcomes, errors);
        }

        let actions = self.actions(&set, &runtime, &assessments, &mut errors);
        for ((assessment, action), i) in assessments.into_iter().zip(actions).zip(flagged_index) {
            if let (Some(cache), ActionKind::Block, false) = (&self.settings.cache, action.kind, self.settings.analysts)
            {
                let top = assessment.findings.iter().max_by_key(|f| f.score);
                let verdict = Verdict {
                    score: assessment.score,
                    threat_type: top.map(|f| f.category.clone()).unwrap_or_default(),
                };
                cache.insert(
                    &assessment.request.ip,
                    verdict,
                    self.settings.cache_time(&assessment.request, wall),
                );
            }
            outcomes[request_line[i]] = Outcome::Flagged(Box::new(Flagged {
                request: assessment.request,
                findings: assessment.findings,
                score: assessment.score,
                action,
                decided_by: "rules",
            }));
        }
        (outcomes, errors)
    }
}

impl Worker {
    /// The response policy's actions for `assessments` (an analyst's verdict, say).
    pub fn decide(&mut self, assessments: &[Assessment]) -> Vec<Action> {
        let set = self.registry.snapshot();
        self.slots.refresh(&set);
        let runtime = self.registry.runtime().clone();
        self.actions(&set, &runtime, assessments, &mut Errors::default())
    }

    fn actions(
        &mut self,
        set: &crate::runtime::PluginSet,
        runtime: &crate::runtime::Runtime,
        assessments: &[Assessment],
        errors: &mut Errors,
    ) -> Vec<Action> {
        match set.policy(&self.settings.policy) {
            Some(policy) => self
                .slots
                .call(runtime, policy, assessments, Instance::decide_batch)
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|e| {
                        errors.policy += 1;
                        no_action(format!("policy {} failed: {e}", policy.name))
                    })
                })
                .collect(),
            None => assessments
                .iter()
                .map(|_| no_action("no response policy is loaded".into()))
                .collect(),
        }
    }
}

/// A request from an address the cache holds: decided without detectors or analysts.
fn cached(request: Request, verdict: Verdict) -> Outcome {
    let finding = Finding {
        category: verdict.threat_type,
        rule_id: "cached-verdict".into(),
        score: verdict.score,
        evidence: String::new(),
    };
    Outcome::Flagged(Box::new(Flagged {
        request,
        findings: vec![finding],
        score: verdict.score,
        action: Action {
            kind: ActionKind::Block,
            ttl_seconds: 0,
            reason: "address already decided malicious".into(),
        },
        decided_by: "cache",
    }))
}

fn no_action(reason: String) -> Action {
    Action {
        kind: ActionKind::None,
        ttl_seconds: 0,
        reason,
    }
}
