//! `patterns`: the built-in signature detector.
//!
//! Configured with `rules/patterns.json` (schema in `rules/README.md`). Each request is taken apart
//! into fields (path, query arguments, user agent, referer, ...), each field is decoded the way a
//! server or application would eventually decode it ([`normalize`]), and the rules' regexes run
//! over the decoded text as a few regex sets per field ([`book`]), skipping sets that need a byte
//! the text lacks ([`gate`]). Results for the path, user agent and referer, which repeat from
//! request to request, are memoised ([`memo`]). Each matching rule gives one finding with its category, score
//! and the matched text as evidence.
//!
//! Invariants:
//! - `configure` replaces the rules only when the whole new file compiled; on error the previous
//!   rules stay active and the error names the offending rule.
//! - Detection time is linear in the size of the request (see [`normalize`] and [`book`]).
//! - Without a successful `configure` the detector has no rules and finds nothing.

pub mod blocks;
pub mod book;
pub mod gate;
pub mod memo;
pub mod normalize;
pub mod rules;
pub mod subject;

use logsec_sdk::{Detector, Finding, Request};

use crate::book::{Hit, RuleBook};
use crate::memo::Memo;
use crate::rules::Field;
use crate::subject::Subjects;

/// Fields decoded from the request line and extra fields, scanned for every request (the path is
/// memoised separately).
const REQUEST_FIELDS: [Field; 5] = [Field::Args, Field::Uri, Field::Cookie, Field::Method, Field::Encoding];

/// Fields whose values repeat across requests; their scan results are memoised.
const REPEATED_FIELDS: [Field; 2] = [Field::UserAgent, Field::Referer];

/// The detector: the compiled rules and reusable scratch space.
#[derive(Debug, Default)]
pub struct Patterns {
    book: RuleBook,
    subjects: Subjects,
    memos: [Memo; REPEATED_FIELDS.len()],
    path_memo: Memo,
    seen: Vec<bool>,
    field_seen: Vec<bool>,
    field_hits: Vec<Hit>,
    hits: Vec<Hit>,
}

impl Patterns {
    /// A detector with the rules of `json` (see [`RuleBook::from_json`]).
    pub fn with_rules(json: &str) -> Result<Self, String> {
        let mut p = Patterns::default();
        p.configure(json)?;
        Ok(p)
    }

    /// The loaded rules.
    pub fn book(&self) -> &RuleBook {
        &self.book
    }

    /// Decodes `request` and returns the raw hits; [`RuleBook::findings`] turns them into findings.
    pub fn hits(&mut self, request: &Request) -> &[Hit] {
        self.hits.clear();
        let book = &self.book;
        let needs = book.needs();
        book.begin(&mut self.seen);

        // The path: most requests repeat one seen before (pages, assets), so its result is cached.
        let path = request.uri.split('?').next().unwrap_or_default();
        let cached = self.path_memo.get(path);
        self.subjects
            .load(request, needs, cached.map(|(_, anomalies)| anomalies));
        match cached {
            Some((path_hits, _)) => merge(path_hits, &mut self.seen, &mut self.hits),
            None => {
                scan_alone(
                    book,
                    Field::Path,
                    &self.subjects,
                    &mut self.field_seen,
                    &mut self.field_hits,
                );
                self.path_memo
                    .put(path, &self.field_hits, self.subjects.path_anomalies());
                merge(&self.field_hits, &mut self.seen, &mut self.hits);
            }
        }

        for field in REQUEST_FIELDS {
            book.scan_field(field, self.subjects.get(field), &mut self.seen, &mut self.hits);
        }

        for (memo, field) in self.memos.iter_mut().zip(REPEATED_FIELDS) {
            let raw = match field {
                Field::UserAgent => request.user_agent.as_str(),
                _ => request.referer.as_str(),
            };
            if !needs.fields[field.index()] || raw.is_empty() || raw == "-" {
                continue;
            }
            match memo.get(raw) {
                Some((cached, _)) => merge(cached, &mut self.seen, &mut self.hits),
                None => {
                    self.subjects.load_one(field, raw, needs);
                    scan_alone(book, field, &self.subjects, &mut self.field_seen, &mut self.field_hits);
                    memo.put(raw, &self.field_hits, normalize::Anomalies::none());
                    merge(&self.field_hits, &mut self.seen, &mut self.hits);
                }
            }
        }
        &self.hits
    }
}

/// Scans one field on its own, so that a cached result does not depend on the other fields.
fn scan_alone(book: &RuleBook, field: Field, subjects: &Subjects, seen: &mut Vec<bool>, hits: &mut Vec<Hit>) {
    book.begin(seen);
    hits.clear();
    book.scan_field(field, subjects.get(field), seen, hits);
}

/// Adds the `cached` hits of one field whose rules have not hit yet in this request.
fn merge(cached: &[Hit], seen: &mut [bool], hits: &mut Vec<Hit>) {
    for hit in cached {
        if !seen[hit.rule] {
            seen[hit.rule] = true;
            hits.push(hit.clone());
        }
    }
}

impl Detector for Patterns {
    const NAME: &'static str = "patterns";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "signature rules (rules/patterns.json) over decoded request fields";

    fn configure(&mut self, config: &str) -> Result<(), String> {
        if config.trim().is_empty() {
            return Err("patterns: no rules given (configure with the text of rules/patterns.json)".into());
        }
        let book = RuleBook::from_json(config).map_err(|e| format!("patterns: {e}"))?;
        self.book = book;
        for memo in self.memos.iter_mut().chain([&mut self.path_memo]) {
            memo.clear();
        }
        Ok(())
    }

    fn detect(&mut self, request: &Request) -> Vec<Finding> {
        self.hits(request);
        self.book.findings(&self.hits)
    }
}

logsec_sdk::export_detector!(Patterns);

/// Small allocations of the component go through free lists (see [`blocks`]).
#[cfg(target_family = "wasm")]
#[global_allocator]
static ALLOCATOR: blocks::SmallBlocks = blocks::SmallBlocks::new();

#[cfg(test)]
mod tests;
