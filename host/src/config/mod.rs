//! The configuration file (TOML, ARCHITECTURE §6).
//!
//! Invariants:
//! - Every section and every key is optional; the defaults run logsec on the bundled sample logs
//!   with SQLite in the data directory, an in-memory brain and dry-run blocking.
//! - Unknown sections and keys are errors naming the key (`deny_unknown_fields`), so a typo never
//!   silently falls back to a default.
//! - Secrets are never in the file: sections name the environment variables that hold them.

pub mod duration;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

pub use duration::HumanDuration;

use crate::tail::ReadFrom;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[agent]`
    pub agent: AgentConfig,
    /// `[[sources]]`
    pub sources: Vec<SourceConfig>,
    /// `[cache]`
    pub cache: CacheConfig,
    /// `[store]`
    pub store: StoreConfig,
    /// `[brain]`
    pub brain: BrainConfig,
    /// `[tier1]`
    pub tier1: Option<Tier1Config>,
    /// `[tier2]`
    pub tier2: Option<Tier2Config>,
    /// `[intel]`
    pub intel: IntelConfig,
    /// `[response]`
    pub response: ResponseConfig,
    /// `[http]`
    pub http: HttpConfig,
}

/// `[agent]`: where things are and how many workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Checkpoints, the SQLite store and the spool live here.
    pub data_dir: PathBuf,
    /// Plugin directory (default: the built plugins in the workspace, else /usr/lib/logsec/plugins).
    pub plugin_dir: Option<PathBuf>,
    /// Rules of the `patterns` detector.
    pub rules: Option<PathBuf>,
    /// Pipeline workers (default: one per core).
    pub workers: Option<usize>,
    /// Lowest combined rule score that is analysed further (below it a request is benign).
    pub escalate_at: u8,
    /// This agent's name in decisions shared with the fleet (default: the host name).
    pub name: Option<String>,
}

impl AgentConfig {
    /// The agent's name: `name`, else the host name, else `logsec`.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "logsec".into())
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            data_dir: PathBuf::from("./data"),
            plugin_dir: None,
            rules: None,
            workers: None,
            escalate_at: crate::pipeline::DEFAULT_ESCALATE_AT,
            name: None,
        }
    }
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A file or a glob.
    pub path: String,
    /// The parser (`nginx`, `json`, or any loaded parser's name).
    #[serde(default = "default_format")]
    pub format: String,
    /// Where to start in files present at start-up.
    #[serde(default = "default_read_from")]
    pub read_from: ReadFromConfig,
    /// Settings for this source's parser (e.g. `log_format = "..."` for nginx), as a TOML table.
    #[serde(default)]
    pub parser: Option<toml::Table>,
}

fn default_format() -> String {
    "nginx".into()
}

fn default_read_from() -> ReadFromConfig {
    ReadFromConfig::End
}

/// `read_from = "end" | "beginning"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFromConfig {
    /// Only lines written from now on.
    End,
    /// The whole file.
    Beginning,
}

impl From<ReadFromConfig> for ReadFrom {
    fn from(r: ReadFromConfig) -> ReadFrom {
        match r {
            ReadFromConfig::End => ReadFrom::End,
            ReadFromConfig::Beginning => ReadFrom::Beginning,
        }
    }
}

/// `[cache]`: how long an address decided malicious stays decided.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Time to live of a malicious verdict for an address.
    pub ttl: HumanDuration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: HumanDuration::secs(3600),
        }
    }
}

/// `[store]`: where analysed requests are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://...` (default: SQLite in the data directory).
    pub url: Option<String>,
}

/// `[brain]`: short-term memory shared by agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrainConfig {
    /// `memory://`, `redis://...` or `rediss://...`.
    pub url: String,
    /// How long monitoring entries, verdicts and event counts live.
    pub ttl: HumanDuration,
    /// Requests from one address scoring below `escalate_at` (but above 0) within `ttl` that
    /// together go to the analysts.
    pub correlate_after: u32,
    /// PEM file of the CA that signed a `rediss://` server's certificate (self-hosted Redis with a
    /// private CA); without it the bundled web PKI roots are used (Upstash).
    pub ca_file: Option<PathBuf>,
}

impl Default for BrainConfig {
    fn default() -> Self {
        BrainConfig {
            url: "memory://".into(),
            ttl: HumanDuration::secs(3600),
            correlate_after: 3,
            ca_file: None,
        }
    }
}

