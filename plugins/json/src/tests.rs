//! End-to-end tests of the JSON parser: nginx `escape=json` logs, ECS documents, settings and
//! hostile lines.

use super::Json;
use logsec_sdk::{ParseResult, Parser, Request};

fn parser(config: &str) -> Json {
    let mut p = Json::default();
    p.configure(config).expect("settings are valid");
    p
}

fn request(config: &str, line: &str) -> Request {
    match parser(config).parse(line) {
        ParseResult::Request(r) => r,
        other => panic!("expected a request for {line:?}, got {other:?}"),
    }
}

fn invalid(line: &str) -> String {
    match parser("{}").parse(line) {
        ParseResult::Invalid(why) => why,
        other => panic!("expected invalid for {line:?}, got {other:?}"),
    }
}

fn extra<'r>(r: &'r Request, name: &str) -> Option<&'r str> {
    r.extra.iter().find(|f| f.name == name).map(|f| f.value.as_str())
}

#[test]
fn nginx_escape_json_line() {
    let line = r#"{"time_local":"10/Oct/2000:13:55:36 -0700","remote_addr":"2001:db8::5","remote_user":"-","request":"GET /a?b=%27 HTTP/1.1","status":"404","body_bytes_sent":"153","request_time":"0.001","http_referer":"","http_user_agent":"curl/8.5.0","http_x_forwarded_for":"198.51.100.1, 10.0.0.2","host":"example.org"}"#;
    let r = request("{}", line);
    assert_eq!(r.ip, "2001:db8::5");
    assert_eq!(r.user, "");
    assert_eq!(
        (r.time.as_str(), r.timestamp_ms),
        ("10/Oct/2000:13:55:36 -0700", Some(971_211_336_000))
    );
    assert_eq!(
        (r.method.as_str(), r.uri.as_str(), r.protocol.as_str()),
        ("GET", "/a?b=%27", "HTTP/1.1")
    );
    assert_eq!((r.status, r.bytes), (404, 153));
    assert_eq!((r.referer.as_str(), r.user_agent.as_str()), ("", "curl/8.5.0"));
    assert_eq!(r.forwarded_for.as_deref(), Some("10.0.0.2"));
    let names: Vec<_> = r.extra.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["http_x_forwarded_for", "host", "request_time"]);
}

#[test]
fn separate_method_and_uri_win_over_the_request_line() {
    let line = r#"{"remote_addr":"10.0.0.1","request":"GET /x HTTP/1.0","request_method":"POST","request_uri":"/y?z=1","status":200}"#;
    let r = request("{}", line);
    assert_eq!(
        (r.method.as_str(), r.uri.as_str(), r.protocol.as_str()),
        ("POST", "/y?z=1", "HTTP/1.0")
    );
}

#[test]
fn ecs_nested_document() {
    let line = r#"{"@timestamp":"2024-05-01T12:00:00.250Z","source":{"ip":"203.0.113.4"},"http":{"request":{"method":"PUT","referrer":"https://example.org/"},"response":{"status_code":201,"body":{"bytes":5120}},"version":"1.1"},"url":{"original":"/api/v1/items?id=1%20OR%201=1"},"user_agent":{"original":"Mozilla/5.0"},"event":{"dataset":"nginx.access"},"message":"kept"}"#;
    let r = request("{}", line);
    assert_eq!(r.ip, "203.0.113.4");
    assert_eq!(r.timestamp_ms, Some(1_714_564_800_250));
    assert_eq!(
        (r.method.as_str(), r.uri.as_str(), r.protocol.as_str()),
        ("PUT", "/api/v1/items?id=1%20OR%201=1", "HTTP/1.1")
    );
    assert_eq!((r.status, r.bytes), (201, 5120));
    assert_eq!(
        (r.referer.as_str(), r.user_agent.as_str()),
        ("https://example.org/", "Mozilla/5.0")
    );
    assert_eq!(r.extra.len(), 1);
    assert_eq!(extra(&r, "message"), Some("kept"));
}

#[test]
fn flattened_dotted_keys() {
    let line = r#"{"source.ip":"192.0.2.9","url.original":"/flat","http.response.status_code":"502"}"#;
    let r = request("{}", line);
    assert_eq!((r.ip.as_str(), r.uri.as_str(), r.status), ("192.0.2.9", "/flat", 502));
    assert!(r.extra.is_empty());
}

