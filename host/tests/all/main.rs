//! Integration tests of the host: one test binary (faster to link) with a module per concern.

mod analysts;
#[cfg(feature = "azure")]
mod azure;
mod cli;
mod daemon;
mod decisions;
mod enforce;
mod examples;
mod fakes;
mod pipeline;
mod reload;
mod runtime;
mod wat;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use logsec::runtime::{Limits, Runtime};

/// A runtime with tight limits so hostile plugins are caught quickly.
pub fn test_runtime() -> Arc<Runtime> {
    Runtime::new(Limits {
        max_memory_bytes: 64 << 20,
        call_timeout: Duration::from_millis(300),
        setup_timeout: Duration::from_secs(20),
        max_instances: 200,
    })
    .expect("runtime")
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves nothing
/// running; `take` the child out of it to stop it another way.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The built-in plugins, built by host/build.rs.
pub fn built_plugins() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("plugins")
}

/// The repository's rules file.
pub fn rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/patterns.json")
}

/// Writes `bytes` to `path` the way a deploy should: temporary file, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Copies the named built-in plugins into `dir`.
pub fn copy_builtin(dir: &Path, names: &[&str]) {
    for n in names {
        let from = built_plugins().join(format!("{n}.wasm"));
        std::fs::copy(&from, dir.join(format!("{n}.wasm"))).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// A combined-format line for `uri` from `ip`.
pub fn line(ip: &str, uri: &str, ua: &str) -> String {
    format!(r#"{ip} - - [25/Nov/2026:10:00:00 +0000] "GET {uri} HTTP/1.1" 200 512 "-" "{ua}""#)
}

/// `GET path` on a local HTTP listener, with an `X-Api-Key` when given: status code and body.
/// Waits up to 20 s for the listener to come up.
pub fn http_get(port: u16, path: &str, key: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() > deadline => panic!("connect to the HTTP listener: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let key = key.map(|k| format!("X-Api-Key: {k}\r\n")).unwrap_or_default();
    write!(conn, "GET {path} HTTP/1.1\r\nhost: x\r\n{key}\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let status = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// Waits until `f` holds, checking every 20 ms for at most `limit`; whether it did.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
