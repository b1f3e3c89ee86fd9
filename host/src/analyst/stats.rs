//! Counters of one analyst tier, rendered into `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::control::Declined;

/// Upper bounds of the latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// What one tier did.
#[derive(Default)]
pub struct TierStats {
    /// HTTP calls answered.
    pub calls: AtomicU64,
    /// HTTP calls that failed (after retries).
    pub errors: AtomicU64,
    /// Tokens used.
    pub tokens: AtomicU64,
    /// Answers that were not a verdict.
    pub unparsable: AtomicU64,
    /// Requests declined: over budget, busy, circuit open.
    pub declined: [AtomicU64; 3],
    /// Call latency: counts per bucket (the last is +Inf), and the sum in microseconds.
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of call latencies, microseconds.
    pub latency_sum_us: AtomicU64,
}

impl TierStats {
    /// Records one call: its latency and, when it answered, its tokens.
    pub fn record(&self, took: Duration, tokens: Option<u64>) {
        match tokens {
            Some(t) => {
                self.calls.fetch_add(1, Relaxed);
                self.tokens.fetch_add(t, Relaxed);
            }
            None => {
                self.errors.fetch_add(1, Relaxed);
            }
        }
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// Records a declined request.
    pub fn declined(&self, d: Declined) {
        let i = match d {
            Declined::OverBudget => 0,
            Declined::Busy => 1,
            Declined::CircuitOpen => 2,
        };
        self.declined[i].fetch_add(1, Relaxed);
    }

    /// The Prometheus exposition of `tiers`.
    pub fn render(tiers: &[(&'static str, std::sync::Arc<TierStats>)], out: &mut String) {
        use std::fmt::Write;
        if tiers.is_empty() {
            return;
        }
        for (name, help, get) in [
            (
                "logsec_analyst_calls_total",
                "Analyst calls answered.",
                (|s: &TierStats| s.calls.load(Relaxed)) as fn(&TierStats) -> u64,
            ),
            (
                "logsec_analyst_errors_total",
                "Analyst calls that failed after retries.",
                |s| s.errors.load(Relaxed),
            ),
            ("logsec_analyst_tokens_total", "Tokens used by analyst calls.", |s| {
                s.tokens.load(Relaxed)
            }),
            (
                "logsec_analyst_unparsable_total",
                "Analyst answers that were not a verdict.",
                |s| s.unparsable.load(Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (tier, s) in tiers {
                let _ = writeln!(out, "{name}{{tier=\"{tier}\"}} {}", get(s));
            }
        }
        let name = "logsec_analyst_declined_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests a tier declined (the next tier or the rules decided).\n# TYPE {name} counter"
        );
        for (tier, s) in tiers {
            for (i, reason) in ["over_budget", "busy", "circuit_open"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}{{tier=\"{tier}\",reason=\"{reason}\"}} {}",
                    s.declined[i].load(Relaxed)
                );
            }
        }
        let name = "logsec_analyst_latency_seconds";
        let _ = writeln!(out, "# HELP {name} Analyst call latency.\n# TYPE {name} histogram");
        for (tier, s) in tiers {
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += s.latency_buckets[i].load(Relaxed);
                let _ = writeln!(out, "{name}_bucket{{tier=\"{tier}\",le=\"{bound}\"}} {cumulative}");
            }
            cumulative += s.latency_buckets[LATENCY_BUCKETS.len()].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{tier=\"{tier}\",le=\"+Inf\"}} {cumulative}");
            let _ = writeln!(
                out,
                "{name}_sum{{tier=\"{tier}\"}} {}",
                s.latency_sum_us.load(Relaxed) as f64 / 1e6
            );
            let _ = writeln!(out, "{name}_count{{tier=\"{tier}\"}} {cumulative}");
        }
    }
}
