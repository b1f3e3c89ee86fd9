//! Runs the `patterns` detector natively over combined-format logs, for tuning rules.
//!
//! ```text
//! scan [--min-score N] RULES.json [LOG...]      (no LOG: read stdin)
//! ```
//!
//! For every line whose highest finding scores at least N (default 5) it prints one JSON line
//! `{"line": N, "ip": ..., "method": ..., "uri": ..., "categories": [...], "score": S, "rules": [...]}`
//! (`line` is 1-based and counts across all inputs), the shape `score.py` reads. A summary with the
//! detection time per line goes to stderr. Exit status: 0, or 2 on bad usage or unreadable input.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use logsec_sdk::{Detector, Request};
use patterns::Patterns;

/// Lines parsed before the detector runs over them, so the timing covers detection only.
const CHUNK_LINES: usize = 4096;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scan: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut min_score = 5u8;
    let mut positional = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--min-score" => {
                let v = args.next().ok_or("--min-score needs a value")?;
                min_score = v.parse().map_err(|_| format!("bad --min-score {v:?}"))?;
            }
            "-h" | "--help" => {
                eprintln!("usage: scan [--min-score N] RULES.json [LOG...]");
                return Ok(());
            }
            _ => positional.push(a),
        }
    }
    let mut positional = positional.into_iter();
    let rules_path = positional
        .next()
        .ok_or("usage: scan [--min-score N] RULES.json [LOG...]")?;
    let rules = std::fs::read_to_string(&rules_path).map_err(|e| format!("{rules_path}: {e}"))?;
    let configure = Instant::now();
    let mut detector = Patterns::with_rules(&rules)?;
    eprintln!("scan: configure {:.1} ms", configure.elapsed().as_secs_f64() * 1e3);
    let logs: Vec<String> = positional.collect();

    let mut inputs: Vec<Vec<u8>> = Vec::new();
    if logs.is_empty() {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("stdin: {e}"))?;
        inputs.push(buf);
    } else {
        for path in &logs {
            inputs.push(std::fs::read(path).map_err(|e| format!("{path}: {e}"))?);
        }
    }

    let mut stats = Stats::default();
    let mut chunk: Vec<(usize, Request)> = Vec::with_capacity(CHUNK_LINES);
    let mut line_no = 0usize;
    for input in &inputs {
        for raw in input.split(|&b| b == b'\n') {
            line_no += 1;
            let text = String::from_utf8_lossy(raw);
            let text = text.trim_end_matches('\r');
            if text.is_empty() {
                continue;
            }
            match parse_combined(text) {
                Some(req) => chunk.push((line_no, req)),
                None => stats.unparsed += 1,
            }
            if chunk.len() == CHUNK_LINES {
                flush(&mut detector, &mut chunk, min_score, &mut stats);
            }
        }
        // A trailing newline produces one empty piece; do not count it as a line.
        if input.last() == Some(&b'\n') {
            line_no -= 1;
        }
    }
    flush(&mut detector, &mut chunk, min_score, &mut stats);
    stats.report(detector.book().rules().len());
    Ok(())
}

#[derive(Default)]
struct Stats {
    lines: usize,
    unparsed: usize,
    flagged: usize,
    detect: Duration,
    /// On-CPU time of detection, when the platform reports it (immune to a busy machine).
    detect_cpu: Option<Duration>,
    by_category: std::collections::BTreeMap<String, usize>,
}

impl Stats {
    fn report(&self, rules: usize) {
        let per = |d: Duration| {
            if self.lines == 0 {
                0
            } else {
                d.as_nanos() / self.lines as u128
            }
        };
        let cpu = self
            .detect_cpu
            .map_or(String::new(), |c| format!(", on-CPU {} ns/request", per(c)));
        eprintln!(
            "scan: {rules} rules, {} requests, {} unparsed, {} flagged ({:.3} %), detection {:.3} s = {} ns/request{cpu}",
            self.lines,
            self.unparsed,
            self.flagged,
            100.0 * self.flagged as f64 / self.lines.max(1) as f64,
            self.detect.as_secs_f64(),
            per(self.detect),
        );
        for (c, n) in &self.by_category {
            eprintln!("scan:   {c}: {n}");
        }
    }
}

