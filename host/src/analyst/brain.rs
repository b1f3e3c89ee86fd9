//! The brain: short-term memory shared by the agents that point at one Redis (or kept in this
//! process with `memory://`). It remembers monitored addresses and their recent events, analysts'
//! verdicts by address and signature, and threat-intel answers.
//!
//! Invariants:
//! - Keys are built from canonical IP addresses and hex digests only; attacker text never becomes a
//!   key. Values are JSON.
//! - Every entry expires (`[brain] ttl`, intel 24 h); lists are capped.
//! - The brain is advisory: when Redis is unreachable, reads are empty and writes are dropped with a
//!   warning, and analysis goes on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::Value;

/// Entries kept per address.
const MAX_ENTRIES_PER_IP: isize = 50;
/// How long threat-intel answers are reused.
pub const INTEL_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest wait for Redis per command.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the brain lives.
pub enum Brain {
    /// In this process.
    Memory(Mutex<MemoryBrain>, Duration),
    /// In Redis (`redis://`, `rediss://`).
    Redis(redis::aio::ConnectionManager, Duration),
}

/// The in-process brain.
#[derive(Default)]
pub struct MemoryBrain {
    lists: HashMap<String, (Instant, Vec<Value>)>,
    values: HashMap<String, (Instant, Value)>,
    counters: HashMap<String, (Instant, u64)>,
}

impl Brain {
    /// Connects to `url` (`memory://`, `redis://…`, `rediss://…`); entries live for `ttl`.
    pub async fn connect(url: &str, ttl: Duration) -> anyhow::Result<Brain> {
        Brain::connect_with_ca(url, ttl, None).await
    }

    /// As [`Brain::connect`]; a `rediss://` server's certificate is verified against `ca` (PEM) when
    /// given, else against the bundled web PKI roots (Upstash).
    pub async fn connect_with_ca(url: &str, ttl: Duration, ca: Option<&std::path::Path>) -> anyhow::Result<Brain> {
        if url.starts_with("memory:") {
            return Ok(Brain::Memory(Mutex::default(), ttl));
        }
        let client = redis_client(url, ca)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2);
        let manager = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the brain at {}: {e}", crate::store::redact(url)))?;
        Ok(Brain::Redis(manager, ttl))
    }

    /// Adds `entry` to what is remembered about `ip` (monitoring entries, tool notes).
    pub async fn remember(&self, ip: &str, entry: Value) {
        let Some(key) = ip_key("monitor", ip) else { return };
        match self {
            Brain::Memory(m, ttl) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let (until, list) = m.lists.entry(key).or_insert_with(|| (Instant::now(), Vec::new()));
                *until = Instant::now() + *ttl;
                list.insert(0, entry);
                list.truncate(MAX_ENTRIES_PER_IP as usize);
            }
            Brain::Redis(c, ttl) => {
                let mut c = c.clone();
                let r: redis::RedisResult<()> = redis::pipe()
                    .lpush(&key, entry.to_string())
                    .ltrim(&key, 0, MAX_ENTRIES_PER_IP - 1)
                    .expire(&key, ttl.as_secs() as i64)
                    .query_async(&mut c)
                    .await;
                warn_on(r);
            }
        }
    }

    /// What is remembered about `ip`, newest first.
    pub async fn history(&self, ip: &str) -> Vec<Value> {
        let Some(key) = ip_key("monitor", ip) else {
            return Vec::new();
        };
        match self {
            Brain::Memory(m, _) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.lists
                    .get(&key)
                    .filter(|(until, _)| *until > Instant::now())
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default()
            }
            Brain::Redis(c, _) => {
                let mut c = c.clone();
                let r: redis::RedisResult<Vec<String>> = c.lrange(&key, 0, MAX_ENTRIES_PER_IP - 1).await;
                warn_on(r.map(|items| items.iter().filter_map(|s| serde_json::from_str(s).ok()).collect()))
                    .unwrap_or_default()
            }
        }
    }

    /// Counts one low-confidence event of `ip` and returns how many it had within the ttl.
    pub async fn count_event(&self, ip: &str) -> u64 {
        let Some(key) = ip_key("events", ip) else { return 0 };
        match self {
            Brain::Memory(m, ttl) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let e = m.counters.entry(key).or_insert((now + *ttl, 0));
                if e.0 <= now {
                    *e = (now + *ttl, 0);
                }
                e.1 += 1;
                e.1
            }
            Brain::Redis(c, ttl) => {
                let mut c = c.clone();
                let r: redis::RedisResult<(u64, bool)> = redis::pipe()
                    .incr(&key, 1u64)
                    .expire(&key, ttl.as_secs() as i64)
                    .arg("NX")
                    .query_async(&mut c)
                    .await;
                warn_on(r).map_or(0, |(n, _)| n)
            }
        }
    }

    /// A value stored under `kind` for `ip` and an optional `signature`.
    pub async fn get(&self, kind: &str, ip: &str, signature: Option<&str>) -> Option<Value> {
        let key = value_key(kind, ip, signature)?;
        match self {
            Brain::Memory(m, _) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.values
                    .get(&key)
                    .filter(|(until, _)| *until > Instant::now())
                    .map(|(_, v)| v.clone())
            }
            Brain::Redis(c, _) => {
                let mut c = c.clone();
                let r: redis::RedisResult<Option<String>> = c.get(&key).await;
                warn_on(r).flatten().and_then(|s| serde_json::from_str(&s).ok())
            }
        }
    }

    /// Stores `value` under `kind` for `ip` and an optional `signature`, for `ttl` (the brain's own
    /// when `None`).
    pub async fn put(&self, kind: &str, ip: &str, signature: Option<&str>, value: &Value, ttl: Option<Duration>) {
        let Some(key) = value_key(kind, ip, signature) else {
            return;
        };
        match self {
            Brain::Memory(m, own) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let until = Instant::now() + ttl.unwrap_or(*own);
                m.values.retain(|_, (u, _)| *u > Instant::now());
                m.values.insert(key, (until, value.clone()));
            }
            Brain::Redis(c, own) => {
                let mut c = c.clone();
                let secs = ttl.unwrap_or(*own).as_secs().max(1);
                let r: redis::RedisResult<()> = c.set_ex(&key, value.to_string(), secs).await;
                warn_on(r);
            }
        }
    }
}

