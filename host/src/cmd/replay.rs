//! `logsec replay FILE...`: historical logs through the daemon's whole pipeline into the store.
//!
//! Invariants:
//! - The same pipeline, store and de-duplication as `logsec run`: a line is keyed by its file's
//!   fingerprint (first line of the uncompressed content) and the offset just past it in the
//!   uncompressed content, so replaying a file twice, or a rotated file the daemon already tailed,
//!   or its `.gz`, stores nothing twice.
//! - Rows carry the logs' own time, and the request cache runs on that time, so a month replayed
//!   in a minute remembers addresses for `[cache] ttl` of log time, not of wall time.
//! - The daemon's checkpoints are not touched.
//! - A file that cannot be opened stops the replay before it starts; one that breaks midway
//!   (corrupt gzip) keeps what was read before the break, is reported, and the others are read.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::bounded;
use flate2::read::MultiGzDecoder;

use super::run::{Agent, BATCH_LINES, Batch, Done};
use super::stage::{Queues, StoreStage, drain_spool};
use crate::config::Config;
use crate::lines::{DEFAULT_MAX_LINE_BYTES, LineReader};
use crate::pipeline::ParserChoice;
use crate::tail::fingerprint::FINGERPRINT_BYTES;
use crate::tail::{Fingerprint, TailLine};

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    /// Files read to their end.
    pub files: usize,
    /// Files that broke midway, with why.
    pub failed: Vec<(PathBuf, String)>,
    /// Lines read.
    pub lines: u64,
    /// Lines parsed into requests.
    pub parsed: u64,
    /// Lines the parser could not read.
    pub unparsed: u64,
    /// Requests flagged (one row each).
    pub flagged: u64,
    /// Rows new to the store (the rest were stored before).
    pub stored: u64,
    /// Seconds from start to the last row stored.
    pub seconds: f64,
}

impl ReplaySummary {
    /// A few lines for a person.
    pub fn render(&self) -> String {
        let rate = self.lines as f64 / self.seconds.max(1e-9);
        let mut s = format!(
            "replayed {} lines from {} files in {:.1} s ({:.0} lines/s): {} parsed, {} unparsed, {} flagged, \
             {} rows stored ({} were stored before)\n",
            self.lines,
            self.files + self.failed.len(),
            self.seconds,
            rate,
            self.parsed,
            self.unparsed,
            self.flagged,
            self.stored,
            self.flagged.saturating_sub(self.stored),
        );
        for (path, why) in &self.failed {
            s.push_str(&format!(
                "  {} broke after the lines above were read: {why}\n",
                path.display()
            ));
        }
        s
    }
}

