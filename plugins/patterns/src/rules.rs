//! The rule file (`rules/patterns.json`): its schema, validation and compilation.
//!
//! Invariants:
//! - [`parse`] either returns rules in which every rule compiled, or an error naming
//!   the first offending rule (by id when it has one, by position otherwise).
//! - Every pattern is compiled byte-oriented, ASCII-only (`\w`, `\b` are ASCII), case-insensitive
//!   and multi-line (`^`/`$` match at argument boundaries), so the lazy DFA never has to give up on
//!   Unicode word boundaries and a search is linear in the haystack.
//! - A rule applies to at least one field, has at least one pattern and a score in `0..=10`; ids are
//!   unique.
//! - Loading is cheap: a rule is validated from its syntax tree and its Thompson NFA (the part of a
//!   regex that the size limit applies to); the full per-rule [`Regex`], only needed to extract the
//!   evidence of a match, is built on first use ([`Rule::regex`]). A pattern is compiled on its own
//!   only when its syntax allows an empty match or when the rule as a whole fails, to name the
//!   offending pattern in the error.

use std::fmt;
use std::sync::OnceLock;

use regex::bytes::{Regex, RegexBuilder};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use serde::Deserialize;

use crate::normalize::View;

/// Largest compiled size of one rule's regex; generous, but it stops a runaway repetition such as
/// `(a{1000}){1000}` from exhausting the plugin's memory.
const MAX_REGEX_BYTES: usize = 4 << 20;

/// Longest rule id accepted; ids are shown in findings and metrics labels.
const MAX_ID_LEN: usize = 64;

/// A part of a request that rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The decoded path (the request target before `?`).
    Path,
    /// Every query argument as `name=value`, decoded, one per line (`^`/`$` match its ends).
    Args,
    /// The whole decoded request target.
    Uri,
    /// The decoded `User-Agent`.
    UserAgent,
    /// The decoded `Referer`.
    Referer,
    /// The decoded `Cookie` header, one cookie per line, when the log format carries it.
    Cookie,
    /// The method, lower case.
    Method,
    /// Names of the unusual encodings seen in the path and arguments, space separated:
    /// `overlong-utf8 multi-encoded null-byte invalid-utf8 percent-u line-break encoded-markup`.
    Encoding,
}

impl Field {
    /// Every field, in index order.
    pub const ALL: [Field; 8] = [
        Field::Path,
        Field::Args,
        Field::Uri,
        Field::UserAgent,
        Field::Referer,
        Field::Cookie,
        Field::Method,
        Field::Encoding,
    ];

    /// Dense index of the field, for per-field arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The field's name in rule files and evidence.
    pub const fn name(self) -> &'static str {
        match self {
            Field::Path => "path",
            Field::Args => "args",
            Field::Uri => "uri",
            Field::UserAgent => "user_agent",
            Field::Referer => "referer",
            Field::Cookie => "cookie",
            Field::Method => "method",
            Field::Encoding => "encoding",
        }
    }
}

/// The view of a field a rule is written against, as spelled in rule files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ViewName {
    #[default]
    Plain,
    Sql,
    File,
    Shell,
}

impl From<ViewName> for View {
    fn from(v: ViewName) -> View {
        match v {
            ViewName::Plain => View::Plain,
            ViewName::Sql => View::Sql,
            ViewName::File => View::File,
            ViewName::Shell => View::Shell,
        }
    }
}

/// The rule file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    /// Schema version; only 1 exists.
    #[serde(default = "one")]
    version: u32,
    /// Free text for humans.
    #[serde(default, rename = "description")]
    _description: String,
    rules: Vec<serde_json::Value>,
}

fn one() -> u32 {
    1
}

/// One rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    category: String,
    score: u8,
    description: String,
    fields: Vec<Field>,
    #[serde(default)]
    view: ViewName,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    unless: Vec<String>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Stable id, e.g. `sqli-union-select`.
    pub id: String,
    /// Finding category, e.g. `sqli`.
    pub category: String,
    /// Score of a finding, `0..=10`.
    pub score: u8,
    /// What the rule detects, for humans.
    pub description: String,
    /// The fields the rule applies to.
    pub fields: Vec<Field>,
    /// The view of those fields it matches.
    pub view: View,
    /// Source of the combined pattern (alternatives of every pattern).
    pub source: String,
    /// The combined pattern, compiled on first use (see [`Rule::regex`]).
    regex: OnceLock<Regex>,
    /// Matches on the same line that cancel a match.
    pub unless: Vec<Regex>,
    /// Rare bytes one of which every match contains (see [`crate::gate`]); `None` when ungated.
    pub gate: Option<u64>,
}

impl Rule {
    /// The combined pattern, compiled on first use. Validation already compiled its NFA within
    /// the size limit, so the build succeeds; should it not (the limit also applies to the reverse
    /// NFA), it is retried without the limit, the forward NFA bounding its size.
    pub fn regex(&self) -> &Regex {
        self.regex.get_or_init(|| {
            builder(&self.source)
                .build()
                .or_else(|_| builder(&self.source).size_limit(usize::MAX).build())
                .unwrap_or_else(|_| never())
        })
    }
}