#[test]
fn configured_field_names() {
    let config = r#"{"fields": {"ip": "client", "uri": ["path", "url"], "time": "ts", "status": "code"}}"#;
    let line = r#"{"client":"192.0.2.1","url":"/u","ts":1700000000.5,"code":500.0,"remote_addr":"10.9.9.9"}"#;
    let r = request(config, line);
    assert_eq!((r.ip.as_str(), r.uri.as_str(), r.status), ("192.0.2.1", "/u", 500));
    assert_eq!(
        (r.time.as_str(), r.timestamp_ms),
        ("1700000000.5", Some(1_700_000_000_500))
    );
    assert_eq!(extra(&r, "remote_addr"), Some("10.9.9.9"));
}

#[test]
fn numbers_as_strings_numbers_and_garbage() {
    let r = request(
        "{}",
        r#"{"ip":"192.0.2.1","status":"abc","body_bytes_sent":-5,"msec":"1700000000123"}"#,
    );
    assert_eq!((r.status, r.bytes, r.timestamp_ms), (0, 0, Some(1_700_000_000_123)));
    let r = request(
        "{}",
        r#"{"ip":"192.0.2.2","status":70000,"bytes":"18446744073709551615","time_iso8601":"2000-10-10T13:55:36-07:00"}"#,
    );
    assert_eq!(
        (r.status, r.bytes, r.timestamp_ms),
        (0, u64::MAX, Some(971_211_336_000))
    );
}

#[test]
fn host_escaped_bytes_do_not_make_lines_invalid() {
    let line = r#"{"remote_addr":"10.0.0.3","request":"GET /caf\xC3\xA9/\xFF\xFE HTTP/1.1","status":400}"#;
    let r = request("{}", line);
    assert_eq!(r.uri, "/café/%FF%FE");
}

#[test]
fn json_escapes_are_decoded() {
    let line =
        r#"{"remote_addr":"10.0.0.4","request":"GET /\"><script>\u00e9 HTTP/1.1","http_user_agent":"a\\b\u0000"}"#;
    let r = request("{}", line);
    assert_eq!(r.uri, "/\"><script>é");
    assert_eq!(r.user_agent, "a\\b%00");
}

#[test]
fn blank_and_invalid_lines() {
    assert!(matches!(parser("{}").parse(""), ParseResult::Skip));
    assert!(matches!(parser("{}").parse("   "), ParseResult::Skip));
    assert_eq!(invalid("[1,2]"), "not a JSON object");
    assert_eq!(invalid("\"text\""), "not a JSON object");
    assert!(invalid(r#"{"level":"info","msg":"started"}"#).starts_with("no address"));
    assert!(invalid(r#"{"a": 1"#).starts_with("invalid JSON: "));
    assert!(invalid("127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1").starts_with("invalid JSON"));
    assert!(invalid(&"[".repeat(1 << 20)).starts_with("invalid JSON"));
}

#[test]
fn one_mebibyte_line() {
    let uri = format!("/{}", "a".repeat(1 << 20));
    let r = request("{}", &format!(r#"{{"remote_addr":"10.0.0.5","request_uri":"{uri}"}}"#));
    assert_eq!(r.uri, uri);
}

#[test]
fn configure_keeps_previous_settings_on_error() {
    let mut p = parser(r#"{"fields": {"ip": "client"}}"#);
    for bad in [
        r#"{"fields": {"ipp": "x"}}"#,
        r#"{"field": {}}"#,
        r#"{"fields": {"ip": 3}}"#,
        "nope",
    ] {
        assert!(p.configure(bad).unwrap_err().starts_with("json settings: "));
    }
    match p.parse(r#"{"client":"192.0.2.7"}"#) {
        ParseResult::Request(r) => assert_eq!(r.ip, "192.0.2.7"),
        other => panic!("{other:?}"),
    }
    assert!(p.configure("").is_ok());
}

#[test]
fn golden_inputs_parse_with_their_settings() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (case, expected_requests) in [("nginx-json", 8), ("ecs-nested", 5), ("malformed", 5)] {
        let dir = root.join(case);
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap_or_default();
        let input = std::fs::read_to_string(dir.join("input.log")).expect("golden input");
        let mut p = parser(&config);
        let results: Vec<_> = input.lines().map(|l| p.parse(l)).collect();
        assert!((5..=20).contains(&results.len()), "{case}: {} lines", results.len());
        let requests = results.iter().filter(|r| matches!(r, ParseResult::Request(_))).count();
        assert_eq!(requests, expected_requests, "{case}");
    }
}
