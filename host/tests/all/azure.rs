//! The Azure NSG backend against a fake Azure on loopback: a Microsoft identity platform token
//! endpoint (client credentials) and the Resource Manager security-rules API of
//! `Microsoft.Network` 2024-03-01 (PUT with a long-running operation, GET, list, DELETE), which
//! checks what the real one would refuse: a missing or wrong bearer token, a wrong api-version,
//! a rule that is not a deny-inbound rule, priorities out of range or taken, bad prefixes.
//! Built with the cargo feature `azure`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::daemon::{config_with_log, start_with_env, stop};
use super::{KillOnDrop, line};

const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
const RG: &str = "rg-web";
const NSG: &str = "nsg-web";
const TENANT: &str = "tenant-1";
const CLIENT_ID: &str = "client-1";
const SECRET: &str = "s3cret-value";

/// A request the fake saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct AzureState {
    /// Tokens issued.
    tokens: Vec<String>,
    /// Rules of the NSG, by name.
    rules: BTreeMap<String, Value>,
    seen: Vec<Seen>,
}

/// The fake: token endpoint and ARM on one port.
#[derive(Clone)]
struct FakeAzure {
    port: u16,
    state: Arc<Mutex<AzureState>>,
    /// PUTs still to fail with 500.
    fail_puts: Arc<AtomicU32>,
}

