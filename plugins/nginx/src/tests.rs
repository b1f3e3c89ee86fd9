//! End-to-end tests of the parser: settings, formats, escapes and hostile lines.

use super::Nginx;
use logsec_sdk::{ParseResult, Parser, Request};
use std::time::{Duration, Instant};

const COMBINED_LINE: &str = r#"203.0.113.7 - alice [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=1 HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;

const CUSTOM_XFF: &str = r#"{"log_format": "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \"$http_x_forwarded_for\" rt=$request_time"}"#;

fn parser(config: &str) -> Nginx {
    let mut p = Nginx::default();
    p.configure(config).expect("settings are valid");
    p
}

fn request(config: &str, line: &str) -> Request {
    match parser(config).parse(line) {
        ParseResult::Request(r) => r,
        other => panic!("expected a request for {line:?}, got {other:?}"),
    }
}

fn invalid(config: &str, line: &str) -> String {
    match parser(config).parse(line) {
        ParseResult::Invalid(why) => why,
        other => panic!("expected invalid for {line:?}, got {other:?}"),
    }
}

fn extra<'r>(r: &'r Request, name: &str) -> Option<&'r str> {
    r.extra.iter().find(|f| f.name == name).map(|f| f.value.as_str())
}

#[test]
fn combined_line() {
    let r = request("{}", COMBINED_LINE);
    assert_eq!(r.ip, "203.0.113.7");
    assert_eq!(r.user, "alice");
    assert_eq!(r.time, "10/Oct/2000:13:55:36 -0700");
    assert_eq!(r.timestamp_ms, Some(971_211_336_000));
    assert_eq!(
        (r.method.as_str(), r.uri.as_str(), r.protocol.as_str()),
        ("GET", "/apache_pb.gif?a=1", "HTTP/1.0")
    );
    assert_eq!((r.status, r.bytes), (200, 2326));
    assert_eq!(r.referer, "http://www.example.com/start.html");
    assert_eq!(r.user_agent, "Mozilla/4.08 [en] (Win98; I ;Nav)");
    assert_eq!(r.forwarded_for, None);
    assert!(r.extra.is_empty());
}

#[test]
fn dashes_are_absent_values() {
    let r = request(
        "",
        r#"10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 304 - "-" "-""#,
    );
    assert_eq!(
        (r.user.as_str(), r.referer.as_str(), r.user_agent.as_str()),
        ("", "", "")
    );
    assert_eq!((r.status, r.bytes), (304, 0));
}

#[test]
fn apache_common_with_default_and_named_format() {
    let line = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#;
    for config in ["{}", r#"{"format": "common"}"#, r#"{"log_format": "common"}"#] {
        let r = request(config, line);
        assert_eq!(
            (r.user.as_str(), r.uri.as_str(), r.status, r.bytes),
            ("frank", "/apache_pb.gif", 200, 2326)
        );
        assert_eq!((r.referer.as_str(), r.user_agent.as_str()), ("", ""));
    }
}

