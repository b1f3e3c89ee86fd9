//! `logsec decisions list|add|delete`: the ban decisions in the store, for the operator.
//!
//! The store is the record: a running daemon reads it every few seconds, so an added ban is
//! applied and a deleted one lifted without a restart. With a Redis brain (and `[response]
//! share`), the change also goes to the fleet's stream at once, which every agent — the local
//! daemon included — applies within a second.

use std::io::Write;

use anyhow::Context;

use super::check::printable;
use crate::config::{Config, HumanDuration};
use crate::enforce::fleet::Op;
use crate::pipeline::memory::Cidr;
use crate::store::Store;
use crate::store::decisions::{Decision, StoredDecision};
use crate::store::time;

/// What to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Show decisions (`all`: also ended and lifted ones).
    List {
        /// Include ended and lifted decisions.
        all: bool,
        /// One JSON object per line.
        json: bool,
        /// Most rows shown.
        limit: i64,
    },
    /// Ban an address or block.
    Add {
        /// Address or CIDR block.
        value: String,
        /// Length (default: the policy's length for the value's next offence).
        duration: Option<HumanDuration>,
        /// Why.
        reason: String,
    },
    /// Lift the bans on an address or block.
    Delete {
        /// Address or CIDR block.
        value: String,
    },
}

/// Runs `action`; returns whether it did what was asked (a delete that found nothing did not).
pub fn decisions(config: &Config, action: Action, out: &mut dyn Write) -> anyhow::Result<bool> {
    if config.store.url.is_none() {
        // The default store lives in the data directory, which the daemon creates; so does this.
        std::fs::create_dir_all(&config.agent.data_dir)
            .with_context(|| format!("cannot create {}", config.agent.data_dir.display()))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = Store::connect(&config.store_url()).await?;
        let done = match action {
            Action::List { all, json, limit } => {
                let rows = store.list_decisions(all, time::now_ms(), limit).await?;
                list(&rows, json, out)?;
                true
            }
            Action::Add {
                value,
                duration,
                reason,
            } => add(config, &store, &value, duration, reason, out).await?,
            Action::Delete { value } => delete(config, &store, &value, out).await?,
        };
        store.close().await;
        Ok(done)
    })
}

fn parse_value(value: &str) -> anyhow::Result<Cidr> {
    value
        .parse::<Cidr>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", printable(value, 60)))
}

async fn add(
    config: &Config,
    store: &Store,
    value: &str,
    duration: Option<HumanDuration>,
    reason: String,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let value = parse_value(value)?;
    anyhow::ensure!(
        !super::run::allowlist(config)?.overlaps(&value),
        "{value} is (or holds) an allowlisted address; logsec never bans it"
    );
    let policy = super::run::policy(config);
    let offence = store.offences(&value).await? + 1;
    let now = time::now_ms();
    let length = match duration {
        Some(d) => i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX),
        None => policy.ttl_ms(offence),
    };
    let decision = Decision {
        uuid: format!("{}-{now:x}-manual", crate::enforce::instance_id()),
        value,
        origin: "manual".into(),
        host: config.agent.name(),
        reason,
        offence,
        created_ms: now,
        until_ms: now.saturating_add(length),
    };
    store.insert_decisions(std::slice::from_ref(&decision)).await?;
    share(config, Op::Add, std::slice::from_ref(&decision)).await;
    writeln!(
        out,
        "banned {value} until {} (offence {offence})",
        time::rfc3339(decision.until_ms)
    )?;
    Ok(true)
}

async fn delete(config: &Config, store: &Store, value: &str, out: &mut dyn Write) -> anyhow::Result<bool> {
    let value = parse_value(value)?;
    let lifted = store.lift(&value, time::now_ms()).await?;
    if lifted.is_empty() {
        writeln!(out, "no decision in force on {value}")?;
        return Ok(false);
    }
    share(config, Op::Lift, &lifted).await;
    writeln!(out, "lifted {} decision(s) on {value}", lifted.len())?;
    Ok(true)
}

/// Tells the fleet, when there is one; a Redis that does not answer is a warning (the daemons
/// read the store anyway).
async fn share(config: &Config, op: Op, decisions: &[Decision]) {
    let mut fleet = match super::run::fleet(config) {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(e) => {
            eprintln!("logsec: warning: cannot share with the fleet: {e:#}");
            return;
        }
    };
    for d in decisions {
        if let Err(e) = fleet.publish(op, d) {
            eprintln!(
                "logsec: warning: cannot share with the fleet ({e:#}); agents on this store pick it up within seconds"
            );
            return;
        }
    }
}

fn list(rows: &[StoredDecision], json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let now = time::now_ms();
    let state = |r: &StoredDecision| match (r.deleted_ms, r.decision.until_ms > now) {
        (Some(_), _) => "lifted",
        (None, true) => "active",
        (None, false) => "ended",
    };
    if json {
        for r in rows {
            let d = &r.decision;
            let line = serde_json::json!({
                "id": r.id, "uuid": d.uuid, "value": d.value, "origin": d.origin, "host": d.host,
                "reason": d.reason, "offence": d.offence, "created": time::rfc3339(d.created_ms),
                "until": time::rfc3339(d.until_ms), "state": state(r),
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(out, "no decisions")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>6}  {:<20} {:<7} {:<7} {:>7}  {:<24} {:<16} reason",
        "id", "value", "state", "origin", "offence", "until", "host"
    )?;
    for r in rows {
        let d = &r.decision;
        writeln!(
            out,
            "{:>6}  {:<20} {:<7} {:<7} {:>7}  {:<24} {:<16} {}",
            r.id,
            d.value.to_string(),
            state(r),
            printable(&d.origin, 7),
            d.offence,
            time::rfc3339(d.until_ms),
            printable(&d.host, 16),
            printable(&d.reason, 60)
        )
        .context("writing the list")?;
    }
    Ok(())
}