impl FakeAzure {
    fn start() -> FakeAzure {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake = FakeAzure {
            port: listener.local_addr().unwrap().port(),
            state: Arc::default(),
            fail_puts: Arc::default(),
        };
        let f = fake.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let f = f.clone();
                std::thread::spawn(move || f.serve(conn));
            }
        });
        // A rule somebody else owns: logsec must leave it alone and not take its priority.
        fake.state.lock().unwrap().rules.insert(
            "allow-https".into(),
            json!({"name": "allow-https", "properties": {"access": "Allow", "direction": "Inbound", "priority": 201,
                   "protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*",
                   "destinationAddressPrefix": "*", "destinationPortRange": "443", "provisioningState": "Succeeded"}}),
        );
        fake
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The addresses in logsec's rules, by rule name.
    fn banned(&self) -> BTreeMap<String, Vec<String>> {
        self.state
            .lock()
            .unwrap()
            .rules
            .iter()
            .filter(|(n, _)| n.starts_with("logsec-deny-"))
            .map(|(n, r)| {
                let p = r["properties"]["sourceAddressPrefixes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                (n.clone(), p.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            })
            .collect()
    }

    fn serve(&self, conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut head = String::new();
        if reader.read_line(&mut head).is_err() {
            return;
        }
        let mut parts = head.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        let _ = reader.read_exact(&mut body);
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let (status, reply, extra) = self.answer(&method, path, query, &headers, &body);
        // Forms are kept as text, without the client secret.
        let body_json = serde_json::from_slice(&body).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&body).replace(SECRET, "***");
            if text.is_empty() {
                Value::Null
            } else {
                Value::String(text)
            }
        });
        self.state.lock().unwrap().seen.push(Seen {
            method: method.clone(),
            path: path.to_owned(),
            status,
            body: body_json,
        });
        let text = reply.to_string();
        let mut conn = conn;
        let _ = write!(
            conn,
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{text}",
            text.len()
        );
    }

    fn answer(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &BTreeMap<String, String>,
        body: &[u8],
    ) -> (u16, Value, String) {
        let error = |status: u16, code: &str, msg: &str| {
            (status, json!({"error": {"code": code, "message": msg}}), String::new())
        };
        // Microsoft identity platform: client credentials grant.
        if method == "POST" && path == format!("/{TENANT}/oauth2/v2.0/token") {
            let form: BTreeMap<String, String> = String::from_utf8_lossy(body)
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| {
                    (
                        k.to_owned(),
                        v.replace("%3A", ":").replace("%2F", "/").replace('+', " "),
                    )
                })
                .collect();
            let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
                && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
                && form.get("client_secret").map(String::as_str) == Some(SECRET)
                // The scope is the Resource Manager endpoint's (`https://management.azure.com/.default`
                // for the public cloud; this fake stands in for the endpoint).
                && form.get("scope").is_some_and(|s| *s == format!("{}/.default", self.url()));
            if !ok {
                return error(401, "invalid_client", &format!("bad token request {form:?}"));
            }
            let mut st = self.state.lock().unwrap();
            let token = format!("fake-arm-token-{}", st.tokens.len() + 1);
            st.tokens.push(token.clone());
            return (
                200,
                json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
                String::new(),
            );
        }
        // Everything else is Resource Manager: a valid bearer token and the api-version.
        let bearer = headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("");
        if !self.state.lock().unwrap().tokens.iter().any(|t| t == bearer) {
            return error(401, "AuthenticationFailed", "missing or invalid bearer token");
        }
        if !query.contains("api-version=2024-03-01") {
            return error(400, "MissingApiVersionParameter", "api-version 2024-03-01 expected");
        }
        if path.starts_with("/operations/") {
            return (200, json!({"status": "Succeeded"}), String::new());
        }
        let rules = format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/{NSG}/securityRules"
        );
        if method == "GET" && path == rules {
            let st = self.state.lock().unwrap();
            return (
                200,
                json!({"value": st.rules.values().collect::<Vec<_>>()}),
                String::new(),
            );
        }
        let Some(name) = path.strip_prefix(&format!("{rules}/")) else {
            return error(404, "ResourceNotFound", path);
        };
        let name = name.to_owned();
        match method {
            "GET" => match self.state.lock().unwrap().rules.get(&name) {
                Some(r) => (200, r.clone(), String::new()),
                None => error(404, "NotFound", &name),
            },
            "DELETE" => {
                let existed = self.state.lock().unwrap().rules.remove(&name).is_some();
                if existed {
                    let op = format!("{}/operations/{name}-delete?api-version=2024-03-01", self.url());
                    (202, Value::Null, format!("azure-asyncoperation: {op}\r\n"))
                } else {
                    (204, Value::Null, String::new())
                }
            }
            "PUT" => {
                if self.fail_puts.load(Ordering::SeqCst) > 0 {
                    self.fail_puts.fetch_sub(1, Ordering::SeqCst);
                    return error(500, "InternalServerError", "try again");
                }
                let rule: Value = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => return error(400, "InvalidRequestContent", &e.to_string()),
                };
                let p = &rule["properties"];
                let priority = p["priority"].as_i64().unwrap_or(0);
                let prefixes: Vec<&str> = p["sourceAddressPrefixes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if p["access"] != "Deny" || p["direction"] != "Inbound" || p["protocol"] != "*" {
                    return error(
                        400,
                        "InvalidSecurityRule",
                        "a deny-inbound rule for any protocol expected",
                    );
                }
                if !(100..=4096).contains(&priority) {
                    return error(400, "SecurityRuleInvalidPriority", "priority must be 100..=4096");
                }
                if prefixes.is_empty()
                    || prefixes.len() > 4000
                    || prefixes
                        .iter()
                        .any(|x| x.parse::<std::net::IpAddr>().is_err() && !x.contains('/'))
                {
                    return error(400, "SecurityRuleInvalidAddressPrefix", &format!("{prefixes:?}"));
                }
                let mut st = self.state.lock().unwrap();
                let taken = st
                    .rules
                    .iter()
                    .any(|(n, r)| *n != name && r["properties"]["priority"].as_i64() == Some(priority));
                if taken {
                    return error(400, "SecurityRuleConflict", "another rule has this priority");
                }
                let mut stored = rule.clone();
                stored["name"] = json!(name);
                stored["id"] = json!(format!("{rules}/{name}"));
                stored["properties"]["provisioningState"] = json!("Succeeded");
                st.rules.insert(name.clone(), stored.clone());
                let op = format!("{}/operations/{name}?api-version=2024-03-01", self.url());
                stored["properties"]["provisioningState"] = json!("Updating");
                (201, stored, format!("azure-asyncoperation: {op}\r\n"))
            }
            _ => error(405, "MethodNotAllowed", method),
        }
    }
}

/// Starts `logsec run` with client-secret credentials whose token endpoint is `fake`.
fn start(config: &std::path::Path, fake: &FakeAzure) -> KillOnDrop {
    let authority = format!("{}/", fake.url());
    start_with_env(
        config,
        &[
            ("AZURE_CREDENTIAL_KIND", "clientsecret"),
            ("AZURE_AUTHORITY_HOST", &authority),
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT_ID),
            ("AZURE_CLIENT_SECRET", SECRET),
        ],
    )
}

