//! Hot reload: atomic swap under concurrent calls, broken replacements, deletion, the watcher, and
//! rules changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use logsec::pipeline::slots::Slots;
use logsec::runtime::bindings::Request;
use logsec::runtime::{Instance, LoadError, PluginConfigs, Registry, ReloadOutcome, watcher};

use super::wat::{Behaviour, detector, detector_armed};
use super::{test_runtime, write_atomic};

fn version_of(reg: &Registry) -> Option<(String, u64)> {
    let set = reg.snapshot();
    set.detectors().next().map(|p| (p.meta.version.clone(), p.generation))
}

#[test]
fn swap_under_concurrent_calls_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.wasm");
    write_atomic(&path, &detector("d", "1.0.0", Behaviour::Benign));
    let reg = Registry::new(test_runtime(), dir.path(), PluginConfigs::default());
    reg.load_dir().unwrap();
    let (v1, g1) = version_of(&reg).unwrap();
    assert_eq!(v1, "1.0.0");

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let saw_v2 = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (reg, stop, calls, saw_v2) = (reg.clone(), stop.clone(), calls.clone(), saw_v2.clone());
            std::thread::spawn(move || {
                let mut slots = Slots::default();
                let requests = vec![Request::empty(); 16];
                while !stop.load(Ordering::Relaxed) {
                    let set = reg.snapshot();
                    slots.refresh(&set);
                    let plugin = set.detectors().next().expect("a detector is always loaded");
                    let out = slots.call(reg.runtime(), plugin, &requests, Instance::detect_batch);
                    assert!(out.iter().all(Result::is_ok), "a call failed during the swap: {out:?}");
                    if plugin.meta.version == "2.0.0" {
                        saw_v2.store(true, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    write_atomic(&path, &detector("d", "2.0.0", Behaviour::Benign));
    assert!(matches!(reg.reload_path(&path), ReloadOutcome::Loaded { .. }));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker thread");
    }
    let (v2, g2) = version_of(&reg).unwrap();
    assert_eq!(v2, "2.0.0");
    assert!(g2 > g1);
    assert!(
        saw_v2.load(Ordering::Relaxed),
        "workers never picked up the new version"
    );
    assert!(calls.load(Ordering::Relaxed) > 10);
}

#[test]
fn broken_replacement_keeps_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.wasm");
    write_atomic(&path, &detector("d", "1.0.0", Behaviour::Benign));
    let reg = Registry::new(test_runtime(), dir.path(), PluginConfigs::default());
    reg.load_dir().unwrap();
    let before = version_of(&reg).unwrap();

    let good = std::fs::read(&path).unwrap();
    for broken in [good[..good.len() / 2].to_vec(), b"garbage".to_vec(), Vec::new()] {
        write_atomic(&path, &broken);
        assert!(matches!(reg.reload_path(&path), ReloadOutcome::Failed(_)));
        assert_eq!(
            version_of(&reg).unwrap(),
            before,
            "a broken file replaced a working plugin"
        );
        let status = reg.files();
        assert!(status[0].error.is_some() && status[0].loaded.as_deref() == Some("d"));
    }
    // A plugin whose calls trap is refused at load (smoke test) and does not replace v1 either.
    write_atomic(&path, &detector_armed("d", "3.0.0", Behaviour::Unreachable, true));
    assert!(matches!(
        reg.reload_path(&path),
        ReloadOutcome::Failed(LoadError::Smoke(_))
    ));
    assert_eq!(version_of(&reg).unwrap(), before);
}

#[test]
fn deleting_the_file_unloads_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.wasm");
    write_atomic(&path, &detector("d", "1.0.0", Behaviour::Benign));
    let reg = Registry::new(test_runtime(), dir.path(), PluginConfigs::default());
    reg.load_dir().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(reg.reload_path(&path), ReloadOutcome::Removed(Some("d".into())));
    assert!(reg.snapshot().plugins.is_empty());
}

#[test]
fn two_files_cannot_claim_one_name() {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(
        &dir.path().join("a.wasm"),
        &detector("same", "1.0.0", Behaviour::Benign),
    );
    write_atomic(
        &dir.path().join("b.wasm"),
        &detector("same", "1.0.0", Behaviour::Benign),
    );
    let reg = Registry::new(test_runtime(), dir.path(), PluginConfigs::default());
    let out = reg.load_dir().unwrap();
    assert!(
        matches!(out[1].1, ReloadOutcome::Failed(LoadError::Duplicate { .. })),
        "{out:?}"
    );
    assert_eq!(reg.snapshot().plugins.len(), 1);
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn watcher_applies_file_changes_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new(test_runtime(), dir.path(), PluginConfigs::default());
    reg.load_dir().unwrap();
    let _w = watcher::watch(reg.clone(), None).unwrap();
    let path = dir.path().join("d.wasm");

    let t = Instant::now();
    write_atomic(&path, &detector("d", "1.0.0", Behaviour::Benign));
    wait_for("the new plugin", || version_of(&reg).is_some());
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());

    write_atomic(&path, &detector("d", "2.0.0", Behaviour::Benign));
    wait_for("the replacement", || {
        version_of(&reg).is_some_and(|(v, _)| v == "2.0.0")
    });

    write_atomic(&path, b"not a component");
    wait_for("the failure to be recorded", || {
        reg.files().iter().any(|f| f.error.is_some())
    });
    assert_eq!(version_of(&reg).unwrap().0, "2.0.0");

    std::fs::remove_file(&path).unwrap();
    wait_for("the unload", || version_of(&reg).is_none());
}

#[test]
fn rules_changes_reconfigure_the_rules_detector() {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("patterns.json");
    std::fs::write(&rules, "{}").unwrap();
    write_atomic(
        &dir.path().join("patterns.wasm"),
        &detector("patterns", "1.0.0", Behaviour::Benign),
    );
    let configs = PluginConfigs {
        rules: Some("{}".into()),
        ..Default::default()
    };
    let reg = Registry::new(test_runtime(), dir.path(), configs);
    reg.load_dir().unwrap();
    let _w = watcher::watch(reg.clone(), Some(rules.clone())).unwrap();
    let (_, g1) = version_of(&reg).unwrap();

    write_atomic(&rules, br#"{"version": 2}"#);
    wait_for("the reconfiguration", || version_of(&reg).is_some_and(|(_, g)| g > g1));
    let set = reg.snapshot();
    assert_eq!(&*set.detectors().next().unwrap().config, r#"{"version": 2}"#);
    let (_, g2) = version_of(&reg).unwrap();

    // Rules the detector refuses (the test detector refuses text starting with 'x') keep the old ones.
    let refused = reg.set_rules("x broken".into());
    assert_eq!(refused.len(), 1);
    assert_eq!(version_of(&reg).unwrap().1, g2);
}
