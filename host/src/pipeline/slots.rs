//! A worker's warm instances, one per plugin version, and the failure handling around every call.
//!
//! Invariants:
//! - An instance is reused only while its plugin version is current and it has never failed; a
//!   version change or a failed call drops it and the next call builds a fresh one.
//! - A failed batch is not lost: it is split in halves and retried until the failing items are
//!   isolated, so one poisonous line costs that line alone. Every failure is a strike on the plugin's
//!   health; a quarantined plugin is skipped at once for every remaining item.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::runtime::{CallError, Instance, LoadedPlugin, PluginSet, Runtime};

/// Warm instances of one worker.
#[derive(Default)]
pub struct Slots {
    /// By plugin file and variant.
    slots: HashMap<(PathBuf, u64), Slot>,
}

struct Slot {
    generation: u64,
    instance: Option<Instance>,
}

impl Slots {
    /// Drops instances of plugins that are gone or were replaced in `set`.
    pub fn refresh(&mut self, set: &PluginSet) {
        self.slots.retain(|(path, _), slot| {
            set.plugins
                .iter()
                .any(|p| &p.path == path && p.generation == slot.generation)
        });
    }

    /// Calls `call` on `items` through `plugin`, splitting the batch on failure. Returns one result
    /// per item, in order.
    pub fn call<I, O>(
        &mut self,
        runtime: &Runtime,
        plugin: &Arc<LoadedPlugin>,
        items: &[I],
        call: fn(&mut Instance, &[I]) -> Result<Vec<O>, CallError>,
    ) -> Vec<Result<O, CallError>> {
        let mut out = Vec::with_capacity(items.len());
        self.call_into(runtime, plugin, items, call, &mut out);
        out
    }

    fn call_into<I, O>(
        &mut self,
        runtime: &Runtime,
        plugin: &Arc<LoadedPlugin>,
        items: &[I],
        call: fn(&mut Instance, &[I]) -> Result<Vec<O>, CallError>,
        out: &mut Vec<Result<O, CallError>>,
    ) {
        if items.is_empty() {
            return;
        }
        if let Err(e) = plugin.health.admit() {
            out.extend(items.iter().map(|_| Err(e.clone())));
            return;
        }
        let started = Instant::now();
        let result = self.instance(runtime, plugin).and_then(|inst| call(inst, items));
        match result {
            Ok(values) => {
                plugin.health.success(items.len(), started.elapsed());
                out.extend(values.into_iter().map(Ok));
            }
            Err(e) => {
                self.slots.remove(&(plugin.path.clone(), plugin.variant));
                if let Some(backoff) = plugin.health.failure(&e) {
                    tracing::warn!(plugin = %plugin.name, error = %e, backoff_s = backoff.as_secs_f64(), "plugin quarantined");
                } else {
                    tracing::debug!(plugin = %plugin.name, error = %e, items = items.len(), "plugin call failed");
                }
                if items.len() == 1 {
                    out.push(Err(e));
                    return;
                }
                let (left, right) = items.split_at(items.len() / 2);
                self.call_into(runtime, plugin, left, call, out);
                self.call_into(runtime, plugin, right, call, out);
            }
        }
    }

    fn instance(&mut self, runtime: &Runtime, plugin: &Arc<LoadedPlugin>) -> Result<&mut Instance, CallError> {
        let slot = self
            .slots
            .entry((plugin.path.clone(), plugin.variant))
            .or_insert_with(|| Slot {
                generation: plugin.generation,
                instance: None,
            });
        if slot.generation != plugin.generation || slot.instance.as_ref().is_some_and(Instance::is_poisoned) {
            slot.generation = plugin.generation;
            slot.instance = None;
        }
        if slot.instance.is_none() {
            slot.instance = Some(plugin.instantiate(runtime)?);
        }
        Ok(slot.instance.as_mut().expect("instance was just created"))
    }

    /// Linear memory held by this worker's instances, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.slots
            .values()
            .filter_map(|s| s.instance.as_ref())
            .map(Instance::memory_bytes)
            .sum()
    }
}
