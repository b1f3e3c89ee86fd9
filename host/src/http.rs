//! The daemon's HTTP listener: `GET /healthz`, `GET /metrics`, and the decisions API that
//! CrowdSec bouncers already speak (the bouncer side of CrowdSec's Local API):
//! - `GET /v1/decisions/stream?startup=true` → `{"new": [...], "deleted": [...]}`: every decision
//!   in force on `startup=true`, then only what changed since that key's previous pull; `null` for
//!   an empty list, as CrowdSec answers. A key not seen by this process pulling without
//!   `startup=true` (its bouncer pulled before a restart) gets every decision in force as new and
//!   every decision removed in the last day (read from the store at start-up) as deleted.
//! - `GET /v1/decisions?ip=ADDR` (or `scope=ip&value=ADDR`) → the decisions covering the address,
//!   or `null`.
//!
//! Both need an `X-Api-Key` header holding one of the keys in the environment variables
//! `[http] api_keys_env` names; without one the answer is 403 `{"message":"access forbidden"}`.
//!
//! Invariants:
//! - It reads at most [`MAX_REQUEST_BYTES`] of a request and answers within [`REQUEST_TIMEOUT`];
//!   anything else gets 404 or 405. It never blocks the pipeline: it runs on the store stage's
//!   runtime and only reads counters and the ban book.
//! - Keys are compared in constant time; they never appear in logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::enforce::book::{Book, Change};
use crate::metrics::Metrics;
use crate::pipeline::memory::{Cidr, canonical};
use crate::runtime::Registry;
use crate::store::decisions::Decision;
use crate::store::time;

/// Longest request head read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the listener serves.
#[derive(Clone)]
pub struct State {
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Plugins, for `/metrics`.
    pub registry: Arc<Registry>,
    /// The ban book, for the decisions API.
    pub book: Option<Arc<Mutex<Book>>>,
    /// Bouncer API keys.
    pub api_keys: Vec<String>,
}

/// The non-empty values of the environment variables `names`.
pub fn api_keys(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| std::env::var(n).ok())
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect()
}

/// Binds `listen` and serves until the runtime ends.
pub async fn serve(listen: &str, state: State) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let api = if state.api_keys.is_empty() {
        "off (no bouncer key set)"
    } else {
        "on"
    };
    tracing::info!(
        listen,
        decisions_api = api,
        "serving /metrics, /healthz and /v1/decisions"
    );
    let cursors: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let (state, cursors) = (state.clone(), cursors.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_REQUEST_BYTES];
                let mut len = 0;
                let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    while len < buf.len() {
                        let n = conn.read(&mut buf[len..]).await?;
                        if n == 0 {
                            break;
                        }
                        len += n;
                        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    Ok::<_, std::io::Error>(())
                })
                .await;
                if !matches!(read, Ok(Ok(()))) {
                    return;
                }
                let head = String::from_utf8_lossy(&buf[..len]);
                let (status, body, kind) = route(&head, &state, &cursors);
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(())
}

type Reply = (&'static str, String, &'static str);

const JSON: &str = "application/json";

