//! Hot reload: watches the plugin directory and the rules file and applies changes to the registry.
//!
//! Invariants:
//! - Events are debounced ([`DEBOUNCE`]) so an editor's burst of writes is one reload; a file written
//!   in place may still be seen half-written, which fails validation and keeps the old version — so
//!   deploy with write-to-temporary + rename.
//! - The rules file is watched through its directory, because editors and deploy tools replace it by
//!   rename. A rules file that does not parse or compile keeps the previous rules serving.
//! - Reloads run on the watcher's thread, never on a pipeline worker.
//! - Only changes count (create, write, rename, remove); reading a file is not an event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};

use super::registry::Registry;

/// Quiet time before a burst of file events is acted on.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    _debouncer: Box<dyn std::any::Any + Send>,
}

/// Starts watching `registry`'s plugin directory and, when given, the `rules` file.
pub fn watch(registry: Arc<Registry>, rules: Option<PathBuf>) -> anyhow::Result<Watcher> {
    let plugin_dir = canonical(registry.dir());
    let rules = rules.map(|r| canonical(&r));
    let rules_for_handler = rules.clone();
    let reg = registry.clone();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let events = match result {
            Ok(events) => events,
            Err(errors) => {
                for e in errors {
                    tracing::warn!(error = %e, "file watcher error");
                }
                return;
            }
        };
        // Reads are not changes: a reload reads the file, and so does every other daemon sharing
        // the directory, so reacting to access events would read and hash the plugins forever.
        let mut paths: Vec<PathBuf> = events
            .iter()
            .filter(|e| !matches!(e.kind, notify::EventKind::Access(_)))
            .flat_map(|e| e.paths.iter().cloned())
            .collect();
        paths.sort();
        paths.dedup();
        for path in paths {
            if rules_for_handler.as_deref() == Some(path.as_path()) {
                reload_rules(&reg, &path);
            } else if path.parent().map(canonical).as_deref() == Some(plugin_dir.as_path()) {
                let outcome = reg.reload_path(&path);
                tracing::debug!(file = %path.display(), ?outcome, "plugin file event");
            }
        }
    })?;
    debouncer.watch(registry.dir(), RecursiveMode::NonRecursive)?;
    if let Some(rules) = &rules
        && let Some(parent) = rules.parent()
    {
        debouncer.watch(parent, RecursiveMode::NonRecursive)?;
    }
    Ok(Watcher {
        _debouncer: Box::new(debouncer),
    })
}

fn reload_rules(registry: &Registry, path: &Path) {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let refused = registry.set_rules(text);
            if refused.is_empty() {
                tracing::info!(file = %path.display(), "rules reloaded");
            }
            for (plugin, e) in refused {
                tracing::warn!(file = %path.display(), plugin = %plugin, error = %e, "rules refused; previous rules keep serving");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot read the rules file"),
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}
