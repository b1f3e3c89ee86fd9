use std::time::{Duration, Instant};

use super::*;

fn text(input: &str) -> String {
    decode(input, true).0
}

fn path_text(input: &str) -> String {
    decode(input, false).0
}

#[test]
fn percent_decoding_repeats_until_nothing_changes() {
    assert_eq!(text("%3Cscript%3E"), "<script>");
    assert_eq!(text("%253Cscript%253E"), "<script>");
    assert_eq!(text("%25252e%25252e%25252f"), "../");
    let (_, flags) = decode("%252e", true);
    assert!(flags.contains(Anomalies::MULTI_ENCODED));
    let (_, flags) = decode("%2e", true);
    assert!(!flags.contains(Anomalies::MULTI_ENCODED));
}

#[test]
fn decoding_is_bounded_in_rounds() {
    // Five levels of encoding: four rounds leave the last escape in place.
    let five = "%252525252e";
    assert_eq!(text(five), "%2e");
    assert_eq!(MAX_DECODE_ROUNDS, 4);
}

#[test]
fn plus_is_a_space_only_in_query_text_and_only_when_literal() {
    assert_eq!(text("union+select"), "union select");
    assert_eq!(path_text("c++"), "c++");
    assert_eq!(text("c%2B%2B"), "c++");
}

#[test]
fn percent_u_and_lookalike_characters() {
    assert_eq!(text("..%u2215..%u2215etc"), "../../etc");
    assert_eq!(text("%uff0e%uff0e/"), "../");
    assert!(decode("%u002e", true).1.contains(Anomalies::PERCENT_U));
    assert_eq!(text("①②⑦.⓪.⓪.①"), "127.0.0.1");
    assert_eq!(text("ⓛⓞⓒⓐⓛⓗⓞⓢⓣ"), "localhost");
    assert_eq!(text("169。254。169。254"), "169.254.169.254");
    assert_eq!(text("＜ＳＣＲＩＰＴ＞"), "<script>");
    assert_eq!(text("’ or ’1’=’1"), "' or '1'='1");
}

#[test]
fn overlong_utf8_becomes_ascii() {
    assert_eq!(text("%c0%ae%c0%ae%c0%af"), "../");
    assert_eq!(text("%e0%80%af"), "/");
    assert_eq!(text("%f0%80%80%af"), "/");
    assert_eq!(text("%c1%9c"), "\\");
    // IIS accepted a non-continuation second byte and kept its low six bits.
    assert_eq!(text("%c0%ee"), ".");
    assert_eq!(text("%25c0%25ae"), ".");
    let (_, flags) = decode("%c0%ae", true);
    assert!(flags.contains(Anomalies::OVERLONG_UTF8));
    // Real two-byte characters are left alone.
    assert_eq!(text("caf%C3%A9"), "café");
}

#[test]
fn html_entities() {
    assert_eq!(text("%26lt%3Bscript%26gt%3B"), "<script>");
    assert_eq!(text("&#60;&#x3c;&#X00003C;&#0000060"), "<<<<");
    assert_eq!(text("javascript&colon;alert&lpar;1&rpar;"), "javascript:alert(1)");
    assert_eq!(text("j&Tab;a"), "j a");
    assert_eq!(text("&ltscript"), "<script");
    assert_eq!(text("&amp;lt;"), "<");
    assert_eq!(text("AT&T"), "at&t");
    assert_eq!(text("&copy"), "&copy");
    assert!(decode("&#60;", true).1.contains(Anomalies::ENCODED_MARKUP));
}

#[test]
fn javascript_escapes() {
    assert_eq!(text("\\u0061lert(1)"), "alert(1)");
    assert_eq!(text("\\x3cscript\\x3e"), "<script>");
    assert_eq!(text("\\u{61}"), "a");
    assert_eq!(text("a\\xe2\\x80\\xa8x"), "a\rx");
    assert!(decode("\\u003c", true).1.contains(Anomalies::ENCODED_MARKUP));
}

#[test]
fn case_whitespace_and_nul() {
    assert_eq!(text("SeLeCt%09%0A%0b%0c%a0%C2%A0*"), "select\r*");
    assert_eq!(text("a%20%20%20b"), "a b");
    assert_eq!(text("%20%20lead and trail%20"), "lead and trail");
    let (t, flags) = decode("<scr%00ipt>", true);
    assert_eq!(t, "<script>");
    assert!(flags.contains(Anomalies::NULL_BYTE));
    let (_, flags) = decode("a%0d%0ab", true);
    assert!(flags.contains(Anomalies::LINE_BREAK));
    assert_eq!(text("java%E2%80%8Bscript"), "javascript");
}

