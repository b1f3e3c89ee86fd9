//! Following growing log files through rotation, without losing or repeating a line.
//!
//! Invariants:
//! - Files are tracked by device and inode while open and known by their [`Fingerprint`] across
//!   runs. A file renamed away (rename + create rotation) is read to its end before it is let go;
//!   the new file at the old path is a new file and is read from its start.
//! - A file that shrinks below the read position, or whose first line changed, was truncated
//!   (copytruncate): reading restarts at 0. The copy the rotation made has the old fingerprint: while
//!   the original is followed it is ignored; found later (a glob that matches it), it is read from
//!   where reading of the original stopped, which recovers the lines written between the last read
//!   and the truncation and repeats none.
//! - `read_from` applies to files present at the first scan only; files appearing later are new
//!   logs (rotation) and are read from the beginning.
//! - Every line carries its file's fingerprint and the offset just past it: the key that lets the
//!   store drop a line read twice after a crash (reading is at-least-once; checkpoints are written
//!   by the consumer after the lines are stored).
//! - A line never costs more than `max_line_bytes` of memory; the rest is skipped and counted.

pub mod checkpoint;
pub mod fingerprint;
pub mod wake;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub use checkpoint::Checkpoints;
pub use fingerprint::Fingerprint;

use crate::lines::to_text;

/// Polls without new data after which a file that no longer matches its source is let go.
pub const IDLE_POLLS_BEFORE_RELEASE: u32 = 8;
/// Truncated files whose read position is remembered for their copies.
const MAX_RETIRED: usize = 64;
/// Bytes read from one file per read call.
const READ_CHUNK: usize = 64 * 1024;

/// Where to start in a file seen for the first time at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Its first byte.
    Beginning,
    /// Its current end: only lines written from now on.
    End,
}

/// One `[[sources]]` entry: a glob and where to start.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Path or glob (`/var/log/nginx/*.log`).
    pub pattern: String,
    /// See [`ReadFrom`].
    pub read_from: ReadFrom,
}

/// A line read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailLine {
    /// Index of the source (in the specs given to [`Tailer::new`]).
    pub source: usize,
    /// The file's fingerprint.
    pub file: Fingerprint,
    /// The path the file had when the line was read.
    pub path: PathBuf,
    /// Offset just past the line's newline: resume point and de-duplication key.
    pub offset: u64,
    /// The line, valid UTF-8 (see [`crate::lines`]).
    pub text: String,
}

/// Counters of what the tailer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailStats {
    /// Lines read.
    pub lines: u64,
    /// Lines cut to the length limit.
    pub truncated_lines: u64,
    /// Lines with bytes that were not UTF-8.
    pub invalid_utf8: u64,
    /// Files that shrank under the read position (copytruncate).
    pub truncations: u64,
    /// Files picked up.
    pub files_opened: u64,
    /// Files let go after they were rotated away and read to the end.
    pub files_released: u64,
}

struct Tracked {
    source: usize,
    /// `None` after a truncation until the new first line is complete.
    fp: Option<Fingerprint>,
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    /// Offset just past the last complete line handed on.
    offset: u64,
    /// Bytes of the current, incomplete line (at most `max_line_bytes`).
    partial: Vec<u8>,
    /// Bytes of the current line beyond `partial` that were skipped.
    skipped: u64,
    idle_polls: u32,
    matched: bool,
}

/// Follows the files of a set of sources.
pub struct Tailer {
    specs: Vec<SourceSpec>,
    files: Vec<Tracked>,
    max_line_bytes: usize,
    first_scan: bool,
    /// Read buffer shared by every file, allocated once.
    buf: Vec<u8>,
    /// Fingerprints of files truncated while followed, with how far they had been read.
    retired: Vec<(Fingerprint, u64)>,
    /// What happened so far.
    pub stats: TailStats,
}

impl Tailer {
    /// A tailer over `specs`, keeping at most `max_line_bytes` of a line.
    pub fn new(specs: Vec<SourceSpec>, max_line_bytes: usize) -> Tailer {
        Tailer {
            specs,
            files: Vec::new(),
            max_line_bytes,
            first_scan: true,
            buf: vec![0u8; READ_CHUNK],
            retired: Vec::new(),
            stats: TailStats::default(),
        }
    }

    /// Paths of the files being followed.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }

    /// Finds new files, reads every followed file, and appends up to `max_lines` lines to `out`.
    /// Resume positions of files seen for the first time come from `checkpoints`.
    pub fn poll(&mut self, checkpoints: &Checkpoints, out: &mut Vec<TailLine>, max_lines: usize) -> io::Result<()> {
        self.discover(checkpoints)?;
        self.first_scan = false;
        let mut budget = max_lines;
        for i in 0..self.files.len() {
            if budget == 0 {
                break;
            }
            let before = out.len();
            let stats = &mut self.stats;
            read_lines(
                &mut self.files[i],
                &mut self.buf,
                self.max_line_bytes,
                budget,
                out,
                stats,
                &mut self.retired,
            )?;
            let read = out.len() - before;
            budget -= read;
            let f = &mut self.files[i];
            f.idle_polls = if read == 0 { f.idle_polls + 1 } else { 0 };
        }
        let before = self.files.len();
        self.files
            .retain(|f| f.matched || f.idle_polls < IDLE_POLLS_BEFORE_RELEASE);
        self.stats.files_released += (before - self.files.len()) as u64;
        Ok(())
    }

