//! An analyst's verdict: its JSON schema (sent to the model to constrain its answer) and the strict
//! reading of what came back.
//!
//! Invariants:
//! - A verdict is accepted only when it is one JSON object with exactly the schema's fields and
//!   types, `confidence` in 1..=10; anything else is "uncertain" and escalates. A model's prose is
//!   never interpreted.
//! - `reasoning` is kept as data (control characters removed, length capped): it is shown to
//!   operators and stored, never executed or fed back as instructions.

use serde::{Deserialize, Serialize};

/// Longest reasoning kept, in characters.
const MAX_REASONING_CHARS: usize = 600;

use crate::pipeline::CATEGORIES;

/// Threat types a verdict may name besides the [`CATEGORIES`].
const OTHER_THREAT_TYPES: [&str; 2] = ["other", "none"];

/// The threat types a verdict may name: the seven categories, `other` and `none`.
pub fn threat_types() -> impl Iterator<Item = &'static str> {
    CATEGORIES.into_iter().chain(OTHER_THREAT_TYPES)
}

/// What an analyst concluded about one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the request is an attack.
    pub malicious: bool,
    /// 1..=10.
    pub confidence: u8,
    /// One of [`threat_types`].
    pub threat_type: String,
    /// Why, in the analyst's words (data, not instructions).
    pub reasoning: String,
}

/// The JSON schema of a verdict, in the form both Ollama's `format` and OpenAI's strict
/// `response_format` accept (every property required, no additional properties).
pub fn schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "malicious": {"type": "boolean"},
            "confidence": {"type": "integer", "minimum": 1, "maximum": 10},
            "threat_type": {"type": "string", "enum": threat_types().collect::<Vec<_>>()},
            "reasoning": {"type": "string"}
        },
        "required": ["malicious", "confidence", "threat_type", "reasoning"],
        "additionalProperties": false
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    malicious: bool,
    confidence: i64,
    threat_type: String,
    reasoning: String,
}

/// Reads a model's answer as a verdict; `Err` says why it is not one.
pub fn parse(content: &str) -> Result<Verdict, String> {
    let text = strip_fence(content.trim());
    let raw: Raw = serde_json::from_str(text).map_err(|e| format!("not a verdict object: {e}"))?;
    let confidence = u8::try_from(raw.confidence)
        .ok()
        .filter(|c| (1..=10).contains(c))
        .ok_or_else(|| format!("confidence {} is not 1..=10", raw.confidence))?;
    let threat_type = raw.threat_type.trim().to_ascii_lowercase();
    if !threat_types().any(|t| t == threat_type) {
        return Err(format!("unknown threat_type {:?}", truncate(&threat_type, 40)));
    }
    let reasoning = clean(&raw.reasoning);
    if reasoning.is_empty() {
        return Err("empty reasoning".into());
    }
    Ok(Verdict {
        malicious: raw.malicious,
        confidence,
        threat_type,
        reasoning,
    })
}

/// The JSON inside a Markdown code fence, which some servers add even in JSON mode.
fn strip_fence(s: &str) -> &str {
    let Some(rest) = s.strip_prefix("```") else { return s };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// `s` without control characters, capped at [`MAX_REASONING_CHARS`].
pub fn clean(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    truncate(flat.trim(), MAX_REASONING_CHARS)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_must_fit_the_schema() {
        let v = parse(r#"{"malicious":true,"confidence":9,"threat_type":"sqli","reasoning":"union select"}"#).unwrap();
        assert_eq!((v.malicious, v.confidence, v.threat_type.as_str()), (true, 9, "sqli"));
        assert!(parse("```json\n{\"malicious\":false,\"confidence\":2,\"threat_type\":\"none\",\"reasoning\":\"a search\"}\n```").is_ok());
        for bad in [
            "I think this might be fine?",
            r#"{"malicious":true,"confidence":11,"threat_type":"sqli","reasoning":"x"}"#,
            r#"{"malicious":true,"confidence":0,"threat_type":"sqli","reasoning":"x"}"#,
            r#"{"malicious":"yes","confidence":9,"threat_type":"sqli","reasoning":"x"}"#,
            r#"{"malicious":true,"confidence":9,"threat_type":"rm -rf","reasoning":"x"}"#,
            r#"{"malicious":true,"confidence":9,"threat_type":"sqli","reasoning":"x","action":"unblock 10.0.0.1"}"#,
            r#"{"malicious":true,"confidence":9,"threat_type":"sqli","reasoning":"  "}"#,
            r#"[{"malicious":true}]"#,
        ] {
            assert!(parse(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn reasoning_is_flattened_and_capped() {
        let long = format!("a\u{1b}[31mb\n{}", "x".repeat(2000));
        let c = clean(&long);
        assert!(!c.chars().any(char::is_control));
        assert!(c.chars().count() <= MAX_REASONING_CHARS + 1);
    }
}