/// `logsec:KIND:IP` for a canonical address; `None` for anything that is not an address.
fn ip_key(kind: &str, ip: &str) -> Option<String> {
    let ip = canonical(ip)?;
    Some(format!("logsec:{kind}:{ip}"))
}

fn value_key(kind: &str, ip: &str, signature: Option<&str>) -> Option<String> {
    let base = ip_key(kind, ip)?;
    Some(match signature {
        Some(s) => format!("{base}:{}", digest(s)),
        None => base,
    })
}

/// A Redis client for `url` (`redis://` or `rediss://`); a `rediss://` server's certificate is
/// verified against `ca` (PEM) when given, else against the bundled web PKI roots.
pub fn redis_client(url: &str, ca: Option<&std::path::Path>) -> anyhow::Result<redis::Client> {
    let client = match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("brain.ca_file {}: {e}", path.display()))?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(url, certs)
        }
        None => redis::Client::open(url),
    }
    .map_err(|e| anyhow::anyhow!("brain url {}: {e}", crate::store::redact(url)))?;
    Ok(client)
}

/// The canonical text of an address ([`crate::pipeline::memory::canonical`], as text).
pub fn canonical(ip: &str) -> Option<String> {
    crate::pipeline::memory::canonical(ip).map(|a| a.to_string())
}

