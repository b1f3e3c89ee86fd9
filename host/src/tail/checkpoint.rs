//! Read positions of tailed files, kept on disk so a restart resumes where the last run stopped.
//!
//! Invariants:
//! - A file is known by its [`Fingerprint`], not its path: a rotated file keeps its position under
//!   its new name, and a new file at the old path starts fresh.
//! - The checkpoint file is replaced atomically (write a temporary file, fsync it, rename it over the
//!   old one, fsync the directory), so a crash leaves either the old or the new checkpoints, never a
//!   torn file.
//! - A position is recorded only after the lines before it were handed on (at-least-once reading);
//!   positions never move backwards except when a file was truncated.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;

/// Checkpoints forgotten after a file has not been seen for this long (seconds): rotated logs are
/// deleted eventually and their entries would otherwise pile up.
pub const FORGET_AFTER_SECS: u64 = 7 * 24 * 3600;

/// One file's position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Position {
    /// Bytes of the file already handed on.
    pub offset: u64,
    /// The path it was last seen at (informational).
    pub path: PathBuf,
    /// Unix seconds of the last update.
    pub updated: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: BTreeMap<String, Position>,
}

/// The checkpoints of one data directory.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    files: BTreeMap<Fingerprint, Position>,
    dirty: bool,
}

impl Checkpoints {
    /// Loads `dir/checkpoints.json` (an absent file is an empty set; a corrupt one is an error the
    /// operator must see rather than a silent re-read of every log).
    pub fn load(dir: &Path) -> anyhow::Result<Checkpoints> {
        let path = dir.join("checkpoints.json");
        let files = match fs::read(&path) {
            Ok(bytes) => {
                let disk: OnDisk = serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{} is corrupt ({e}); move it away to start over", path.display()))?;
                disk.files
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        };
        Ok(Checkpoints {
            path,
            files,
            dirty: false,
        })
    }

    /// The recorded position of `fp`.
    pub fn get(&self, fp: Fingerprint) -> Option<&Position> {
        self.files.get(&fp)
    }

    /// Records that `fp` (at `path`) was handed on up to `offset`.
    pub fn set(&mut self, fp: Fingerprint, path: &Path, offset: u64) {
        let new = Position {
            offset,
            path: path.to_owned(),
            updated: unix_now(),
        };
        if self
            .files
            .get(&fp)
            .is_none_or(|old| old.offset != offset || old.path != path)
        {
            self.files.insert(fp, new);
            self.dirty = true;
        }
    }

    /// Writes the checkpoints if they changed since the last write.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let now = unix_now();
        self.files
            .retain(|_, p| now.saturating_sub(p.updated) < FORGET_AFTER_SECS);
        let disk = OnDisk {
            version: 1,
            files: self.files.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        };
        write_atomically(&self.path, &serde_json::to_vec_pretty(&disk)?)?;
        self.dirty = false;
        Ok(())
    }
}

/// Replaces `path` with `bytes`: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("checkpoint")
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reload_and_ignores_unchanged_sets() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Checkpoints::load(dir.path()).unwrap();
        let fp = Fingerprint::of_first_line(b"first line\n").unwrap();
        c.set(fp, Path::new("/var/log/a.log"), 42);
        c.flush().unwrap();
        let c2 = Checkpoints::load(dir.path()).unwrap();
        assert_eq!(c2.get(fp).unwrap().offset, 42);
        assert!(!dir.path().join(".checkpoints.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_silent_reset() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("checkpoints.json"), b"{not json").unwrap();
        let err = Checkpoints::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
