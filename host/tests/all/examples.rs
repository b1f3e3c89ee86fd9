//! Detectors written in other languages — Python (componentize-py) and JavaScript
//! (componentize-js) — built by the test suite and loaded by the host: proof that the WIT contract
//! works across languages.
//!
//! A test skips with a message when its toolchain is not installed, except under
//! `LOGSEC_REQUIRE_ALL=1` (CI), where a missing toolchain is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use logsec::pipeline::{Outcome, Settings, Worker};
use logsec::runtime::bindings::PluginKind;
use logsec::runtime::{Limits, PluginConfigs, Registry, Runtime};

use super::{copy_builtin, line};

fn require_all() -> bool {
    std::env::var("LOGSEC_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Builds `plugins/examples/<example>/` with its build.sh into a fresh plugin directory beside the
/// nginx parser and threshold policy, and loads it. `None` (after saying so) when `tool` is missing.
fn build_and_load(example: &str, tool: &[&str], plugin: &str) -> Option<(tempfile::TempDir, Arc<Registry>)> {
    let found = Command::new(tool[0])
        .args(&tool[1..])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !require_all(),
            "{} is not installed, needed to build the {example} plugin",
            tool[0]
        );
        eprintln!("SKIPPED the {example} plugin test: {} is not installed", tool[0]);
        return None;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let wasm: PathBuf = dir.path().join(format!("{plugin}.wasm"));
    let build = Command::new("bash")
        .arg(repo.join("plugins/examples").join(example).join("build.sh"))
        .arg(&wasm)
        .output()
        .expect("run build.sh");
    assert!(
        build.status.success(),
        "{example}/build.sh failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    copy_builtin(dir.path(), &["nginx", "threshold"]);
    let reg = Registry::new(
        Runtime::new(Limits::default()).unwrap(),
        dir.path(),
        PluginConfigs::default(),
    );
    let loaded = reg.load_dir().unwrap();
    let set = reg.snapshot();
    let p = set
        .plugins
        .iter()
        .find(|p| &*p.name == plugin)
        .unwrap_or_else(|| panic!("{loaded:?}"));
    assert_eq!(p.kind(), PluginKind::Detector);
    eprintln!(
        "{plugin}: {} bytes, compile {} ms, instance memory {:.1} MiB",
        std::fs::metadata(&wasm).unwrap().len(),
        p.compile_time.as_millis(),
        p.instance_memory_bytes as f64 / (1 << 20) as f64
    );
    Some((dir, reg))
}

fn rules_of(o: &Outcome) -> Vec<String> {
    match o {
        Outcome::Flagged(f) => f.findings.iter().map(|f| f.rule_id.clone()).collect(),
        _ => vec![],
    }
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

#[test]
fn python_detector_loads_and_finds_scanners() {
    let Some((_dir, reg)) = build_and_load("python-detector", &["componentize-py", "--version"], "py-scanner") else {
        return;
    };
    let mut lines = vec![
        line("203.0.113.10", "/", "sqlmap/1.8.2#stable (https://sqlmap.org)"),
        line("203.0.113.11", "/about", BROWSER),
    ];
    // A burst of 404s from one address: content discovery, counted by the host across calls.
    for i in 0..25 {
        lines.push(line("198.51.100.50", &format!("/admin{i}.php"), BROWSER).replace("\" 200 ", "\" 404 "));
    }
    let (outcomes, errors) = Worker::new(reg, Settings::default()).process(&lines);
    assert_eq!(errors.detector, 0, "the Python detector failed");
    assert!(
        rules_of(&outcomes[0]).iter().any(|r| r.contains("sqlmap")),
        "{:?}",
        outcomes[0]
    );
    assert!(matches!(outcomes[1], Outcome::Clean), "{:?}", outcomes[1]);
    assert!(
        rules_of(&outcomes[26]).iter().any(|r| r.contains("404")),
        "{:?}",
        outcomes[26]
    );
}

#[test]
fn javascript_detector_loads_and_finds_scanners() {
    let Some((_dir, reg)) = build_and_load("js-detector", &["npm", "--version"], "js-scanner") else {
        return;
    };
    let lines = [
        line("203.0.113.12", "/", "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None)"),
        line("203.0.113.13", "/", BROWSER),
    ];
    let (outcomes, errors) = Worker::new(reg, Settings::default()).process(&lines);
    assert_eq!(errors.detector, 0, "the JavaScript detector failed");
    assert!(
        rules_of(&outcomes[0]).iter().any(|r| r.contains("nikto")),
        "{:?}",
        outcomes[0]
    );
    assert!(matches!(outcomes[1], Outcome::Clean), "{:?}", outcomes[1]);
}
