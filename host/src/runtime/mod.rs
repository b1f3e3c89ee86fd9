//! The plugin runtime: one wasmtime engine, plugins compiled once and validated before use, warm
//! instances per worker, limits on every call, quarantine for plugins that keep failing, and hot
//! reload by atomic swap.
//!
//! Invariants (details in each module):
//! - Nothing a plugin does can crash the host: traps, timeouts and out-of-memory become
//!   [`CallError`]s, the failed instance is dropped, and callers fail open (parsers, detectors) or
//!   closed (policies).
//! - Plugins see no filesystem, network, environment or clock beyond what WASI's deny-all context
//!   gives; they import only `logsec:plugin/host`.
//! - A plugin version is immutable; changes arrive as new versions swapped in between batches.

pub mod bindings;
pub mod counters;
pub mod engine;
pub mod error;
pub mod instance;
pub mod plugin;
pub mod registry;
pub mod state;
pub mod supervisor;
pub mod watcher;

pub use engine::{Limits, Runtime};
pub use error::{CallError, LoadError};
pub use instance::Instance;
pub use plugin::LoadedPlugin;
pub use registry::{PluginConfigs, PluginSet, Registry, ReloadOutcome};