/// A short hex digest of `s`.
pub fn digest(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn warn_on<T>(r: redis::RedisResult<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "the brain (Redis) did not answer; going on without it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(brain: &Brain, ip: &str) {
        assert!(brain.history(ip).await.is_empty());
        brain.remember(ip, serde_json::json!({"n": 1})).await;
        brain
            .remember(&format!("::ffff:{ip}"), serde_json::json!({"n": 2}))
            .await;
        let h = brain.history(ip).await;
        assert_eq!(h, [serde_json::json!({"n": 2}), serde_json::json!({"n": 1})]);
        assert_eq!(brain.count_event(ip).await, 1);
        assert_eq!(brain.count_event(ip).await, 2);
        let v = serde_json::json!({"malicious": true});
        brain.put("verdict", ip, Some("sqli-union"), &v, None).await;
        assert_eq!(brain.get("verdict", ip, Some("sqli-union")).await, Some(v));
        assert_eq!(brain.get("verdict", ip, Some("other")).await, None);
        brain.remember("not an ip; FLUSHALL", serde_json::json!({})).await;
        assert!(brain.history("not an ip; FLUSHALL").await.is_empty());
    }

    #[tokio::test]
    async fn memory_brain_remembers() {
        let b = Brain::connect("memory://", Duration::from_secs(60)).await.unwrap();
        exercise(&b, "198.51.100.7").await;
    }

    /// The real Redis on 127.0.0.1:6379 (database 14). Skipped when it is not running, unless
    /// `LOGSEC_REQUIRE_ALL=1` (CI), where its absence is a failure.
    #[tokio::test]
    async fn redis_brain_remembers_and_is_shared() {
        let url = "redis://127.0.0.1:6379/14";
        let b = match Brain::connect(url, Duration::from_secs(60)).await {
            Ok(b) => b,
            Err(e) if std::env::var("LOGSEC_REQUIRE_ALL").as_deref() != Ok("1") => {
                eprintln!("skipped: no Redis at {url}: {e}");
                return;
            }
            Err(e) => panic!("Redis is required (LOGSEC_REQUIRE_ALL=1): {e}"),
        };
        let ip = format!("203.0.113.{}", std::process::id() % 250);
        if let Brain::Redis(c, _) = &b {
            let mut c = c.clone();
            let keys: Vec<String> = c.keys(format!("logsec:*:{ip}*")).await.unwrap();
            for k in keys {
                let _: () = c.del(k).await.unwrap();
            }
        }
        exercise(&b, &ip).await;
        let other = Brain::connect(url, Duration::from_secs(60)).await.unwrap();
        assert_eq!(other.history(&ip).await.len(), 2, "a second agent sees the same memory");
    }

    /// `rediss://` with a password, as Upstash serves it: a local redis-server with TLS only and a
    /// self-signed certificate, trusted through `ca_file` (Upstash's certificates verify against the
    /// bundled web PKI roots). Skipped without redis-server or openssl, unless `LOGSEC_REQUIRE_ALL=1`.
    #[tokio::test]
    async fn redis_brain_over_tls_with_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        let (ca, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
        std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
        // A private CA, and a server certificate it signs for 127.0.0.1.
        let steps: [Vec<&str>; 3] = [
            vec![
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=logsec test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            vec![
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "server.csr",
            ],
            vec![
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
                "-out",
                "cert.pem",
            ],
        ];
        let made = steps.iter().try_fold(None, |_, args| {
            let o = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()?;
            if o.status.success() {
                Ok(Some(o))
            } else {
                Err(std::io::Error::other(String::from_utf8_lossy(&o.stderr).into_owned()))
            }
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = match made {
            Ok(_) => std::process::Command::new("redis-server")
                .args(["--port", "0", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args([
                    "--tls-port",
                    &port.to_string(),
                    "--tls-auth-clients",
                    "no",
                    "--requirepass",
                    "s3cret",
                ])
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(&ca)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map(Reaped),
            Err(e) => Err(e),
        };
        let server = match server {
            Ok(s) => s,
            Err(e) if std::env::var("LOGSEC_REQUIRE_ALL").as_deref() != Ok("1") => {
                eprintln!("skipped: needs openssl and redis-server: {e}");
                return;
            }
            Err(e) => panic!("openssl and redis-server are required (LOGSEC_REQUIRE_ALL=1): {e}"),
        };
        let url = format!("rediss://default:s3cret@127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(10);
        let brain = loop {
            match Brain::connect_with_ca(&url, Duration::from_secs(60), Some(&ca)).await {
                Ok(b) => break b,
                Err(e) if Instant::now() > deadline => panic!("no TLS connection: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        exercise(&brain, "198.51.100.8").await;
        let wrong = format!("rediss://default:wrong@127.0.0.1:{port}/");
        let err = Brain::connect_with_ca(&wrong, Duration::from_secs(60), Some(&ca))
            .await
            .err()
            .expect("a wrong password is refused");
        assert!(
            !format!("{err:#}").contains("wrong@"),
            "the password is redacted: {err:#}"
        );
        let untrusted = Brain::connect(&url, Duration::from_secs(60)).await;
        assert!(
            untrusted.is_err(),
            "a self-signed certificate is not trusted without ca_file"
        );
        drop(server);
    }

    struct Reaped(std::process::Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
