//! The two analyst tiers (ARCHITECTURE §1): a local model (tier 1) for a quick verdict, a cloud model
//! with threat-intel tools (tier 2) when tier 1 is not sure, and the brain they share.
//!
//! Invariants:
//! - An analyst only ever adds an opinion: when a tier is unconfigured, declined (budget,
//!   concurrency, open circuit), slow, failing or answers outside the schema, the request goes on to
//!   the next tier or falls back to the rules verdict (`decided_by = "fallback"`). Nothing here
//!   blocks the pipeline: the caller runs [`Analysts::decide`] in its own task.
//! - Tier 1 decides alone at `confident_at` or more; from `monitor_from` it leaves a monitoring entry
//!   in the brain and escalates; anything else escalates. Tier 2's verdict is final.
//! - A verdict is cached in the brain by address and rule signature, so the same question is not
//!   asked twice within the brain's ttl, by this agent or another sharing the brain.
//! - Tools act only on the request's own client address: a model talked into looking up or
//!   annotating other addresses gets an error back.

pub mod brain;
pub mod control;
pub mod intel;
pub mod llm;
pub mod prompt;
pub mod stats;
pub mod verdict;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::Config;
use crate::runtime::bindings::{Finding, Request};
use brain::{Brain, canonical};
use control::{Control, Declined};
use intel::Service;
use llm::{ChatClient, ChatError, Provider};
use stats::TierStats;
pub use verdict::Verdict;

/// One request put to the analysts.
#[derive(Debug, Clone)]
pub struct Question {
    /// The request.
    pub request: Request,
    /// The rules' findings.
    pub findings: Vec<Finding>,
    /// The rules' combined score.
    pub score: u8,
}

/// What the analysts concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `tier1`, `tier2`, or `fallback` (the rules verdict stands).
    pub decided_by: &'static str,
    /// The deciding verdict; `None` for a fallback.
    pub verdict: Option<Verdict>,
    /// Tool calls and their results (JSON array), empty when none.
    pub tool_results: String,
    /// What happened on the way (declines, failures, cache), for the stored reasoning.
    pub notes: Vec<String>,
}

/// A configured tier.
struct Tier {
    name: &'static str,
    client: ChatClient,
    control: Control,
    timeout: Duration,
    stats: Arc<TierStats>,
}

/// The analysts of one agent.
pub struct Analysts {
    tier1: Option<(Tier, u8, u8)>,
    tier2: Option<(Tier, u32)>,
    brain: Arc<Brain>,
    abuseipdb: Service,
    virustotal: Service,
}

impl Analysts {
    /// The analysts `config` describes, or `None` when it has no `[tier1]` or `[tier2]`. Checks that
    /// tier 2's model exists (`GET /models`): providers retire models.
    pub async fn from_config(config: &Config, brain: Arc<Brain>) -> anyhow::Result<Option<Analysts>> {
        if config.tier1.is_none() && config.tier2.is_none() {
            return Ok(None);
        }
        let tier1 = match &config.tier1 {
            Some(t) => {
                let provider = if t.provider == "ollama" {
                    Provider::Ollama
                } else {
                    Provider::OpenAi
                };
                let key = t.api_key_env.as_deref().and_then(secret);
                Some((
                    Tier {
                        name: "tier1",
                        client: ChatClient::new(provider, &t.url, &t.model, key, &t.keep_alive),
                        control: Control::new(t.per_minute, t.concurrency),
                        timeout: t.timeout.0,
                        stats: Arc::default(),
                    },
                    t.confident_at,
                    t.monitor_from,
                ))
            }
            None => None,
        };
        let tier2 = match &config.tier2 {
            Some(t) => {
                let key = secret(&t.api_key_env);
                if key.is_none() {
                    tracing::warn!(env = %t.api_key_env, "tier2: the API key variable is not set; calls will be refused");
                }
                let client = ChatClient::new(Provider::OpenAi, &t.url, &t.model, key, "");
                check_model(&client).await?;
                Some((
                    Tier {
                        name: "tier2",
                        client,
                        control: Control::new(t.per_minute, t.concurrency),
                        timeout: t.timeout.0,
                        stats: Arc::default(),
                    },
                    t.max_tool_rounds,
                ))
            }
            None => None,
        };
        let intel = &config.intel;
        Ok(Some(Analysts {
            tier1,
            tier2,
            brain,
            abuseipdb: Service::abuseipdb(&intel.abuseipdb_url, secret(&intel.abuseipdb_key_env)),
            virustotal: Service::virustotal(&intel.virustotal_url, secret(&intel.virustotal_key_env)),
        }))
    }

