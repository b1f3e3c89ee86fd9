//! Health of one loaded plugin version: call statistics and quarantine.
//!
//! Invariants:
//! - [`STRIKES`] consecutive failed calls quarantine the plugin; while quarantined every call is
//!   refused at once (the caller fails open or closed), so a broken plugin costs nothing.
//! - Quarantine lasts [`QUARANTINE_BASE`] doubled for each quarantine in a row, at most
//!   [`QUARANTINE_MAX`]. After it, the next call is a probe: one success resets the strikes, and
//!   [`HEALTHY_STREAK`] successes in a row reset the backoff.
//! - Health belongs to one plugin version; a hot swap starts the new version healthy.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::CallError;

/// Consecutive failures that quarantine a plugin (wasmCloud's restart budget is the same).
pub const STRIKES: u32 = 3;
/// First quarantine length.
pub const QUARANTINE_BASE: Duration = Duration::from_secs(1);
/// Longest quarantine: a plugin that keeps failing is retried every five minutes.
pub const QUARANTINE_MAX: Duration = Duration::from_secs(300);
/// Successes in a row after which the backoff starts over.
pub const HEALTHY_STREAK: u32 = 50;

/// Call statistics and quarantine state of one plugin version.
#[derive(Default)]
pub struct Health {
    strikes: AtomicU32,
    streak: AtomicU32,
    quarantines: AtomicU32,
    until: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that failed.
    pub errors: AtomicU64,
    /// Items (lines, requests, assessments) handled by successful calls.
    pub items: AtomicU64,
    /// Time spent in successful calls, in nanoseconds.
    pub busy_nanos: AtomicU64,
    /// Times the plugin was quarantined.
    pub quarantined_total: AtomicU64,
}

impl Health {
    /// `Err(Quarantined)` while the plugin is quarantined.
    pub fn admit(&self) -> Result<(), CallError> {
        let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        match *until {
            Some(t) if t > Instant::now() => Err(CallError::Quarantined(t - Instant::now())),
            _ => Ok(()),
        }
    }

    /// Whether the plugin is quarantined now, and for how long.
    pub fn quarantined_for(&self) -> Option<Duration> {
        self.admit().err().and_then(|e| match e {
            CallError::Quarantined(d) => Some(d),
            _ => None,
        })
    }

    /// Records a successful call over `items` items that took `elapsed`.
    pub fn success(&self, items: usize, elapsed: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.items.fetch_add(items as u64, Ordering::Relaxed);
        self.busy_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.strikes.store(0, Ordering::Relaxed);
        if self.streak.fetch_add(1, Ordering::Relaxed) + 1 >= HEALTHY_STREAK {
            self.quarantines.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failed call; returns the quarantine length when this failure started one.
    pub fn failure(&self, error: &CallError) -> Option<Duration> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.streak.store(0, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
        if self.strikes.fetch_add(1, Ordering::Relaxed) + 1 < STRIKES {
            return None;
        }
        self.strikes.store(0, Ordering::Relaxed);
        let n = self.quarantines.fetch_add(1, Ordering::Relaxed).min(16);
        let backoff = QUARANTINE_BASE.saturating_mul(1 << n).min(QUARANTINE_MAX);
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + backoff);
        self.quarantined_total.fetch_add(1, Ordering::Relaxed);
        Some(backoff)
    }

    /// The last call error, for `logsec plugins`.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantines_after_strikes_and_backs_off() {
        let h = Health::default();
        let e = CallError::Trap("x".into());
        assert_eq!(h.failure(&e), None);
        assert_eq!(h.failure(&e), None);
        assert_eq!(h.failure(&e), Some(QUARANTINE_BASE));
        assert!(h.admit().is_err());
        for _ in 0..2 {
            h.failure(&e);
        }
        assert_eq!(h.failure(&e), Some(QUARANTINE_BASE * 2));
        assert_eq!(h.last_error().as_deref(), Some("trapped: x"));
    }

    #[test]
    fn success_resets_strikes() {
        let h = Health::default();
        let e = CallError::Trap("x".into());
        h.failure(&e);
        h.failure(&e);
        h.success(1, Duration::from_micros(5));
        assert_eq!(h.failure(&e), None);
        assert!(h.admit().is_ok());
    }
}
