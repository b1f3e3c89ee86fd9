//! Criterion benches of the pipeline, each against an in-process native baseline.
//!
//! - `pipeline/*`: nginx parser → patterns detector → threshold policy through WASM with a sweep of
//!   batch sizes, and the same parser and detector compiled natively (`native`). The gap between
//!   them is what the sandbox costs: crossing the boundary (copying strings in and out) plus
//!   running in wasm instead of native code.
//! - `parse/*` and `detect/*`: each stage alone, so the per-line crossing cost of each is visible.
//! - `instantiate/patterns`: a fresh, configured instance of the detector (what a worker pays after
//!   a hot swap or a trap).
//!
//! Input: the sample log in `examples/logs/` repeated to [`LINES`] lines.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use logsec::pipeline::{Settings, Worker};
use logsec::runtime::bindings::{ParseResult, Request};
use logsec::runtime::{Instance, Limits, PluginConfigs, Registry, Runtime};
use logsec_sdk::{Detector as _, Parser as _};

/// Lines per iteration.
const LINES: usize = 4096;
/// Batch sizes swept.
const BATCHES: [usize; 6] = [1, 8, 64, 256, 1024, 4096];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn input() -> Vec<String> {
    let sample = std::fs::read_to_string(repo().join("examples/logs/access.log")).expect("sample log");
    sample.lines().cycle().take(LINES).map(str::to_owned).collect()
}

fn rules() -> String {
    std::fs::read_to_string(repo().join("rules/patterns.json")).expect("rules")
}

fn registry() -> Arc<Registry> {
    let plugins = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("plugins");
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let reg = Registry::new(
        runtime,
        plugins,
        PluginConfigs {
            rules: Some(rules()),
            ..Default::default()
        },
    );
    reg.load_dir().expect("plugin dir");
    reg
}

fn pipeline(c: &mut Criterion) {
    let lines = input();
    let reg = registry();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(LINES as u64));
    group.sample_size(20);
    for batch in BATCHES {
        let mut worker = Worker::new(reg.clone(), Settings::default());
        group.bench_with_input(BenchmarkId::new("wasm", batch), &batch, |b, &batch| {
            b.iter(|| {
                lines
                    .chunks(batch)
                    .map(|chunk| worker.process(chunk).0.len())
                    .sum::<usize>()
            })
        });
    }
    let mut parser = nginx::Nginx::default();
    let mut detector = patterns::Patterns::default();
    detector.configure(&rules()).expect("rules compile natively");
    group.bench_function("native", |b| {
        b.iter(|| {
            let mut flagged = 0;
            for line in &lines {
                if let logsec_sdk::ParseResult::Request(r) = parser.parse(line) {
                    let findings = detector.detect(&r);
                    flagged += usize::from(findings.iter().map(|f| f.score).max().unwrap_or(0) >= 5);
                }
            }
            flagged
        })
    });
    group.finish();
}

fn stages(c: &mut Criterion) {
    let lines = input();
    let reg = registry();
    let set = reg.snapshot();
    let nginx_plugin = set.parser("nginx").expect("nginx plugin").clone();
    let patterns_plugin = set
        .detectors()
        .find(|p| &*p.name == "patterns")
        .expect("patterns plugin")
        .clone();
    let mut parse_inst = nginx_plugin.instantiate(reg.runtime()).unwrap();
    let requests: Vec<Request> = parse_inst
        .parse_batch(&lines)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            ParseResult::Request(r) => Some(r),
            _ => None,
        })
        .collect();

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(LINES as u64));
    group.sample_size(20);
    for batch in [1, 64, 512] {
        group.bench_with_input(BenchmarkId::new("wasm", batch), &batch, |b, &batch| {
            b.iter(|| {
                lines
                    .chunks(batch)
                    .map(|c| parse_inst.parse_batch(c).unwrap().len())
                    .sum::<usize>()
            })
        });
    }
    let mut native = nginx::Nginx::default();
    group.bench_function("native", |b| b.iter(|| lines.iter().map(|l| native.parse(l)).count()));
    group.finish();

    let mut detect_inst = patterns_plugin.instantiate(reg.runtime()).unwrap();
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Elements(requests.len() as u64));
    group.sample_size(20);
    for batch in [1, 64, 512] {
        group.bench_with_input(BenchmarkId::new("wasm", batch), &batch, |b, &batch| {
            b.iter(|| {
                requests
                    .chunks(batch)
                    .map(|c| detect_inst.detect_batch(c).unwrap().len())
                    .sum::<usize>()
            })
        });
    }
    let native_requests: Vec<logsec_sdk::Request> = lines
        .iter()
        .filter_map(|l| match native.parse(l) {
            logsec_sdk::ParseResult::Request(r) => Some(r),
            _ => None,
        })
        .collect();
    let mut detector = patterns::Patterns::default();
    detector.configure(&rules()).unwrap();
    group.bench_function("native", |b| {
        b.iter(|| native_requests.iter().map(|r| detector.detect(r).len()).sum::<usize>())
    });
    group.finish();

    let mut group = c.benchmark_group("instantiate");
    group.sample_size(10);
    group.bench_function("patterns", |b| {
        b.iter(|| {
            patterns_plugin
                .instantiate(reg.runtime())
                .map(|i: Instance| i.memory_bytes())
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline, stages);
criterion_main!(benches);