/// `[tier1]`: the local analyst.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier1Config {
    /// `ollama` or `openai` (any OpenAI-compatible local server: llama.cpp, vLLM).
    #[serde(default = "default_tier1_provider")]
    pub provider: String,
    /// Base URL (for `openai`, the part before `/chat/completions`, e.g. `http://127.0.0.1:8080/v1`).
    #[serde(default = "default_tier1_url")]
    pub url: String,
    /// Model name.
    #[serde(default = "default_tier1_model")]
    pub model: String,
    /// Confidence from which its verdict decides.
    #[serde(default = "default_confident_at")]
    pub confident_at: u8,
    /// Confidence from which an undecided request is remembered as monitoring.
    #[serde(default = "default_monitor_from")]
    pub monitor_from: u8,
    /// Environment variable holding an API key, for `openai` servers that want one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// How long Ollama keeps the model loaded after a call.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: String,
    /// Longest wait for one verdict, retries included.
    #[serde(default = "default_tier1_timeout")]
    pub timeout: HumanDuration,
    /// Calls in flight at once.
    #[serde(default = "default_tier1_concurrency")]
    pub concurrency: usize,
    /// Calls started per minute; requests beyond it fall back to the rules verdict.
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
}

fn default_tier1_provider() -> String {
    "ollama".into()
}
fn default_tier1_url() -> String {
    "http://127.0.0.1:11434".into()
}
fn default_tier1_model() -> String {
    "phi3.5:3.8b".into()
}
fn default_confident_at() -> u8 {
    8
}
fn default_monitor_from() -> u8 {
    4
}
fn default_keep_alive() -> String {
    "5m".into()
}
fn default_tier1_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_tier1_concurrency() -> usize {
    2
}
fn default_per_minute() -> u32 {
    30
}

/// `[tier2]`: the cloud analyst.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier2Config {
    /// `openai` (OpenAI-compatible API).
    #[serde(default = "default_tier2_provider")]
    pub provider: String,
    /// Base URL.
    #[serde(default = "default_tier2_url")]
    pub url: String,
    /// Model name; checked against `GET /models` at start-up.
    #[serde(default = "default_tier2_model")]
    pub model: String,
    /// Environment variable holding the API key.
    #[serde(default = "default_tier2_key_env")]
    pub api_key_env: String,
    /// Longest wait for one verdict, tool calls and retries included.
    #[serde(default = "default_tier2_timeout")]
    pub timeout: HumanDuration,
    /// Calls in flight at once.
    #[serde(default = "default_tier2_concurrency")]
    pub concurrency: usize,
    /// Verdicts started per minute (Cerebras' free tier allows 30 requests a minute).
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    /// Rounds of tool calls before the model must answer.
    #[serde(default = "default_tool_rounds")]
    pub max_tool_rounds: u32,
}

fn default_tier2_provider() -> String {
    "openai".into()
}
fn default_tier2_url() -> String {
    "https://api.cerebras.ai/v1".into()
}
fn default_tier2_model() -> String {
    "gpt-oss-120b".into()
}
fn default_tier2_key_env() -> String {
    "CEREBRAS_API_KEY".into()
}
fn default_tier2_timeout() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_tier2_concurrency() -> usize {
    4
}
fn default_tool_rounds() -> u32 {
    4
}

/// `[intel]`: threat-intelligence services for the tier-2 analyst's tools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntelConfig {
    /// Environment variable holding the AbuseIPDB key.
    pub abuseipdb_key_env: String,
    /// Environment variable holding the VirusTotal key.
    pub virustotal_key_env: String,
    /// AbuseIPDB base URL.
    pub abuseipdb_url: String,
    /// VirusTotal base URL.
    pub virustotal_url: String,
}

impl Default for IntelConfig {
    fn default() -> Self {
        IntelConfig {
            abuseipdb_key_env: "ABUSEIPDB_API_KEY".into(),
            virustotal_key_env: "VIRUSTOTAL_API_KEY".into(),
            abuseipdb_url: "https://api.abuseipdb.com".into(),
            virustotal_url: "https://www.virustotal.com".into(),
        }
    }
}

/// `[response]`: what to do with malicious addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    /// Confidence from which an address is blocked.
    pub block_at: u8,
    /// `log` (dry run), `nftables`, `iptables` or `azure`.
    pub backend: String,
    /// Ban length.
    pub ban_ttl: HumanDuration,
    /// Addresses never blocked (CIDRs).
    pub allowlist: Vec<String>,
    /// The response-policy plugin to use.
    pub policy: String,
    /// Each later ban of the same address lasts this many times longer (1 keeps them equal), as
    /// fail2ban's `bantime.increment`.
    pub ban_factor: f64,
    /// No ban lasts longer than this.
    pub ban_max: HumanDuration,
    /// Ban a whole IPv4 /`aggregate_v4` or IPv6 /`aggregate_v6` block once this many of its
    /// addresses are banned; 0 never does.
    pub aggregate_after: u32,
    /// Block size for IPv4 aggregation (prefix length).
    pub aggregate_v4: u8,
    /// Block size for IPv6 aggregation (prefix length).
    pub aggregate_v6: u8,
    /// Proxies (CIDRs) whose requests are attributed to the client they report
    /// (`X-Forwarded-For`): the ban applies to the client, never to the proxy.
    pub trusted_proxies: Vec<String>,
    /// Add the host's own addresses to the allowlist.
    pub allow_own_addresses: bool,
    /// Also drop banned sources on the forward hook (Docker hosts: published container ports are
    /// forwarded traffic, which input rules never see).
    pub forward: bool,
    /// Share decisions with the other agents of a Redis brain.
    pub share: bool,
    /// The Redis stream decisions are shared through (agents of one fleet use the same).
    pub fleet_stream: String,
    /// `[response.azure]`
    pub azure: Option<AzureConfig>,
}

