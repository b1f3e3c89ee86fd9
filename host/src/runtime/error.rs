//! Why a plugin call or load failed. These never propagate into the pipeline as `?`: the pipeline
//! turns them into fail-open (parsers, detectors) or fail-closed (policies) behaviour and counts them.

use thiserror::Error;

/// A failed plugin call.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The call ran past its deadline and was interrupted.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The plugin tried to grow its memory past its cap.
    #[error("out of memory (cap {0} bytes)")]
    OutOfMemory(usize),
    /// The plugin trapped (a Rust panic is `unreachable`).
    #[error("trapped: {0}")]
    Trap(String),
    /// The plugin returned something that breaks the contract (wrong number of results, ...).
    #[error("broke the contract: {0}")]
    Contract(String),
    /// A fresh instance could not be created or configured.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// The plugin is quarantined after repeated failures.
    #[error("quarantined for another {0:?}")]
    Quarantined(std::time::Duration),
}

/// A plugin file that could not be loaded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// Reading the file failed.
    #[error("cannot read the file: {0}")]
    Read(String),
    /// The bytes are not a valid component (garbage, empty, truncated, a core module, ...).
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component imports something the host does not offer or exports none of the worlds.
    #[error("does not fit the logsec:plugin@0.1.0 contract: {0}")]
    Contract(String),
    /// `metadata()` was refused or inconsistent.
    #[error("bad metadata: {0}")]
    Metadata(String),
    /// The plugin's `configure` refused its settings.
    #[error("configure refused the settings: {0}")]
    Configure(String),
    /// The smoke call failed.
    #[error("smoke test failed: {0}")]
    Smoke(String),
    /// Another file already provides a plugin of that name.
    #[error("a plugin named {name:?} is already loaded from {other}")]
    Duplicate {
        /// The plugin name both files claim.
        name: String,
        /// The file that has it.
        other: String,
    },
}

/// Classifies a wasmtime error from a call into a [`CallError`].
pub(crate) fn classify(err: &wasmtime::Error, timeout: std::time::Duration, memory_cap: usize) -> CallError {
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => CallError::Timeout(timeout),
            other => CallError::Trap(other.to_string()),
        };
    }
    let text = format!("{err:#}");
    if text.contains("forcing trap when growing memory") || text.contains("memory minimum size") {
        CallError::OutOfMemory(memory_cap)
    } else {
        CallError::Trap(first_line(&text))
    }
}

/// An error text on one line (wasmtime's are often several), cut to a readable length.
pub(crate) fn first_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    super::counters::logsec_truncate(&joined, 300).to_owned()
}
