//! Golden tests: a folder per case with `input.log` (and optional `config.json`), and the expected
//! results in `expected.jsonl`, produced by the real components.
//!
//! - `plugins/<parser>/tests/golden/<case>/`: the parser's result for every line.
//! - `rules/tests/<case>/`: what `logsec check --json` reports (nginx parser, patterns, threshold).
//!
//! Rule cases also carry invariants that no blessing can change: in `rules/tests/<category>/`
//! (one of the seven categories) every line must be flagged with that category, and in
//! `rules/tests/benign-*/` no line may be flagged.
//!
//! `cargo test --release --test golden -- --bless` rewrites every `expected.jsonl` from the current
//! output; review the diff before committing it. A filter argument runs only the cases whose path
//! contains it.

use std::path::{Path, PathBuf};

use logsec::cmd::check::{CheckOptions, run};
use logsec::pipeline::CATEGORIES;
use logsec::runtime::bindings::ParseResult;
use logsec::runtime::{Limits, PluginConfigs, Registry, Runtime};
use serde_json::json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn built_plugins() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("plugins")
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("input.log").is_file())
        .collect();
    out.sort();
    out
}

fn parse_result_json(r: &ParseResult) -> serde_json::Value {
    match r {
        ParseResult::Skip => json!({"skip": true}),
        ParseResult::Invalid(why) => json!({"invalid": why}),
        ParseResult::Request(q) => json!({
            "ip": q.ip, "forwarded_for": q.forwarded_for, "user": q.user, "time": q.time,
            "timestamp_ms": q.timestamp_ms, "method": q.method, "uri": q.uri, "protocol": q.protocol,
            "status": q.status, "bytes": q.bytes, "referer": q.referer, "user_agent": q.user_agent,
            "extra": q.extra.iter().map(|f| json!([f.name, f.value])).collect::<Vec<_>>(),
        }),
    }
}

fn input_lines(case: &Path) -> Vec<String> {
    let bytes = std::fs::read(case.join("input.log")).unwrap();
    let mut reader = logsec::lines::LineReader::new(&bytes[..], logsec::lines::DEFAULT_MAX_LINE_BYTES);
    let mut lines = Vec::new();
    while let Some(l) = reader.next_line().unwrap() {
        lines.push(l);
    }
    lines
}

fn parser_output(parser: &str, case: &Path) -> Result<String, String> {
    let mut configs = PluginConfigs::default();
    if let Ok(c) = std::fs::read_to_string(case.join("config.json")) {
        configs.by_name.insert(parser.to_owned(), c);
    }
    let runtime = Runtime::new(Limits::default()).map_err(|e| e.to_string())?;
    let reg = Registry::new(runtime, built_plugins(), configs);
    reg.load_dir().map_err(|e| e.to_string())?;
    let set = reg.snapshot();
    let plugin = set
        .parser(parser)
        .ok_or_else(|| format!("parser {parser} did not load: {:?}", reg.files()))?;
    let mut inst = plugin.instantiate(reg.runtime()).map_err(|e| e.to_string())?;
    let results = inst.parse_batch(&input_lines(case)).map_err(|e| e.to_string())?;
    Ok(results
        .iter()
        .map(|r| parse_result_json(r).to_string() + "\n")
        .collect())
}

/// Checks a rule case's output against the invariant its folder name implies.
fn rules_invariant(case: &Path, output: &str) -> Result<(), String> {
    let name = case.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let flagged: Vec<serde_json::Value> = output.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    if name.starts_with("benign") {
        if let Some(f) = flagged.first() {
            return Err(format!(
                "{} benign lines flagged, e.g. line {}: {} {}",
                flagged.len(),
                f["line"],
                f["uri"],
                f["rules"]
            ));
        }
    } else if CATEGORIES.contains(&name) {
        let total = input_lines(case).iter().filter(|l| !l.trim().is_empty()).count();
        let right = flagged
            .iter()
            .filter(|f| f["categories"].as_array().is_some_and(|c| c.iter().any(|c| c == name)))
            .count();
        if right < total {
            let missed: Vec<usize> = (1..=total)
                .filter(|n| {
                    !flagged.iter().any(|f| {
                        f["line"] == *n && f["categories"].as_array().is_some_and(|c| c.iter().any(|c| c == name))
                    })
                })
                .take(5)
                .collect();
            return Err(format!(
                "{right} of {total} attack lines flagged as {name}; missed lines {missed:?}..."
            ));
        }
    }
    Ok(())
}

fn rules_output(case: &Path) -> Result<String, String> {
    let opts = CheckOptions {
        json: true,
        format: "nginx".into(),
        plugin_dir: built_plugins(),
        rules: repo().join("rules/patterns.json"),
        inputs: vec![case.join("input.log")],
        workers: 1,
        batch_lines: 64,
    };
    let mut out = Vec::new();
    run(&opts, &mut out).map_err(|e| format!("{e:#}"))?;
    let out = String::from_utf8(out).map_err(|e| e.to_string())?;
    rules_invariant(case, &out)?;
    Ok(out)
}

/// Produces a case's output from its folder.
type Job = Box<dyn Fn(&Path) -> Result<String, String>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bless = args.iter().any(|a| a == "--bless");
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let mut jobs: Vec<(PathBuf, Job)> = Vec::new();
    for plugin in std::fs::read_dir(repo().join("plugins")).unwrap().flatten() {
        let name = plugin.file_name().to_string_lossy().into_owned();
        for case in cases(&plugin.path().join("tests/golden")) {
            let n = name.clone();
            jobs.push((case, Box::new(move |c| parser_output(&n, c))));
        }
    }
    for case in cases(&repo().join("rules/tests")) {
        jobs.push((case, Box::new(rules_output)));
    }
    let (mut passed, mut failed) = (0, 0);
    for (case, job) in jobs {
        let label = case.strip_prefix(repo()).unwrap_or(&case).display().to_string();
        if filter.as_ref().is_some_and(|f| !label.contains(f.as_str())) {
            continue;
        }
        let expected_path = case.join("expected.jsonl");
        let got = match job(&case) {
            Ok(g) => g,
            Err(e) => {
                println!("FAIL  {label}: {e}");
                failed += 1;
                continue;
            }
        };
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            println!("bless {label} ({} lines)", got.lines().count());
            passed += 1;
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(want) if want == got => {
                println!("ok    {label}");
                passed += 1;
            }
            Ok(want) => {
                println!("FAIL  {label}: output differs from expected.jsonl (rerun with -- --bless to accept)");
                for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
                    if w != g {
                        println!("      line {}:\n        want {w}\n        got  {g}", i + 1);
                    }
                }
                if want.lines().count() != got.lines().count() {
                    println!(
                        "      {} lines expected, {} produced",
                        want.lines().count(),
                        got.lines().count()
                    );
                }
                failed += 1;
            }
            Err(_) => {
                println!("FAIL  {label}: no expected.jsonl (run with -- --bless to create it)");
                failed += 1;
            }
        }
    }
    println!("golden: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