fn eventually(f: impl FnMut() -> bool) -> bool {
    super::eventually(Duration::from_secs(30), f)
}

#[test]
fn azure_nsg_rules_follow_the_bans() {
    let fake = FakeAzure::start();
    fake.fail_puts.store(1, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let port = super::daemon::free_port();
    let (log, config) = config_with_log(
        dir.path(),
        &format!(
            "[response]\nbackend = \"azure\"\nban_ttl = \"6s\"\nallowlist = [\"127.0.0.0/8\", \"192.0.2.8/32\"]\n\n\
             [response.azure]\nsubscription_id = {SUB:?}\nresource_group = {RG:?}\nnsg = {NSG:?}\npriority_base = 200\n\
             prefixes_per_rule = 2\nmax_rules = 4\nendpoint = {:?}\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            fake.url()
        ),
    );
    let daemon_log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let daemon = start(&config, &fake);
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        for ip in ["203.0.113.21", "203.0.113.22", "192.0.2.8", "2001:db8::23"] {
            writeln!(
                f,
                "{}",
                line(
                    ip,
                    "/item.php?id=1%27%20union%20select%20password%20from%20users--",
                    "sqlmap/1.8"
                )
            )
            .unwrap();
        }
    }
    let all_banned = |fake: &FakeAzure| {
        let mut v: Vec<String> = fake.banned().into_values().flatten().collect();
        v.sort();
        v
    };
    assert!(
        eventually(|| all_banned(&fake) == ["2001:db8::23", "203.0.113.21", "203.0.113.22"]),
        "rules: {:?}\nseen: {:#?}\ndaemon log:\n{}",
        fake.banned(),
        fake.seen(),
        daemon_log()
    );
    let banned = fake.banned();
    // Two addresses per rule, priorities from 200 skipping the operator's rule at 201.
    assert!(banned.values().all(|p| p.len() <= 2), "{banned:?}");
    let priorities: Vec<i64> = {
        let st = fake.state.lock().unwrap();
        st.rules
            .iter()
            .filter(|(n, _)| n.starts_with("logsec-deny-"))
            .map(|(_, r)| r["properties"]["priority"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(priorities, [200, 202], "{banned:?}");
    let seen = fake.seen();
    assert!(
        seen.iter().any(|s| s.method == "PUT" && s.status == 500),
        "the first PUT failed (500) and was retried: {seen:#?}"
    );
    for s in seen.iter().filter(|s| s.method == "PUT" && s.status == 201) {
        let p = &s.body["properties"];
        assert_eq!(
            (p["access"].as_str(), p["direction"].as_str()),
            (Some("Deny"), Some("Inbound"))
        );
        assert_eq!(p["sourcePortRange"], "*");
        assert_eq!(p["destinationAddressPrefix"], "*");
    }
    assert!(
        !seen.iter().any(|s| s.status == 401),
        "every ARM call carried the token: {seen:#?}"
    );
    let operator_rule = fake.state.lock().unwrap().rules.get("allow-https").cloned();
    assert!(operator_rule.is_some(), "the operator's rule is untouched");
    let metrics = super::daemon::get(port, "/metrics");
    assert!(metrics.contains("logsec_backend_up 1"), "{metrics}");
    stop(daemon);

    // A restart restores the bans into the same rules, one PUT per rule.
    let before = fake.seen().len();
    let daemon = start(&config, &fake);
    assert!(
        eventually(|| fake.seen().len() > before + 2),
        "daemon log:\n{}",
        daemon_log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let puts = fake.seen()[before..].iter().filter(|s| s.method == "PUT").count();
    assert!(puts <= 2, "restore wrote {puts} rules");
    assert_eq!(all_banned(&fake), ["2001:db8::23", "203.0.113.21", "203.0.113.22"]);

    // The bans end (6 s): their rules are deleted.
    assert!(
        eventually(|| fake.banned().is_empty()),
        "rules left: {:?}\ndaemon log:\n{}",
        fake.banned(),
        daemon_log()
    );
    assert!(fake.seen().iter().any(|s| s.method == "DELETE"));
    stop(daemon);
    eprintln!("the fake Azure saw:");
    for s in fake.seen() {
        eprintln!("  {} {} -> {} {}", s.method, s.path, s.status, s.body);
    }
}
