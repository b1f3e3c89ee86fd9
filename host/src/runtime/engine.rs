//! The one wasmtime `Engine` of the process, its epoch ticker, the shared `Linker`, and the limits
//! every plugin store runs under.
//!
//! Invariants:
//! - One engine per process: compiled code is shared by every plugin version and worker, and cached
//!   on disk (wasmtime's cache) so a plugin is compiled once per machine, not once per start.
//! - Every call runs under an epoch deadline ([`Limits::call_timeout`]) and a memory cap
//!   ([`Limits::max_memory_bytes`], trap on grow failure). The ticker thread ends with the engine.
//! - The linker offers exactly the `logsec:plugin/host` interface and a deny-all WASI p2.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder};

use super::bindings::parser::Parser;
use super::counters::Counters;
use super::state::PluginState;

/// How often the epoch advances. Deadlines are counted in ticks, so this is their resolution; 10 ms
/// costs nothing measurable and lets a 1 s budget overrun by at most 1 %.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits for every plugin store.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest a plugin's linear memory may grow; growing past it traps.
    pub max_memory_bytes: usize,
    /// Wall-clock budget of one call (a whole batch).
    pub call_timeout: Duration,
    /// Budget of instantiating and configuring a plugin (the patterns detector compiles its regexes
    /// in `configure`; a Python plugin boots its interpreter).
    pub setup_timeout: Duration,
    /// Most core instances, memories and tables one component may create (componentize-py
    /// components carry a few dozen core instances).
    pub max_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 256 << 20,
            call_timeout: Duration::from_secs(2),
            setup_timeout: Duration::from_secs(20),
            max_instances: 200,
        }
    }
}

/// The engine, linker, limits and counters shared by every plugin.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<PluginState>,
    pub(crate) counters: Arc<Counters>,
    /// The limits new stores get.
    pub limits: Limits,
}

impl Runtime {
    /// Builds the engine (with the on-disk compile cache when one can be opened), starts the epoch
    /// ticker and prepares the linker.
    pub fn new(limits: Limits) -> anyhow::Result<Arc<Runtime>> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            .memory_init_cow(true)
            .parallel_compilation(true);
        if std::env::var_os("LOGSEC_PERF_MAP").is_some() {
            // Names JIT-compiled plugin functions for `perf` (writes /tmp/perf-PID.map).
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if std::env::var_os("LOGSEC_NO_COMPILE_CACHE").is_none() {
            match wasmtime::Cache::from_file(None) {
                Ok(cache) => {
                    cfg.cache(Some(cache));
                }
                Err(e) => tracing::warn!(error = %e, "no compile cache; plugins are compiled at every start"),
            }
        }
        let engine = Engine::new(&cfg).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Parser::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            counters: Arc::new(Counters::default()),
            limits,
        }))
    }

    /// A fresh store for `plugin` under this runtime's limits.
    pub(crate) fn new_store(&self, plugin: Arc<str>) -> Store<PluginState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.max_memory_bytes)
            .instances(self.limits.max_instances)
            .memories(self.limits.max_instances)
            .tables(self.limits.max_instances)
            .table_elements(1 << 20)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, PluginState::new(plugin, limits, self.counters.clone()));
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(self.limits.setup_timeout));
        store
    }

    /// The shared windowed counters (`count` import).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// Epoch ticks in `d`, at least one.
pub(crate) fn ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                let Some(engine) = weak.upgrade() else { break };
                engine.increment_epoch();
            }
        })
        .expect("spawn the epoch ticker thread");
}
