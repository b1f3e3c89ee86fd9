//! `logsec check`: runs logs through parse → detect → policy in rules-only mode, applies nothing.
//!
//! Output contract (ARCHITECTURE §5): with `--json`, stdout has one JSON object per flagged request,
//! `{"line", "ip", "method", "uri", "categories", "score", "rules", "verdict"}`, where `line` is the
//! 1-based line number in its input; otherwise a line a person reads. A summary goes to stderr.
//! Exit code 0 whatever the input holds; 2 when logsec cannot run at all (no parser, unreadable file).
//!
//! Lines are read by one thread, analysed in batches by one worker per core (each with its own warm
//! plugin instances), and written in input order.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use crossbeam_channel::bounded;
use serde::Serialize;

use crate::lines::{DEFAULT_MAX_LINE_BYTES, LineReader};
use crate::pipeline::{Errors, Flagged, Outcome, Settings, Worker};
use crate::runtime::bindings::ActionKind;
use crate::runtime::{Limits, PluginConfigs, Registry, Runtime};

/// Lines per batch: large enough that crossing into WASM costs little per line (see the bench),
/// small enough that a batch is a few hundred KiB.
pub const DEFAULT_BATCH_LINES: usize = 512;

/// What `logsec check` was asked to do.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// JSON lines on stdout instead of text.
    pub json: bool,
    /// Parser name.
    pub format: String,
    /// Plugin directory.
    pub plugin_dir: PathBuf,
    /// Rules file for the `patterns` detector.
    pub rules: PathBuf,
    /// Inputs; empty or `-` is stdin.
    pub inputs: Vec<PathBuf>,
    /// Worker threads.
    pub workers: usize,
    /// Lines per batch.
    pub batch_lines: usize,
}

/// Counts over a whole run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Lines read.
    pub lines: u64,
    /// Lines that held a request.
    pub parsed: u64,
    /// Lines with nothing to analyse.
    pub skipped: u64,
    /// Lines that could not be parsed.
    pub unparsed: u64,
    /// Requests at or above the escalation score.
    pub flagged: u64,
    /// Flagged requests the policy would block.
    pub malicious: u64,
    /// Flagged requests by category (a request counts once per category).
    pub by_category: BTreeMap<String, u64>,
    /// Plugin failures.
    pub errors: Errors,
    /// Lines cut to the length limit.
    pub truncated: u64,
    /// Lines with bytes that were not UTF-8.
    pub invalid_utf8: u64,
    /// The first few reasons lines could not be parsed, with a count each.
    pub unparsed_reasons: BTreeMap<String, u64>,
    /// Wall time.
    pub elapsed: Duration,
}

struct Batch {
    seq: u64,
    source: usize,
    first_line: u64,
    lines: Vec<String>,
}

struct Done {
    seq: u64,
    source: usize,
    first_line: u64,
    outcomes: Vec<Outcome>,
    errors: Errors,
}

