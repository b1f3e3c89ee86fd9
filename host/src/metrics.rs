//! The daemon's counters and their Prometheus text exposition (`GET /metrics`).
//!
//! Invariants:
//! - Counters only grow; they are updated by the store stage (one thread) and read by the HTTP
//!   listener, so a `Mutex` per family costs nothing measurable.
//! - Label values are attacker-influenced (file paths, plugin names): they are escaped as the
//!   exposition format requires, never written raw.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::runtime::Registry;

/// Counters of one daemon.
#[derive(Default)]
pub struct Metrics {
    by_source: Mutex<BTreeMap<String, SourceCounts>>,
    findings: Mutex<BTreeMap<String, u64>>,
    decisions: Mutex<BTreeMap<String, u64>>,
    gauges: Mutex<BTreeMap<&'static str, (u64, &'static str)>>,
    /// Rows written to the store.
    pub rows_stored: std::sync::atomic::AtomicU64,
    /// The enforcer's counters, when a firewall backend runs.
    pub enforce: std::sync::OnceLock<std::sync::Arc<crate::enforce::EnforceStats>>,
    /// The analyst tiers' counters, when analysts are configured.
    pub tiers: std::sync::OnceLock<Vec<(&'static str, std::sync::Arc<crate::analyst::stats::TierStats>)>>,
}

#[derive(Default, Clone, Copy)]
struct SourceCounts {
    read: u64,
    parsed: u64,
    unparsed: u64,
}

/// Adds one to `key`'s counter (allocating the key only the first time it is seen).
fn bump(counters: &Mutex<BTreeMap<String, u64>>, key: &str) {
    let mut m = counters.lock().unwrap_or_else(|p| p.into_inner());
    match m.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            m.insert(key.to_owned(), 1);
        }
    }
}

impl Metrics {
    /// Adds lines of `source`: how many were read, and of those how many were parsed or not.
    pub fn lines(&self, source: &str, read: u64, parsed: u64, unparsed: u64) {
        let mut m = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        let c = match m.get_mut(source) {
            Some(c) => c,
            None => m.entry(source.to_owned()).or_default(),
        };
        c.read += read;
        c.parsed += parsed;
        c.unparsed += unparsed;
    }

    /// Counts a finding of `category`.
    pub fn finding(&self, category: &str) {
        bump(&self.findings, category);
    }

    /// Counts a decision made by `decided_by`.
    pub fn decision(&self, decided_by: &str) {
        bump(&self.decisions, decided_by);
    }

    /// Lines read, parsed and unparsed over every source, and decisions made.
    pub fn totals(&self) -> [u64; 4] {
        let sources = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        let mut t = [0u64; 4];
        for c in sources.values() {
            t[0] += c.read;
            t[1] += c.parsed;
            t[2] += c.unparsed;
        }
        t[3] = self.decisions.lock().unwrap_or_else(|p| p.into_inner()).values().sum();
        t
    }