#[test]
fn common_format_ignores_the_fields_combined_appends() {
    let r = request(r#"{"format": "common"}"#, COMBINED_LINE);
    assert_eq!((r.status, r.bytes, r.user_agent.as_str()), (200, 2326, ""));
}

#[test]
fn main_format_forwarded_for_takes_the_rightmost_valid_address() {
    let line = format!(r#"{COMBINED_LINE} "1.1.1.1, 198.51.100.23, unknown""#);
    let r = request("{}", &line);
    assert_eq!(r.user_agent, "Mozilla/4.08 [en] (Win98; I ;Nav)");
    assert_eq!(r.forwarded_for.as_deref(), Some("198.51.100.23"));
    assert_eq!(
        extra(&r, "http_x_forwarded_for"),
        Some("1.1.1.1, 198.51.100.23, unknown")
    );
}

#[test]
fn custom_format_with_forwarded_for_and_other_variables() {
    let line = r#"10.0.0.2 - - [10/Oct/2000:13:55:36 +0000] "POST /login HTTP/1.1" 401 17 "-" "curl/8.0" "203.0.113.5, 10.0.0.1" rt=0.004"#;
    let r = request(CUSTOM_XFF, line);
    assert_eq!((r.method.as_str(), r.uri.as_str(), r.status), ("POST", "/login", 401));
    assert_eq!(r.forwarded_for.as_deref(), Some("10.0.0.1"));
    assert_eq!(extra(&r, "request_time"), Some("0.004"));
    assert_eq!(extra(&r, "http_x_forwarded_for"), Some("203.0.113.5, 10.0.0.1"));
    let without_time = line.replace(" rt=0.004", "");
    assert_eq!(extra(&request(CUSTOM_XFF, &without_time), "request_time"), None);
    let junk = line.replace(" rt=0.004", " junk");
    assert_eq!(invalid(CUSTOM_XFF, &junk), r#"no "\" rt=" after $http_x_forwarded_for"#);
}

#[test]
fn custom_format_with_split_request_variables() {
    let config = r#"{"log_format": "${msec} $remote_addr $request_method $uri $args $server_protocol $status $host"}"#;
    let r = request(
        config,
        "1700000000.250 2001:db8::7 GET /search q=1%27 HTTP/2.0 200 example.org",
    );
    assert_eq!(r.timestamp_ms, Some(1_700_000_000_250));
    assert_eq!(
        (r.method.as_str(), r.uri.as_str(), r.protocol.as_str()),
        ("GET", "/search?q=1%27", "HTTP/2.0")
    );
    assert_eq!(extra(&r, "host"), Some("example.org"));
    let iso = r#"{"log_format": "$time_iso8601|$remote_addr|$request|$uri"}"#;
    let r = request(iso, "2000-10-10T13:55:36-07:00|::1|GET /a%2e%2e/b HTTP/1.1|/b");
    assert_eq!((r.timestamp_ms, r.uri.as_str()), (Some(971_211_336_000), "/a%2e%2e/b"));
    assert_eq!(extra(&r, "uri"), Some("/b"));
}

#[test]
fn nginx_hex_escapes_are_decoded() {
    let line = r#"10.0.0.3 - - [10/Oct/2000:13:55:36 +0000] "GET /q?x=\x22onmouseover\x3D1 HTTP/1.1" 200 5 "-" "caf\xC3\xA9 \x5C\x22 \xFF\x01""#;
    let r = request("{}", line);
    assert_eq!(r.uri, "/q?x=\"onmouseover=1");
    assert_eq!(r.user_agent, "café \\\" %FF%01");
}

#[test]
fn apache_backslash_escapes_are_decoded() {
    let line = r#"10.0.0.4 - - [10/Oct/2000:13:55:36 +0000] "GET /a HTTP/1.1" 200 5 "-" "say \"hi\" \\o/""#;
    assert_eq!(request("{}", line).user_agent, r#"say "hi" \o/"#);
}

#[test]
fn raw_quotes_inside_the_request_are_kept() {
    let line = r#"25.41.243.78 - - [01/Nov/2026:00:16:28 +0000] "GET /get/"onmouseover='prompt(1)'" HTTP/1.1" 200 3465 "-" "Mozilla/5.0""#;
    let r = request("{}", line);
    assert_eq!(r.uri, r#"/get/"onmouseover='prompt(1)'""#);
    assert_eq!(
        (r.protocol.as_str(), r.status, r.bytes, r.user_agent.as_str()),
        ("HTTP/1.1", 200, 3465, "Mozilla/5.0")
    );
    let spaced = line.replace("/get/\"on", "/get/\" on");
    assert_eq!(request("{}", &spaced).uri, r#"/get/" onmouseover='prompt(1)'""#);
}

#[test]
fn tls_handshake_garbage_is_kept_as_the_target() {
    let line = r#"198.51.100.9 - - [10/Oct/2000:13:55:36 +0000] "\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03" 400 157 "-" "-""#;
    let r = request("{}", line);
    assert_eq!((r.method.as_str(), r.protocol.as_str()), ("", ""));
    assert_eq!(r.uri, "%16%03%01%02%00%01%00%01%FC%03%03");
    assert_eq!(r.status, 400);
}

#[test]
fn malformed_request_lines() {
    let base = |req: &str| format!(r#"10.0.0.5 - - [10/Oct/2000:13:55:36 +0000] "{req}" 400 0 "-" "-""#);
    let parts = |req: &str| {
        let r = request("{}", &base(req));
        (r.method, r.uri, r.protocol)
    };
    assert_eq!(parts("-"), ("".into(), "".into(), "".into()));
    assert_eq!(parts("GET /nohttp"), ("GET".into(), "/nohttp".into(), "".into()));
    assert_eq!(
        parts("GET   /spaced   HTTP/1.1"),
        ("GET".into(), "/spaced".into(), "HTTP/1.1".into())
    );
    assert_eq!(parts("garbage"), ("".into(), "garbage".into(), "".into()));
}

#[test]
fn ipv6_addresses() {
    for ip in ["2001:db8::1", "::ffff:1.2.3.4", "fe80::1%eth0"] {
        let line = format!(r#"{ip} - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#);
        assert_eq!(request("{}", &line).ip, ip);
    }
}

#[test]
fn timestamps_honour_their_offsets() {
    let at = |t: &str| {
        let line = format!(r#"10.0.0.6 - - [{t}] "GET / HTTP/1.1" 200 1 "-" "-""#);
        request("{}", &line).timestamp_ms
    };
    assert_eq!(at("10/Oct/2000:13:55:36 -0700"), Some(971_211_336_000));
    assert_eq!(at("11/Oct/2000:06:25:36 +0930"), Some(971_211_336_000));
    assert_eq!(at("31/Dec/1999:23:59:59 -0100"), Some(946_688_399_000));
    assert_eq!(at("not a time"), None);
}

#[test]
fn text_injected_into_the_user_does_not_shift_fields() {
    let line = r#"10.0.0.7 - a [01/Jan/1990:00:00:00 +0000] x [10/Oct/2000:13:55:36 -0700] "GET /real HTTP/1.1" 200 1 "-" "-""#;
    let r = request("{}", line);
    assert_eq!(r.user, "a [01/Jan/1990:00:00:00 +0000] x");
    assert_eq!(r.timestamp_ms, Some(971_211_336_000));
    assert_eq!(r.uri, "/real");
}

#[test]
fn truncated_and_extended_lines() {
    let r = request(
        "{}",
        r#"10.0.0.8 - - [10/Oct/2000:13:55:36 +0000] "GET /cut-off-in-the-midd"#,
    );
    assert_eq!(
        (r.method.as_str(), r.uri.as_str(), r.status),
        ("GET", "/cut-off-in-the-midd", 0)
    );
    let r = request("{}", &format!(r#"{COMBINED_LINE} rt=0.012 ua="-""#));
    assert_eq!(
        (r.status, r.user_agent.as_str()),
        (200, "Mozilla/4.08 [en] (Win98; I ;Nav)")
    );
    let r = request("{}", &format!("{COMBINED_LINE}\r"));
    assert_eq!(r.user_agent, "Mozilla/4.08 [en] (Win98; I ;Nav)");
}

#[test]
fn blank_lines_are_skipped_and_garbage_is_invalid() {
    assert!(matches!(parser("{}").parse(""), ParseResult::Skip));
    assert!(matches!(parser("{}").parse("  \t\r"), ParseResult::Skip));
    assert_eq!(invalid("{}", "hello world"), r#"no " - " after $remote_addr"#);
    assert_eq!(
        invalid("{}", "10.0.0.9 - - [10/Oct/2000:13:55:36 +0000] GET"),
        r#"no "] \"" after $time_local"#
    );
    let config = r#"{"log_format": "[$time_local] $remote_addr"}"#;
    assert_eq!(invalid(config, "1.2.3.4"), r#"line does not start with "[""#);
}

#[test]
fn one_mebibyte_lines_take_linear_time() {
    let long_uri = format!("/{}", "a".repeat(1 << 20));
    let lines = [
        format!(r#"10.0.0.10 - - [10/Oct/2000:13:55:36 +0000] "GET {long_uri} HTTP/1.1" 414 0 "-" "-""#),
        " - ".repeat(1 << 18),
        format!("a{}", " - [".repeat(1 << 18)),
        format!(
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "{}"#,
            r#"\"] ""#.repeat(1 << 17)
        ),
        "\\x".repeat(1 << 19),
        format!(
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "{}""#,
            "\\xC3".repeat(1 << 18)
        ),
    ];
    let mut p = parser("{}");
    for line in &lines {
        let started = Instant::now();
        let result = p.parse(line);
        assert!(started.elapsed() < Duration::from_secs(5), "slow on {}", &line[..40]);
        if let ParseResult::Request(r) = result {
            assert!(r.uri.len() + r.user_agent.len() + r.user.len() <= 4 * line.len());
        }
    }
    match p.parse(&lines[0]) {
        ParseResult::Request(r) => assert_eq!(r.uri, long_uri),
        other => panic!("{other:?}"),
    }
}

#[test]
fn configure_keeps_the_previous_format_on_error() {
    let mut p = parser(CUSTOM_XFF);
    for bad in [
        r#"{"log_format": "$remote_addr$status"}"#,
        r#"{"log_format": "no variables"}"#,
        r#"{"format": "fancy"}"#,
        r#"{"format": "common", "log_format": "common"}"#,
        r#"{"fromat": "common"}"#,
        "not json",
    ] {
        let err = p.configure(bad).unwrap_err();
        assert!(err.starts_with("nginx settings: "), "{err}");
    }
    let line = r#"10.0.0.2 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "-" "-" rt=0.1"#;
    match p.parse(line) {
        ParseResult::Request(r) => assert_eq!(r.extra.len(), 1),
        other => panic!("{other:?}"),
    }
}
#[test]
fn golden_inputs_parse_with_their_settings() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for case in ["combined", "common", "custom-xff", "escapes", "ipv6", "malformed"] {
        let dir = root.join(case);
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap_or_default();
        let input = std::fs::read_to_string(dir.join("input.log")).expect("golden input");
        let mut p = parser(&config);
        let results: Vec<_> = input.lines().map(|l| p.parse(l)).collect();
        assert!((5..=20).contains(&results.len()), "{case}: {} lines", results.len());
        let requests = results.iter().filter(|r| matches!(r, ParseResult::Request(_))).count();
        let expected = match case {
            "custom-xff" => results.len() - 1,
            "malformed" => results.len() - 5,
            _ => results.len(),
        };
        assert_eq!(requests, expected, "{case}");
    }
}
