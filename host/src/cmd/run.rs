//! `logsec run`: the daemon. Tails the configured sources, analyses lines in worker threads, stores
//! flagged requests, and applies the response backend (`log`, a dry run, for now).
//!
//! Invariants:
//! - Lines flow tailer → workers → store through bounded channels: when the store or the workers
//!   fall behind, the tailer waits instead of buffering without limit.
//! - Batches are stored in the order they were read, and a file's checkpoint moves only after the
//!   batch holding its lines is stored: after a crash, reading resumes at or before the first line
//!   not stored, and the store's (file, offset) key drops what was stored already.
//! - A batch the store refuses goes to the on-disk spool (`DATA_DIR/spool/`) and is replayed when
//!   the store answers again; only when the spool cannot be written either is the batch retried with
//!   backoff while reading waits. No row is dropped. A store unreachable at start-up is the same
//!   case: the daemon starts, spools, and connects when the store answers; a store URL that cannot
//!   be right (unknown scheme, unparsable) stops the start-up instead.
//! - SIGTERM and SIGINT stop the tailer, drain the workers, store what was read, write the
//!   checkpoints, and exit 0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::bounded;

use super::analysis::Analysis;
use super::stage::{Queues, StoreStage, drain_spool};
use crate::analyst::Analysts;
use crate::analyst::brain::Brain;
use crate::config::Config;
use crate::lines::DEFAULT_MAX_LINE_BYTES;
use crate::metrics::Metrics;
use crate::paths::{default_plugin_dir, default_rules};
use crate::pipeline::memory::{Allowlist, RequestCache};
use crate::pipeline::{Outcome, ParserChoice, Settings, Worker};
use crate::runtime::{Limits, PluginConfigs, Registry, Runtime, watcher};
use crate::store::Store;
use crate::store::lazy::Lazy;
use crate::store::spool::Spool;
use crate::tail::wake::Wake;
use crate::tail::{Checkpoints, SourceSpec, TailLine, Tailer};

/// Lines handed on per tailer poll (and per batch).
pub(super) const BATCH_LINES: usize = 512;
/// Longest pause between polls when the files had nothing new; a change in a watched log
/// directory ends it at once (see `tail::wake`).
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Lines of one source, in the order read.
pub(super) struct Batch {
    pub(super) seq: u64,
    pub(super) parser: ParserChoice,
    pub(super) lines: Vec<TailLine>,
}

/// A batch and what became of each of its lines.
pub(super) struct Done {
    pub(super) seq: u64,
    pub(super) lines: Vec<TailLine>,
    pub(super) outcomes: Vec<Outcome>,
}

