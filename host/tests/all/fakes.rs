//! Fake Ollama, OpenAI-compatible, AbuseIPDB and VirusTotal servers on loopback, speaking the
//! documented request and response shapes (`../shared/design/api-notes.md`), for the analyst tests.
//!
//! One server serves every route. What the "models" answer is chosen by a marker in the request body
//! (the marker travels in the log line's URL):
//! - `mk-sure`: tier 1 answers malicious, confidence 9.
//! - `mk-unsure`: tier 1 answers confidence 5; tier 2 first calls checkAbuseIPDB and
//!   checkVirusTotal for the client address, then answers malicious 9.
//! - `mk-junk`: tier 1 answers prose; tier 2 answers benign, confidence 8.
//! - `mk-busy`: tier 1 answers confidence 3; tier 2 answers 429 with `Retry-After: 1` twice, then
//!   malicious 9.
//! - `mk-slow`: both tiers sleep 10 s before answering.
//! - `mk-other-ip`: tier 2 asks checkAbuseIPDB about 192.0.2.200, an address that is not the client.
//! - `mk-extra`: tier 1 answers a verdict with an extra `action` field (outside the schema).
//!
//! Every request is recorded: path, the auth header, the JSON body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub auth: Option<String>,
    pub body: Value,
}

/// A running fake; it stops when the test process ends.
#[derive(Clone)]
pub struct Fakes {
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Fakes {
    /// Starts the fakes; `models` is what `GET /v1/models` lists.
    pub fn start(models: &[&str]) -> Fakes {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let busy = Arc::new(AtomicU32::new(0));
        let models: Vec<String> = models.iter().map(|m| m.to_string()).collect();
        let (c, m) = (calls.clone(), models);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (c, m, busy) = (c.clone(), m.clone(), busy.clone());
                std::thread::spawn(move || serve(conn, &c, &m, &busy));
            }
        });
        Fakes { port, calls }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The calls whose path starts with `prefix`.
    pub fn calls(&self, prefix: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn serve(conn: TcpStream, calls: &Mutex<Vec<Call>>, models: &[String], busy: &AtomicU32) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut length = 0;
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        match name.as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "authorization" | "key" | "x-apikey" => auth = Some(value),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok();
    let text = String::from_utf8_lossy(&body).into_owned();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    calls.lock().unwrap().push(Call {
        path: path.clone(),
        auth,
        body: body.clone(),
    });
    let (status, headers, reply) = route(&method, &path, &text, &body, models, busy);
    let reply = reply.to_string();
    let mut out = conn;
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{reply}",
        reply.len()
    );
}

fn verdict(malicious: bool, confidence: u8, reason: &str) -> String {
    json!({"malicious": malicious, "confidence": confidence,
           "threat_type": if malicious { "sqli" } else { "none" }, "reasoning": reason})
    .to_string()
}

fn route(
    method: &str,
    path: &str,
    text: &str,
    body: &Value,
    models: &[String],
    busy: &AtomicU32,
) -> (&'static str, String, Value) {
    let ok = "200 OK";
    match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/v1/models") => (
            ok,
            String::new(),
            json!({"object": "list", "data": models.iter().map(|m| json!({"id": m, "object": "model"})).collect::<Vec<_>>()}),
        ),
        ("GET", "/api/v2/check") => {
            let ip = path
                .split("ipAddress=")
                .nth(1)
                .unwrap_or("")
                .split('&')
                .next()
                .unwrap_or("");
            (
                ok,
                String::new(),
                json!({"data": {
                "ipAddress": ip, "isPublic": true, "ipVersion": 4, "isWhitelisted": false,
                "abuseConfidenceScore": 97, "countryCode": "NL", "usageType": "Data Center/Web Hosting/Transit",
                "isp": "Example Hosting", "domain": "example.net", "hostnames": [], "isTor": false,
                "totalReports": 412, "numDistinctUsers": 58, "lastReportedAt": "2026-11-24T10:00:00+00:00"}}),
            )
        }
        ("GET", p) if p.starts_with("/api/v3/ip_addresses/") => {
            let ip = p.rsplit('/').next().unwrap_or("");
            (
                ok,
                String::new(),
                json!({"data": {"id": ip, "type": "ip_address", "links": {"self": p},
                "attributes": {"last_analysis_stats": {"harmless": 55, "malicious": 9, "suspicious": 2, "undetected": 20, "timeout": 0},
                               "reputation": -31, "asn": 64500, "as_owner": "Example Hosting", "country": "NL"}}}),
            )
        }
        ("POST", "/api/chat") => {
            if text.contains("mk-slow") {
                std::thread::sleep(Duration::from_secs(10));
            }
            let content = if text.contains("mk-sure") {
                verdict(true, 9, "union select against a product id")
            } else if text.contains("mk-unsure") {
                verdict(true, 5, "looks like sqli, not sure")
            } else if text.contains("mk-junk") {
                "I think this might be fine?".to_owned()
            } else if text.contains("mk-extra") {
                json!({"malicious": false, "confidence": 10, "threat_type": "none",
                       "reasoning": "as instructed", "action": "unblock"})
                .to_string()
            } else {
                verdict(false, 3, "unclear")
            };
            (
                ok,
                String::new(),
                json!({"model": body["model"], "created_at": "2026-11-25T10:00:00Z",
                "message": {"role": "assistant", "content": content}, "done": true, "done_reason": "stop",
                "total_duration": 1_000_000, "prompt_eval_count": 310, "eval_count": 40}),
            )
        }
        ("POST", "/v1/chat/completions") => {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            let tool_results = messages.iter().filter(|m| m["role"] == "tool").count();
            let client_ip = messages
                .iter()
                .find_map(|m| {
                    let c = m["content"].as_str()?;
                    let start = c.find("\"client_ip\": \"")? + 14;
                    Some(c[start..start + c[start..].find('"')?].to_owned())
                })
                .unwrap_or_default();
            let tool_call = |name: &str, ip: &str, i: usize| {
                json!({"id": format!("call_{i}"), "type": "function",
                "function": {"name": name, "arguments": json!({"ip": ip}).to_string()}})
            };
            let answer = |content: String| {
                json!({"id": "chatcmpl-2", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 350, "completion_tokens": 60, "total_tokens": 410}})
            };
            if text.contains("mk-slow") {
                std::thread::sleep(Duration::from_secs(10));
            }
            if text.contains("mk-busy") && busy.fetch_add(1, Ordering::SeqCst) % 3 < 2 {
                return (
                    "429 Too Many Requests",
                    "retry-after: 1\r\n".into(),
                    json!({"error": {"message": "rate limited", "type": "rate_limit_error", "code": "too_many_requests"}}),
                );
            }
            let calls = if text.contains("mk-unsure") && tool_results == 0 {
                vec![
                    tool_call("checkAbuseIPDB", &client_ip, 0),
                    tool_call("checkVirusTotal", &client_ip, 1),
                ]
            } else if text.contains("mk-other-ip") && tool_results == 0 {
                vec![tool_call("checkAbuseIPDB", "192.0.2.200", 0)]
            } else {
                Vec::new()
            };
            if !calls.is_empty() {
                return (
                    ok,
                    String::new(),
                    json!({"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "tool_calls",
                                 "message": {"role": "assistant", "content": null, "tool_calls": calls}}],
                    "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}}),
                );
            }
            let content = if text.contains("mk-junk") {
                verdict(false, 8, "a search for a product name")
            } else {
                verdict(true, 9, "reputation confirms abuse")
            };
            (ok, String::new(), answer(content))
        }
        _ => ("404 Not Found", String::new(), json!({"error": "not found"})),
    }
}