    /// Sets the gauge `name` (with its help text).
    pub fn gauge(&self, name: &'static str, help: &'static str, value: u64) {
        self.gauges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, (value, help));
    }

    /// The exposition of every counter, plus the plugins' call statistics from `registry`.
    pub fn render(&self, registry: &Registry) -> String {
        let mut out = String::new();
        let sources = self.by_source.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (name, help, get) in [
            (
                "logsec_lines_read_total",
                "Lines read, by source file.",
                (|c: &SourceCounts| c.read) as fn(&SourceCounts) -> u64,
            ),
            (
                "logsec_lines_parsed_total",
                "Lines that held a request, by source file.",
                |c| c.parsed,
            ),
            (
                "logsec_lines_unparsed_total",
                "Lines no parser could read, by source file.",
                |c| c.unparsed,
            ),
        ] {
            header(&mut out, name, help, "counter");
            for (source, c) in &sources {
                let _ = writeln!(out, "{name}{{source=\"{}\"}} {}", escape(source), get(c));
            }
        }
        family(
            &mut out,
            "logsec_findings_total",
            "Findings, by category.",
            "category",
            &self.findings,
        );
        family(
            &mut out,
            "logsec_decisions_total",
            "Decisions, by the stage that made them.",
            "decided_by",
            &self.decisions,
        );
        header(
            &mut out,
            "logsec_rows_stored_total",
            "Rows written to the store.",
            "counter",
        );
        let _ = writeln!(
            out,
            "logsec_rows_stored_total {}",
            self.rows_stored.load(std::sync::atomic::Ordering::Relaxed)
        );
        if let Some(tiers) = self.tiers.get() {
            crate::analyst::stats::TierStats::render(tiers, &mut out);
        }
        if let Some(e) = self.enforce.get() {
            use std::sync::atomic::Ordering::Relaxed;
            for (name, help, kind, value) in [
                (
                    "logsec_bans_applied_total",
                    "Bans written to the firewall.",
                    "counter",
                    &e.applied,
                ),
                (
                    "logsec_bans_verified_total",
                    "Bans read back from the firewall after being written.",
                    "counter",
                    &e.verified,
                ),
                (
                    "logsec_bans_failed_total",
                    "Bans that did not take (alert on any).",
                    "counter",
                    &e.failed,
                ),
                (
                    "logsec_bans_restored_total",
                    "Bans restored from the store at start-up.",
                    "counter",
                    &e.restored,
                ),
                (
                    "logsec_bans_healed_total",
                    "Bans re-added because the firewall had lost them.",
                    "counter",
                    &e.healed,
                ),
                ("logsec_bans_active", "Bans in force.", "gauge", &e.active),
                (
                    "logsec_bans_lifted_total",
                    "Bans that ended or were lifted.",
                    "counter",
                    &e.lifted,
                ),
                (
                    "logsec_fleet_sent_total",
                    "Decisions shared with the fleet.",
                    "counter",
                    &e.fleet_sent,
                ),
                (
                    "logsec_fleet_received_total",
                    "Decisions received from other agents of the fleet.",
                    "counter",
                    &e.fleet_received,
                ),
                (
                    "logsec_backend_errors_total",
                    "Firewall backend operations that failed (retried at the next reconcile).",
                    "counter",
                    &e.backend_errors,
                ),
                (
                    "logsec_backend_up",
                    "1 when the firewall backend answered its last operation, else 0.",
                    "gauge",
                    &e.backend_up,
                ),
            ] {
                header(&mut out, name, help, kind);
                let _ = writeln!(out, "{name} {}", value.load(Relaxed));
            }
        }
        for (name, (value, help)) in self.gauges.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            header(&mut out, name, help, "gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        let set = registry.snapshot();
        let plugin_rows: Vec<(String, &crate::runtime::LoadedPlugin)> =
            set.plugins.iter().map(|p| (escape(&p.name), &**p)).collect();
        use std::sync::atomic::Ordering::Relaxed;
        type Read = fn(&crate::runtime::LoadedPlugin) -> String;
        let families: [(&str, &str, &str, Read); 4] = [
            ("logsec_plugin_calls_total", "Calls into a plugin.", "counter", |p| {
                p.health.calls.load(Relaxed).to_string()
            }),
            (
                "logsec_plugin_errors_total",
                "Failed calls (trap, timeout, out of memory, contract).",
                "counter",
                |p| p.health.errors.load(Relaxed).to_string(),
            ),
            (
                "logsec_plugin_busy_seconds_total",
                "Time spent in successful calls.",
                "counter",
                |p| (p.health.busy_nanos.load(Relaxed) as f64 / 1e9).to_string(),
            ),
            (
                "logsec_plugin_quarantined",
                "1 while a plugin is quarantined.",
                "gauge",
                |p| u8::from(p.health.quarantined_for().is_some()).to_string(),
            ),
        ];
        for (name, help, kind, read) in families {
            header(&mut out, name, help, kind);
            for (n, p) in &plugin_rows {
                let _ = writeln!(out, "{name}{{plugin=\"{n}\"}} {}", read(p));
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn family(out: &mut String, name: &str, help: &str, label: &str, map: &Mutex<BTreeMap<String, u64>>) {
    header(out, name, help, "counter");
    for (k, v) in map.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape(k));
    }
}

/// A label value as the exposition format wants it: backslash, quote and newline escaped.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_break_the_format() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