/// The configuration used when `logsec run` gets no `--config`: the bundled sample logs read from
/// the beginning, SQLite in `./data`, dry-run blocking.
pub fn default_config() -> Config {
    let mut c = Config::default();
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/logs/*.log");
    c.sources.push(crate::config::SourceConfig {
        path: sample.to_string_lossy().into_owned(),
        format: "nginx".into(),
        read_from: crate::config::ReadFromConfig::Beginning,
        parser: None,
    });
    c
}

/// What `run` and `replay` share: the plugins and their watcher, the pipeline settings, where rows
/// go, and the counters.
pub(super) struct Agent {
    pub(super) registry: Arc<Registry>,
    pub(super) settings: Settings,
    /// The parser of each `[[sources]]` entry, in order.
    pub(super) parsers: Vec<ParserChoice>,
    pub(super) workers: usize,
    pub(super) data_dir: PathBuf,
    pub(super) store_url: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) dry_run: bool,
    _watcher: watcher::Watcher,
}

impl Agent {
    /// Loads the plugins (and starts watching them) and checks everything the configuration names,
    /// failing with a message that says what to fix.
    pub(super) fn start(config: &Config) -> anyhow::Result<Agent> {
        let data_dir = config.agent.data_dir.clone();
        std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let plugin_dir = config.agent.plugin_dir.clone().unwrap_or_else(default_plugin_dir);
        let rules_path = config.agent.rules.clone().unwrap_or_else(default_rules);
        let rules = std::fs::read_to_string(&rules_path)
            .with_context(|| format!("cannot read the rules file {}", rules_path.display()))?;

        let mut configs = PluginConfigs {
            rules: Some(rules),
            ..Default::default()
        };
        let policy = serde_json::json!({
            "block_at": config.response.block_at,
            "ban_ttl_seconds": config.response.ban_ttl.0.as_secs(),
        });
        configs
            .by_name
            .insert(config.response.policy.clone(), policy.to_string());

        let runtime = Runtime::new(Limits::default())?;
        let registry = Registry::new(runtime, &plugin_dir, configs);
        registry
            .load_dir()
            .with_context(|| format!("cannot read the plugin directory {}", plugin_dir.display()))?;
        let watcher = watcher::watch(registry.clone(), Some(rules_path.clone()))?;
        let set = registry.snapshot();
        let names: Vec<String> = set
            .plugins
            .iter()
            .map(|p| format!("{} ({})", p.name, p.kind()))
            .collect();
        tracing::info!(plugins = %names.join(", "), dir = %plugin_dir.display(), "plugins loaded");
        if set.detectors().next().is_none() {
            tracing::warn!("no detector is loaded yet: nothing is flagged until one is added to the plugin directory");
        }

        // Each source's parser, with its own settings when it has some: two sources may use one
        // parser with different settings (two nginx log_format lines).
        let mut parsers = Vec::new();
        for (i, s) in config.sources.iter().enumerate() {
            let settings = match &s.parser {
                Some(table) => Some(Arc::<str>::from(serde_json::to_string(table)?)),
                None => None,
            };
            match (set.parser(&s.format), &settings) {
                (None, _) => tracing::warn!(
                    source = %s.path, format = %s.format,
                    "no parser of that name is loaded yet: the source's lines stay unparsed until one is added"
                ),
                (Some(p), Some(settings)) => {
                    registry.variant(p, settings).map_err(|e| {
                        anyhow::anyhow!(
                            "sources[{i}] ({}): parser {} refused its settings: {e}",
                            s.path,
                            s.format
                        )
                    })?;
                }
                (Some(_), None) => {}
            }
            parsers.push(ParserChoice {
                name: Arc::from(s.format.as_str()),
                settings,
            });
        }

        let workers = config
            .agent
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let allowlist = allowlist(config)?;
        let trusted_proxies = Allowlist::parse(&config.response.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("response.trusted_proxies: {e}"))?;
        let settings = Settings {
            escalate_at: config.agent.escalate_at,
            policy: config.response.policy.clone(),
            allowlist: Arc::new(allowlist),
            trusted_proxies: Arc::new(trusted_proxies),
            cache: Some(Arc::new(RequestCache::new(config.cache.ttl.0))),
            analysts: config.tier1.is_some() || config.tier2.is_some(),
            ..Default::default()
        };
        let store_url = config.store_url();
        Store::check_url(&store_url)?;
        Ok(Agent {
            registry,
            settings,
            parsers,
            workers,
            data_dir,
            store_url,
            metrics: Arc::new(Metrics::default()),
            dry_run: config.response.backend == "log",
            _watcher: watcher,
        })
    }

    /// The store (connected when it answers) and the spool, with what the spool held offered to
    /// the store first.
    pub(super) async fn open_store(&self) -> anyhow::Result<(Lazy, Spool)> {
        let mut db = Lazy::open(&self.store_url, "rows are spooled to disk until it answers").await;
        let mut spool = Spool::open(&self.data_dir)?;
        drain_spool(&mut spool, &mut db).await;
        Ok((db, spool))
    }

    /// The analysts of `config` and the brain they share, or `None` without `[tier1]`/`[tier2]`.
    pub(super) async fn analysis(&self, config: &Config, log_time: bool) -> anyhow::Result<Option<Analysis>> {
        let brain = match Brain::connect_with_ca(&config.brain.url, config.brain.ttl.0, config.brain.ca_file.as_deref())
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the brain is unreachable; using an in-process brain (not shared with other agents)");
                Brain::connect("memory://", config.brain.ttl.0).await?
            }
        };
        let Some(analysts) = Analysts::from_config(config, Arc::new(brain)).await? else {
            return Ok(None);
        };
        let analysts = Arc::new(analysts);
        let _ = self.metrics.tiers.set(analysts.stats());
        let analysis = Analysis::new(
            analysts,
            &self.data_dir,
            self.registry.clone(),
            self.settings.clone(),
            log_time,
            config.brain.correlate_after,
        )?;
        Ok(Some(analysis))
    }

    /// Starts the workers: batches in, analysed batches out, until `batches` closes.
    pub(super) fn spawn_workers(
        &self,
        batches: &crossbeam_channel::Receiver<Batch>,
        done: &tokio::sync::mpsc::Sender<Done>,
    ) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
        let mut pool = Vec::new();
        for i in 0..self.workers {
            let rx = batches.clone();
            let tx = done.clone();
            let mut worker = Worker::new(self.registry.clone(), self.settings.clone());
            pool.push(std::thread::Builder::new().name(format!("worker-{i}")).spawn(move || {
                for b in rx {
                    let texts: Vec<String> = b.lines.iter().map(|l| l.text.clone()).collect();
                    let (outcomes, _errors) = worker.process_as(&b.parser, &texts);
                    let done = Done {
                        seq: b.seq,
                        lines: b.lines,
                        outcomes,
                    };
                    if tx.blocking_send(done).is_err() {
                        break;
                    }
                }
            })?);
        }
        Ok(pool)
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.sources.is_empty(),
        "the configuration has no [[sources]]: nothing to read"
    );
    let agent = Agent::start(&config)?;
    let checkpoints = Arc::new(Mutex::new(Checkpoints::load(&agent.data_dir)?));
    let specs: Vec<SourceSpec> = config
        .sources
        .iter()
        .map(|s| SourceSpec {
            pattern: s.path.clone(),
            read_from: s.read_from.into(),
        })
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut db, mut spool) = rt.block_on(agent.open_store())?;
    let mut analysis = rt.block_on(agent.analysis(&config, false))?;
    let enforcer = start_enforcer(&config, &agent)?;
    if !config.http.listen.is_empty() {
        rt.block_on(crate::http::serve(
            &config.http.listen,
            crate::http::State {
                metrics: agent.metrics.clone(),
                registry: agent.registry.clone(),
                book: Some(enforcer.book.clone()),
                api_keys: crate::http::api_keys(&config.http.api_keys_env),
            },
        ))?;
    }
    tracing::info!(store = %crate::store::redact(&agent.store_url), backend = %config.response.backend, "logsec running");

    let stop = Arc::new(AtomicBool::new(false));
    let (batch_tx, batch_rx) = bounded::<Batch>(agent.workers * 2);
    let (done_tx, done_rx) = tokio::sync::mpsc::channel::<Done>(agent.workers * 2);

    let tailer = {
        let (stop, checkpoints) = (stop.clone(), checkpoints.clone());
        let parsers = agent.parsers.clone();
        std::thread::Builder::new()
            .name("tail".into())
            .spawn(move || tail_loop(specs, parsers, checkpoints, batch_tx, stop))?
    };
    let pool = agent.spawn_workers(&batch_rx, &done_tx)?;
    drop(done_tx);
    let stage = StoreStage {
        metrics: &agent.metrics,
        queue: Queues { batches: batch_rx },
        dry_run: agent.dry_run,
        log_time: false,
        announce: true,
        enforcer: Some(&enforcer),
    };
    rt.block_on(stage.run(&mut db, &mut spool, done_rx, Some(&checkpoints), &stop, &mut analysis))?;
    rt.block_on(drain_spool(&mut spool, &mut db));
    tailer
        .join()
        .map_err(|_| anyhow::anyhow!("the tailer thread panicked"))??;
    for w in pool {
        w.join().map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    }
    checkpoints.lock().unwrap_or_else(|p| p.into_inner()).flush()?;
    drop(enforcer);
    rt.block_on(db.close());
    tracing::info!("logsec stopped");
    Ok(())
}

/// The addresses never banned: `response.allowlist`, and the host's own addresses when
/// `response.allow_own_addresses`.
pub fn allowlist(config: &Config) -> anyhow::Result<Allowlist> {
    let mut allowlist =
        Allowlist::parse(&config.response.allowlist).map_err(|e| anyhow::anyhow!("response.allowlist: {e}"))?;
    if config.response.allow_own_addresses {
        let n = allowlist.add_own_addresses();
        tracing::debug!(addresses = n, "the host's own addresses are allowlisted");
    }
    Ok(allowlist)
}

/// The firewall backend `response.backend` names.
pub fn backend(config: &Config) -> anyhow::Result<Box<dyn crate::enforce::backend::Backend>> {
    let r = &config.response;
    Ok(match r.backend.as_str() {
        "log" => Box::new(crate::enforce::LogBackend),
        "nftables" => Box::new(crate::enforce::nft::Nft::with_forward(r.forward)),
        "iptables" => Box::new(crate::enforce::ipset::Ipset::with_forward(r.forward)),
        "azure" => azure_backend(config)?,
        other => anyhow::bail!("response.backend {other:?} is unknown"),
    })
}

#[cfg(feature = "azure")]
fn azure_backend(config: &Config) -> anyhow::Result<Box<dyn crate::enforce::backend::Backend>> {
    let a = config
        .response
        .azure
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("response.backend = \"azure\" needs a [response.azure] section"))?;
    Ok(Box::new(crate::enforce::azure::Azure::from_config(a)?))
}

#[cfg(not(feature = "azure"))]
fn azure_backend(_: &Config) -> anyhow::Result<Box<dyn crate::enforce::backend::Backend>> {
    anyhow::bail!(
        "response.backend \"azure\" needs logsec built with the cargo feature `azure` (cargo build --release --features azure)"
    )
}

/// The ban policy of `[response]`.
pub fn policy(config: &Config) -> crate::enforce::book::Policy {
    let r = &config.response;
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    crate::enforce::book::Policy {
        ban_ttl_ms: ms(r.ban_ttl.0),
        factor: r.ban_factor,
        max_ms: ms(r.ban_max.0),
        aggregate_after: r.aggregate_after,
        v4_prefix: r.aggregate_v4,
        v6_prefix: r.aggregate_v6,
    }
}

/// The fleet of a Redis brain, when decisions are shared.
pub fn fleet(config: &Config) -> anyhow::Result<Option<crate::enforce::fleet::Fleet>> {
    if !config.response.share || config.brain.url.starts_with("memory:") {
        return Ok(None);
    }
    let client = crate::analyst::brain::redis_client(&config.brain.url, config.brain.ca_file.as_deref())?;
    Ok(Some(crate::enforce::fleet::Fleet::new(
        client,
        config.response.fleet_stream.clone(),
        crate::enforce::instance_id(),
    )))
}

/// Starts the enforcer of `config`: its backend, with the bans in force restored from the store.
fn start_enforcer(config: &Config, agent: &Agent) -> anyhow::Result<crate::enforce::Enforcer> {
    let e = crate::enforce::Enforcer::start(crate::enforce::Options {
        backend: backend(config)?,
        allowlist: agent.settings.allowlist.clone(),
        policy: policy(config),
        store_url: Some(agent.store_url.clone()),
        fleet: fleet(config)?,
        host: config.agent.name(),
    })?;
    let _ = agent.metrics.enforce.set(e.stats.clone());
    Ok(e)
}

fn tail_loop(
    specs: Vec<SourceSpec>,
    parsers: Vec<ParserChoice>,
    checkpoints: Arc<Mutex<Checkpoints>>,
    tx: crossbeam_channel::Sender<Batch>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let wake = Wake::watch(specs.iter().map(|s| s.pattern.as_str()));
    let mut tailer = Tailer::new(specs, DEFAULT_MAX_LINE_BYTES);
    let mut seq = 0;
    let mut lines = Vec::with_capacity(BATCH_LINES);
    while !stop.load(Ordering::Relaxed) {
        lines.clear();
        {
            let c = checkpoints.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = tailer.poll(&c, &mut lines, BATCH_LINES) {
                tracing::warn!(error = %e, "reading the sources failed; retrying");
            }
        }
        if lines.is_empty() {
            wake.wait(IDLE_POLL);
            continue;
        }
        // One batch per source, since sources may use different parsers.
        let mut by_source: BTreeMap<usize, Vec<TailLine>> = BTreeMap::new();
        for l in lines.drain(..) {
            by_source.entry(l.source).or_default().push(l);
        }
        for (source, lines) in by_source {
            if tx
                .send(Batch {
                    seq,
                    parser: parsers[source].clone(),
                    lines,
                })
                .is_err()
            {
                return Ok(());
            }
            seq += 1;
        }
    }
    Ok(())
}
