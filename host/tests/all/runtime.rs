//! Containment: hostile components cannot crash the host, run forever, or take unbounded memory, and
//! a failed instance is replaced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use logsec::pipeline::slots::Slots;
use logsec::runtime::bindings::Request;
use logsec::runtime::{CallError, Instance, LoadError, PluginConfigs, Registry, ReloadOutcome};

use super::wat::{Behaviour, detector, detector_armed};
use super::{test_runtime, write_atomic};

fn registry_with(behaviour: Behaviour) -> (tempfile::TempDir, Arc<Registry>) {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(
        &dir.path().join("hostile.wasm"),
        &detector("hostile", "1.0.0", behaviour),
    );
    let reg = Registry::new(test_runtime(), dir.path(), PluginConfigs::default());
    let outcomes = reg.load_dir().unwrap();
    assert!(matches!(outcomes[0].1, ReloadOutcome::Loaded { .. }), "{outcomes:?}");
    (dir, reg)
}

/// `n` requests from an address (which arms the test components).
fn requests(n: usize) -> Vec<Request> {
    let mut r = Request::empty();
    r.ip = "192.0.2.7".into();
    vec![r; n]
}

/// One raw call on a fresh instance, as a worker would make it.
fn call_once(reg: &Registry, n: usize) -> Vec<Result<Vec<logsec::runtime::bindings::Finding>, CallError>> {
    let set = reg.snapshot();
    let plugin = set.detectors().next().expect("a detector is loaded");
    let mut inst = plugin.instantiate(reg.runtime()).expect("instantiate");
    match inst.detect_batch(&requests(n)) {
        Ok(v) => v.into_iter().map(Ok).collect(),
        Err(e) => {
            assert!(inst.is_poisoned(), "a failed instance must not be reused");
            vec![Err(e)]
        }
    }
}

#[test]
fn benign_component_answers_each_request() {
    let (_d, reg) = registry_with(Behaviour::Benign);
    let out = call_once(&reg, 5);
    assert_eq!(out.len(), 5);
    assert!(out.iter().all(|r| matches!(r, Ok(f) if f.is_empty())));
}

#[test]
fn infinite_loop_times_out() {
    let (_d, reg) = registry_with(Behaviour::Loop);
    let started = Instant::now();
    let out = call_once(&reg, 2);
    assert!(matches!(out[0], Err(CallError::Timeout(_))), "{:?}", out[0]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "deadline not enforced: {:?}",
        started.elapsed()
    );
}

#[test]
fn memory_bomb_hits_the_cap() {
    let (_d, reg) = registry_with(Behaviour::MemoryBomb);
    let out = call_once(&reg, 2);
    assert!(matches!(out[0], Err(CallError::OutOfMemory(_))), "{:?}", out[0]);
}

#[test]
fn unreachable_is_a_trap() {
    let (_d, reg) = registry_with(Behaviour::Unreachable);
    let out = call_once(&reg, 2);
    assert!(
        matches!(&out[0], Err(CallError::Trap(t)) if t.contains("unreachable")),
        "{:?}",
        out[0]
    );
}

#[test]
fn oversized_output_is_refused() {
    let (_d, reg) = registry_with(Behaviour::OversizedOutput);
    let out = call_once(&reg, 2);
    assert!(out[0].is_err(), "{:?}", out[0]);
}

#[test]
fn wrong_result_count_breaks_the_contract() {
    let (_d, reg) = registry_with(Behaviour::WrongCount);
    let out = call_once(&reg, 2);
    assert!(matches!(&out[0], Err(CallError::Contract(_))), "{:?}", out[0]);
}

#[test]
fn failed_batch_is_split_not_lost() {
    // The plugin traps on batches of three or more: halving the batch recovers every request.
    let (_d, reg) = registry_with(Behaviour::TrapOnLargeBatches);
    let set = reg.snapshot();
    let plugin = set.detectors().next().unwrap();
    let out = Slots::default().call(reg.runtime(), plugin, &requests(8), Instance::detect_batch);
    assert_eq!(out.len(), 8);
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert!(plugin.health.admit().is_ok(), "isolated failures must not quarantine");
}

#[test]
fn repeated_failures_quarantine_the_plugin() {
    let (_d, reg) = registry_with(Behaviour::Unreachable);
    let set = reg.snapshot();
    let plugin = set.detectors().next().unwrap().clone();
    let mut slots = Slots::default();
    let requests = requests(4);
    let started = Instant::now();
    let out = slots.call(reg.runtime(), &plugin, &requests, Instance::detect_batch);
    assert!(out.iter().all(Result::is_err));
    assert!(
        out.iter().any(|r| matches!(r, Err(CallError::Quarantined(_)))),
        "{out:?}"
    );
    assert!(plugin.health.quarantined_for().is_some());
    // While quarantined, calls are refused at once.
    let again = slots.call(reg.runtime(), &plugin, &requests, Instance::detect_batch);
    assert!(again.iter().all(|r| matches!(r, Err(CallError::Quarantined(_)))));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn host_survives_every_hostile_plugin_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let all = [
        ("loop", Behaviour::Loop),
        ("bomb", Behaviour::MemoryBomb),
        ("panic", Behaviour::Unreachable),
        ("huge", Behaviour::OversizedOutput),
        ("count", Behaviour::WrongCount),
        ("fine", Behaviour::Benign),
    ];
    for (name, b) in all {
        write_atomic(&dir.path().join(format!("{name}.wasm")), &detector(name, "1.0.0", b));
    }
    let reg = Registry::new(test_runtime(), dir.path(), PluginConfigs::default());
    reg.load_dir().unwrap();
    let set = reg.snapshot();
    assert_eq!(set.detectors().count(), 6);
    let mut slots = Slots::default();
    let requests = requests(2);
    for plugin in set.detectors() {
        let out = slots.call(reg.runtime(), plugin, &requests, Instance::detect_batch);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out.iter().all(Result::is_ok),
            &*plugin.name == "fine",
            "{}: {out:?}",
            plugin.name
        );
    }
}

#[test]
fn configure_refusal_is_a_readable_load_error() {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(
        &dir.path().join("picky.wasm"),
        &detector("picky", "1.0.0", Behaviour::Benign),
    );
    let mut configs = PluginConfigs::default();
    configs.by_name.insert("picky".into(), "x-not-valid".into());
    let reg = Registry::new(test_runtime(), dir.path(), configs);
    let out = reg.load_dir().unwrap();
    assert_eq!(
        out[0].1,
        ReloadOutcome::Failed(LoadError::Configure("bad settings".into()))
    );
}

#[test]
fn counters_are_shared_and_bounded() {
    let rt = test_runtime();
    assert_eq!(rt.counters().add("p", "k", 60, 2), 2);
    assert_eq!(rt.counters().add("p", "k", 60, 3), 5);
}

#[test]
fn hostile_plugins_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    for (name, b) in [
        ("loop", Behaviour::Loop),
        ("bomb", Behaviour::MemoryBomb),
        ("panic", Behaviour::Unreachable),
    ] {
        write_atomic(
            &dir.path().join(format!("{name}.wasm")),
            &detector_armed(name, "1.0.0", b, true),
        );
    }
    let reg = Registry::new(test_runtime(), dir.path(), PluginConfigs::default());
    let out = reg.load_dir().unwrap();
    assert!(
        out.iter()
            .all(|(_, o)| matches!(o, ReloadOutcome::Failed(LoadError::Smoke(_)))),
        "{out:?}"
    );
    assert!(reg.snapshot().plugins.is_empty());
}