    /// Whether any tier would take a question now. When none would (budgets spent, circuits open),
    /// requests fall back to the rules at once, without a question, a brain lookup or a pending
    /// file: analysts that are down cost the pipeline nothing.
    pub fn available(&self) -> bool {
        self.tier1.as_ref().is_some_and(|(t, ..)| t.control.open_for_calls())
            || self.tier2.as_ref().is_some_and(|(t, _)| t.control.open_for_calls())
    }

    /// The brain the analysts share.
    pub fn brain(&self) -> &Arc<Brain> {
        &self.brain
    }

    /// Statistics per configured tier, for `/metrics`.
    pub fn stats(&self) -> Vec<(&'static str, Arc<TierStats>)> {
        let mut v = Vec::new();
        if let Some((t, ..)) = &self.tier1 {
            v.push((t.name, t.stats.clone()));
        }
        if let Some((t, _)) = &self.tier2 {
            v.push((t.name, t.stats.clone()));
        }
        v
    }

    /// Puts `q` to the tiers in turn; see the module invariants.
    pub async fn decide(&self, q: &Question) -> Answer {
        let ip = canonical(&q.request.ip).unwrap_or_default();
        let sig = signature(&q.findings);
        let mut notes = Vec::new();
        if let Some(cached) = self.brain.get("verdict", &ip, Some(&sig)).await
            && let (Some(tier), Ok(v)) = (
                cached["tier"].as_str().and_then(tier_name),
                serde_json::from_value::<Verdict>(cached["verdict"].clone()),
            )
        {
            return Answer {
                decided_by: tier,
                verdict: Some(v),
                tool_results: String::new(),
                notes: vec!["verdict reused from the brain (same address and rules)".into()],
            };
        }
        let history = self.brain.history(&ip).await;
        let user = prompt::user_message(&q.request, &q.findings, q.score, &history);

        let mut tier1_opinion = None;
        if let Some((tier, confident_at, monitor_from)) = &self.tier1 {
            match self.ask_tier1(tier, &user).await {
                Ok(v) if v.confidence >= *confident_at => {
                    return self.decided(&ip, &sig, "tier1", v, String::new(), notes).await;
                }
                Ok(v) => {
                    if v.confidence >= *monitor_from {
                        let entry = json!({
                            "at_ms": crate::store::time::now_ms(),
                            "by": "tier1",
                            "malicious": v.malicious,
                            "confidence": v.confidence,
                            "threat_type": v.threat_type,
                            "rules": q.findings.iter().map(|f| f.rule_id.as_str()).collect::<Vec<_>>(),
                        });
                        self.brain.remember(&ip, entry).await;
                    }
                    notes.push(format!("tier1 unsure (confidence {})", v.confidence));
                    tier1_opinion = Some(v);
                }
                Err(why) => notes.push(format!("tier1: {why}")),
            }
        }
        if let Some((tier, rounds)) = &self.tier2 {
            let mut user = user;
            if let Some(v) = &tier1_opinion {
                user.push_str(&format!(
                    "\nA first, smaller model said: malicious={}, confidence={}, threat_type={}.",
                    v.malicious, v.confidence, v.threat_type
                ));
            }
            match self.ask_tier2(tier, *rounds, &user, q).await {
                (Ok(v), tools) => return self.decided(&ip, &sig, "tier2", v, tools, notes).await,
                (Err(why), tools) => {
                    notes.push(format!("tier2: {why}"));
                    return Answer {
                        decided_by: "fallback",
                        verdict: None,
                        tool_results: tools,
                        notes,
                    };
                }
            }
        }
        Answer {
            decided_by: "fallback",
            verdict: None,
            tool_results: String::new(),
            notes,
        }
    }

