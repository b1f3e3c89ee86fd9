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
//!   backoff while reading waits. No row is dropped.
//! - SIGTERM and SIGINT stop the tailer, drain the workers, store what was read, write the
//!   checkpoints, and exit 0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::bounded;

use super::stage::{Queues, StoreStage, drain_spool};
use crate::config::Config;
use crate::lines::DEFAULT_MAX_LINE_BYTES;
use crate::metrics::Metrics;
use crate::paths::{default_plugin_dir, default_rules};
use crate::pipeline::memory::{Allowlist, RequestCache};
use crate::pipeline::{Outcome, Settings, Worker};
use crate::runtime::{Limits, PluginConfigs, Registry, Runtime, watcher};
use crate::store::Store;
use crate::store::spool::Spool;
use crate::tail::{Checkpoints, SourceSpec, TailLine, Tailer};

/// Lines handed on per tailer poll (and per batch).
const BATCH_LINES: usize = 512;
/// Pause between polls when the files had nothing new.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Lines of one source, in the order read.
pub(super) struct Batch {
    pub(super) seq: u64,
    pub(super) format: Arc<str>,
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

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.sources.is_empty(),
        "the configuration has no [[sources]]: nothing to read"
    );
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
    for s in &config.sources {
        if let Some(settings) = &s.parser {
            configs
                .by_name
                .entry(s.format.clone())
                .or_insert(serde_json::to_string(settings)?);
        }
    }
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
    let _watcher = watcher::watch(registry.clone(), Some(rules_path.clone()))?;
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

    let store_url = config
        .store
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("logsec.db").display()));
    let checkpoints = Arc::new(Mutex::new(Checkpoints::load(&data_dir)?));
    let specs: Vec<SourceSpec> = config
        .sources
        .iter()
        .map(|s| SourceSpec {
            pattern: s.path.clone(),
            read_from: s.read_from.into(),
        })
        .collect();
    let formats: Vec<Arc<str>> = config.sources.iter().map(|s| Arc::from(s.format.as_str())).collect();
    let workers = config
        .agent
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let allowlist =
        Allowlist::parse(&config.response.allowlist).map_err(|e| anyhow::anyhow!("response.allowlist: {e}"))?;
    let settings = Settings {
        escalate_at: config.agent.escalate_at,
        policy: config.response.policy.clone(),
        allowlist: Arc::new(allowlist),
        cache: Some(Arc::new(RequestCache::new(config.cache.ttl.0))),
        ..Default::default()
    };

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = rt.block_on(Store::connect(&store_url))?;
    let mut spool = Spool::open(&data_dir)?;
    rt.block_on(drain_spool(&mut spool, &store));
    let metrics = Arc::new(Metrics::default());
    if !config.http.listen.is_empty() {
        rt.block_on(crate::http::serve(
            &config.http.listen,
            metrics.clone(),
            registry.clone(),
        ))?;
    }
    tracing::info!(store = %crate::store::redact(&store_url), backend = %config.response.backend, "logsec running");

    let stop = Arc::new(AtomicBool::new(false));
    let (batch_tx, batch_rx) = bounded::<Batch>(workers * 2);
    let (done_tx, done_rx) = tokio::sync::mpsc::channel::<Done>(workers * 2);

    let tailer = {
        let (stop, checkpoints) = (stop.clone(), checkpoints.clone());
        std::thread::Builder::new()
            .name("tail".into())
            .spawn(move || tail_loop(specs, formats, checkpoints, batch_tx, stop))?
    };
    let mut pool = Vec::new();
    for i in 0..workers {
        let rx = batch_rx.clone();
        let tx = done_tx.clone();
        let mut worker = Worker::new(registry.clone(), settings.clone());
        pool.push(std::thread::Builder::new().name(format!("worker-{i}")).spawn(move || {
            for b in rx {
                let texts: Vec<String> = b.lines.iter().map(|l| l.text.clone()).collect();
                let (outcomes, _errors) = worker.process_as(&b.format, &texts);
                if tx
                    .blocking_send(Done {
                        seq: b.seq,
                        lines: b.lines,
                        outcomes,
                    })
                    .is_err()
                {
                    break;
                }
            }
        })?);
    }
    drop(done_tx);
    let queue = Queues {
        batches: batch_rx.clone(),
    };
    drop(batch_rx);

    let dry_run = config.response.backend == "log";
    let stage = StoreStage {
        store: &store,
        metrics: &metrics,
        queue,
        dry_run,
        log_time: false,
    };
    rt.block_on(stage.run(&mut spool, done_rx, &checkpoints, &stop))?;
    rt.block_on(drain_spool(&mut spool, &store));
    tailer
        .join()
        .map_err(|_| anyhow::anyhow!("the tailer thread panicked"))??;
    for w in pool {
        w.join().map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    }
    checkpoints.lock().unwrap_or_else(|p| p.into_inner()).flush()?;
    rt.block_on(store.close());
    tracing::info!("logsec stopped");
    Ok(())
}

fn tail_loop(
    specs: Vec<SourceSpec>,
    formats: Vec<Arc<str>>,
    checkpoints: Arc<Mutex<Checkpoints>>,
    tx: crossbeam_channel::Sender<Batch>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
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
            std::thread::sleep(IDLE_POLL);
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
                    format: formats[source].clone(),
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