    fn discover(&mut self, checkpoints: &Checkpoints) -> io::Result<()> {
        for f in &mut self.files {
            f.matched = false;
        }
        for (source, spec) in self.specs.iter().enumerate() {
            let paths = glob::glob(&spec.pattern).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad pattern {:?}: {e}", spec.pattern),
                )
            })?;
            for path in paths.flatten() {
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                if !meta.is_file() {
                    continue;
                }
                if let Some(f) = self
                    .files
                    .iter_mut()
                    .find(|f| f.dev == meta.dev() && f.ino == meta.ino())
                {
                    f.matched = true;
                    f.path = path;
                    continue;
                }
                let mut file = File::open(&path)?;
                let Some(fp) = read_fingerprint(&mut file)? else {
                    continue;
                };
                if self.files.iter().any(|f| f.fp == Some(fp)) {
                    // A copy of a file being followed (copytruncate's rotated copy): already read.
                    continue;
                }
                let mut offset = match checkpoints.get(fp) {
                    Some(p) if p.offset <= meta.len() => p.offset,
                    Some(_) => 0,
                    None if self.first_scan && spec.read_from == ReadFrom::End => meta.len(),
                    None => 0,
                };
                if let Some((_, read)) = self.retired.iter().find(|(r, _)| *r == fp)
                    && *read <= meta.len()
                {
                    offset = offset.max(*read);
                }
                tracing::info!(file = %path.display(), fingerprint = %fp, offset, "following file");
                self.stats.files_opened += 1;
                self.files.push(Tracked {
                    source,
                    fp: Some(fp),
                    path,
                    file,
                    dev: meta.dev(),
                    ino: meta.ino(),
                    offset,
                    partial: Vec::new(),
                    skipped: 0,
                    idle_polls: 0,
                    matched: true,
                });
            }
        }
        Ok(())
    }
}

fn read_fingerprint(file: &mut File) -> io::Result<Option<Fingerprint>> {
    let mut head = [0u8; fingerprint::FINGERPRINT_BYTES];
    file.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(Fingerprint::of_first_line(&head[..n]))
}

fn read_lines(
    f: &mut Tracked,
    buf: &mut [u8],
    max_line_bytes: usize,
    budget: usize,
    out: &mut Vec<TailLine>,
    stats: &mut TailStats,
    retired: &mut Vec<(Fingerprint, u64)>,
) -> io::Result<()> {
    let size = f.file.metadata()?.len();
    let position = f.offset + f.partial.len() as u64 + f.skipped;
    // Shrunk below the position, or truncated and refilled between two polls (its first line changed).
    // Checked at position 0 too: a file replaced before any of it was read must not be read under
    // the old content's fingerprint.
    let rewritten = f.fp.is_some() && read_fingerprint(&mut f.file)? != f.fp;
    if size < position || rewritten {
        tracing::info!(file = %f.path.display(), size, position, "file truncated; reading from its start");
        stats.truncations += 1;
        if let Some(old) = f.fp {
            if retired.len() >= MAX_RETIRED {
                retired.remove(0);
            }
            retired.push((old, f.offset));
        }
        f.offset = 0;
        f.partial.clear();
        f.skipped = 0;
        f.fp = None;
    }
    if f.fp.is_none() {
        match read_fingerprint(&mut f.file)? {
            Some(fp) => f.fp = Some(fp),
            None => return Ok(()),
        }
    }
    let fp = f.fp.expect("fingerprint set above");
    let mut pos = f.offset + f.partial.len() as u64 + f.skipped;
    f.file.seek(SeekFrom::Start(pos))?;
    let mut emitted = 0;
    while emitted < budget {
        let n = f.file.read(buf)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let (part, complete) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            let room = max_line_bytes.saturating_sub(f.partial.len());
            f.partial.extend_from_slice(&part[..part.len().min(room)]);
            f.skipped += part.len().saturating_sub(room) as u64;
            let consumed = complete.unwrap_or(chunk.len());
            pos += consumed as u64;
            chunk = &chunk[consumed..];
            if complete.is_some() {
                if f.partial.last() == Some(&b'\r') {
                    f.partial.pop();
                }
                let (text, lossy) = to_text(&f.partial);
                stats.lines += 1;
                stats.invalid_utf8 += u64::from(lossy);
                stats.truncated_lines += u64::from(f.skipped > 0);
                out.push(TailLine {
                    source: f.source,
                    file: fp,
                    path: f.path.clone(),
                    offset: pos,
                    text,
                });
                f.offset = pos;
                f.partial.clear();
                f.skipped = 0;
                emitted += 1;
                if emitted == budget {
                    // The rest of the chunk is read again by the next poll, from `f.offset`.
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