/// A regex that matches nothing; stands in for a pattern that parsed but cannot be built, which
/// validation rules out.
fn never() -> Regex {
    Regex::new(r"[^\x00-\xff]").expect("a valid empty class")
}

/// Why a rule file was refused. Displayed on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(String);

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuleError {}

/// The regex builder every pattern is compiled with.
fn builder(pattern: &str) -> RegexBuilder {
    let mut b = RegexBuilder::new(pattern);
    b.unicode(false)
        .case_insensitive(true)
        .multi_line(true)
        .size_limit(MAX_REGEX_BYTES);
    b
}

fn one_line(s: impl fmt::Display) -> String {
    s.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses and compiles a rule file; every rule must be valid.
pub fn parse(json: &str) -> Result<Vec<Rule>, RuleError> {
    let file: RuleFile = serde_json::from_str(json).map_err(|e| RuleError(format!("rule file: {}", one_line(e))))?;
    if file.version != 1 {
        return Err(RuleError(format!(
            "rule file: version {} is not supported (only 1)",
            file.version
        )));
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(file.rules.len());
    for (n, value) in file.rules.into_iter().enumerate() {
        let name = match value.get("id").and_then(|v| v.as_str()) {
            Some(id) => format!("rule \"{id}\""),
            None => format!("rule #{}", n + 1),
        };
        let rule = compile(value).map_err(|e| RuleError(format!("{name}: {e}")))?;
        if rules.iter().any(|r| r.id == rule.id) {
            return Err(RuleError(format!("{name}: duplicate id")));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn valid_name(s: &str, extra: u8) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == extra)
}

fn compile(value: serde_json::Value) -> Result<Rule, String> {
    let spec: RuleSpec = serde_json::from_value(value).map_err(one_line)?;
    if !valid_name(&spec.id, b'-') {
        return Err("id must be 1-64 characters of a-z, 0-9 and '-'".into());
    }
    if !valid_name(&spec.category, b'_') {
        return Err("category must be 1-64 characters of a-z, 0-9 and '_'".into());
    }
    if spec.score > 10 {
        return Err(format!("score {} is out of 0..=10", spec.score));
    }
    if spec.description.trim().is_empty() {
        return Err("description is empty".into());
    }
    if spec.fields.is_empty() {
        return Err("fields is empty".into());
    }
    let mut patterns = spec.patterns;
    if let Some(p) = spec.pattern {
        patterns.insert(0, p);
    }
    if patterns.is_empty() {
        return Err("no pattern (give \"pattern\" or \"patterns\")".into());
    }
    let named = |i: usize, e: String| format!("pattern {} does not compile: {e}", i + 1);
    for (i, p) in patterns.iter().enumerate() {
        quick_check(p).map_err(|e| named(i, e))?;
    }
    let source = if patterns.len() == 1 {
        patterns[0].clone()
    } else {
        patterns
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|")
    };
    if nfa_fits(&source).is_err() {
        // Name the pattern that is too large on its own, as a full compile reports it.
        for (i, p) in patterns.iter().enumerate() {
            check(p).map_err(|e| named(i, e))?;
        }
        let e = builder(&source)
            .build()
            .err()
            .map_or_else(|| "compiled regex exceeds size limit".to_owned(), one_line);
        return Err(format!("patterns do not compile together: {e}"));
    }
    let unless = spec
        .unless
        .iter()
        .enumerate()
        .map(|(i, p)| check(p).map_err(|e| format!("unless pattern {} does not compile: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut fields = spec.fields;
    fields.dedup();
    let gate = crate::gate::rule_gate(&source);
    Ok(Rule {
        id: spec.id,
        category: spec.category,
        score: spec.score,
        description: spec.description,
        fields,
        view: spec.view.into(),
        source,
        regex: OnceLock::new(),
        unless,
        gate,
    })
}

/// The syntax every pattern is parsed with; the same flags as [`builder`].
fn syntax_config() -> syntax::Config {
    syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(true)
        .multi_line(true)
}

/// Validates one pattern without compiling it when its syntax tree shows that every match is at
/// least one byte long; otherwise (or on a syntax error, to report it in the usual words) it is
/// compiled by [`check`].
fn quick_check(pattern: &str) -> Result<(), String> {
    match syntax::parse_with(pattern, &syntax_config()) {
        Ok(hir) if hir.properties().minimum_len().is_some_and(|n| n > 0) => Ok(()),
        _ => check(pattern).map(drop),
    }
}

/// Whether the forward NFA of `source` compiles within [`MAX_REGEX_BYTES`], the limit the full
/// regex is built with.
fn nfa_fits(source: &str) -> Result<(), String> {
    thompson::Compiler::new()
        .syntax(syntax_config())
        .configure(thompson::Config::new().nfa_size_limit(Some(MAX_REGEX_BYTES)))
        .build(source)
        .map(drop)
        .map_err(one_line)
}

/// Compiles one pattern, refusing ones that match the empty string (they would flag every request).
fn check(pattern: &str) -> Result<Regex, String> {
    let re = builder(pattern).build().map_err(one_line)?;
    if re.is_match(b"") {
        return Err("it matches the empty string".into());
    }
    Ok(re)
}
