//! `nginx`: the built-in parser for nginx and Apache access logs.
//!
//! The default format is nginx/Apache `combined`; it also reads Apache `common` lines (no referer
//! and user agent), the stock nginx `main` format (an X-Forwarded-For field appended) and ignores
//! further appended fields. Settings (JSON), all optional:
//! `{"format": "combined" | "main" | "common"}` or `{"log_format": "<an nginx log_format string>"}`.
//!
//! Invariants: a format is compiled once, in `configure`, and a bad one leaves the previous one in
//! place; parsing a line takes time linear in its length and never panics; blank lines are
//! `Skip`, lines that do not fit the format are `Invalid` with a short reason. See the `scan` module for
//! how fields are located (`fast` reads ordinary lines of the default format quicker, with the same
//! result) and `escape` for how logged escapes are decoded.

mod accesslog;
mod assemble;
mod escape;
mod fast;
mod find;
mod format;
mod scan;
#[cfg(test)]
mod tests;

use format::Format;
use logsec_sdk::{ParseResult, Parser};
use scan::Span;
use serde::Deserialize;

/// The parser's settings as the operator writes them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// A built-in format name.
    format: Option<String>,
    /// An nginx `log_format` string, or a built-in format name.
    log_format: Option<String>,
}

/// The parser: the compiled format and a scratch buffer reused for every line.
#[derive(Default)]
pub struct Nginx {
    format: Format,
    spans: Vec<Span>,
}

impl Parser for Nginx {
    const NAME: &'static str = "nginx";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "nginx and Apache access logs: combined, common, main or a custom log_format";

    fn configure(&mut self, config: &str) -> Result<(), String> {
        let settings: Settings = if config.trim().is_empty() {
            Settings::default()
        } else {
            serde_json::from_str(config).map_err(|e| format!("nginx settings: {e}"))?
        };
        let format = match (settings.format, settings.log_format) {
            (Some(_), Some(_)) => Err("give either format or log_format, not both".to_owned()),
            (Some(name), None) => Format::named(&name),
            (None, Some(text)) => Format::named(&text).or_else(|_| Format::compile(&text)),
            (None, None) => Ok(Format::default()),
        };
        self.format = format.map_err(|e| format!("nginx settings: {e}"))?;
        Ok(())
    }

    fn parse(&mut self, line: &str) -> ParseResult {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return ParseResult::Skip;
        }
        let scanned = if self.format.main_layout && fast::scan_main(line, &mut self.spans) {
            Ok(())
        } else {
            scan::scan(&self.format, line, &mut self.spans)
        };
        match scanned {
            Ok(()) => ParseResult::Request(assemble::assemble(&self.format, line, &self.spans)),
            Err(why) => ParseResult::Invalid(why),
        }
    }
}

logsec_sdk::export_parser!(Nginx);
