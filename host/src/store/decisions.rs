//! Ban decisions in the store (table `decisions`, migration 0003): the record the firewall
//! backends restore from, `logsec decisions` edits and the decisions API serves.
//!
//! Invariants:
//! - A decision is keyed by its `uuid`, the same on every agent of a fleet: storing one twice
//!   (from the pipeline and from the fleet, or two agents sharing a database) keeps one row.
//! - Lifting a decision sets `deleted_ms`; rows are never removed, so `offences` counts every ban
//!   a value ever had (fail2ban's `bantime.increment` reads its database the same way).
//! - Values are bound as parameters; the SQL text is constant.

use serde::{Deserialize, Serialize};

use super::Store;
use crate::pipeline::memory::Cidr;

/// One ban decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Identity across the fleet.
    pub uuid: String,
    /// The address or block banned.
    pub value: Cidr,
    /// `logsec` (this agent's pipeline), `manual` (`logsec decisions add`) or `fleet` (another agent).
    pub origin: String,
    /// The agent that decided it.
    pub host: String,
    /// Threat type, or the operator's reason.
    pub reason: String,
    /// 1 for the first ban of this value, 2 for the next, ...
    pub offence: u32,
    /// When it was decided (Unix ms).
    pub created_ms: i64,
    /// When it ends (Unix ms).
    pub until_ms: i64,
}

/// A decision as stored, with its row id and whether it was lifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDecision {
    /// Row id (grows with every decision stored).
    pub id: i64,
    /// The decision.
    pub decision: Decision,
    /// When an operator lifted it.
    pub deleted_ms: Option<i64>,
}

type Raw = (i64, String, String, String, String, String, i64, i64, i64, Option<i64>);

const COLUMNS: &str = "id, uuid, value, origin, host, reason, offence, created_ms, until_ms, deleted_ms";

fn decode(rows: Vec<Raw>) -> Vec<StoredDecision> {
    rows.into_iter()
        .filter_map(
            |(id, uuid, value, origin, host, reason, offence, created_ms, until_ms, deleted_ms)| {
                let Ok(value) = value.parse::<Cidr>() else {
                    tracing::warn!(id, value = %value, "a stored decision holds no address; ignored");
                    return None;
                };
                Some(StoredDecision {
                    id,
                    decision: Decision {
                        uuid,
                        value,
                        origin,
                        host,
                        reason,
                        offence: u32::try_from(offence).unwrap_or(u32::MAX),
                        created_ms,
                        until_ms,
                    },
                    deleted_ms,
                })
            },
        )
        .collect()
}

/// `sql` with its `?` placeholders numbered for PostgreSQL (`$1`, `$2`, ...).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs one `query_as` on whichever database `$store` is, binding `$arg`s in order. The SQL text
/// is built from constants only (this module's string literals and [`COLUMNS`]); every value is
/// bound, which is what `AssertSqlSafe` asserts.
macro_rules! fetch {
    ($store:expr, $ty:ty, $sql:expr, $method:ident $(, $arg:expr)*) => {{
        let sql: &str = $sql;
        match $store {
            Store::Sqlite(p) => {
                sqlx::query_as::<_, $ty>(sqlx::AssertSqlSafe(sql.to_owned()))$(.bind($arg))*.$method(p).await?
            }
            Store::Postgres(p) => {
                sqlx::query_as::<_, $ty>(sqlx::AssertSqlSafe(numbered(sql)))$(.bind($arg))*.$method(p).await?
            }
        }
    }};
}

