//! Threat intelligence for the tier-2 analyst's tools: AbuseIPDB v2 `check` and VirusTotal v3
//! `ip_addresses`.
//!
//! Invariants:
//! - Answers are cached in the brain for 24 h, so a fleet asks once per address per day.
//! - The daemon keeps itself inside the free tiers (VirusTotal 4 a minute and 500 a day, AbuseIPDB
//!   1,000 a day); beyond them, and without a key, a tool answers "unavailable" to the model
//!   instead of failing the verdict.
//! - Keys travel in headers only; only the address (canonical, so never attacker text) goes into
//!   URLs.
//! - What reaches the model is a small summary, not the services' whole answers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::brain::{Brain, INTEL_TTL, canonical};

/// A request-count limit over a window.
struct Window {
    limit: u32,
    span: Duration,
    start: Instant,
    used: u32,
}

impl Window {
    fn new(limit: u32, span: Duration) -> Window {
        Window {
            limit,
            span,
            start: Instant::now(),
            used: 0,
        }
    }

    fn take(&mut self) -> bool {
        if self.start.elapsed() >= self.span {
            self.start = Instant::now();
            self.used = 0;
        }
        if self.used >= self.limit {
            return false;
        }
        self.used += 1;
        true
    }
}

/// One reputation service.
pub struct Service {
    name: &'static str,
    base: String,
    key: Option<String>,
    limits: Mutex<Vec<Window>>,
    http: reqwest::Client,
}

impl Service {
    /// AbuseIPDB at `base` (default `https://api.abuseipdb.com`).
    pub fn abuseipdb(base: &str, key: Option<String>) -> Service {
        Service::new(
            "abuseipdb",
            base,
            key,
            vec![Window::new(1000, Duration::from_secs(86_400))],
        )
    }

    /// VirusTotal at `base` (default `https://www.virustotal.com`).
    pub fn virustotal(base: &str, key: Option<String>) -> Service {
        Service::new(
            "virustotal",
            base,
            key,
            vec![
                Window::new(4, Duration::from_secs(60)),
                Window::new(500, Duration::from_secs(86_400)),
            ],
        )
    }

    fn new(name: &'static str, base: &str, key: Option<String>, limits: Vec<Window>) -> Service {
        Service {
            name,
            base: base.trim_end_matches('/').to_owned(),
            key,
            limits: Mutex::new(limits),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a TLS backend is compiled in"),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What the service knows about `ip`, summarised for the model; `{"unavailable": why}` when it
    /// cannot be asked.
    pub async fn lookup(&self, ip: &str, brain: &Brain) -> Value {
        let Some(ip) = canonical(ip) else {
            return json!({"unavailable": "not an IP address"});
        };
        if let Some(cached) = brain.get(self.name, &ip, None).await {
            return cached;
        }
        let Some(key) = &self.key else {
            return json!({"unavailable": format!("no {} API key is configured", self.name)});
        };
        let allowed = {
            let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
            // Check every window before taking from any.
            limits.iter().all(|w| w.start.elapsed() >= w.span || w.used < w.limit)
                && limits.iter_mut().all(Window::take)
        };
        if !allowed {
            return json!({"unavailable": format!("{} free-tier quota reached; try later", self.name)});
        }
        let result = match self.name {
            "abuseipdb" => self.ask_abuseipdb(&ip, key).await,
            _ => self.ask_virustotal(&ip, key).await,
        };
        match result {
            Ok(summary) => {
                brain.put(self.name, &ip, None, &summary, Some(INTEL_TTL)).await;
                summary
            }
            Err(why) => {
                tracing::warn!(service = self.name, error = %why, "threat-intel lookup failed");
                json!({"unavailable": why})
            }
        }
    }

    async fn get(&self, url: String, header: &str, key: &str) -> Result<Value, String> {
        let resp = self
            .http
            .get(url)
            .header(header, key)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{} unreachable: {}", self.name, e.without_url()))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{} answered HTTP {}", self.name, status.as_u16()));
        }
        Ok(body)
    }

    async fn ask_abuseipdb(&self, ip: &str, key: &str) -> Result<Value, String> {
        let url = format!("{}/api/v2/check?ipAddress={}&maxAgeInDays=90", self.base, ip);
        let d = &self.get(url, "Key", key).await?["data"];
        Ok(json!({
            "source": "abuseipdb",
            "abuse_confidence_score": d["abuseConfidenceScore"],
            "total_reports": d["totalReports"],
            "distinct_reporters": d["numDistinctUsers"],
            "last_reported_at": d["lastReportedAt"],
            "country": d["countryCode"],
            "usage_type": d["usageType"],
            "isp": d["isp"],
            "is_tor": d["isTor"],
            "is_whitelisted": d["isWhitelisted"],
        }))
    }

    async fn ask_virustotal(&self, ip: &str, key: &str) -> Result<Value, String> {
        let url = format!("{}/api/v3/ip_addresses/{}", self.base, ip);
        let a = &self.get(url, "x-apikey", key).await?["data"]["attributes"];
        let stats = &a["last_analysis_stats"];
        Ok(json!({
            "source": "virustotal",
            "malicious_engines": stats["malicious"],
            "suspicious_engines": stats["suspicious"],
            "harmless_engines": stats["harmless"],
            "reputation": a["reputation"],
            "as_owner": a["as_owner"],
            "country": a["country"],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_hold_the_free_tier() {
        let mut w = Window::new(4, Duration::from_secs(60));
        assert!((0..4).all(|_| w.take()));
        assert!(!w.take(), "the fifth call in a minute");
    }

    #[tokio::test]
    async fn without_a_key_the_tool_says_unavailable() {
        let brain = Brain::connect("memory://", Duration::from_secs(60)).await.unwrap();
        let s = Service::virustotal("http://127.0.0.1:9", None);
        let v = s.lookup("198.51.100.4", &brain).await;
        assert!(v["unavailable"].as_str().unwrap().contains("no virustotal API key"));
        assert!(s.lookup("'; DROP", &brain).await["unavailable"].is_string());
    }
}
