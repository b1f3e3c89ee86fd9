//! `logsec explain IP`: everything logsec knows about one address — its stored requests with the
//! rules' findings, each tier's verdict and reasoning, the tools' results and the actions — plus
//! what the brain remembers of it. Readable in a terminal, or one JSON document with `--json`.
//!
//! Stored text is attacker data: it is printed through `printable` (control characters escaped),
//! so a log line cannot drive the operator's terminal.

use std::io::Write;

use anyhow::Context;
use serde_json::{Value, json};

use super::check::printable;
use crate::analyst::brain::{Brain, canonical};
use crate::config::Config;
use crate::store::{Store, StoredRow};

/// Requests shown at most.
const MAX_ROWS: i64 = 10_000;

/// Writes the explanation of `ip` to `out`.
pub fn explain(config: &Config, ip: &str, json_out: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let canon = canonical(ip).with_context(|| format!("{:?} is not an IP address", printable(ip, 60)))?;
    let mut forms = vec![canon.clone()];
    if canon.contains('.') {
        forms.push(format!("::ffff:{canon}"));
    }
    if ip != canon {
        forms.push(ip.to_owned());
    }
    let store_url = config.store_url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (rows, memory) = rt.block_on(async {
        let store = Store::connect(&store_url).await?;
        let rows = store.rows_of_ip(&forms, MAX_ROWS).await?;
        store.close().await;
        let memory = brain_memory(config, &canon).await;
        anyhow::Ok((rows, memory))
    })?;
    if json_out {
        let doc = json!({"ip": canon, "requests": rows, "brain": memory});
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        render(&canon, &rows, &memory, out)?;
    }
    Ok(())
}

/// What the brain holds about `ip`; `null` when it is in-process (`memory://`) or unreachable.
async fn brain_memory(config: &Config, ip: &str) -> Value {
    if config.brain.url.starts_with("memory:") {
        return Value::Null;
    }
    match Brain::connect_with_ca(&config.brain.url, config.brain.ttl.0, config.brain.ca_file.as_deref()).await {
        Ok(brain) => json!({
            "monitoring": brain.history(ip).await,
            "abuseipdb": brain.get("abuseipdb", ip, None).await,
            "virustotal": brain.get("virustotal", ip, None).await,
        }),
        Err(e) => json!({"unreachable": format!("{e:#}")}),
    }
}

fn render(ip: &str, rows: &[StoredRow], memory: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let blocked = rows.iter().filter(|r| r.action == "block").count();
    match (rows.first(), rows.last()) {
        (Some(first), Some(last)) => writeln!(
            out,
            "{ip}: {} stored requests from {} to {}, {} blocked",
            rows.len(),
            first.logged.as_deref().unwrap_or(&first.created),
            last.logged.as_deref().unwrap_or(&last.created),
            blocked
        )?,
        _ => writeln!(out, "{ip}: no stored requests")?,
    }
    match memory {
        Value::Null => writeln!(out, "  brain: in-process (memory://), nothing to read from here")?,
        m if m.get("unreachable").is_some() => writeln!(
            out,
            "  brain: unreachable ({})",
            printable(m["unreachable"].as_str().unwrap_or(""), 200)
        )?,
        m => {
            for (name, v) in [("AbuseIPDB", &m["abuseipdb"]), ("VirusTotal", &m["virustotal"])] {
                if !v.is_null() {
                    writeln!(out, "  {name} (cached): {}", printable(&compact(v), 200))?;
                }
            }
            let entries = m["monitoring"].as_array().map_or(&[][..], Vec::as_slice);
            if !entries.is_empty() {
                writeln!(out, "  monitoring entries in the brain:")?;
                for e in entries {
                    writeln!(out, "    {}", printable(&compact(e), 200))?;
                }
            }
        }
    }
    for r in rows {
        writeln!(out)?;
        writeln!(
            out,
            "{}  {} {}  -> {}",
            r.logged.as_deref().unwrap_or(&r.created),
            printable(&r.method, 10),
            printable(&r.url, 160),
            r.status
        )?;
        writeln!(out, "    user agent  {}", printable(&r.user_agent, 120))?;
        let rules: Vec<String> = serde_json::from_str(&r.rules).unwrap_or_default();
        writeln!(
            out,
            "    rules       score {}  {}",
            r.score,
            printable(&rules.join(", "), 160)
        )?;
        writeln!(
            out,
            "    decided by  {}  {}  confidence {}  {}",
            r.decided_by,
            if r.threat_type == "none" {
                "benign".to_owned()
            } else {
                printable(&r.threat_type, 30)
            },
            r.confidence,
            printable(&r.reasoning, 300)
        )?;
        if let Ok(Value::Array(tools)) = serde_json::from_str::<Value>(&r.tool_results) {
            for t in tools {
                writeln!(
                    out,
                    "    tool        {} -> {}",
                    printable(t["tool"].as_str().unwrap_or("?"), 40),
                    printable(&compact(&t["result"]), 200)
                )?;
            }
        }
        writeln!(out, "    action      {}  (decided {})", r.action, r.created)?;
    }
    Ok(())
}

/// `v` as one line: `key=value` pairs for an object.
fn compact(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match (k.as_str(), v) {
                ("at_ms", Value::Number(n)) => format!("at={}", crate::store::time::rfc3339(n.as_i64().unwrap_or(0))),
                (_, Value::String(s)) => format!("{k}={s}"),
                (_, other) => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}
