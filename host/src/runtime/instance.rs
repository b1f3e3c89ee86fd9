//! A live instance of one plugin version: its own store plus the world's bindings.
//!
//! Invariants:
//! - Every call sets a fresh epoch deadline first; a call that fails for any reason poisons the
//!   instance ([`Instance::is_poisoned`]) and the owner must drop it — wasmtime refuses to re-enter a
//!   component that trapped, and a half-run guest may hold broken state.
//! - Results are checked against the contract before anyone sees them: one result per input, and
//!   findings cut to sane sizes.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use super::bindings::detector::{Detector, DetectorPre};
use super::bindings::parser::{Parser, ParserPre};
use super::bindings::policy::{ResponsePolicy, ResponsePolicyPre};
use super::bindings::{Action, Assessment, Finding, Metadata, ParseResult, Request};
use super::counters::logsec_truncate;
use super::engine::{Runtime, ticks};
use super::error::{CallError, classify};
use super::state::PluginState;

/// Most findings kept per request from one detector.
pub const MAX_FINDINGS_PER_REQUEST: usize = 32;
/// Longest evidence kept, in bytes.
pub const MAX_EVIDENCE_BYTES: usize = 256;
/// Longest category or rule id kept, in bytes.
pub const MAX_LABEL_BYTES: usize = 64;

/// A pre-instantiated component of one of the three worlds.
#[derive(Clone)]
pub enum PluginPre {
    /// A `parser`.
    Parser(ParserPre<PluginState>),
    /// A `detector`.
    Detector(DetectorPre<PluginState>),
    /// A `response-policy`.
    Policy(ResponsePolicyPre<PluginState>),
}

enum Bindings {
    Parser(Parser),
    Detector(Detector),
    Policy(ResponsePolicy),
}

/// One instance of a plugin.
pub struct Instance {
    store: Store<PluginState>,
    bindings: Bindings,
    timeout: Duration,
    memory_cap: usize,
    poisoned: bool,
}

impl Instance {
    /// Instantiates `pre` in a fresh store (under the setup deadline).
    pub fn instantiate(runtime: &Runtime, pre: &PluginPre, name: Arc<str>) -> Result<Instance, CallError> {
        let mut store = runtime.new_store(name);
        let memory_cap = runtime.limits.max_memory_bytes;
        let setup = runtime.limits.setup_timeout;
        let bindings = match pre {
            PluginPre::Parser(p) => p.instantiate(&mut store).map(Bindings::Parser),
            PluginPre::Detector(p) => p.instantiate(&mut store).map(Bindings::Detector),
            PluginPre::Policy(p) => p.instantiate(&mut store).map(Bindings::Policy),
        }
        .map_err(|e| match classify(&e, setup, memory_cap) {
            CallError::Trap(t) => CallError::Instantiate(t),
            other => other,
        })?;
        Ok(Instance {
            store,
            bindings,
            timeout: runtime.limits.call_timeout,
            memory_cap,
            poisoned: false,
        })
    }

    /// Whether a failed call left this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Bytes of linear memory the instance holds now.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limits.memory_bytes
    }

    fn call<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&Bindings, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        if self.poisoned {
            return Err(CallError::Trap("instance already failed".into()));
        }
        self.store.set_epoch_deadline(ticks(timeout));
        f(&self.bindings, &mut self.store).map_err(|e| {
            self.poisoned = true;
            classify(&e, timeout, self.memory_cap)
        })
    }

    /// `metadata()`, under the setup deadline.
    pub fn metadata(&mut self, setup: Duration) -> Result<Metadata, CallError> {
        self.call(setup, |b, s| match b {
            Bindings::Parser(p) => p.call_metadata(s),
            Bindings::Detector(d) => d.call_metadata(s),
            Bindings::Policy(r) => r.call_metadata(s),
        })
    }

    /// `configure(config)`, under the setup deadline. `Ok(Err(msg))` is the plugin refusing.
    pub fn configure(&mut self, config: &str, setup: Duration) -> Result<Result<(), String>, CallError> {
        self.call(setup, |b, s| match b {
            Bindings::Parser(p) => p.call_configure(s, config),
            Bindings::Detector(d) => d.call_configure(s, config),
            Bindings::Policy(r) => r.call_configure(s, config),
        })
    }

    /// `parse-batch(lines)`: one result per line.
    pub fn parse_batch(&mut self, lines: &[String]) -> Result<Vec<ParseResult>, CallError> {
        let timeout = self.timeout;
        let out = self.call(timeout, |b, s| match b {
            Bindings::Parser(p) => p.call_parse_batch(s, lines),
            _ => Err(wasmtime::Error::msg("not a parser")),
        })?;
        self.expect_len("parse-batch", out.len(), lines.len())?;
        Ok(out)
    }

    /// `detect-batch(requests)`: one list of findings per request, cut to sane sizes.
    pub fn detect_batch(&mut self, requests: &[Request]) -> Result<Vec<Vec<Finding>>, CallError> {
        let timeout = self.timeout;
        let mut out = self.call(timeout, |b, s| match b {
            Bindings::Detector(d) => d.call_detect_batch(s, requests),
            _ => Err(wasmtime::Error::msg("not a detector")),
        })?;
        self.expect_len("detect-batch", out.len(), requests.len())?;
        for findings in &mut out {
            findings.truncate(MAX_FINDINGS_PER_REQUEST);
            for f in findings.iter_mut() {
                sanitize_finding(f);
            }
        }
        Ok(out)
    }

    /// `decide-batch(items)`: one action per assessment.
    pub fn decide_batch(&mut self, items: &[Assessment]) -> Result<Vec<Action>, CallError> {
        let timeout = self.timeout;
        let out = self.call(timeout, |b, s| match b {
            Bindings::Policy(r) => r.call_decide_batch(s, items),
            _ => Err(wasmtime::Error::msg("not a response policy")),
        })?;
        self.expect_len("decide-batch", out.len(), items.len())?;
        Ok(out)
    }

    fn expect_len(&mut self, what: &str, got: usize, want: usize) -> Result<(), CallError> {
        if got == want {
            return Ok(());
        }
        self.poisoned = true;
        Err(CallError::Contract(format!(
            "{what} returned {got} results for {want} inputs"
        )))
    }
}

fn cut(s: &mut String, max: usize) {
    let len = logsec_truncate(s, max).len();
    s.truncate(len);
}

/// Cuts a finding's strings to their limits and its score to 0..=10.
fn sanitize_finding(f: &mut Finding) {
    f.score = f.score.min(10);
    cut(&mut f.category, MAX_LABEL_BYTES);
    cut(&mut f.rule_id, MAX_LABEL_BYTES);
    cut(&mut f.evidence, MAX_EVIDENCE_BYTES);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_are_cut_to_their_limits() {
        let mut f = Finding {
            category: "c".repeat(100),
            rule_id: "r".into(),
            score: 200,
            evidence: "é".repeat(300),
        };
        sanitize_finding(&mut f);
        assert_eq!(f.score, 10);
        assert_eq!(f.category.len(), MAX_LABEL_BYTES);
        assert!(f.evidence.len() <= MAX_EVIDENCE_BYTES && f.evidence.chars().all(|c| c == 'é'));
    }
}