impl Store {
    /// Stores `decisions` in one transaction; ones already stored (same uuid) are skipped.
    /// Returns how many were new.
    pub async fn insert_decisions(&self, decisions: &[Decision]) -> anyhow::Result<u64> {
        const SQL: &str = "INSERT INTO decisions (uuid, value, origin, host, reason, offence, created_ms, until_ms) \
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uuid) DO NOTHING";
        macro_rules! insert_all {
            ($pool:expr, $sql:expr) => {{
                let mut tx = $pool.begin().await?;
                let mut n = 0;
                for d in decisions {
                    n += sqlx::query(sqlx::AssertSqlSafe($sql))
                        .bind(&d.uuid)
                        .bind(d.value.to_string())
                        .bind(&d.origin)
                        .bind(&d.host)
                        .bind(d.reason.replace('\0', "\\x00"))
                        .bind(i64::from(d.offence))
                        .bind(d.created_ms)
                        .bind(d.until_ms)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                n
            }};
        }
        Ok(match self {
            Store::Sqlite(p) => insert_all!(p, SQL.to_owned()),
            Store::Postgres(p) => insert_all!(p, numbered(SQL)),
        })
    }

    /// The decisions in force at `now_ms` (not lifted, not ended), oldest first.
    pub async fn active_decisions(&self, now_ms: i64) -> anyhow::Result<Vec<StoredDecision>> {
        let sql = format!("SELECT {COLUMNS} FROM decisions WHERE until_ms > ? AND deleted_ms IS NULL ORDER BY id");
        Ok(decode(fetch!(self, Raw, &sql, fetch_all, now_ms)))
    }

    /// Decisions stored after row `id` (whatever their state), oldest first, at most `limit`.
    pub async fn decisions_after(&self, id: i64, limit: i64) -> anyhow::Result<Vec<StoredDecision>> {
        let sql = format!("SELECT {COLUMNS} FROM decisions WHERE id > ? ORDER BY id LIMIT ?");
        Ok(decode(fetch!(self, Raw, &sql, fetch_all, id, limit)))
    }

    /// Decisions lifted at or after `since_ms`.
    pub async fn lifted_since(&self, since_ms: i64) -> anyhow::Result<Vec<StoredDecision>> {
        let sql = format!("SELECT {COLUMNS} FROM decisions WHERE deleted_ms >= ? ORDER BY id");
        Ok(decode(fetch!(self, Raw, &sql, fetch_all, since_ms)))
    }

    /// Decisions lifted, or ended, between `since_ms` and `now_ms`.
    pub async fn removed_between(&self, since_ms: i64, now_ms: i64) -> anyhow::Result<Vec<StoredDecision>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM decisions WHERE deleted_ms >= ? OR (until_ms >= ? AND until_ms <= ?) ORDER BY id"
        );
        Ok(decode(fetch!(self, Raw, &sql, fetch_all, since_ms, since_ms, now_ms)))
    }

    /// How many bans `value` has had.
    pub async fn offences(&self, value: &Cidr) -> anyhow::Result<u32> {
        let (n,): (i64,) = fetch!(
            self,
            (i64,),
            "SELECT COUNT(*) FROM decisions WHERE value = ?",
            fetch_one,
            value.to_string()
        );
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Lifts the decisions in force at `now_ms` on `value` (exactly that address or block).
    /// Returns them.
    pub async fn lift(&self, value: &Cidr, now_ms: i64) -> anyhow::Result<Vec<Decision>> {
        let sql = format!(
            "UPDATE decisions SET deleted_ms = ? WHERE value = ? AND deleted_ms IS NULL AND until_ms > ? \
             RETURNING {COLUMNS}"
        );
        let rows = fetch!(self, Raw, &sql, fetch_all, now_ms, value.to_string(), now_ms);
        Ok(decode(rows).into_iter().map(|d| d.decision).collect())
    }

    /// The latest `limit` decisions, newest first; only those in force at `now_ms` unless `all`.
    pub async fn list_decisions(&self, all: bool, now_ms: i64, limit: i64) -> anyhow::Result<Vec<StoredDecision>> {
        let rows = if all {
            let sql = format!("SELECT {COLUMNS} FROM decisions ORDER BY id DESC LIMIT ?");
            fetch!(self, Raw, &sql, fetch_all, limit)
        } else {
            let sql = format!(
                "SELECT {COLUMNS} FROM decisions WHERE until_ms > ? AND deleted_ms IS NULL ORDER BY id DESC LIMIT ?"
            );
            fetch!(self, Raw, &sql, fetch_all, now_ms, limit)
        };
        Ok(decode(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered("a = ? AND b > ?"), "a = $1 AND b > $2");
    }
}
