use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::*;

fn append(path: &Path, lines: &[&str]) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn texts(lines: &[TailLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

fn poll(t: &mut Tailer, c: &Checkpoints) -> Vec<TailLine> {
    let mut out = Vec::new();
    t.poll(c, &mut out, 10_000).unwrap();
    out
}

fn tailer(dir: &Path, read_from: ReadFrom) -> Tailer {
    let pattern = dir.join("*.log").to_string_lossy().into_owned();
    Tailer::new(vec![SourceSpec { pattern, read_from }], 1024)
}

#[test]
fn follows_appends_and_waits_for_complete_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &["one", "two"]);
    let c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::Beginning);
    assert_eq!(texts(&poll(&mut t, &c)), ["one", "two"]);
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    write!(f, "thr").unwrap();
    assert!(poll(&mut t, &c).is_empty(), "an incomplete line must wait");
    writeln!(f, "ee").unwrap();
    let got = poll(&mut t, &c);
    assert_eq!(texts(&got), ["three"]);
    assert_eq!(got[0].offset, fs::metadata(&log).unwrap().len());
}

#[test]
fn rename_and_create_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &["a1", "a2"]);
    let c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::Beginning);
    assert_eq!(texts(&poll(&mut t, &c)), ["a1", "a2"]);
    // Lines written just before the rotation, then the rename, then the new file.
    append(&log, &["a3", "a4"]);
    fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    append(&log, &["b1"]);
    let mut all = poll(&mut t, &c);
    all.extend(poll(&mut t, &c));
    assert_eq!(texts(&all), ["a3", "a4", "b1"]);
    assert_ne!(all[0].file, all[2].file);
    for _ in 0..IDLE_POLLS_BEFORE_RELEASE + 1 {
        poll(&mut t, &c);
    }
    assert_eq!(t.files(), [log], "the rotated file is let go once read");
}

#[test]
fn copytruncate_restarts_at_zero_and_ignores_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &["old1", "old2"]);
    let c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::Beginning);
    poll(&mut t, &c);
    fs::copy(&log, dir.path().join("access.1.log")).unwrap();
    fs::write(&log, b"").unwrap();
    append(&log, &["new1"]);
    let got = poll(&mut t, &c);
    assert_eq!(texts(&got), ["new1"]);
    assert_eq!(t.stats.truncations, 1);
}

#[test]
fn truncated_and_refilled_between_polls_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &["old line one"]);
    let c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::Beginning);
    poll(&mut t, &c);
    fs::write(&log, b"").unwrap();
    append(&log, &["new line one, longer than before", "new two"]);
    assert_eq!(
        texts(&poll(&mut t, &c)),
        ["new line one, longer than before", "new two"]
    );
}

#[test]
fn restart_resumes_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &["1", "2", "3"]);
    let mut c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::Beginning);
    let got = poll(&mut t, &c);
    // Only the first two were stored before the crash.
    c.set(got[1].file, &got[1].path, got[1].offset);
    c.flush().unwrap();
    append(&log, &["4"]);
    let c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::End);
    assert_eq!(texts(&poll(&mut t, &c)), ["3", "4"]);
}

#[test]
fn read_from_end_applies_to_files_present_at_start_only() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), &["history"]);
    let c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::End);
    assert!(poll(&mut t, &c).is_empty());
    append(&dir.path().join("a.log"), &["live"]);
    append(&dir.path().join("b.log"), &["new file"]);
    let mut got = texts(&poll(&mut t, &c))
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, ["live", "new file"]);
}

#[test]
fn long_lines_are_cut_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let long = "x".repeat(5000);
    append(&log, &["short", &long, "after"]);
    let c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::Beginning);
    let got = poll(&mut t, &c);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].text.len(), 1024);
    assert_eq!(got[2].text, "after");
    assert_eq!(t.stats.truncated_lines, 1);
}

#[test]
fn a_poll_hands_on_at_most_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &["1", "2", "3", "4", "5"]);
    let c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::Beginning);
    let mut out = Vec::new();
    t.poll(&c, &mut out, 2).unwrap();
    assert_eq!(texts(&out), ["1", "2"]);
    out.clear();
    t.poll(&c, &mut out, 10).unwrap();
    assert_eq!(texts(&out), ["3", "4", "5"]);
}

#[test]
fn a_file_replaced_before_it_was_read_gets_its_new_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &["old1", "old2"]);
    let c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::Beginning);
    let mut out = Vec::new();
    // Found, but nothing read yet (the budget went to other files).
    t.poll(&c, &mut out, 0).unwrap();
    assert!(out.is_empty());
    fs::write(&log, "new1\nnew2\n").unwrap();
    let got = poll(&mut t, &c);
    assert_eq!(texts(&got), ["new1", "new2"]);
    assert_eq!(
        got[0].file,
        Fingerprint::of_first_line(b"new1\n").unwrap(),
        "read under the old content's fingerprint"
    );
}

#[test]
fn a_copytruncate_copy_found_later_yields_only_the_unread_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &["a1", "a2"]);
    let c = Checkpoints::load(dir.path()).unwrap();
    let mut t = tailer(dir.path(), ReadFrom::Beginning);
    assert_eq!(texts(&poll(&mut t, &c)), ["a1", "a2"]);
    // a3 is written, then the file is copied and truncated before the tailer reads a3.
    append(&log, &["a3"]);
    fs::copy(&log, dir.path().join("access.1.log")).unwrap();
    fs::write(&log, "").unwrap();
    append(&log, &["b1"]);
    let mut all = poll(&mut t, &c);
    all.extend(poll(&mut t, &c));
    let mut got = texts(&all);
    got.sort();
    assert_eq!(got, ["a3", "b1"], "a3 from the copy, nothing twice");
}
