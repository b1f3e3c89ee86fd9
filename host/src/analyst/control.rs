//! Cost and failure control for one analyst tier: a per-minute budget, a concurrency limit and a
//! circuit breaker. Over budget or with the circuit open a request is declined at once; when every
//! slot is busy it waits for one, at most until its deadline. The waiting happens in the request's
//! own task, never in the pipeline.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Consecutive failures that open the breaker.
const BREAKER_FAILURES: u32 = 5;
/// How long an open breaker declines everything before letting one trial call through.
const BREAKER_COOL_DOWN: Duration = Duration::from_secs(30);
/// Window of the per-minute budget.
const MINUTE: Duration = Duration::from_secs(60);

/// Why a tier did not take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declined {
    /// Its per-minute budget is spent.
    OverBudget,
    /// Every concurrent slot is busy.
    Busy,
    /// It failed repeatedly and is resting.
    CircuitOpen,
}

impl Declined {
    /// A short label for metrics and stored reasoning.
    pub fn label(self) -> &'static str {
        match self {
            Declined::OverBudget => "over budget",
            Declined::Busy => "busy",
            Declined::CircuitOpen => "circuit open",
        }
    }
}

/// The controls of one tier.
pub struct Control {
    per_minute: u32,
    slots: std::sync::Arc<Semaphore>,
    state: Mutex<State>,
}

struct State {
    window_start: Instant,
    started_in_window: u32,
    failures: u32,
    open_until: Option<Instant>,
    /// Set by a provider's rate-limit answer: no call before this.
    resting_until: Option<Instant>,
}

/// Permission to make one call; dropping it frees the slot.
pub struct Ticket {
    _permit: OwnedSemaphorePermit,
}

impl Control {
    /// Controls allowing `per_minute` calls a minute, `concurrency` at once.
    pub fn new(per_minute: u32, concurrency: usize) -> Control {
        Control {
            per_minute,
            slots: std::sync::Arc::new(Semaphore::new(concurrency)),
            state: Mutex::new(State {
                window_start: Instant::now(),
                started_in_window: 0,
                failures: 0,
                open_until: None,
                resting_until: None,
            }),
        }
    }

    /// A ticket for one call, or why not; waits at most `wait` for a free slot.
    pub async fn admit(&self, wait: Duration) -> Result<Ticket, Declined> {
        {
            let now = Instant::now();
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.open_until.is_some_and(|t| now < t) || s.resting_until.is_some_and(|t| now < t) {
                return Err(Declined::CircuitOpen);
            }
            if now.duration_since(s.window_start) >= MINUTE {
                s.window_start = now;
                s.started_in_window = 0;
            }
            if s.started_in_window >= self.per_minute {
                return Err(Declined::OverBudget);
            }
            s.started_in_window += 1;
        }
        let permit = match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(Declined::Busy),
        };
        // The circuit may have opened while this request waited for its slot.
        let now = Instant::now();
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.open_until.is_some_and(|t| now < t) || s.resting_until.is_some_and(|t| now < t) {
            return Err(Declined::CircuitOpen);
        }
        Ok(Ticket { _permit: permit })
    }

    /// Whether a request would be admitted now (budget left, circuit closed); takes nothing.
    pub fn open_for_calls(&self) -> bool {
        let now = Instant::now();
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let resting = s.open_until.is_some_and(|t| now < t) || s.resting_until.is_some_and(|t| now < t);
        let budget_left = now.duration_since(s.window_start) >= MINUTE || s.started_in_window < self.per_minute;
        !resting && budget_left
    }

    /// Records a call that answered.
    pub fn success(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.failures = 0;
        s.open_until = None;
    }

    /// Records a call that failed; opens the breaker after [`BREAKER_FAILURES`] in a row.
    pub fn failure(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.failures += 1;
        if s.failures >= BREAKER_FAILURES {
            if s.open_until.is_none_or(|t| Instant::now() >= t) {
                tracing::warn!(
                    failures = s.failures,
                    cool_down_s = BREAKER_COOL_DOWN.as_secs(),
                    "analyst circuit opened"
                );
            }
            s.open_until = Some(Instant::now() + BREAKER_COOL_DOWN);
        }
    }

    /// Opens the circuit at once (the server refuses connections).
    pub fn open_now(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.open_until.is_none_or(|t| Instant::now() >= t) {
            tracing::warn!(
                cool_down_s = BREAKER_COOL_DOWN.as_secs(),
                "analyst refuses connections; circuit opened"
            );
        }
        s.open_until = Some(Instant::now() + BREAKER_COOL_DOWN);
    }

    /// The provider said to wait (a day's quota spent): decline until `until`.
    pub fn rest_until(&self, until: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.resting_until = Some(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budget_concurrency_and_breaker() {
        let short = Duration::from_millis(20);
        let c = Control::new(3, 2);
        let a = c.admit(short).await.unwrap();
        let _b = c.admit(short).await.unwrap();
        assert_eq!(
            c.admit(short).await.err(),
            Some(Declined::Busy),
            "both slots taken past the wait"
        );
        drop(a);
        assert_eq!(c.admit(short).await.err(), Some(Declined::OverBudget), "3 a minute");

        let c = Control::new(100, 10);
        for _ in 0..BREAKER_FAILURES {
            c.failure();
        }
        assert_eq!(c.admit(short).await.err(), Some(Declined::CircuitOpen));
    }
}
