//! Rows waiting on disk while the store is unreachable.
//!
//! Invariants:
//! - A batch the store refused is written to `DATA_DIR/spool/` before its lines are checkpointed, so
//!   a row is always in the store, in the spool, or still in the log after its checkpoint: none is
//!   dropped, and reading never waits on the database.
//! - Each batch is one file written atomically (temporary file, fsync, rename); files are replayed
//!   in the order they were written and deleted only after the store accepted them. Replaying a file
//!   twice is harmless: the store ignores rows it has.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Row, Store};
use crate::tail::checkpoint::write_atomically;

/// The spool of one data directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    next: u64,
    /// Files waiting, counted as they come and go (the gauge reads it for every batch; the spool
    /// is this value's only writer).
    files: usize,
}

impl Spool {
    /// Opens (creating) `data_dir/spool`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Spool> {
        Spool::open_named(data_dir, "spool")
    }

    /// A spool in `DATA_DIR/NAME` (the analysts keep the rows they are deciding in `pending`).
    pub fn open_named(data_dir: &Path, name: &str) -> anyhow::Result<Spool> {
        let dir = data_dir.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let present = Self::files_in(&dir)?;
        let next = present.last().and_then(|p| number(p)).map_or(0, |n| n + 1);
        Ok(Spool {
            dir,
            next,
            files: present.len(),
        })
    }

    fn files_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| number(p).is_some())
            .collect();
        files.sort_by_key(|p| number(p));
        Ok(files)
    }

    /// Writes `rows` as one spooled batch.
    pub fn push(&mut self, rows: &[Row]) -> anyhow::Result<()> {
        self.push_file(rows).map(drop)
    }

    /// Writes `rows` to a new spool file and returns its path.
    pub fn push_file(&mut self, rows: &[Row]) -> anyhow::Result<PathBuf> {
        let mut text = Vec::new();
        for r in rows {
            serde_json::to_writer(&mut text, r)?;
            text.push(b'\n');
        }
        let path = self.dir.join(format!("{:012}.jsonl", self.next));
        write_atomically(&path, &text).with_context(|| format!("cannot spool to {}", path.display()))?;
        self.next += 1;
        self.files += 1;
        Ok(path)
    }

    /// Spooled batches waiting.
    /// Every spooled file with its rows, oldest first, for a caller that stores them itself.
    pub fn files(&self) -> anyhow::Result<Vec<(PathBuf, Vec<Row>)>> {
        Self::files_in(&self.dir)?
            .into_iter()
            .map(|f| read_rows(&f).map(|rows| (f, rows)))
            .collect()
    }

    /// Removes a spool file whose rows were stored.
    pub fn remove(&mut self, file: &Path) {
        match fs::remove_file(file) {
            Ok(()) => self.files = self.files.saturating_sub(1),
            Err(e) => tracing::warn!(file = %file.display(), error = %e, "cannot remove a spool file"),
        }
    }

    pub fn pending(&self) -> usize {
        self.files
    }

    /// Replays spooled batches into `store`, oldest first, until the spool is empty or the store
    /// refuses one. Returns the rows written.
    pub async fn drain(&mut self, store: &Store) -> anyhow::Result<u64> {
        let mut written = 0;
        for file in Self::files_in(&self.dir)? {
            let rows = read_rows(&file)?;
            written += store.insert(&rows).await?;
            fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
            self.files = self.files.saturating_sub(1);
        }
        Ok(written)
    }
}

fn number(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_suffix(".jsonl")?.parse().ok()
}

fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let f = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    BufReader::new(f)
        .lines()
        .map(|l| serde_json::from_str(&l?).with_context(|| format!("corrupt spool file {}", path.display())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(offset: i64) -> Row {
        Row {
            ip_address: "203.0.113.5".into(),
            method: "GET".into(),
            url: format!("/x?id=1'--{offset}"),
            user_agent: "x".into(),
            status: 200,
            threat_type: "sqli".into(),
            confidence: 9,
            reasoning: "rules".into(),
            decided_by: "rules".into(),
            action: "block".into(),
            source: "/var/log/a.log".into(),
            created_at_ms: 0,
            logged_at_ms: None,
            score: 9,
            rules: "[]".into(),
            source_file: "00000000000000bb".into(),
            source_offset: offset,
            tool_results: String::new(),
        }
    }

    #[tokio::test]
    async fn rows_refused_by_a_dead_store_are_written_once_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let dead = Store::connect(&url).await.unwrap();
        dead.close().await;
        let rows: Vec<Row> = (1..=3).map(row).collect();
        assert!(dead.insert(&rows).await.is_err(), "a closed store refuses writes");

        let mut spool = Spool::open(dir.path()).unwrap();
        spool.push(&rows).unwrap();
        spool.push(&[row(4)]).unwrap();
        assert_eq!(spool.pending(), 2);
        // A restart finds the same spool.
        let mut spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending(), 2);
        assert!(spool.drain(&dead).await.is_err());
        assert_eq!(spool.pending(), 2, "nothing is removed while the store is down");

        let alive = Store::connect(&url).await.unwrap();
        assert_eq!(spool.drain(&alive).await.unwrap(), 4);
        assert_eq!(spool.pending(), 0);
        assert_eq!(alive.count().await.unwrap(), 4);
    }
}
