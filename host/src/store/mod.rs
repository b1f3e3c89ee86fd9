//! Where analysed requests are kept: SQLite (default) or PostgreSQL, one schema, versioned
//! migrations (`host/migrations/`).
//!
//! Invariants:
//! - A row is keyed by the log file's fingerprint and the offset just past its line; inserting a
//!   row whose key exists does nothing. Reading is at-least-once (after a crash the lines since the
//!   last checkpoint are read again), storing is exactly-once.
//! - Rows are written in batches, one transaction per batch.
//! - Every value is bound as a parameter, never formatted into SQL: log fields are attacker data.
//! - Text holds no NUL byte (PostgreSQL refuses them): a NUL is stored as `\x00`, nginx's escape.

pub mod decisions;
pub mod lazy;
pub mod spool;
pub mod time;

use std::str::FromStr;

use anyhow::Context;
use sqlx::QueryBuilder;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// Rows per INSERT statement: SQLite allows 32,766 bound values, a row has 18.
const ROWS_PER_STATEMENT: usize = 500;

/// One analysed request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// Client address.
    pub ip_address: String,
    /// HTTP method.
    pub method: String,
    /// Request target as logged.
    pub url: String,
    /// User agent.
    pub user_agent: String,
    /// Response status.
    pub status: i32,
    /// Main category of the findings.
    pub threat_type: String,
    /// Confidence 1..10 of the decision.
    pub confidence: i32,
    /// Why (rules that matched, or an analyst's reasoning).
    pub reasoning: String,
    /// `rules`, `cache`, `tier1`, `tier2` or `fallback`.
    pub decided_by: String,
    /// `block`, `monitor` or `none`.
    pub action: String,
    /// The log file's path.
    pub source: String,
    /// When logsec decided, Unix milliseconds.
    pub created_at_ms: i64,
    /// The request's own time from the log, Unix milliseconds.
    pub logged_at_ms: Option<i64>,
    /// Combined rule score.
    pub score: i32,
    /// Rule ids, JSON array.
    pub rules: String,
    /// Fingerprint of the log file (hex).
    pub source_file: String,
    /// Offset just past the line.
    pub source_offset: i64,
    /// The analysts' tool calls and results (JSON array), empty when none.
    #[serde(default)]
    pub tool_results: String,
}

/// A stored row as `logsec explain` shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct StoredRow {
    /// When logsec decided (RFC 3339 UTC).
    pub created: String,
    /// The request's own time (RFC 3339 UTC).
    pub logged: Option<String>,
    /// Client address.
    pub ip_address: String,
    /// HTTP method.
    pub method: String,
    /// Request target.
    pub url: String,
    /// User agent.
    pub user_agent: String,
    /// Response status.
    pub status: i32,
    /// Category.
    pub threat_type: String,
    /// Confidence 1..10.
    pub confidence: i32,
    /// Why.
    pub reasoning: String,
    /// Who decided.
    pub decided_by: String,
    /// What was done.
    pub action: String,
    /// The log file.
    pub source: String,
    /// Rule score.
    pub score: i32,
    /// Rule ids (JSON array).
    pub rules: String,
    /// Tool calls and results (JSON array).
    pub tool_results: String,
}

/// A connected store.
#[derive(Debug, Clone)]
pub enum Store {
    /// `sqlite://PATH`
    Sqlite(SqlitePool),
    /// `postgres://...` (Supabase: add `sslmode=require`)
    Postgres(PgPool),
}

impl Store {
    /// Checks that `url` names a store logsec can use, without connecting: a wrong URL is a
    /// configuration error to report at start-up, an unreachable store is an outage to wait out.
    pub fn check_url(url: &str) -> anyhow::Result<()> {
        parse_url(url).map(drop)
    }

    /// Connects to `url` and applies the migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        match parse_url(url)? {
            UrlOptions::Sqlite(options) => {
                let options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(std::time::Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open {}", redact(url)))?;
                sqlx::migrate!("migrations/sqlite")
                    .run(&pool)
                    .await
                    .context("migrating the SQLite store")?;
                Ok(Store::Sqlite(pool))
            }
            UrlOptions::Postgres(options) => {
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(std::time::Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot connect to {}", redact(url)))?;
                sqlx::migrate!("migrations/postgres")
                    .run(&pool)
                    .await
                    .context("migrating the PostgreSQL store")?;
                Ok(Store::Postgres(pool))
            }
        }
    }

