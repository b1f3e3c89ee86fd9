//! What a plugin's store holds: a deny-all WASI context, resource limits, and the host imports
//! (`log`, `count`).
//!
//! Invariants: no preopened directory, no socket, no environment variable, no argument reaches a
//! plugin. Log messages are rate limited per store, cut to [`MAX_LOG_BYTES`] and escaped before they
//! reach the host's log, since plugins often echo attacker-controlled text.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::Level;
use super::bindings::parser::logsec::plugin::{host, types};
use super::counters::{Counters, logsec_truncate};

/// Longest log message a plugin may write; the rest is cut.
pub const MAX_LOG_BYTES: usize = 1024;
/// Log messages a store may write per second before messages are dropped (and counted).
pub const LOG_MESSAGES_PER_SECOND: u32 = 50;

/// The data of one plugin store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: Limiter,
    plugin: Arc<str>,
    counters: Arc<Counters>,
    log_window: (Instant, u32),
    /// Log messages dropped by the rate limit since the store was created.
    pub(crate) logs_dropped: u64,
}

impl PluginState {
    /// A fresh state for `plugin` with `limits`, sharing `counters`.
    pub fn new(plugin: Arc<str>, limits: StoreLimits, counters: Arc<Counters>) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        PluginState {
            wasi: WasiCtx::builder().build(),
            table,
            limits: Limiter {
                inner: limits,
                memory_bytes: 0,
            },
            plugin,
            counters,
            log_window: (Instant::now(), 0),
            logs_dropped: 0,
        }
    }
}

/// Most WASI resources (streams, handles) a plugin may hold at once; plugins need a handful.
const MAX_RESOURCES: usize = 1000;

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let now = Instant::now();
        if now.duration_since(self.log_window.0).as_secs() >= 1 {
            self.log_window = (now, 0);
        }
        if self.log_window.1 >= LOG_MESSAGES_PER_SECOND {
            self.logs_dropped += 1;
            return;
        }
        self.log_window.1 += 1;
        let message = logsec_truncate(&message, MAX_LOG_BYTES).escape_debug().to_string();
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn count(&mut self, key: String, window_seconds: u32, delta: u32) -> u64 {
        self.counters.add(&self.plugin, &key, window_seconds, delta)
    }
}

/// Wraps wasmtime's `StoreLimits` to also track how much linear memory the plugin holds.
pub(crate) struct Limiter {
    inner: StoreLimits,
    /// Bytes of linear memory currently allocated by the store's memories.
    pub(crate) memory_bytes: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if ok {
            self.memory_bytes = self.memory_bytes.saturating_add(desired.saturating_sub(current));
        }
        Ok(ok)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}
