//! The `logsec` binary end to end: `check` and `plugins` as an operator runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use super::{built_plugins, copy_builtin, line, rules_file};

fn logsec(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_logsec"))
        .args(args)
        .env("LOGSEC_PLUGIN_DIR", built_plugins())
        .env("LOGSEC_RULES", rules_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run logsec");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn sample() -> String {
    [
        line("203.0.113.5", "/index.html", "Mozilla/5.0"),
        line(
            "203.0.113.6",
            "/item.php?id=1%27%20union%20select%20password%20from%20users--",
            "Mozilla/5.0",
        ),
        line(
            "203.0.113.7",
            "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
            "Mozilla/5.0",
        ),
        line("203.0.113.8", "/download?file=../../../../etc/passwd", "Mozilla/5.0"),
        line("203.0.113.9", "/search?q=union+station+opening+hours", "Mozilla/5.0"),
    ]
    .join("\n")
        + "\n"
}

#[test]
fn check_json_reports_flagged_requests_with_line_numbers() {
    let out = logsec(&["check", "--json"], sample().as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let flagged = json_lines(&out);
    let lines: Vec<u64> = flagged.iter().map(|o| o["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 3, 4], "{flagged:?}");
    let cats = |i: usize| {
        flagged[i]["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(cats(0).contains(&"sqli".to_owned()));
    assert!(cats(1).contains(&"xss".to_owned()));
    assert!(cats(2).contains(&"path_traversal".to_owned()));
    for o in &flagged {
        for key in ["ip", "method", "uri", "score", "rules", "verdict"] {
            assert!(o.get(key).is_some(), "missing {key} in {o}");
        }
        assert!(["malicious", "suspicious"].contains(&o["verdict"].as_str().unwrap()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("5 lines") && stderr.contains("3 flagged"), "{stderr}");
}

#[test]
fn check_reads_files_and_numbers_lines_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    std::fs::write(&a, sample()).unwrap();
    let out = logsec(&["check", "--json", a.to_str().unwrap(), a.to_str().unwrap()], b"");
    assert!(out.status.success());
    let flagged = json_lines(&out);
    assert_eq!(flagged.len(), 6);
    assert_eq!(flagged[3]["line"], 2, "numbering restarts for the second input");
    assert!(flagged[0]["source"].as_str().unwrap().ends_with("a.log"));
}

#[test]
fn check_survives_bad_input() {
    let mut input = Vec::new();
    input.extend_from_slice(
        b"1.2.3.4 - - [01/Nov/2026:00:00:00 +0000] \"GET /a?q=\xff\xfe\xc0 HTTP/1.1\" 200 1 \"-\" \"x\"\n",
    );
    input.extend_from_slice(b"1.2.3.4 - - [01/Nov/2026:00:00:00 +0000] \"GET /");
    input.extend(std::iter::repeat_n(b'A', 1 << 20));
    input
        .extend_from_slice(b" HTTP/1.1\" 200 1 \"-\" \"x\"\n\x00\x00garbage\x00\n\n1.2.3.4 - - [01/Nov/2026:00:00:0\n");
    input.extend_from_slice(line("5.6.7.8", "/index.php?id=1%27%20union%20select%201,2,3--", "x").as_bytes());
    input.push(b'\n');
    let out = logsec(&["check", "--json"], &input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let flagged = json_lines(&out);
    assert!(
        flagged.iter().any(|o| o["ip"] == "5.6.7.8" && o["line"] == 6),
        "{flagged:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lines cut at"), "{stderr}");
    assert!(stderr.contains("not UTF-8"), "{stderr}");
}

#[test]
fn broken_plugin_files_are_ignored_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    copy_builtin(dir.path(), &["nginx", "patterns", "threshold"]);
    std::fs::write(dir.path().join("garbage.wasm"), [0x42u8; 4096]).unwrap();
    std::fs::write(dir.path().join("empty.wasm"), b"").unwrap();
    let good = std::fs::read(built_plugins().join("nginx.wasm")).unwrap();
    std::fs::write(dir.path().join("truncated.wasm"), &good[..2000]).unwrap();
    let d = dir.path().to_str().unwrap();

    let out = logsec(&["check", "--json", "--plugins", d], sample().as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_lines(&out).len(), 3);

    let out = logsec(&["plugins", "--plugins", d], b"");
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for name in ["garbage.wasm", "empty.wasm", "truncated.wasm"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{table}"));
        assert!(row.contains("failed:"), "{row}");
    }
    for name in ["nginx", "patterns", "threshold"] {
        assert!(
            table.lines().any(|l| l.contains(name) && l.contains("loaded")),
            "{name} not loaded:\n{table}"
        );
    }
}

#[test]
fn missing_parser_is_a_clear_error() {
    let out = logsec(&["check", "--format", "no-such-format"], sample().as_bytes());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no parser named \"no-such-format\""), "{stderr}");
}

#[test]
fn human_output_never_passes_control_characters_to_the_terminal() {
    let attack = line(
        "198.51.100.4",
        "/x?id=1%27%20or%201=1--%1b[2J\x1b]0;pwned\x07",
        "Mozilla/5.0\x1b[31m",
    );
    let out = logsec(&["check"], format!("{attack}\n").as_bytes());
    assert!(out.status.success());
    assert!(
        !out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
