//! Ban decisions end to end, with the dry-run backend: the CrowdSec-compatible decisions API
//! (shape, key, stream of new and deleted decisions), block aggregation, longer bans for repeat
//! offenders, `logsec decisions list|add|delete` reaching a running daemon, and two agents on one
//! Redis sharing their bans.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::{config_with_log, free_port, start_with_env, stop};
use super::{KillOnDrop, http_get, line};

const KEY: &str = "bouncer-key-for-tests-0123456789";

fn json(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path, Some(KEY));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Waits until `f` holds (at most 20 s); false when it never did.
fn eventually(f: impl FnMut() -> bool) -> bool {
    super::eventually(Duration::from_secs(20), f)
}

fn attack(log: &Path, ip: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let uri = "/item.php?id=1%27%20union%20select%20password%20from%20users--";
    writeln!(f, "{}", line(ip, uri, "sqlmap/1.8")).unwrap();
}

fn logsec(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logsec")).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn values(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|d| d["value"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Starts `logsec run` with a bouncer key in its environment.
fn start_with_key(config: &Path) -> KillOnDrop {
    start_with_env(config, &[("LOGSEC_BOUNCER_KEY", KEY)])
}

#[test]
fn decisions_api_aggregation_repeat_offenders_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let port = free_port();
    let (log, config) = config_with_log(
        w,
        &format!(
            "[response]\nbackend = \"log\"\nban_ttl = \"5s\"\nban_factor = 3.0\naggregate_after = 2\n\
             trusted_proxies = [\"10.0.0.0/8\"]\n\
             allowlist = [\"127.0.0.0/8\", \"198.51.101.200/32\"]\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let cfg = config.to_str().unwrap();
    let daemon = start_with_key(&config);
    let daemon_log = || std::fs::read_to_string(w.join("daemon.log")).unwrap_or_default();

    // The key is required.
    let (status, body) = http_get(port, "/v1/decisions/stream?startup=true", None);
    assert_eq!((status, body.as_str()), (403, r#"{"message":"access forbidden"}"#));
    assert_eq!(
        http_get(port, "/v1/decisions/stream?startup=true", Some("wrong")).0,
        403
    );
    let empty = json(port, "/v1/decisions/stream?startup=true");
    assert_eq!(empty, serde_json::json!({"new": null, "deleted": null}));

    // Two attackers of one /24: two bans, then the block (aggregate_after = 2).
    attack(&log, "198.51.100.1");
    attack(&log, "198.51.100.2");
    assert!(
        eventually(|| !json(port, "/v1/decisions?ip=198.51.100.9").is_null()),
        "the block was not banned; daemon log:\n{}",
        daemon_log()
    );
    let stream = json(port, "/v1/decisions/stream");
    let mut new = values(&stream["new"]);
    new.sort();
    assert_eq!(new, ["198.51.100.0/24", "198.51.100.1", "198.51.100.2"], "{stream}");
    for d in stream["new"].as_array().unwrap() {
        assert!(d["id"].is_u64(), "{d}");
        assert_eq!(d["type"], "ban");
        assert_eq!(d["origin"], "logsec");
        let range = d["value"].as_str().unwrap().contains('/');
        assert_eq!(d["scope"], if range { "Range" } else { "Ip" });
        assert!(d["duration"].as_str().unwrap().ends_with('s'), "{d}");
        assert_eq!(d["simulated"], false);
        if !range {
            assert_eq!(d["scenario"], "logsec/sqli", "{d}");
        }
    }
    // Nothing new since: the stream is empty.
    assert_eq!(
        json(port, "/v1/decisions/stream"),
        serde_json::json!({"new": null, "deleted": null})
    );
    // A bouncer asking about one address gets the decisions that cover it.
    let about = json(port, "/v1/decisions?ip=198.51.100.1");
    let mut covering = values(&about);
    covering.sort();
    assert_eq!(covering, ["198.51.100.0/24", "198.51.100.1"]);
    assert!(json(port, "/v1/decisions?ip=192.0.2.1").is_null());

    // An operator lifts the block: the stream reports it deleted.
    let (ok, out) = logsec(&["decisions", "delete", "--config", cfg, "198.51.100.0/24"]);
    assert!(ok, "{out}");
    assert!(
        eventually(|| json(port, "/v1/decisions?ip=198.51.100.9").is_null()),
        "the lifted block is still in force; daemon log:\n{}",
        daemon_log()
    );
    let stream = json(port, "/v1/decisions/stream");
    assert!(
        values(&stream["deleted"]).contains(&"198.51.100.0/24".to_owned()),
        "{stream}"
    );

    // Repeat offender: once the 5 s ban of .1 has ended, a new attack bans it 3 × longer.
    assert!(eventually(|| json(port, "/v1/decisions?ip=198.51.100.1").is_null()));
    attack(&log, "198.51.100.1");
    assert!(eventually(|| !json(port, "/v1/decisions?ip=198.51.100.1").is_null()));
    let (ok, listed) = logsec(&["decisions", "list", "--config", cfg, "--all", "--json"]);
    assert!(ok, "{listed}");
    let rows: Vec<Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of_1: Vec<&Value> = rows.iter().filter(|r| r["value"] == "198.51.100.1").collect();
    assert_eq!(of_1.len(), 2, "{listed}");
    assert_eq!(of_1[0]["offence"], 2, "newest first: {listed}");
    assert_eq!(of_1[1]["offence"], 1);
    let secs = |r: &Value, k: &str| {
        let t = r[k].as_str().unwrap();
        // RFC 3339 UTC with milliseconds: compare seconds of the day (the test runs in minutes).
        let hms: Vec<f64> = t[11..23].split(':').map(|x| x.parse().unwrap()).collect();
        hms[0] * 3600.0 + hms[1] * 60.0 + hms[2]
    };
    let length = secs(of_1[0], "until") - secs(of_1[0], "created");
    assert!((length - 15.0).abs() < 0.01, "second ban lasts 5 s × 3: {length}");

    // A ban added by hand reaches the running daemon; an allowlisted address is refused.
    let (ok, out) = logsec(&[
        "decisions",
        "add",
        "--config",
        cfg,
        "--duration",
        "1h",
        "--reason",
        "scanner",
        "203.0.113.50",
    ]);
    assert!(ok, "{out}");
    assert!(
        eventually(|| {
            let d = json(port, "/v1/decisions?ip=203.0.113.50");
            d[0]["origin"] == "manual" && d[0]["scenario"] == "logsec/scanner"
        }),
        "daemon log:\n{}",
        daemon_log()
    );
    let (ok, out) = logsec(&["decisions", "add", "--config", cfg, "198.51.101.200"]);
    assert!(!ok && out.contains("allowlisted"), "{out}");
    let (ok, out) = logsec(&["decisions", "add", "--config", cfg, "198.51.101.0/24"]);
    assert!(
        !ok && out.contains("allowlisted"),
        "a block holding an allowlisted address: {out}"
    );
    let (ok, out) = logsec(&["decisions", "delete", "--config", cfg, "192.0.2.99"]);
    assert!(!ok && out.contains("no decision"), "{out}");
    let (ok, out) = logsec(&["decisions", "add", "--config", cfg, "not-an-address; rm -rf /"]);
    assert!(!ok && out.contains("not an address"), "{out}");

    // Behind a trusted proxy, the ban goes to the client the proxy reported, never to the proxy;
    // an untrusted address cannot pass the blame on with a header of its own.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let uri = "/item.php?id=1%27%20union%20select%20password%20from%20users--";
    writeln!(f, "{} \"203.0.113.99\"", line("10.0.0.2", uri, "sqlmap/1.8")).unwrap();
    writeln!(f, "{} \"198.18.7.98\"", line("192.0.2.44", uri, "sqlmap/1.8")).unwrap();
    drop(f);
    assert!(
        eventually(|| !json(port, "/v1/decisions?ip=192.0.2.44").is_null()),
        "daemon log:\n{}",
        daemon_log()
    );
    assert!(
        !json(port, "/v1/decisions?ip=203.0.113.99").is_null(),
        "the client behind the proxy is banned"
    );
    assert!(json(port, "/v1/decisions?ip=10.0.0.2").is_null(), "the proxy is not");
    assert!(
        json(port, "/v1/decisions?ip=198.18.7.98").is_null(),
        "a forged header names nobody"
    );

    let metrics = super::daemon::get(port, "/metrics");
    assert!(metrics.contains("logsec_bans_active "), "{metrics}");
    stop(daemon);

    // Lifted while the daemon is down: a bouncer that pulled before the restart hears of it.
    let (ok, out) = logsec(&["decisions", "delete", "--config", cfg, "203.0.113.50"]);
    assert!(ok, "{out}");
    let (ok, out) = logsec(&["decisions", "add", "--config", cfg, "--duration", "1h", "198.18.9.9"]);
    assert!(ok, "{out}");
    let daemon = start_with_key(&config);
    let stream = json(port, "/v1/decisions/stream");
    let (new, deleted) = (values(&stream["new"]), values(&stream["deleted"]));
    assert!(deleted.contains(&"203.0.113.50".to_owned()), "{stream}");
    assert!(new.contains(&"198.18.9.9".to_owned()), "{stream}");
    assert!(!deleted.contains(&"198.18.9.9".to_owned()), "{stream}");
    stop(daemon);
}

#[test]
fn a_failing_backend_is_reported_and_analysis_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let port = free_port();
    let (log, config) = config_with_log(
        w,
        &format!("[response]\nbackend = \"nftables\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    // No `nft` on this PATH: the backend cannot work.
    let daemon = start_with_env(&config, &[("PATH", w.to_str().unwrap()), ("LOGSEC_BOUNCER_KEY", KEY)]);
    attack(&log, "203.0.113.70");
    assert!(
        eventually(|| !json(port, "/v1/decisions?ip=203.0.113.70").is_null()),
        "the decision is made even though it cannot be enforced here"
    );
    let metrics = super::daemon::get(port, "/metrics");
    for want in ["logsec_backend_up 0", "logsec_rows_stored_total 1"] {
        assert!(metrics.contains(want), "{want}: {metrics}");
    }
    let text = std::fs::read_to_string(w.join("daemon.log")).unwrap();
    assert!(text.contains("cannot run nft"), "the reason is given:\n{text}");
    stop(daemon);
}

fn redis_or_skip() -> bool {
    let up = std::net::TcpStream::connect_timeout(&"127.0.0.1:6379".parse().unwrap(), Duration::from_secs(1)).is_ok();
    if !up {
        assert_ne!(
            std::env::var("LOGSEC_REQUIRE_ALL").as_deref(),
            Ok("1"),
            "Redis at 127.0.0.1:6379 is required (LOGSEC_REQUIRE_ALL=1)"
        );
        eprintln!("skipped: Redis is not running at 127.0.0.1:6379");
    }
    up
}

#[test]
fn two_agents_on_one_redis_share_their_bans() {
    if !redis_or_skip() {
        return;
    }
    let stream = format!("logsec:test:{}:{}", std::process::id(), logsec::store::time::now_ms());
    let agent = |name: &str, allow: &str| {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (log, config) = config_with_log(
            dir.path(),
            &format!(
                "[brain]\nurl = \"redis://127.0.0.1:6379/12\"\n\n[response]\nbackend = \"log\"\nban_ttl = \"1h\"\n\
                 fleet_stream = {stream:?}\nallowlist = [\"127.0.0.0/8\", {allow:?}]\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
            ),
        );
        let text =
            std::fs::read_to_string(&config)
                .unwrap()
                .replacen("[agent]\n", &format!("[agent]\nname = {name:?}\n"), 1);
        std::fs::write(&config, text).unwrap();
        (dir, port, log, config)
    };
    let (dir_a, port_a, log_a, config_a) = agent("web-a", "192.0.2.254/32");
    let (dir_b, port_b, _log_b, config_b) = agent("web-b", "192.0.2.55/32");
    let a = start_with_key(&config_a);
    let b = start_with_key(&config_b);
    let logs = || {
        format!(
            "A:\n{}\nB:\n{}",
            std::fs::read_to_string(dir_a.path().join("daemon.log")).unwrap_or_default(),
            std::fs::read_to_string(dir_b.path().join("daemon.log")).unwrap_or_default()
        )
    };
    // Both up (the listener answers once the enforcer runs).
    json(port_a, "/v1/decisions/stream?startup=true");
    json(port_b, "/v1/decisions/stream?startup=true");

    // A ban decided on A from its own log is applied on B.
    attack(&log_a, "203.0.113.61");
    assert!(
        eventually(|| !json(port_a, "/v1/decisions?ip=203.0.113.61").is_null()),
        "{}",
        logs()
    );
    let seen_on_a = Instant::now();
    assert!(
        eventually(|| !json(port_b, "/v1/decisions?ip=203.0.113.61").is_null()),
        "{}",
        logs()
    );
    eprintln!("B applied A's ban {} ms after A did", seen_on_a.elapsed().as_millis());
    let on_b = json(port_b, "/v1/decisions?ip=203.0.113.61");
    assert_eq!(on_b[0]["origin"], "fleet", "{on_b}");

    // Lifted on A by its operator: lifted on B.
    let (ok, out) = logsec(&[
        "decisions",
        "delete",
        "--config",
        config_a.to_str().unwrap(),
        "203.0.113.61",
    ]);
    assert!(ok, "{out}");
    assert!(
        eventually(|| json(port_b, "/v1/decisions?ip=203.0.113.61").is_null()),
        "{}",
        logs()
    );

    // Added by hand against B's store: A hears of it through the stream.
    let (ok, out) = logsec(&[
        "decisions",
        "add",
        "--config",
        config_b.to_str().unwrap(),
        "2001:db8::66",
    ]);
    assert!(ok, "{out}");
    assert!(
        eventually(|| !json(port_a, "/v1/decisions?ip=2001:db8::66").is_null()),
        "{}",
        logs()
    );

    // B's allowlist holds whatever the fleet says: a ban of 192.0.2.55 from A is not applied on B.
    attack(&log_a, "192.0.2.55");
    assert!(
        eventually(|| !json(port_a, "/v1/decisions?ip=192.0.2.55").is_null()),
        "{}",
        logs()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(json(port_b, "/v1/decisions?ip=192.0.2.55").is_null(), "{}", logs());
    let metrics = super::daemon::get(port_b, "/metrics");
    assert!(metrics.contains("logsec_fleet_received_total "), "{metrics}");
    stop(a);
    stop(b);
}
