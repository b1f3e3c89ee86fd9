//! `json`: the built-in parser for access logs written as one JSON object per line.
//!
//! The defaults read nginx `escape=json` logs (`remote_addr`, `time_local`, `request`, `status`,
//! ...) and Elastic Common Schema documents (`source.ip`, `http.request.method`, `url.original`,
//! `user_agent.original`, ...). Settings (JSON), all optional:
//! `{"fields": {"ip": "client", "uri": ["path", "url.original"], ...}}` replaces the key paths tried
//! for the named request fields: `ip`, `forwarded_for`, `user`, `time`, `request`, `method`, `uri`,
//! `protocol`, `status`, `bytes`, `referer`, `user_agent`.
//!
//! Invariants: settings are checked whole in `configure`, and bad ones leave the previous ones in
//! place; a line is `Skip` when blank, `Invalid` when it is not a JSON object or holds none of the
//! request's address, method, target and status, and otherwise a request; bytes the host escaped as
//! `\xHH` never make a line invalid (see the `repair` module).

#[path = "../../nginx/src/accesslog/mod.rs"]
mod accesslog;
mod fields;
mod repair;
mod request;
#[cfg(test)]
mod tests;

use fields::FieldMap;
use logsec_sdk::{ParseResult, Parser};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The parser's settings as the operator writes them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Request field name → key path or list of key paths.
    #[serde(default)]
    fields: Map<String, Value>,
}

/// The parser: which keys feed which request field.
#[derive(Default)]
pub struct Json {
    fields: FieldMap,
}

impl Parser for Json {
    const NAME: &'static str = "json";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "one JSON object per line: nginx escape=json, ECS, or mapped keys";

    fn configure(&mut self, config: &str) -> Result<(), String> {
        let settings: Settings = if config.trim().is_empty() {
            Settings::default()
        } else {
            serde_json::from_str(config).map_err(|e| format!("json settings: {e}"))?
        };
        self.fields = FieldMap::with_overrides(&settings.fields).map_err(|e| format!("json settings: {e}"))?;
        Ok(())
    }

    fn parse(&mut self, line: &str) -> ParseResult {
        if line.trim().is_empty() {
            return ParseResult::Skip;
        }
        match serde_json::from_str::<Value>(&repair::repair(line)) {
            Ok(Value::Object(object)) => match request::to_request(&object, &self.fields) {
                Some(request) => ParseResult::Request(request),
                None => ParseResult::Invalid("no address, method, target or status in the object".to_owned()),
            },
            Ok(_) => ParseResult::Invalid("not a JSON object".to_owned()),
            Err(e) => ParseResult::Invalid(format!("invalid JSON: {e}")),
        }
    }
}

logsec_sdk::export_parser!(Json);