/// `[response.azure]`: the Network Security Group to add deny rules to. Credentials come from
/// the standard `AZURE_*` environment variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group of the NSG.
    pub resource_group: String,
    /// NSG name.
    pub nsg: String,
    /// Priority of the first deny rule (the next ones follow it).
    #[serde(default = "default_priority_base")]
    pub priority_base: u16,
    /// Resource Manager endpoint.
    #[serde(default = "default_azure_endpoint")]
    pub endpoint: String,
    /// Addresses per rule (`sourceAddressPrefixes`).
    #[serde(default = "default_prefixes_per_rule")]
    pub prefixes_per_rule: usize,
    /// Most rules logsec adds.
    #[serde(default = "default_max_rules")]
    pub max_rules: usize,
}

fn default_priority_base() -> u16 {
    100
}
fn default_azure_endpoint() -> String {
    "https://management.azure.com".into()
}
fn default_prefixes_per_rule() -> usize {
    1000
}
fn default_max_rules() -> usize {
    50
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            block_at: 8,
            backend: "log".into(),
            ban_ttl: HumanDuration::secs(3600),
            allowlist: vec!["127.0.0.0/8".into(), "::1/128".into()],
            policy: "threshold".into(),
            ban_factor: 2.0,
            ban_max: HumanDuration::secs(7 * 24 * 3600),
            aggregate_after: 0,
            aggregate_v4: 24,
            aggregate_v6: 64,
            trusted_proxies: Vec::new(),
            allow_own_addresses: true,
            forward: false,
            share: true,
            fleet_stream: crate::enforce::fleet::STREAM.into(),
            azure: None,
        }
    }
}

/// `[http]`: metrics and API listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on; empty disables the listener.
    pub listen: String,
    /// Environment variables holding the API keys of bouncers allowed to read decisions
    /// (`X-Api-Key`, CrowdSec's LAPI); the decisions API is off when none is set.
    pub api_keys_env: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
            api_keys_env: vec!["LOGSEC_BOUNCER_KEY".into()],
        }
    }
}