/// Replays `files` (plain or gzip) with `config`'s plugins, store and response settings. The parser
/// is `format`, else the first source's, else `nginx`; the first source using that parser lends its
/// parser settings. `show_decisions` prints each decision on stdout as `logsec run` does.
pub fn replay(
    mut config: Config,
    files: &[PathBuf],
    format: Option<String>,
    show_decisions: bool,
) -> anyhow::Result<ReplaySummary> {
    anyhow::ensure!(!files.is_empty(), "no files to replay");
    let mut total_bytes = 0;
    for f in files {
        let meta = std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?;
        anyhow::ensure!(meta.is_file(), "{} is not a file", f.display());
        total_bytes += meta.len();
    }
    let format = format
        .or_else(|| config.sources.first().map(|s| s.format.clone()))
        .unwrap_or_else(|| "nginx".into());
    // The agent validates source settings; keep only the source that lends its settings.
    config.sources.retain(|s| s.format == format);
    config.sources.truncate(1);
    let mut agent = Agent::start(&config)?;
    agent.settings.log_clock = true;
    let parser = agent
        .parsers
        .first()
        .cloned()
        .unwrap_or_else(|| ParserChoice::named(&format));
    anyhow::ensure!(
        agent.registry.snapshot().parser(&parser.name).is_some(),
        "no parser named {:?} is loaded from {}",
        parser.name,
        agent.registry.dir().display()
    );

    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut db, mut spool) = rt.block_on(agent.open_store())?;
    let mut analysis = rt.block_on(agent.analysis(&config, true))?;

    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::new(total_bytes));
    let (batch_tx, batch_rx) = bounded::<Batch>(agent.workers * 2);
    let (done_tx, done_rx) = tokio::sync::mpsc::channel::<Done>(agent.workers * 2);
    let reader = {
        let (files, stop, progress) = (files.to_vec(), stop.clone(), progress.clone());
        std::thread::Builder::new()
            .name("replay".into())
            .spawn(move || read_files(&files, &parser, &batch_tx, &stop, &progress))?
    };
    let pool = agent.spawn_workers(&batch_rx, &done_tx)?;
    drop(done_tx);
    let bar = std::io::stderr().is_terminal().then(|| {
        let (progress, stop) = (progress.clone(), stop.clone());
        std::thread::spawn(move || progress.draw_until(&stop))
    });

    let stage = StoreStage {
        metrics: &agent.metrics,
        queue: Queues { batches: batch_rx },
        dry_run: agent.dry_run,
        log_time: true,
        announce: show_decisions,
        enforcer: None,
    };
    let stored = rt.block_on(async {
        let r = stage
            .run(&mut db, &mut spool, done_rx, None, &stop, &mut analysis)
            .await;
        drain_spool(&mut spool, &mut db).await;
        r
    });
    let failed = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the replay reader panicked"))?;
    for w in pool {
        w.join().map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    }
    progress.done.store(true, Ordering::Relaxed);
    if let Some(bar) = bar {
        let _ = bar.join();
    }
    rt.block_on(db.close());
    stored?;
    if spool.pending() > 0 {
        tracing::warn!(
            batches = spool.pending(),
            "the store did not take every row; they wait in the spool and are written by the next run or replay"
        );
    }
    let [lines, parsed, unparsed, flagged] = agent.metrics.totals();
    Ok(ReplaySummary {
        files: files.len() - failed.len(),
        failed,
        lines,
        parsed,
        unparsed,
        flagged,
        stored: agent.metrics.rows_stored.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads every file into batches; returns the files that broke midway.
fn read_files(
    files: &[PathBuf],
    parser: &ParserChoice,
    tx: &crossbeam_channel::Sender<Batch>,
    stop: &AtomicBool,
    progress: &Progress,
) -> Vec<(PathBuf, String)> {
    let mut failed = Vec::new();
    let mut seq = 0;
    for path in files {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        *progress.file.lock().unwrap_or_else(|p| p.into_inner()) = path.display().to_string();
        match read_file(path, parser, tx, stop, progress, &mut seq) {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(file = %path.display(), error = %format!("{e:#}"), "replay of this file stopped");
                failed.push((path.clone(), format!("{e:#}")));
            }
        }
    }
    failed
}

fn read_file(
    path: &Path,
    parser: &ParserChoice,
    tx: &crossbeam_channel::Sender<Batch>,
    stop: &AtomicBool,
    progress: &Progress,
    seq: &mut u64,
) -> anyhow::Result<()> {
    let mut content = open(path, progress)?;
    // The first bytes name the file; they are read once and put back in front of the rest.
    let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
    content
        .by_ref()
        .take(FINGERPRINT_BYTES as u64)
        .read_to_end(&mut head)
        .with_context(|| format!("reading the start of {}", path.display()))?;
    let fp = fingerprint(head.clone());
    let mut lines = LineReader::new(
        BufReader::with_capacity(1 << 16, io::Cursor::new(head).chain(content)),
        DEFAULT_MAX_LINE_BYTES,
    );
    let mut batch = Vec::with_capacity(BATCH_LINES);
    loop {
        let line = lines
            .next_line()
            .with_context(|| format!("reading {} after {} bytes", path.display(), lines.offset))?;
        let end = line.is_none();
        if let Some(text) = line {
            progress.lines.fetch_add(1, Ordering::Relaxed);
            batch.push(TailLine {
                source: 0,
                file: fp,
                path: path.to_owned(),
                offset: lines.offset,
                text,
            });
        }
        if batch.len() == BATCH_LINES || (end && !batch.is_empty()) {
            let b = Batch {
                seq: *seq,
                parser: parser.clone(),
                lines: std::mem::replace(&mut batch, Vec::with_capacity(BATCH_LINES)),
            };
            *seq += 1;
            if tx.send(b).is_err() || stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
        if end {
            if lines.truncated > 0 {
                tracing::warn!(file = %path.display(), lines = lines.truncated, "over-long lines were cut");
            }
            return Ok(());
        }
    }
}

/// The file's content, uncompressed when it is gzip (by its magic bytes, whatever its name).
fn open(path: &Path, progress: &Progress) -> anyhow::Result<Box<dyn Read + Send>> {
    let counted = Counted {
        inner: File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        bytes: progress.bytes.clone(),
    };
    let mut raw = BufReader::with_capacity(1 << 16, counted);
    let gzip = raw
        .fill_buf()
        .with_context(|| format!("reading {}", path.display()))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    })
}

/// The fingerprint the tailer gives the same content (`head`: its first bytes), so a rotated file
/// replayed after the daemon read it de-duplicates against the daemon's rows.
fn fingerprint(mut head: Vec<u8>) -> Fingerprint {
    // A file of one short line without a newline: the tailer would wait for its end; a replay
    // reads what is there.
    if !head.contains(&b'\n') && head.len() < FINGERPRINT_BYTES {
        head.push(b'\n');
    }
    Fingerprint::of_first_line(&head).expect("a newline or a full prefix is present")
}

/// Counts bytes read from the file on disk (compressed bytes for gzip), for the progress bar.
struct Counted<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Progress of a replay, drawn on a terminal.
struct Progress {
    total_bytes: u64,
    bytes: Arc<AtomicU64>,
    lines: AtomicU64,
    file: std::sync::Mutex<String>,
    done: AtomicBool,
    started: Instant,
}

impl Progress {
    fn new(total_bytes: u64) -> Progress {
        Progress {
            total_bytes,
            bytes: Arc::default(),
            lines: AtomicU64::new(0),
            file: std::sync::Mutex::default(),
            done: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// Redraws one line on stderr until the replay is done or stopped.
    fn draw_until(&self, stop: &AtomicBool) {
        let mut err = std::io::stderr();
        while !self.done.load(Ordering::Relaxed) {
            let _ = write!(err, "\r\x1b[K{}", self.line());
            let _ = err.flush();
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(PROGRESS_EVERY);
        }
        let _ = writeln!(err, "\r\x1b[K{}", self.line());
    }

    fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let lines = self.lines.load(Ordering::Relaxed);
        let share = self.bytes.load(Ordering::Relaxed) as f64 / self.total_bytes.max(1) as f64;
        let eta = if share > 0.0 && share < 1.0 {
            let left = (elapsed * (1.0 - share) / share) as u64;
            format!("ETA {}:{:02}", left / 60, left % 60)
        } else {
            "ETA -:--".into()
        };
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let name = Path::new(&file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!(
            "[{:<30}] {:>3.0}%  {} lines  {:.0} lines/s  {}  {}",
            "#".repeat((share.min(1.0) * 30.0) as usize),
            share.min(1.0) * 100.0,
            lines,
            lines as f64 / elapsed.max(1e-9),
            eta,
            super::check::printable(&name, 40)
        )
    }
}
