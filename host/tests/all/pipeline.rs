//! The decision flow around the detectors: allowlist first, then the request cache.

use std::sync::Arc;
use std::time::Duration;

use logsec::pipeline::memory::{Allowlist, RequestCache};
use logsec::pipeline::{Outcome, Settings, Worker};
use logsec::runtime::{Limits, PluginConfigs, Registry, Runtime};

use super::{built_plugins, line, rules_file};

fn worker(settings: Settings) -> Worker {
    let rules = std::fs::read_to_string(rules_file()).unwrap();
    let reg = Registry::new(
        Runtime::new(Limits::default()).unwrap(),
        built_plugins(),
        PluginConfigs {
            rules: Some(rules),
            ..Default::default()
        },
    );
    reg.load_dir().unwrap();
    Worker::new(reg, settings)
}

const ATTACK: &str = "/item.php?id=1%27%20union%20select%20password%20from%20users--";

#[test]
fn allowlisted_addresses_are_never_analysed() {
    let allowlist = Allowlist::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
    let mut w = worker(Settings {
        allowlist: Arc::new(allowlist),
        ..Default::default()
    });
    let lines = [
        line("10.1.2.3", ATTACK, "x"),
        line("::1", ATTACK, "x"),
        line("203.0.113.9", ATTACK, "x"),
    ];
    let (out, _) = w.process(&lines);
    assert!(
        matches!(out[0], Outcome::Allowed) && matches!(out[1], Outcome::Allowed),
        "{out:?}"
    );
    assert!(matches!(&out[2], Outcome::Flagged(f) if f.decided_by == "rules"));
}

#[test]
fn an_address_decided_malicious_is_decided_by_the_cache_afterwards() {
    let cache = Arc::new(RequestCache::new(Duration::from_secs(60)));
    let mut w = worker(Settings {
        cache: Some(cache.clone()),
        ..Default::default()
    });
    let (first, _) = w.process(&[line("203.0.113.9", ATTACK, "x")]);
    assert!(matches!(&first[0], Outcome::Flagged(f) if f.decided_by == "rules"));
    // A harmless request from the same address no longer reaches the detectors.
    let (later, _) = w.process(&[
        line("203.0.113.9", "/index.html", "x"),
        line("203.0.113.10", "/index.html", "x"),
    ]);
    match &later[0] {
        Outcome::Flagged(f) => {
            assert_eq!(f.decided_by, "cache");
            assert_eq!(f.findings[0].category, "sqli");
        }
        other => panic!("expected a cached decision, got {other:?}"),
    }
    assert!(matches!(later[1], Outcome::Clean));
}
