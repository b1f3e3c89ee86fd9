//! A store connected when it answers: a store unreachable at start-up does not stop the daemon,
//! and it is tried again every [`RETRY`] while it is down.

use std::time::{Duration, Instant};

use super::{Row, Store, redact};

/// How long an unreachable store is left alone before the next attempt.
pub const RETRY: Duration = Duration::from_secs(5);

/// A store connected when it answers.
pub struct Lazy {
    url: String,
    /// What its user does while the store is down (said in the warning).
    meanwhile: &'static str,
    store: Option<Store>,
    last_attempt: Instant,
    failed_attempts: u32,
}

impl Lazy {
    /// Connects to `url`, or notes that the store is unreachable for now; `meanwhile` tells the
    /// operator what happens until it answers.
    pub async fn open(url: &str, meanwhile: &'static str) -> Lazy {
        let mut lazy = Lazy {
            url: url.to_owned(),
            meanwhile,
            store: None,
            last_attempt: Instant::now(),
            failed_attempts: 0,
        };
        lazy.connect().await;
        lazy
    }

    async fn connect(&mut self) {
        self.last_attempt = Instant::now();
        match Store::connect(&self.url).await {
            Ok(s) => {
                tracing::info!(store = %redact(&self.url), "store connected");
                self.store = Some(s);
                self.failed_attempts = 0;
            }
            Err(e) => {
                // Said at once, then once a minute while it lasts.
                if self.failed_attempts.is_multiple_of(12) {
                    tracing::warn!(
                        store = %redact(&self.url), error = %format!("{e:#}"),
                        "the store is unreachable; {}", self.meanwhile
                    );
                }
                self.failed_attempts += 1;
            }
        }
    }

    /// The store, trying to connect again when it was unreachable for [`RETRY`].
    pub async fn get(&mut self) -> Option<&Store> {
        if self.store.is_none() && self.last_attempt.elapsed() >= RETRY {
            self.connect().await;
        }
        self.store.as_ref()
    }

    /// Inserts `rows` (see [`Store::insert`]).
    pub async fn insert(&mut self, rows: &[Row]) -> anyhow::Result<u64> {
        match self.get().await {
            Some(store) => store.insert(rows).await,
            None => anyhow::bail!("the store {} is not connected", redact(&self.url)),
        }
    }

    /// Closes the connections, waiting for writes in progress.
    pub async fn close(&self) {
        if let Some(s) = &self.store {
            s.close().await;
        }
    }
}