fn flush(detector: &mut Patterns, chunk: &mut Vec<(usize, Request)>, min_score: u8, stats: &mut Stats) {
    let cpu = thread_cpu_time();
    let t = Instant::now();
    let results: Vec<_> = chunk.iter().map(|(_, r)| detector.detect(r)).collect();
    stats.detect += t.elapsed();
    if let (Some(a), Some(b)) = (cpu, thread_cpu_time()) {
        *stats.detect_cpu.get_or_insert_default() += b.saturating_sub(a);
    }
    stats.lines += chunk.len();
    for ((line, req), findings) in chunk.drain(..).zip(results) {
        let score = findings.iter().map(|f| f.score).max().unwrap_or(0);
        if score < min_score {
            continue;
        }
        stats.flagged += 1;
        // Findings come highest score first; categories keep that order.
        let mut categories: Vec<&str> = Vec::new();
        for f in findings.iter().filter(|f| f.score >= min_score) {
            if !categories.contains(&f.category.as_str()) {
                categories.push(&f.category);
            }
        }
        *stats.by_category.entry(categories[0].to_owned()).or_default() += 1;
        let rules: Vec<&str> = findings.iter().map(|f| f.rule_id.as_str()).collect();
        // Written by hand to keep the documented key order.
        println!(
            r#"{{"line": {line}, "ip": {}, "method": {}, "uri": {}, "categories": {}, "score": {score}, "rules": {}}}"#,
            json(&req.ip),
            json(&req.method),
            json(&req.uri),
            json(&categories),
            json(&rules),
        );
    }
}

/// `value` as JSON text.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// Time this thread has spent on a CPU, from Linux's `/proc/thread-self/schedstat` (nanoseconds);
/// `None` elsewhere.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(stat.split_whitespace().next()?.parse().ok()?))
}

/// Splits one combined-format line:
/// `ip ident user [time] "METHOD target PROTO" status bytes "referer" "user agent"`.
/// The referer and user agent may be missing (common format). Quoted fields may hold `\"`.
fn parse_combined(line: &str) -> Option<Request> {
    let mut rest = line;
    let ip = word(&mut rest)?;
    let _ident = word(&mut rest)?;
    let user = word(&mut rest)?;
    let time = rest.trim_start().strip_prefix('[')?;
    let close = time.find(']')?;
    rest = time[close + 1..].trim_start();
    let time = &time[..close];
    let request = quoted(&mut rest)?;
    let status = word(&mut rest)?.parse().unwrap_or(0);
    let bytes = word(&mut rest).and_then(|b| b.parse().ok()).unwrap_or(0);
    let referer = quoted(&mut rest).unwrap_or_default();
    let user_agent = quoted(&mut rest).unwrap_or_default();

    let (method, target) = request.split_once(' ').unwrap_or(("", request.as_str()));
    let (uri, protocol) = match target.rsplit_once(' ') {
        Some((u, p)) if p.starts_with("HTTP/") => (u, p),
        _ => (target, ""),
    };
    let mut req = Request::empty();
    req.ip = ip.to_owned();
    req.user = if user == "-" { String::new() } else { user.to_owned() };
    req.time = time.to_owned();
    req.method = method.to_owned();
    req.uri = uri.to_owned();
    req.protocol = protocol.to_owned();
    req.status = status;
    req.bytes = bytes;
    req.referer = if referer == "-" { String::new() } else { referer };
    req.user_agent = if user_agent == "-" { String::new() } else { user_agent };
    Some(req)
}

/// The next space-delimited word of `rest`, advancing past it.
fn word<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let s = rest.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(' ').unwrap_or(s.len());
    *rest = &s[end..];
    Some(&s[..end])
}

/// The next double-quoted field of `rest` with `\"` and `\\` unescaped, advancing past it.
fn quoted(rest: &mut &str) -> Option<String> {
    let s = rest.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                *rest = &s[i + 1..];
                return Some(out);
            }
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => out.push(e),
                Some((_, e)) => {
                    out.push('\\');
                    out.push(e);
                }
                None => out.push('\\'),
            },
            _ => out.push(c),
        }
    }
    // An unterminated quote: take the rest of the line.
    *rest = "";
    Some(out)
}
