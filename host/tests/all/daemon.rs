//! `logsec run` end to end: lines appended to a watched log are analysed and stored, SIGTERM stops
//! the daemon cleanly, and a restart neither loses nor repeats a line.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logsec::store::Store;

// A running daemon is killed if a test fails before stopping it.
use super::{KillOnDrop as Daemon, built_plugins, line, rules_file};

/// Starts the daemon, its log appended to `config`'s folder/daemon.log.
pub(super) fn start(config: &Path) -> Daemon {
    start_with_env(config, &[])
}

/// As [`start`], with `env` added to the daemon's environment.
pub(super) fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(daemon_log(config))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_logsec"))
        .args(["run", "--config", config.to_str().unwrap()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map(|c| Daemon(Some(c)))
        .expect("start logsec run")
}

pub(super) fn daemon_log(config: &Path) -> std::path::PathBuf {
    config.with_file_name("daemon.log")
}

fn append(path: &Path, from: usize, n: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in from..from + n {
        let uri = format!("/item.php?id=1%27%20union%20select%20password%20from%20users--&n={i}");
        writeln!(f, "{}", line("203.0.113.77", &uri, "Mozilla/5.0")).unwrap();
        writeln!(
            f,
            "{}",
            line("192.0.2.10", &format!("/index.html?n={i}"), "Mozilla/5.0")
        )
        .unwrap();
    }
}

/// The stored rows of `ip`, as `logsec explain` reads them.
fn stored_rows(rt: &tokio::runtime::Runtime, db: &str, ip: &str) -> Vec<logsec::store::StoredRow> {
    rt.block_on(async {
        let store = Store::connect(db).await.unwrap();
        store.rows_of_ip(&[ip.to_owned()], 100).await.unwrap()
    })
}

fn wait_rows(rt: &tokio::runtime::Runtime, db: &str, want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = rt
            .block_on(async { Store::connect(db).await.ok()?.count().await.ok() })
            .unwrap_or(0);
        if n >= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `GET path` on the daemon's listener; the body (the status must be 200).
pub(super) fn get(port: u16, path: &str) -> String {
    let (status, body) = super::http_get(port, path, None);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(super) fn stop(mut daemon: Daemon) {
    let mut child = daemon.0.take().expect("running");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "logsec run exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "logsec run did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn run_stores_flagged_lines_and_restarts_without_loss_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let config = dir.path().join("logsec.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ndata_dir = {:?}\nplugin_dir = {:?}\nrules = {:?}\n\n[[sources]]\npath = {:?}\nread_from = \"beginning\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            data,
            built_plugins(),
            rules_file(),
            logs.join("*.log").to_string_lossy()
        ),
    )
    .unwrap();
    let db = format!("sqlite://{}", data.join("logsec.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = logs.join("access.log");

    append(&log, 0, 30);
    let child = start(&config);
    let log_of = || std::fs::read_to_string(daemon_log(&config)).unwrap_or_default();
    assert_eq!(
        wait_rows(&rt, &db, 30),
        30,
        "only the 30 attack lines are stored; daemon log:\n{}",
        log_of()
    );
    assert_eq!(get(port, "/healthz"), "ok\n");
    let metrics = get(port, "/metrics");
    let source = log.display().to_string();
    for want in [
        format!("logsec_lines_read_total{{source=\"{source}\"}} 60"),
        format!("logsec_lines_parsed_total{{source=\"{source}\"}} 60"),
        "logsec_rows_stored_total 30".to_owned(),
        "logsec_plugin_calls_total{plugin=\"patterns\"}".to_owned(),
        "logsec_store_spool_batches 0".to_owned(),
    ] {
        assert!(metrics.contains(&want), "{want} missing from:\n{metrics}");
    }
    assert!(
        metrics.contains("logsec_decisions_total{decided_by=\"rules\"}"),
        "{metrics}"
    );
    stop(child);

    // Written while the daemon is down, then a restart: the new lines only.
    append(&log, 30, 20);
    let child = start(&config);
    assert_eq!(wait_rows(&rt, &db, 50), 50, "daemon log:\n{}", log_of());
    std::thread::sleep(Duration::from_millis(500));
    stop(child);
    assert_eq!(wait_rows(&rt, &db, 50), 50, "a line was stored twice");
}

/// A config with the built plugins, `sources` (TOML), and `extra` sections.
pub(super) fn write_config(dir: &Path, sources: &str, extra: &str) -> std::path::PathBuf {
    let config = dir.join("logsec.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ndata_dir = {:?}\nplugin_dir = {:?}\nrules = {:?}\n\n{sources}\n{extra}\n",
            dir.join("data"),
            built_plugins(),
            rules_file(),
        ),
    )
    .unwrap();
    config
}

/// An empty `access.log` in `dir`, read from the beginning, and a config with `extra` sections:
/// the log's path and the config's.
pub(super) fn config_with_log(dir: &Path, extra: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let log = dir.join("access.log");
    std::fs::write(&log, "").unwrap();
    let sources = format!("[[sources]]\npath = {:?}\nread_from = \"beginning\"\n", log);
    let config = write_config(dir, &sources, extra);
    (log, config)
}

#[test]
fn run_starts_with_the_store_unreachable_and_writes_the_spool_when_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // SQLite cannot create a database in a directory that does not exist: the store is down.
    let db_dir = dir.path().join("not-yet");
    let db = format!("sqlite://{}", db_dir.join("logsec.db").display());
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!("[[sources]]\npath = {:?}\nread_from = \"beginning\"\n", log),
        &format!("[store]\nurl = {db:?}\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    append(&log, 0, 10);
    let child = start(&config);
    let log_of = || std::fs::read_to_string(daemon_log(&config)).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(port, "/metrics").contains("logsec_store_spool_batches 1") {
        assert!(
            Instant::now() < deadline,
            "nothing was spooled; daemon log:\n{}",
            log_of()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(log_of().contains("the store is unreachable"), "{}", log_of());

    std::fs::create_dir_all(&db_dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(wait_rows(&rt, &db, 10), 10, "daemon log:\n{}", log_of());
    stop(child);
}

#[test]
fn two_sources_share_a_parser_with_different_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (combined, custom) = (dir.path().join("combined.log"), dir.path().join("custom.log"));
    let config = write_config(
        dir.path(),
        &format!(
            "[[sources]]\npath = {combined:?}\nread_from = \"beginning\"\n\n\
             [[sources]]\npath = {custom:?}\nread_from = \"beginning\"\n\
             parser = {{ log_format = '$remote_addr|$request|$status|$http_user_agent' }}\n"
        ),
        "",
    );
    append(&combined, 0, 5);
    let attack = "/item.php?id=1%27%20union%20select%20password%20from%20users--";
    let mut f = std::fs::File::create(&custom).unwrap();
    for i in 0..7 {
        writeln!(f, "198.51.100.{i}|GET {attack}&n={i} HTTP/1.1|200|curl/8").unwrap();
    }
    drop(f);
    let child = start(&config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = format!("sqlite://{}", dir.path().join("data/logsec.db").display());
    let log_of = || std::fs::read_to_string(daemon_log(&config)).unwrap_or_default();
    assert_eq!(wait_rows(&rt, &db, 12), 12, "5 + 7 attacks; daemon log:\n{}", log_of());
    stop(child);

    // Settings the parser refuses stop the start with a message naming the source.
    let bad = write_config(
        dir.path(),
        &format!("[[sources]]\npath = {custom:?}\nparser = {{ log_format = '$remote_addr$status' }}\n"),
        "",
    );
    let mut refused = Command::new(env!("CARGO_BIN_EXE_logsec"))
        .args(["run", "--config", bad.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            refused.kill().unwrap();
            panic!("logsec run started with parser settings the parser refuses");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("sources[0]") && err.contains("refused its settings"),
        "{err}"
    );
}

/// `logsec replay`: plain and gzip files, the logs' own time, nothing stored twice, and a corrupt
/// file reported without losing what was read before the break.
#[test]
fn replay_stores_history_once_with_its_own_time() {
    use flate2::Compression;
    use flate2::write::GzEncoder;

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", "");
    let (plain, gz) = (dir.path().join("access.log.1"), dir.path().join("access.log.2.gz"));
    append(&plain, 0, 20);
    let mut text = Vec::new();
    for i in 0..15 {
        let uri = format!("/../../etc/passwd?n={i}");
        writeln!(text, "{}", line("198.51.100.9", &uri, "Mozilla/5.0")).unwrap();
    }
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&text).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();

    let replay = |files: &[&Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_logsec"));
        cmd.args(["replay", "--config", config.to_str().unwrap()]);
        cmd.args(files);
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = replay(&[&gz, &plain]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("replayed 55 lines from 2 files"), "{err}");
    assert!(err.contains("35 rows stored (0 were stored before)"), "{err}");

    let db = format!("sqlite://{}", dir.path().join("data/logsec.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let times: Vec<String> = rt.block_on(async {
        let Store::Sqlite(pool) = Store::connect(&db).await.unwrap() else {
            unreachable!()
        };
        sqlx::query_scalar("SELECT DISTINCT created_at FROM analyzed_requests")
            .fetch_all(&pool)
            .await
            .unwrap()
    });
    assert_eq!(times, ["2026-11-25T10:00:00.000Z"], "rows carry the log's time");

    let (code, err) = replay(&[&plain, &gz]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("0 rows stored (35 were stored before)"), "{err}");

    // A gzip cut in the middle: what was read is kept, the file is reported, exit code 1.
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    for i in 0..2000 {
        writeln!(
            enc,
            "{}",
            line("198.51.100.20", &format!("/a.php?cmd=;cat%20/etc/passwd&n={i}"), "x")
        )
        .unwrap();
    }
    let whole = enc.finish().unwrap();
    let cut = dir.path().join("cut.log.gz");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let (code, err) = replay(&[&cut]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cut.log.gz broke after the lines above were read"),
        "{err}"
    );
    let stored = rt.block_on(async { Store::connect(&db).await.unwrap().count().await.unwrap() });
    assert!(stored > 35, "the lines before the break were stored");

    let (code, err) = replay(&[&dir.path().join("missing.log")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing.log"), "{err}");
}

/// The daemon with a tier-1 analyst (the fake Ollama): analyst verdicts are stored with their
/// reasoning, allowlisted addresses never reach an analyst, `/metrics` counts the tier, `explain`
/// shows the timeline, and a question still open when the agent is killed is stored as a fallback
/// at the next start.
#[test]
fn run_with_an_analyst_stores_verdicts_and_survives_a_kill_mid_question() {
    let fakes = super::fakes::Fakes::start(&["gpt-oss-120b"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!("[[sources]]\npath = {log:?}\nread_from = \"beginning\"\n"),
        &format!(
            "[tier1]\nurl = {:?}\ntimeout = \"30s\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            fakes.url()
        ),
    );
    let attack = |ip: &str, marker: &str| {
        line(
            ip,
            &format!("/item.php?id=1%27%20union%20select%20password%20from%20users--&m={marker}"),
            "Mozilla/5.0",
        )
    };
    std::fs::write(
        &log,
        format!(
            "{}\n{}\n",
            attack("198.51.100.1", "mk-sure"),
            attack("127.0.0.1", "mk-sure")
        ),
    )
    .unwrap();
    let daemon = start(&config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = format!("sqlite://{}", dir.path().join("data/logsec.db").display());
    let log_of = || std::fs::read_to_string(daemon_log(&config)).unwrap_or_default();
    assert_eq!(wait_rows(&rt, &db, 1), 1, "daemon log:\n{}", log_of());
    let metrics = get(port, "/metrics");
    assert!(
        metrics.contains("logsec_analyst_calls_total{tier=\"tier1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("logsec_decisions_total{decided_by=\"tier1\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        fakes.calls("/api/chat").len(),
        1,
        "the allowlisted address reached an analyst"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_logsec"))
        .args(["explain", "--config", config.to_str().unwrap(), "198.51.100.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("decided by  tier1  sqli  confidence 9  tier1: union select against a product id | rules: "),
        "{text}"
    );

    // Three requests too weak alone (an unusual method scores 3) from one address: the third goes
    // to the analyst with the history the brain kept.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..3 {
        let l = line("198.51.100.9", &format!("/dav/{i}?m=mk-sure"), "Mozilla/5.0").replace("\"GET ", "\"PROPFIND ");
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    assert_eq!(wait_rows(&rt, &db, 2), 2, "daemon log:\n{}", log_of());
    let correlated = stored_rows(&rt, &db, "198.51.100.9");
    assert_eq!(correlated.len(), 1, "{correlated:?}");
    assert_eq!(correlated[0].decided_by, "tier1");
    assert!(
        correlated[0].reasoning.contains("3 low-scoring requests"),
        "{correlated:?}"
    );

    // A question the model takes its time over; the agent is killed while it is open.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    writeln!(f, "{}", attack("198.51.100.2", "mk-slow")).unwrap();
    drop(f);
    let pending = dir.path().join("data/pending");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&pending).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "no row waits in {}", pending.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(daemon); // kill -9, by Daemon's Drop

    let daemon = start(&config);
    assert_eq!(wait_rows(&rt, &db, 3), 3, "daemon log:\n{}", log_of());
    stop(daemon);
    let decided = stored_rows(&rt, &db, "198.51.100.2");
    assert_eq!(decided.len(), 1, "stored once: {decided:?}");
    assert_eq!(decided[0].decided_by, "fallback");
    assert!(
        decided[0].reasoning.contains("stopped before the analysts answered"),
        "{decided:?}"
    );
}