    async fn decided(
        &self,
        ip: &str,
        sig: &str,
        tier: &'static str,
        v: Verdict,
        tool_results: String,
        notes: Vec<String>,
    ) -> Answer {
        let cached = json!({"tier": tier, "verdict": v});
        self.brain.put("verdict", ip, Some(sig), &cached, None).await;
        Answer {
            decided_by: tier,
            verdict: Some(v),
            tool_results,
            notes,
        }
    }

    async fn ask_tier1(&self, tier: &Tier, user: &str) -> Result<Verdict, String> {
        let deadline = Instant::now() + tier.timeout;
        let _ticket = tier.control.admit(tier.timeout).await.map_err(|d| declined(tier, d))?;
        let messages = [
            json!({"role": "system", "content": prompt::SYSTEM}),
            json!({"role": "user", "content": user}),
        ];
        let reply = self
            .call(tier, &messages, Some(&verdict::schema()), None, deadline)
            .await?;
        let v = verdict::parse(reply.content.as_deref().unwrap_or_default());
        if v.is_err() {
            tier.stats.unparsable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        v
    }

    /// Tier 2's conversation: tool rounds, then a verdict. Returns the verdict (or why not) and the
    /// tool results summary.
    async fn ask_tier2(&self, tier: &Tier, rounds: u32, user: &str, q: &Question) -> (Result<Verdict, String>, String) {
        let deadline = Instant::now() + tier.timeout;
        let _ticket = match tier.control.admit(tier.timeout).await {
            Ok(t) => t,
            Err(d) => return (Err(declined(tier, d)), String::new()),
        };
        let mut messages = vec![
            json!({"role": "system", "content": format!("{}{}", prompt::SYSTEM, prompt::TOOLS)}),
            json!({"role": "user", "content": user}),
        ];
        let tools = tool_definitions();
        let mut tool_log = Vec::new();
        let summary = |log: &Vec<Value>| {
            if log.is_empty() {
                String::new()
            } else {
                Value::Array(log.clone()).to_string()
            }
        };
        for round in 0..=rounds {
            // The last round offers no tools: the model must answer.
            let offer = (round < rounds).then_some(&tools);
            let schema = verdict::schema();
            let reply = match self
                .call(tier, &messages, offer.is_none().then_some(&schema), offer, deadline)
                .await
            {
                Ok(r) => r,
                Err(why) => return (Err(why), summary(&tool_log)),
            };
            if reply.tool_calls.is_empty() {
                let v = verdict::parse(reply.content.as_deref().unwrap_or_default());
                if v.is_err() {
                    tier.stats.unparsable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                return (v, summary(&tool_log));
            }
            messages.push(reply.message.clone());
            for call in reply.tool_calls.iter().take(4) {
                let result = self.run_tool(&call.name, &call.arguments, q).await;
                tool_log.push(json!({"tool": prompt::cap(&call.name, 40), "result": result}));
                messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": result.to_string()}));
            }
        }
        (Err("no verdict after the tool rounds".into()), summary(&tool_log))
    }

    async fn call(
        &self,
        tier: &Tier,
        messages: &[Value],
        schema: Option<&Value>,
        tools: Option<&Value>,
        deadline: Instant,
    ) -> Result<llm::Reply, String> {
        let started = Instant::now();
        let result = tier.client.chat(messages, schema, tools, deadline).await;
        let took = started.elapsed();
        tier.stats.record(took, result.as_ref().map(|r| r.tokens).ok());
        tracing::debug!(
            tier = tier.name,
            latency_us = took.as_micros() as u64,
            ok = result.is_ok(),
            "analyst call"
        );
        match result {
            Ok(r) => {
                tier.control.success();
                Ok(r)
            }
            Err(e) => {
                match &e {
                    ChatError::QuotaSpent(reset) => tier.control.rest_until(Instant::now() + *reset),
                    // Nobody listens: the requests queued behind this one need not find out one by one.
                    ChatError::Refused(_) => tier.control.open_now(),
                    _ => {}
                }
                tier.control.failure();
                tracing::warn!(tier = tier.name, model = tier.client.model(), error = %e, "analyst call failed");
                Err(e.to_string())
            }
        }
    }

    /// Runs one tool for the model. Only the request's own addresses may be looked up or noted.
    async fn run_tool(&self, name: &str, args: &Value, q: &Question) -> Value {
        let asked = args["ip"].as_str().and_then(canonical);
        let own: Vec<String> = std::iter::once(q.request.ip.as_str())
            .chain(q.request.forwarded_for.as_deref())
            .filter_map(canonical)
            .collect();
        let Some(ip) = asked.filter(|a| own.contains(a)) else {
            return json!({"error": "only the request's client address can be used with this tool"});
        };
        match name {
            "checkAbuseIPDB" => self.abuseipdb.lookup(&ip, &self.brain).await,
            "checkVirusTotal" => self.virustotal.lookup(&ip, &self.brain).await,
            "storeMonitoringLog" => {
                let reason = verdict::clean(args["reason"].as_str().unwrap_or_default());
                let entry = json!({
                    "at_ms": crate::store::time::now_ms(),
                    "by": "tier2",
                    "note": prompt::cap(&reason, 300),
                });
                self.brain.remember(&ip, entry).await;
                json!({"stored": true})
            }
            _ => json!({"error": "unknown tool"}),
        }
    }
}

/// The tools offered to tier 2 (OpenAI function-calling shape).
fn tool_definitions() -> Value {
    let ip_only = |desc: &str| {
        json!({
            "type": "object",
            "properties": {"ip": {"type": "string", "description": desc}},
            "required": ["ip"]
        })
    };
    json!([
        {"type": "function", "function": {
            "name": "checkAbuseIPDB",
            "description": "AbuseIPDB reputation of the request's client address: abuse confidence 0-100, reports, ISP, usage type.",
            "parameters": ip_only("the request's client address")}},
        {"type": "function", "function": {
            "name": "checkVirusTotal",
            "description": "VirusTotal verdicts on the request's client address: how many engines flag it, reputation, network owner.",
            "parameters": ip_only("the request's client address")}},
        {"type": "function", "function": {
            "name": "storeMonitoringLog",
            "description": "Keep watching the request's client address: note why, so later requests from it are judged with this context.",
            "parameters": {
                "type": "object",
                "properties": {
                    "ip": {"type": "string", "description": "the request's client address"},
                    "reason": {"type": "string", "description": "why it deserves watching"}
                },
                "required": ["ip", "reason"]
            }}}
    ])
}

/// The question's identity for the verdict cache: the sorted rule ids that fired.
pub fn signature(findings: &[Finding]) -> String {
    let mut rules: Vec<&str> = findings.iter().map(|f| f.rule_id.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    rules.join(",")
}

fn tier_name(s: &str) -> Option<&'static str> {
    match s {
        "tier1" => Some("tier1"),
        "tier2" => Some("tier2"),
        _ => None,
    }
}

fn declined(tier: &Tier, d: Declined) -> String {
    tier.stats.declined(d);
    format!("declined ({})", d.label())
}

/// The value of the environment variable `name`, if set and not empty.
fn secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Fails with the list of available models when the configured one is not among them.
async fn check_model(client: &ChatClient) -> anyhow::Result<()> {
    match client.models().await {
        Ok(models) if models.iter().any(|m| m == client.model()) => Ok(()),
        Ok(models) => anyhow::bail!(
            "tier2.model {:?} is not offered by the provider (it retires models); available: {}",
            client.model(),
            if models.is_empty() {
                "none listed".to_owned()
            } else {
                models.join(", ")
            }
        ),
        Err(e) => {
            tracing::warn!(error = %e, "tier2: cannot list the provider's models; the model is checked at its first call");
            Ok(())
        }
    }
}