/// Runs `logsec check`, writing results to `out`.
pub fn run(opts: &CheckOptions, out: &mut dyn Write) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let rules = std::fs::read_to_string(&opts.rules)
        .with_context(|| format!("cannot read the rules file {}", opts.rules.display()))?;
    let runtime = Runtime::new(Limits::default())?;
    let registry = Registry::new(
        runtime,
        &opts.plugin_dir,
        PluginConfigs {
            rules: Some(rules),
            ..Default::default()
        },
    );
    registry
        .load_dir()
        .with_context(|| format!("cannot read the plugin directory {}", opts.plugin_dir.display()))?;
    let set = registry.snapshot();
    if set.parser(&opts.format).is_none() {
        let parsers: Vec<&str> = set
            .plugins
            .iter()
            .filter(|p| p.kind() == crate::runtime::bindings::PluginKind::Parser)
            .map(|p| &*p.name)
            .collect();
        bail!(
            "no parser named {:?} in {} (parsers loaded: {})",
            opts.format,
            opts.plugin_dir.display(),
            list(&parsers)
        );
    }
    if set.detectors().next().is_none() {
        tracing::warn!(dir = %opts.plugin_dir.display(), "no detector is loaded: nothing will be flagged");
    }

    let sources = open_inputs(&opts.inputs)?;
    let names: Vec<Option<String>> = sources.iter().map(|(n, _)| n.clone()).collect();
    let multiple = names.len() > 1;
    let workers = opts.workers.max(1);
    let batch_lines = opts.batch_lines.max(1);
    let mut summary = Summary::default();
    let (batch_tx, batch_rx) = bounded::<Batch>(workers * 2);
    let (done_tx, done_rx) = bounded::<Done>(workers * 2);

    std::thread::scope(|scope| -> anyhow::Result<()> {
        let reader = scope.spawn(move || read_batches(sources, batch_lines, batch_tx));
        for _ in 0..workers {
            let rx = batch_rx.clone();
            let tx = done_tx.clone();
            let mut worker = Worker::new(
                Arc::clone(&registry),
                Settings {
                    format: opts.format.clone(),
                    ..Settings::default()
                },
            );
            scope.spawn(move || {
                for b in rx {
                    let (outcomes, errors) = worker.process(&b.lines);
                    let done = Done {
                        seq: b.seq,
                        source: b.source,
                        first_line: b.first_line,
                        outcomes,
                        errors,
                    };
                    if tx.send(done).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        drop(batch_rx);

        let mut pending: HashMap<u64, Done> = HashMap::new();
        let mut next = 0u64;
        let mut write_err = None;
        for done in done_rx {
            pending.insert(done.seq, done);
            while let Some(d) = pending.remove(&next) {
                next += 1;
                let source = if multiple { names[d.source].as_deref() } else { None };
                if write_err.is_none()
                    && let Err(e) = emit(&d, source, opts.json, out, &mut summary)
                {
                    write_err = Some(e);
                }
            }
        }
        let (truncated, invalid) = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
        summary.truncated = truncated;
        summary.invalid_utf8 = invalid;
        match write_err {
            Some(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Some(e) => Err(e).context("cannot write the results"),
            None => Ok(()),
        }
    })?;
    out.flush().ok();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

type Source = (Option<String>, Box<dyn BufRead + Send>);

fn open_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    if inputs.is_empty() {
        return Ok(vec![(None, Box::new(BufReader::with_capacity(1 << 20, io::stdin())))]);
    }
    inputs
        .iter()
        .map(|p| -> anyhow::Result<Source> {
            if p.as_os_str() == "-" {
                return Ok((
                    Some("-".into()),
                    Box::new(BufReader::with_capacity(1 << 20, io::stdin())),
                ));
            }
            let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            Ok((
                Some(p.display().to_string()),
                Box::new(BufReader::with_capacity(1 << 20, f)),
            ))
        })
        .collect()
}

fn read_batches(
    sources: Vec<Source>,
    batch_lines: usize,
    tx: crossbeam_channel::Sender<Batch>,
) -> anyhow::Result<(u64, u64)> {
    let mut seq = 0;
    let (mut truncated, mut invalid) = (0, 0);
    for (source, (name, input)) in sources.into_iter().enumerate() {
        let mut reader = LineReader::new(input, DEFAULT_MAX_LINE_BYTES);
        let mut first_line = 1;
        loop {
            let mut lines = Vec::with_capacity(batch_lines);
            while lines.len() < batch_lines {
                match reader.next_line() {
                    Ok(Some(l)) => lines.push(l),
                    Ok(None) => break,
                    Err(e) => {
                        let name = name.as_deref().unwrap_or("stdin");
                        return Err(e).with_context(|| format!("cannot read {name}"));
                    }
                }
            }
            if lines.is_empty() {
                break;
            }
            let n = lines.len() as u64;
            if tx
                .send(Batch {
                    seq,
                    source,
                    first_line,
                    lines,
                })
                .is_err()
            {
                return Ok((truncated, invalid));
            }
            seq += 1;
            first_line += n;
        }
        truncated += reader.truncated;
        invalid += reader.invalid_utf8;
    }
    Ok((truncated, invalid))
}

#[derive(Serialize)]
struct FlaggedJson<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    ip: &'a str,
    method: &'a str,
    uri: &'a str,
    categories: Vec<&'a str>,
    score: u8,
    rules: Vec<&'a str>,
    verdict: &'static str,
}

fn emit(d: &Done, source: Option<&str>, json: bool, out: &mut dyn Write, s: &mut Summary) -> io::Result<()> {
    s.errors.parser += d.errors.parser;
    s.errors.detector += d.errors.detector;
    s.errors.policy += d.errors.policy;
    for (i, outcome) in d.outcomes.iter().enumerate() {
        s.lines += 1;
        match outcome {
            Outcome::Skipped => s.skipped += 1,
            Outcome::Unparsed(why) => {
                s.unparsed += 1;
                if s.unparsed_reasons.len() < 5 || s.unparsed_reasons.contains_key(why) {
                    *s.unparsed_reasons.entry(why.clone()).or_default() += 1;
                }
            }
            Outcome::Clean | Outcome::Allowed | Outcome::Noted(_) => s.parsed += 1,
            Outcome::Flagged(f) => {
                s.parsed += 1;
                s.flagged += 1;
                let malicious = f.action.kind == ActionKind::Block;
                s.malicious += u64::from(malicious);
                let categories = unique(f.findings.iter().map(|f| f.category.as_str()));
                for c in &categories {
                    *s.by_category.entry((*c).to_owned()).or_default() += 1;
                }
                write_flagged(out, d.first_line + i as u64, source, f, categories, malicious, json)?;
            }
        }
    }
    Ok(())
}

fn write_flagged(
    out: &mut dyn Write,
    line: u64,
    source: Option<&str>,
    f: &Flagged,
    categories: Vec<&str>,
    malicious: bool,
    json: bool,
) -> io::Result<()> {
    let verdict = if malicious { "malicious" } else { "suspicious" };
    let rules = unique(f.findings.iter().map(|f| f.rule_id.as_str()));
    if json {
        let record = FlaggedJson {
            line,
            source,
            ip: &f.request.ip,
            method: &f.request.method,
            uri: &f.request.uri,
            categories,
            score: f.score,
            rules,
            verdict,
        };
        serde_json::to_writer(&mut *out, &record)?;
        return out.write_all(b"\n");
    }
    let place = match source {
        Some(s) => format!("{}:{line}", printable(s, 60)),
        None => format!("line {line}"),
    };
    writeln!(
        out,
        "{place:<12} {verdict:<10} score {:>2}  {:<15} {} {}  [{}]",
        f.score,
        printable(&f.request.ip, 45),
        printable(&f.request.method, 10),
        printable(&f.request.uri, 160),
        rules.join(", ")
    )
}

/// `s` cut to `max` characters with control characters escaped: log fields are attacker-controlled
/// and must not drive the operator's terminal.
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 8);
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = Vec::new();
    for i in items {
        if !v.contains(&i) {
            v.push(i);
        }
    }
    v
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

impl Summary {
    /// Lines per second over the whole run.
    pub fn lines_per_second(&self) -> f64 {
        self.lines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The summary as a person reads it.
    pub fn render(&self) -> String {
        let mut s = format!(
            "logsec check: {} lines in {:.2} s ({:.0} lines/s): {} parsed, {} skipped, {} unparsed; {} flagged ({} malicious, {} suspicious)\n",
            self.lines,
            self.elapsed.as_secs_f64(),
            self.lines_per_second(),
            self.parsed,
            self.skipped,
            self.unparsed,
            self.flagged,
            self.malicious,
            self.flagged - self.malicious,
        );
        if !self.by_category.is_empty() {
            let cats: Vec<String> = self.by_category.iter().map(|(c, n)| format!("{c} {n}")).collect();
            s += &format!("  flagged by category: {}\n", cats.join(", "));
        }
        let e = &self.errors;
        if e.parser + e.detector + e.policy > 0 {
            s += &format!(
                "  plugin failures: parser {}, detector {}, policy {}\n",
                e.parser, e.detector, e.policy
            );
        }
        if self.truncated > 0 {
            s += &format!("  lines cut at {DEFAULT_MAX_LINE_BYTES} bytes: {}\n", self.truncated);
        }
        if self.invalid_utf8 > 0 {
            s += &format!(
                "  lines with bytes that are not UTF-8 (escaped as \\xHH): {}\n",
                self.invalid_utf8
            );
        }
        for (why, n) in &self.unparsed_reasons {
            s += &format!("  unparsed ({n}): {}\n", printable(why, 200));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_and_cuts() {
        assert_eq!(printable("a\x1b[31mb\x07", 100), "a\\u{1b}[31mb\\u{7}");
        assert_eq!(printable("héllo", 2), "hé…");
        assert_eq!(printable("tab\there", 100), "tab\\there");
    }

    #[test]
    fn unique_keeps_first_occurrence_order() {
        assert_eq!(unique(["b", "a", "b", "c", "a"].into_iter()), ["b", "a", "c"]);
    }

    #[test]
    fn summary_mentions_what_went_wrong() {
        let mut s = Summary {
            lines: 10,
            parsed: 8,
            unparsed: 2,
            truncated: 1,
            ..Default::default()
        };
        s.unparsed_reasons.insert("no \" - \" after $remote_addr".into(), 2);
        s.by_category.insert("sqli".into(), 3);
        s.elapsed = Duration::from_secs(1);
        let text = s.render();
        assert!(text.contains("10 lines in 1.00 s (10 lines/s)"), "{text}");
        assert!(text.contains("flagged by category: sqli 3"));
        assert!(text.contains("lines cut at 65536 bytes: 1"));
        assert!(text.contains("unparsed (2)"));
    }
}
