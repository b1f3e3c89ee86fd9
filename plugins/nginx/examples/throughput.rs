//! Measures the nginx parser's native speed on a log file.
//!
//! `cargo run --release -p logsec-plugin-nginx --example throughput -- FILE [SETTINGS_JSON]`
//! parses the file's lines (repeated until at least two million lines were parsed) on one thread
//! and prints lines per second and how many lines were requests, skipped or invalid. Besides wall
//! time it reports the thread's CPU time (Linux `/proc/thread-self/schedstat`), which stays
//! meaningful when other work competes for the cores.

use logsec_sdk::{ParseResult, Parser};
use nginx::Nginx;
use std::time::Instant;

/// Lines to parse at least, so small files still give a stable figure.
const MIN_LINES: usize = 2_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: throughput FILE [SETTINGS_JSON]");
    let settings = args.next().unwrap_or_default();
    let bytes = std::fs::read(&path).expect("readable log file");
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty(), "{path} has no lines");
    let mut parser = Nginx::default();
    parser.configure(&settings).expect("valid settings");
    let rounds = MIN_LINES.div_ceil(lines.len());
    let (mut requests, mut skipped, mut invalid) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    for _ in 0..rounds {
        for line in &lines {
            match parser.parse(line) {
                ParseResult::Request(_) => requests += 1,
                ParseResult::Skip => skipped += 1,
                ParseResult::Invalid(_) => invalid += 1,
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let total = rounds * lines.len();
    println!(
        "{total} lines in {seconds:.3} s: {:.0} lines/s ({requests} requests, {skipped} skipped, {invalid} invalid)",
        total as f64 / seconds
    );
    if let (Some(before), Some(after)) = (cpu_started, cpu_seconds()) {
        let cpu = after - before;
        println!("{cpu:.3} s of CPU time: {:.0} lines/s per core", total as f64 / cpu);
    }
}

/// CPU time this thread has used so far, where the kernel reports it.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(nanos / 1e9)
}
