//! Wakes the tailer when something changes in the directories its sources live in, so a line is
//! read within milliseconds of being written instead of at the next poll.
//!
//! Invariants:
//! - Waking is an optimisation, never a condition for reading: the tailer still polls every
//!   `fallback` interval, so a lost event, an unwatchable directory or a filesystem without inotify
//!   (NFS, some container mounts) only costs latency.
//! - Events are coalesced: any number of events while the tailer is busy is one wake-up.
//! - Only changes wake it (create, write, rename, remove); opening or reading a file does not,
//!   or the tailer's own reads would keep it awake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// Wake-ups for the tailer.
pub struct Wake {
    rx: Receiver<()>,
    _watcher: Option<RecommendedWatcher>,
}

impl Wake {
    /// Watches the directories of `patterns` (the directory part before any glob character).
    pub fn watch<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Wake {
        let (tx, rx) = bounded(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Opening and reading a file are events too, and the tailer's own reads would wake it
            // again at once (a busy loop): only changes wake it.
            if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                // Full means a wake-up is already pending.
                let _ = tx.try_send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the log directories; polling only");
                return Wake { rx, _watcher: None };
            }
        };
        let mut dirs: Vec<(PathBuf, RecursiveMode)> = patterns.into_iter().filter_map(watch_target).collect();
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        dirs.dedup_by(|a, b| a.0 == b.0);
        for (dir, mode) in dirs {
            if let Err(e) = watcher.watch(&dir, mode) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a log directory; polling it");
            }
        }
        Wake {
            rx,
            _watcher: Some(watcher),
        }
    }

    /// Waits until something changed or `fallback` passed.
    pub fn wait(&self, fallback: Duration) {
        let _ = self.rx.recv_timeout(fallback);
    }
}

/// The directory to watch for a source pattern: its parent when only the file name has glob
/// characters; the deepest directory without them, recursively, when a directory part has some.
fn watch_target(pattern: &str) -> Option<(PathBuf, RecursiveMode)> {
    let is_glob = |s: &str| s.contains(['*', '?', '[']);
    let path = Path::new(pattern);
    let parent = path.parent()?;
    let mut fixed = PathBuf::new();
    for c in parent.components() {
        if is_glob(&c.as_os_str().to_string_lossy()) {
            return Some((non_empty(fixed), RecursiveMode::Recursive));
        }
        fixed.push(c);
    }
    Some((non_empty(fixed), RecursiveMode::NonRecursive))
}

fn non_empty(p: PathBuf) -> PathBuf {
    if p.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_the_directory_before_the_first_glob() {
        assert_eq!(
            watch_target("/var/log/nginx/*.log"),
            Some((PathBuf::from("/var/log/nginx"), RecursiveMode::NonRecursive))
        );
        assert_eq!(
            watch_target("/srv/*/logs/access.log"),
            Some((PathBuf::from("/srv"), RecursiveMode::Recursive))
        );
        assert_eq!(
            watch_target("access.log"),
            Some((PathBuf::from("."), RecursiveMode::NonRecursive))
        );
    }

    #[test]
    fn reading_a_file_does_not_wake_the_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.log");
        std::fs::write(&file, "line\n").unwrap();
        let wake = Wake::watch([dir.path().join("*.log").to_str().unwrap()]);
        std::thread::sleep(Duration::from_millis(100));
        while wake.rx.try_recv().is_ok() {}
        for _ in 0..10 {
            let _ = std::fs::read(&file).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(wake.rx.try_recv().is_err(), "reads woke the tailer");
    }

    #[test]
    fn a_write_wakes_the_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = dir.path().join("*.log");
        let wake = Wake::watch([pattern.to_str().unwrap()]);
        std::fs::write(dir.path().join("a.log"), "line\n").unwrap();
        let started = std::time::Instant::now();
        wake.wait(Duration::from_secs(10));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no wake-up for a file written in the watched directory"
        );
    }
}