    /// Inserts `rows` in one transaction; rows already stored (same file and offset) are skipped.
    /// Returns how many were new.
    pub async fn insert(&self, rows: &[Row]) -> anyhow::Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let rows = &*without_nul(rows);
        // One body for both databases; PostgreSQL wants the timestamps cast from their text form.
        macro_rules! insert_all {
            ($pool:expr, $time_cast:expr) => {{
                let mut inserted = 0;
                let mut tx = $pool.begin().await?;
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut q = QueryBuilder::new(INSERT_HEAD);
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(&r.ip_address)
                            .push_bind(&r.method)
                            .push_bind(&r.url)
                            .push_bind(&r.user_agent)
                            .push_bind(r.status)
                            .push_bind(&r.threat_type)
                            .push_bind(r.confidence)
                            .push_bind(&r.reasoning)
                            .push_bind(&r.decided_by)
                            .push_bind(&r.action)
                            .push_bind(&r.source)
                            .push_bind(time::rfc3339(r.created_at_ms))
                            .push_unseparated($time_cast)
                            .push_bind(r.logged_at_ms.map(time::rfc3339))
                            .push_unseparated($time_cast)
                            .push_bind(r.score)
                            .push_bind(&r.rules)
                            .push_bind(&r.source_file)
                            .push_bind(r.source_offset)
                            .push_bind(&r.tool_results);
                    });
                    q.push(INSERT_TAIL);
                    inserted += q.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                inserted
            }};
        }
        let inserted = match self {
            Store::Sqlite(pool) => insert_all!(pool, ""),
            Store::Postgres(pool) => insert_all!(pool, "::timestamptz"),
        };
        Ok(inserted)
    }

    /// The rows of `ips` (an address in its textual forms), oldest first, at most `limit`.
    pub async fn rows_of_ip(&self, ips: &[String], limit: i64) -> anyhow::Result<Vec<StoredRow>> {
        macro_rules! select {
            ($pool:expr, $created:expr, $logged:expr) => {{
                let mut q = QueryBuilder::new(format!(
                    "SELECT {} AS created, {} AS logged, ip_address, method, url, user_agent, status, threat_type, \
                     confidence, reasoning, decided_by, action, source, score, rules, tool_results \
                     FROM analyzed_requests WHERE ip_address IN (",
                    $created, $logged
                ));
                let mut list = q.separated(", ");
                for ip in ips {
                    list.push_bind(ip);
                }
                q.push(") ORDER BY created_at, id LIMIT ").push_bind(limit);
                q.build_query_as::<StoredRow>().fetch_all($pool).await?
            }};
        }
        Ok(match self {
            Store::Sqlite(p) => select!(p, "created_at", "logged_at"),
            Store::Postgres(p) => select!(
                p,
                "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                "to_char(logged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
            ),
        })
    }

    /// Addresses blocked since `since_ms`, each with the time of its latest block (Unix ms): the
    /// bans to restore at start-up.
    pub async fn blocked_since(&self, since_ms: i64) -> anyhow::Result<Vec<(String, i64)>> {
        let since = time::rfc3339(since_ms);
        Ok(match self {
            Store::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT ip_address, CAST(ROUND((julianday(MAX(created_at)) - 2440587.5) * 86400000) AS INTEGER) \
                     FROM analyzed_requests WHERE action = 'block' AND created_at >= ? GROUP BY ip_address",
                )
                .bind(since)
                .fetch_all(p)
                .await?
            }
            Store::Postgres(p) => {
                sqlx::query_as(
                    "SELECT ip_address, (EXTRACT(EPOCH FROM MAX(created_at)) * 1000)::BIGINT \
                     FROM analyzed_requests WHERE action = 'block' AND created_at >= $1::timestamptz GROUP BY ip_address",
                )
                .bind(since)
                .fetch_all(p)
                .await?
            }
        })
    }

    /// Number of stored rows.
    pub async fn count(&self) -> anyhow::Result<i64> {
        Ok(match self {
            Store::Sqlite(p) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM analyzed_requests")
                    .fetch_one(p)
                    .await?
            }
            Store::Postgres(p) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM analyzed_requests")
                    .fetch_one(p)
                    .await?
            }
        })
    }

    /// Closes the connections, waiting for writes in progress.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(p) => p.close().await,
            Store::Postgres(p) => p.close().await,
        }
    }
}

/// A store URL, parsed for its database.
enum UrlOptions {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

/// Parses `url` (`sqlite:…` or `postgres:`/`postgresql:…`) without connecting.
fn parse_url(url: &str) -> anyhow::Result<UrlOptions> {
    let invalid = || format!("invalid store url {}", redact(url));
    if url.starts_with("sqlite:") {
        Ok(UrlOptions::Sqlite(
            SqliteConnectOptions::from_str(url).with_context(invalid)?,
        ))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(UrlOptions::Postgres(
            PgConnectOptions::from_str(url).with_context(invalid)?,
        ))
    } else {
        anyhow::bail!(
            "store url must start with sqlite:// or postgres://, got {}",
            redact(url)
        )
    }
}

/// `rows`, with every NUL in their text written as `\x00` (copied only when there is one).
fn without_nul(rows: &[Row]) -> std::borrow::Cow<'_, [Row]> {
    let has_nul = |r: &Row| {
        [
            &r.ip_address,
            &r.method,
            &r.url,
            &r.user_agent,
            &r.threat_type,
            &r.reasoning,
            &r.source,
            &r.rules,
            &r.tool_results,
        ]
        .iter()
        .any(|s| s.contains('\0'))
    };
    if !rows.iter().any(has_nul) {
        return std::borrow::Cow::Borrowed(rows);
    }
    let fix = |s: &String| s.replace('\0', "\\x00");
    std::borrow::Cow::Owned(
        rows.iter()
            .map(|r| Row {
                ip_address: fix(&r.ip_address),
                method: fix(&r.method),
                url: fix(&r.url),
                user_agent: fix(&r.user_agent),
                threat_type: fix(&r.threat_type),
                reasoning: fix(&r.reasoning),
                source: fix(&r.source),
                rules: fix(&r.rules),
                tool_results: fix(&r.tool_results),
                ..r.clone()
            })
            .collect(),
    )
}

const INSERT_HEAD: &str = "INSERT INTO analyzed_requests (ip_address, method, url, user_agent, status, threat_type, \
     confidence, reasoning, decided_by, action, source, created_at, logged_at, score, rules, source_file, \
     source_offset, tool_results) ";
const INSERT_TAIL: &str = " ON CONFLICT (source_file, source_offset) DO NOTHING";

/// `url` with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