impl Config {
    /// Parses TOML text; errors name the offending key and line.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid configuration {}", path.display()))
    }

    /// The store URL: `[store] url`, else SQLite in the data directory.
    pub fn store_url(&self) -> String {
        self.store
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.agent.data_dir.join("logsec.db").display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        let check_score = |name: &str, v: u8| {
            anyhow::ensure!((1..=10).contains(&v), "{name} must be 1..=10, got {v}");
            Ok(())
        };
        check_score("agent.escalate_at", self.agent.escalate_at)?;
        check_score("response.block_at", self.response.block_at)?;
        if let Some(t) = &self.tier1 {
            check_score("tier1.confident_at", t.confident_at)?;
            check_score("tier1.monitor_from", t.monitor_from)?;
            anyhow::ensure!(
                ["ollama", "openai"].contains(&t.provider.as_str()),
                "tier1.provider must be \"ollama\" or \"openai\", got {:?}",
                t.provider
            );
            anyhow::ensure!(
                t.monitor_from <= t.confident_at,
                "tier1.monitor_from ({}) must not be above tier1.confident_at ({})",
                t.monitor_from,
                t.confident_at
            );
            anyhow::ensure!(t.concurrency >= 1, "tier1.concurrency must be at least 1");
        }
        if let Some(t) = &self.tier2 {
            anyhow::ensure!(
                t.provider == "openai",
                "tier2.provider must be \"openai\" (any OpenAI-compatible API), got {:?}",
                t.provider
            );
            anyhow::ensure!(t.concurrency >= 1, "tier2.concurrency must be at least 1");
        }
        anyhow::ensure!(
            ["memory", "redis", "rediss"].contains(&self.brain.url.split("://").next().unwrap_or_default()),
            "brain.url must start with memory://, redis:// or rediss://"
        );
        anyhow::ensure!(
            ["log", "nftables", "iptables", "azure"].contains(&self.response.backend.as_str()),
            "response.backend must be one of log, nftables, iptables, azure; got {:?}",
            self.response.backend
        );
        for (i, s) in self.sources.iter().enumerate() {
            anyhow::ensure!(!s.path.trim().is_empty(), "sources[{i}].path is empty");
            glob::Pattern::new(&s.path).map_err(|e| anyhow::anyhow!("sources[{i}].path {:?}: {e}", s.path))?;
        }
        crate::pipeline::memory::Allowlist::parse(&self.response.allowlist)
            .map_err(|e| anyhow::anyhow!("response.allowlist: {e}"))?;
        crate::pipeline::memory::Allowlist::parse(&self.response.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("response.trusted_proxies: {e}"))?;
        let r = &self.response;
        anyhow::ensure!(
            r.ban_factor.is_finite() && (1.0..=100.0).contains(&r.ban_factor),
            "response.ban_factor must be 1..=100, got {}",
            r.ban_factor
        );
        anyhow::ensure!(
            r.ban_ttl.0 >= std::time::Duration::from_secs(1),
            "response.ban_ttl must be at least 1s"
        );
        anyhow::ensure!(
            r.ban_max.0 >= r.ban_ttl.0,
            "response.ban_max must not be shorter than response.ban_ttl"
        );
        anyhow::ensure!(
            (8..=32).contains(&r.aggregate_v4) && (16..=128).contains(&r.aggregate_v6),
            "response.aggregate_v4 must be 8..=32 and response.aggregate_v6 16..=128"
        );
        if r.backend == "azure" {
            let Some(a) = &r.azure else {
                anyhow::bail!("response.backend = \"azure\" needs a [response.azure] section");
            };
            for (k, v) in [
                ("subscription_id", &a.subscription_id),
                ("resource_group", &a.resource_group),
                ("nsg", &a.nsg),
            ] {
                anyhow::ensure!(!v.trim().is_empty(), "response.azure.{k} is empty");
            }
            anyhow::ensure!(
                (100..=4096).contains(&a.priority_base),
                "response.azure.priority_base must be 100..=4096 (Azure's range), got {}",
                a.priority_base
            );
            anyhow::ensure!(
                (1..=4000).contains(&a.prefixes_per_rule),
                "response.azure.prefixes_per_rule must be 1..=4000"
            );
            anyhow::ensure!(
                a.max_rules >= 1 && usize::from(a.priority_base) + a.max_rules <= 4097,
                "response.azure.max_rules must be at least 1 and keep priorities within 4096"
            );
        }
        if let Some(w) = self.agent.workers {
            anyhow::ensure!((1..=256).contains(&w), "agent.workers must be 1..=256, got {w}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.response.backend, "log");
        assert_eq!(c.brain.url, "memory://");
        assert_eq!(c.cache.ttl, HumanDuration::secs(3600));
        assert!(c.sources.is_empty() && c.tier1.is_none());
    }

    #[test]
    fn a_full_file_parses() {
        let c = Config::parse(
            r#"
            [agent]
            data_dir = "/var/lib/logsec"
            workers = 2
            [[sources]]
            path = "/var/log/nginx/*.log"
            format = "nginx"
            read_from = "beginning"
            parser = { log_format = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent' }
            [cache]
            ttl = "30m"
            [store]
            url = "postgres://127.0.0.1/test"
            [brain]
            url = "redis://127.0.0.1:6379"
            ttl = "1h"
            [tier1]
            model = "phi3.5:3.8b"
            [tier2]
            api_key_env = "CEREBRAS_API_KEY"
            [response]
            block_at = 9
            backend = "nftables"
            ban_ttl = "2h"
            allowlist = ["10.0.0.0/8"]
            [http]
            listen = "127.0.0.1:9464"
            "#,
        )
        .unwrap();
        assert_eq!(c.sources[0].read_from, ReadFromConfig::Beginning);
        assert!(c.sources[0].parser.as_ref().unwrap().contains_key("log_format"));
        assert_eq!(c.cache.ttl.0.as_secs(), 1800);
        assert_eq!(c.tier1.unwrap().confident_at, 8);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = Config::parse("[response]\nbloc_at = 8\n").unwrap_err().to_string();
        assert!(e.contains("bloc_at"), "{e}");
        let e = Config::parse("[responce]\n").unwrap_err().to_string();
        assert!(e.contains("responce"), "{e}");
        let e = Config::parse("[[sources]]\npath = \"/x\"\nformt = \"nginx\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("formt"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(
            Config::parse("[cache]\nttl = \"soon\"\n")
                .unwrap_err()
                .to_string()
                .contains("soon")
        );
        assert!(
            Config::parse("[response]\nbackend = \"pf\"\n")
                .unwrap_err()
                .to_string()
                .contains("backend")
        );
        assert!(
            Config::parse("[response]\nblock_at = 11\n")
                .unwrap_err()
                .to_string()
                .contains("block_at")
        );
    }
}