#[test]
fn invalid_utf8_is_replaced_and_reported() {
    let (t, flags) = decode("caf%E9", true);
    assert_eq!(t, "caf\u{fffd}");
    assert!(flags.contains(Anomalies::INVALID_UTF8));
}

#[test]
fn sql_view_removes_comments() {
    assert_eq!(view_of("union/**/select", true, View::Sql), "union select");
    assert_eq!(
        view_of("1/*!50000union*//*!50000select*/2", true, View::Sql),
        "1 union select 2"
    );
    // The comment ends at the line break, which stays a (collapsed) break.
    assert_eq!(
        view_of("1 union%23foo%0aselect 2", true, View::Sql),
        "1 union\rselect 2"
    );
    assert_eq!(view_of("admin'-- x", true, View::Sql), "admin'");
    assert_eq!(view_of("' or 1=1 /* unterminated", true, View::Sql), "' or 1=1");
    // The plain text keeps the comments.
    assert_eq!(text("admin'--"), "admin'--");
}

#[test]
fn file_view_normalises_separators() {
    assert_eq!(
        view_of("..\\..\\windows\\win.ini", false, View::File),
        "../../windows/win.ini"
    );
    assert_eq!(view_of("0x2e0x2e0x2fetc", false, View::File), "../etc");
    assert_eq!(view_of("..0x5cboot.ini", false, View::File), "../boot.ini");
}

#[test]
fn shell_view_undoes_quoting_tricks() {
    assert_eq!(view_of(";c'a't /e\"t\"c/passwd", true, View::Shell), ";cat /etc/passwd");
    assert_eq!(view_of("w\\h\\o\\a\\m\\i", true, View::Shell), "whoami");
    assert_eq!(view_of("cat$IFS/etc/passwd", true, View::Shell), "cat /etc/passwd");
    assert_eq!(view_of("cat${IFS}/etc/passwd", true, View::Shell), "cat /etc/passwd");
    assert_eq!(view_of("{cat,/etc/passwd}", true, View::Shell), "cat /etc/passwd");
    assert_eq!(view_of("/bi[n]/sh", true, View::Shell), "/bin/sh");
    assert_eq!(view_of("pi$()ng c$@at", true, View::Shell), "ping cat");
    assert_eq!(view_of("1;id\\nx", true, View::Shell), "1;id\rx");
    assert_eq!(view_of("c$$at /et$$c/pas$$swd", true, View::Shell), "cat /etc/passwd");
    assert_eq!(view_of("|$u wget x", true, View::Shell), "| wget x");
    assert_eq!(view_of("$user $home", true, View::Shell), "$user $home");
}

#[test]
fn views_are_only_built_when_they_differ() {
    let mut n = Normalized::default();
    n.set("/blog/2024/post-1.html", false);
    assert!(View::ALL.iter().all(|&v| !n.has_view(v)));
    n.set("a--b", false);
    assert!(n.has_view(View::Sql));
    n.set("a-b/c", false);
    assert!(!n.has_view(View::Sql));
    n.set("0x2e", false);
    assert!(n.has_view(View::File));
    n.set("o'brien", true);
    assert!(n.has_view(View::Shell));
}

#[test]
fn anomaly_names() {
    let mut a = Anomalies::none();
    a.insert(Anomalies::NULL_BYTE);
    a.insert(Anomalies::OVERLONG_UTF8);
    let mut s = String::new();
    a.write_names(&mut s);
    assert_eq!(s, "overlong-utf8 null-byte");
}

/// Inputs built to make a careless decoder slow: long runs of escape starts, nested encodings,
/// unterminated comments. Each must decode in linear time; the bound here is generous for debug
/// builds and would be blown by a quadratic pass.
#[test]
fn large_hostile_inputs_decode_in_linear_time() {
    const MIB: usize = 1 << 20;
    let cases = [
        "%25".repeat(MIB / 3),
        "%".repeat(MIB),
        "&#".repeat(MIB / 2),
        "&#x0000000000".repeat(MIB / 12),
        "\\u00".repeat(MIB / 4),
        "/*".repeat(MIB / 2),
        "--".repeat(MIB / 2),
        "%c0".repeat(MIB / 3),
        " ".repeat(MIB),
        "$".repeat(MIB),
        "'".repeat(MIB),
    ];
    for input in &cases {
        let start = Instant::now();
        let mut n = Normalized::default();
        n.set(input, true);
        let mut out = String::new();
        for view in View::ALL {
            out.clear();
            n.write_view(view, &mut out);
            assert!(out.len() <= 4 * input.len());
        }
        assert!(n.text().len() <= 4 * input.len());
        assert!(start.elapsed() < Duration::from_secs(10), "slow on {:?}…", &input[..8]);
    }
}
