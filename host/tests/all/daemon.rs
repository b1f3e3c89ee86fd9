//! `logsec run` end to end: lines appended to a watched log are analysed and stored, SIGTERM stops
//! the daemon cleanly, and a restart neither loses nor repeats a line.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use logsec::store::Store;

use super::{built_plugins, line, rules_file};

/// Starts the daemon, its log appended to `config`'s folder/daemon.log.
fn start(config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(daemon_log(config))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_logsec"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start logsec run")
}

fn daemon_log(config: &Path) -> std::path::PathBuf {
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

/// `GET path` on the daemon's listener; the body.
fn get(port: u16, path: &str) -> String {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP listener");
    write!(conn, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stop(mut child: Child) {
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