fn route(head: &str, state: &State, cursors: &Mutex<HashMap<String, u64>>) -> Reply {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let api_key = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-api-key"))
        .map(|(_, v)| v.trim().to_owned());
    match (method, path) {
        ("GET", "/healthz") => ("200 OK", "ok\n".to_owned(), "text/plain"),
        ("GET", "/metrics") => (
            "200 OK",
            state.metrics.render(&state.registry),
            "text/plain; version=0.0.4",
        ),
        ("GET", "/v1/decisions" | "/v1/decisions/stream") => {
            let key = match api_key {
                Some(k) if state.api_keys.iter().any(|known| same(known, &k)) => k,
                _ => return forbidden(),
            };
            let Some(book) = &state.book else {
                return ("503 Service Unavailable", r#"{"message":"no enforcer"}"#.into(), JSON);
            };
            let params = query_params(query);
            let book = book.lock().unwrap_or_else(|p| p.into_inner());
            if path == "/v1/decisions/stream" {
                stream(&book, &params, &key, cursors)
            } else {
                lookup(&book, &params)
            }
        }
        (_, "/healthz" | "/metrics" | "/v1/decisions" | "/v1/decisions/stream") => {
            ("405 Method Not Allowed", String::new(), "text/plain")
        }
        _ => ("404 Not Found", String::new(), "text/plain"),
    }
}

fn forbidden() -> Reply {
    ("403 Forbidden", r#"{"message":"access forbidden"}"#.into(), JSON)
}

/// Compares two keys in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `d` is of a scope the bouncer asked for (`scopes=ip,range`; all when not given).
fn in_scopes(d: &Decision, params: &HashMap<String, String>) -> bool {
    let Some(scopes) = params.get("scopes").or_else(|| params.get("scope")) else {
        return true;
    };
    let mine = if d.value.is_host() { "ip" } else { "range" };
    scopes.split(',').any(|s| s.trim().eq_ignore_ascii_case(mine))
}

fn stream(book: &Book, params: &HashMap<String, String>, key: &str, cursors: &Mutex<HashMap<String, u64>>) -> Reply {
    let startup = params.get("startup").is_some_and(|v| v == "true");
    let mut cursors = cursors.lock().unwrap_or_else(|p| p.into_inner());
    let previous = if startup { None } else { cursors.get(key).copied() };
    let (mut new, mut deleted) = (Vec::new(), Vec::new());
    match previous {
        None => {
            let mut all: Vec<(u64, &Decision)> = book.active_numbered().collect();
            all.sort_by_key(|(s, _)| *s);
            new.extend(
                all.into_iter()
                    .filter(|(_, d)| in_scopes(d, params))
                    .map(|(s, d)| lapi(s, d)),
            );
            if !startup {
                // A bouncer this process has not seen, pulling as if it had (it pulled before a
                // restart): everything removed that is remembered, since it may hold any of it.
                let mut seen: std::collections::HashSet<Cidr> = book.active().map(|d| d.value).collect();
                deleted.extend(
                    book.removed()
                        .filter(|(_, d)| in_scopes(d, params) && seen.insert(d.value))
                        .map(|(s, d)| lapi(s, d)),
                );
            }
        }
        Some(after) => {
            let changes = book.changes_after(after);
            let renewed: Vec<&Cidr> = changes
                .iter()
                .filter_map(|(_, c)| match c {
                    Change::New(d) => Some(&d.value),
                    Change::Removed(_) => None,
                })
                .collect();
            for (s, c) in &changes {
                match c {
                    Change::New(d) if in_scopes(d, params) => new.push(lapi(*s, d)),
                    // A decision replaced by a longer one on the same value is not deleted: the
                    // bouncer would drop the ban it has just been told about.
                    Change::Removed(d) if in_scopes(d, params) && !renewed.contains(&&d.value) => {
                        deleted.push(lapi(*s, d))
                    }
                    _ => {}
                }
            }
        }
    }
    cursors.insert(key.to_owned(), book.seq());
    let list = |v: Vec<Value>| if v.is_empty() { Value::Null } else { Value::Array(v) };
    (
        "200 OK",
        json!({"new": list(new), "deleted": list(deleted)}).to_string(),
        JSON,
    )
}

fn lookup(book: &Book, params: &HashMap<String, String>) -> Reply {
    let asked = params
        .get("ip")
        .or_else(|| params.get("value"))
        .or_else(|| params.get("range"));
    let Some(asked) = asked else {
        // No filter: every decision in force, as CrowdSec does.
        let all: Vec<Value> = book
            .active_numbered()
            .filter(|(_, d)| in_scopes(d, params))
            .map(|(s, d)| lapi(s, d))
            .collect();
        return ok_list(all);
    };
    let target = match asked.parse::<Cidr>().ok().or_else(|| canonical(asked).map(Cidr::host)) {
        Some(t) => t,
        None => return ("400 Bad Request", r#"{"message":"ip: not an address"}"#.into(), JSON),
    };
    let now = time::now_ms();
    let found: Vec<Value> = book
        .active_numbered()
        .filter(|(_, d)| d.value.covers(&target) && d.until_ms > now)
        .map(|(s, d)| lapi(s, d))
        .collect();
    ok_list(found)
}

fn ok_list(v: Vec<Value>) -> Reply {
    let body = if v.is_empty() {
        "null".to_owned()
    } else {
        Value::Array(v).to_string()
    };
    ("200 OK", body, JSON)
}

/// `d` in the shape of CrowdSec's `models.Decision`.
fn lapi(id: u64, d: &Decision) -> Value {
    let left_s = ((d.until_ms - time::now_ms()).max(0) as u64).div_ceil(1000);
    json!({
        "id": id,
        "origin": d.origin,
        "type": "ban",
        "scope": if d.value.is_host() { "Ip" } else { "Range" },
        "value": d.value.to_string(),
        "duration": go_duration(left_s),
        "until": time::rfc3339(d.until_ms),
        "scenario": format!("logsec/{}", d.reason),
        "simulated": false,
    })
}

/// Seconds as a Go duration string (`1h2m3s`), which every bouncer parses.
fn go_duration(s: u64) -> String {
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// `a=1&b=x%3Ay` as a map (last value wins; `+` is a space).
fn query_params(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        let p = query_params("ip=2001%3Adb8%3A%3A1&startup=true&x=%zz&y=a+b&z=%4");
        assert_eq!(p["ip"], "2001:db8::1");
        assert_eq!(p["startup"], "true");
        assert_eq!(p["x"], "%zz");
        assert_eq!(p["y"], "a b");
        assert_eq!(p["z"], "%4");
    }

    #[test]
    fn durations_read_as_go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(59), "59s");
        assert_eq!(go_duration(3599), "59m59s");
        assert_eq!(go_duration(3600 * 26 + 61), "26h1m1s");
    }

    #[test]
    fn keys_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
