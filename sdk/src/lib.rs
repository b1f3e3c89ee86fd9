//! # logsec-sdk
//!
//! Write logsec plugins — parsers, detectors and response policies — in Rust and build them as
//! WebAssembly components (`cargo build --release --target wasm32-wasip2`).
//!
//! A plugin is a type that implements one of [`Parser`], [`Detector`] or [`ResponsePolicy`] and is
//! exported with the matching macro. The SDK writes the `wit-bindgen` glue: batches are split into
//! single calls (override the `*_batch` method when a whole batch can be handled faster), the plugin
//! value is created with `Default` on first use and kept between calls, and `metadata()` is filled in
//! from the trait's constants.
//!
//! ```ignore
//! use logsec_sdk::{Detector, Finding, Request};
//!
//! #[derive(Default)]
//! struct AdminProbe;
//!
//! impl Detector for AdminProbe {
//!     const NAME: &'static str = "admin-probe";
//!     const VERSION: &'static str = "0.1.0";
//!
//!     fn detect(&mut self, request: &Request) -> Vec<Finding> {
//!         if request.uri.starts_with("/wp-admin") && request.status == 404 {
//!             vec![Finding::new("scanner", "admin-probe", 5, &request.uri)]
//!         } else {
//!             vec![]
//!         }
//!     }
//! }
//!
//! logsec_sdk::export_detector!(AdminProbe);
//! ```
//!
//! Plugins are sandboxed: they get no filesystem, network, environment or clock. What they may use of
//! the host is in [`host`]: logging and windowed counters that survive hot swaps.
#![deny(missing_docs)]

/// The `wit-bindgen` version the SDK generates its glue with, for authors who need the raw bindings.
pub use wit_bindgen;

/// Major version of the WIT contract (`logsec:plugin@0.1.0`) this SDK implements. The host refuses
/// plugins whose `metadata().api-version` differs.
pub const API_VERSION: u32 = 1;

/// Bindings generated from `wit/plugin.wit`, one module per world. Plugin authors do not need them
/// directly; the export macros use them.
#[doc(hidden)]
pub mod bindings {
    /// The `parser` world; it also owns the shared `types` and `host` interfaces.
    pub mod parser {
        wit_bindgen::generate!({
            path: "../wit",
            world: "parser",
            default_bindings_module: "logsec_sdk::bindings::parser",
            pub_export_macro: true,
            export_macro_name: "export_parser_world",
        });
    }
    /// The `detector` world.
    pub mod detector {
        wit_bindgen::generate!({
            path: "../wit",
            world: "detector",
            default_bindings_module: "logsec_sdk::bindings::detector",
            pub_export_macro: true,
            export_macro_name: "export_detector_world",
            with: {
                "logsec:plugin/types@0.1.0": crate::bindings::parser::logsec::plugin::types,
                "logsec:plugin/host@0.1.0": crate::bindings::parser::logsec::plugin::host,
            },
        });
    }
    /// The `response-policy` world.
    pub mod policy {
        wit_bindgen::generate!({
            path: "../wit",
            world: "response-policy",
            default_bindings_module: "logsec_sdk::bindings::policy",
            pub_export_macro: true,
            export_macro_name: "export_policy_world",
            with: {
                "logsec:plugin/types@0.1.0": crate::bindings::parser::logsec::plugin::types,
                "logsec:plugin/host@0.1.0": crate::bindings::parser::logsec::plugin::host,
            },
        });
    }
}

pub use bindings::parser::logsec::plugin::types::{
    Action, ActionKind, Assessment, Field, Finding, Metadata, ParseResult, PluginKind, Request,
};

/// What a plugin may ask of the host.
///
/// Compiled natively (unit tests of a plugin's logic), these talk to a stand-in instead of the host:
/// `log` writes to stderr and `count` keeps per-thread counters without a time window, so plugin
/// code can be tested with `cargo test` as it is.
pub mod host {
    pub use crate::bindings::parser::logsec::plugin::host::Level;

    /// Writes `message` to the host's log at `level`, tagged with the plugin's name.
    pub fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::parser::logsec::plugin::host::log(level, message);
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("[{level:?}] {message}");
    }

    /// Adds `delta` to the counter `key` and returns its total over the last `window_seconds`
    /// (clamped by the host to 1..=3600). Counters survive hot swaps of the plugin.
    pub fn count(key: &str, window_seconds: u32, delta: u32) -> u64 {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::parser::logsec::plugin::host::count(key, window_seconds, delta);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = window_seconds;
            native::count(key, delta)
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod native {
        use std::cell::RefCell;
        use std::collections::HashMap;

        thread_local! {
            static COUNTERS: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
        }

        pub fn count(key: &str, delta: u32) -> u64 {
            COUNTERS.with(|c| {
                let mut c = c.borrow_mut();
                let n = c.entry(key.to_owned()).or_default();
                *n += u64::from(delta);
                *n
            })
        }
    }
}

impl Finding {
    /// A finding; `evidence` is cut to [`Finding::MAX_EVIDENCE`] bytes on a character boundary.
    pub fn new(category: &str, rule_id: &str, score: u8, evidence: &str) -> Self {
        Finding {
            category: category.to_owned(),
            rule_id: rule_id.to_owned(),
            score: score.min(10),
            evidence: truncate(evidence, Self::MAX_EVIDENCE).to_owned(),
        }
    }

    /// Longest evidence the host keeps; longer evidence is cut by the host as well.
    pub const MAX_EVIDENCE: usize = 256;
}

impl Request {
    /// A request with every field empty; handy in tests and for parsers that fill fields one by one.
    pub fn empty() -> Self {
        Request {
            ip: String::new(),
            forwarded_for: None,
            user: String::new(),
            time: String::new(),
            timestamp_ms: None,
            method: String::new(),
            uri: String::new(),
            protocol: String::new(),
            status: 0,
            bytes: 0,
            referer: String::new(),
            user_agent: String::new(),
            extra: Vec::new(),
        }
    }
}

impl Action {
    /// An action of `kind` with the host's default duration.
    pub fn new(kind: ActionKind, ttl_seconds: u64, reason: impl Into<String>) -> Self {
        Action {
            kind,
            ttl_seconds,
            reason: reason.into(),
        }
    }
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A parser plugin: raw log lines in, requests out.
pub trait Parser: Default + 'static {
    /// Unique plugin name; also the `format` name operators select (`format = "nginx"`).
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str;
    /// One line for `logsec plugins`.
    const DESCRIPTION: &'static str = "";

    /// Applies the operator's settings (JSON text, `{}` when none). Keep the previous settings when
    /// returning an error: the host keeps using this instance.
    fn configure(&mut self, config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Parses one line (without its terminator).
    fn parse(&mut self, line: &str) -> ParseResult;

    /// Parses a batch; one result per line, in order.
    fn parse_batch(&mut self, lines: Vec<String>) -> Vec<ParseResult> {
        lines.iter().map(|l| self.parse(l)).collect()
    }
}

/// A detector plugin: requests in, findings out.
pub trait Detector: Default + 'static {
    /// Unique plugin name.
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str;
    /// One line for `logsec plugins`.
    const DESCRIPTION: &'static str = "";

    /// Applies the detector's rules or settings. Keep the previous ones when returning an error.
    fn configure(&mut self, config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Findings for one request; empty when nothing was found.
    fn detect(&mut self, request: &Request) -> Vec<Finding>;

    /// Findings for a batch; one list per request, in order.
    fn detect_batch(&mut self, requests: Vec<Request>) -> Vec<Vec<Finding>> {
        requests.iter().map(|r| self.detect(r)).collect()
    }
}

/// A response policy plugin: assessed requests in, actions out.
pub trait ResponsePolicy: Default + 'static {
    /// Unique plugin name.
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str;
    /// One line for `logsec plugins`.
    const DESCRIPTION: &'static str = "";

    /// Applies the policy's settings (JSON text). Keep the previous ones when returning an error.
    fn configure(&mut self, config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// The action for one assessed request.
    fn decide(&mut self, item: &Assessment) -> Action;

    /// Actions for a batch; one per item, in order.
    fn decide_batch(&mut self, items: Vec<Assessment>) -> Vec<Action> {
        items.iter().map(|i| self.decide(i)).collect()
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_cell {
    ($t:ty) => {
        ::std::thread_local! {
            static __LOGSEC_PLUGIN: ::std::cell::RefCell<::std::option::Option<$t>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }
        fn __logsec_with<R>(f: impl FnOnce(&mut $t) -> R) -> R {
            __LOGSEC_PLUGIN.with(|cell| {
                let mut slot = cell.borrow_mut();
                f(slot.get_or_insert_with(<$t as ::std::default::Default>::default))
            })
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __metadata {
    ($t:ty, $tr:path, $kind:ident) => {
        $crate::Metadata {
            name: <$t as $tr>::NAME.into(),
            version: <$t as $tr>::VERSION.into(),
            kind: $crate::PluginKind::$kind,
            api_version: $crate::API_VERSION,
            description: <$t as $tr>::DESCRIPTION.into(),
        }
    };
}

/// Exports a [`Parser`] implementation as the component's `parser` world.
#[macro_export]
macro_rules! export_parser {
    ($t:ty) => {
        const _: () = {
            $crate::__plugin_cell!($t);
            #[allow(dead_code)]
            struct __LogsecExport;
            impl $crate::bindings::parser::Guest for __LogsecExport {
                fn metadata() -> $crate::Metadata {
                    $crate::__metadata!($t, $crate::Parser, Parser)
                }
                fn configure(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    __logsec_with(|p| $crate::Parser::configure(p, &config))
                }
                fn parse_batch(lines: ::std::vec::Vec<::std::string::String>) -> ::std::vec::Vec<$crate::ParseResult> {
                    __logsec_with(|p| $crate::Parser::parse_batch(p, lines))
                }
            }
            // Exported symbols only in the component: natively the crate stays a plain library, so
            // several plugins can be linked into one test or bench binary.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::parser::export_parser_world!(__LogsecExport);
        };
    };
}

/// Exports a [`Detector`] implementation as the component's `detector` world.
#[macro_export]
macro_rules! export_detector {
    ($t:ty) => {
        const _: () = {
            $crate::__plugin_cell!($t);
            #[allow(dead_code)]
            struct __LogsecExport;
            impl $crate::bindings::detector::Guest for __LogsecExport {
                fn metadata() -> $crate::Metadata {
                    $crate::__metadata!($t, $crate::Detector, Detector)
                }
                fn configure(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    __logsec_with(|p| $crate::Detector::configure(p, &config))
                }
                fn detect_batch(
                    requests: ::std::vec::Vec<$crate::Request>,
                ) -> ::std::vec::Vec<::std::vec::Vec<$crate::Finding>> {
                    __logsec_with(|p| $crate::Detector::detect_batch(p, requests))
                }
            }
            // Exported symbols only in the component: natively the crate stays a plain library, so
            // several plugins can be linked into one test or bench binary.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::detector::export_detector_world!(__LogsecExport);
        };
    };
}

/// Exports a [`ResponsePolicy`] implementation as the component's `response-policy` world.
#[macro_export]
macro_rules! export_policy {
    ($t:ty) => {
        const _: () = {
            $crate::__plugin_cell!($t);
            #[allow(dead_code)]
            struct __LogsecExport;
            impl $crate::bindings::policy::Guest for __LogsecExport {
                fn metadata() -> $crate::Metadata {
                    $crate::__metadata!($t, $crate::ResponsePolicy, ResponsePolicy)
                }
                fn configure(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    __logsec_with(|p| $crate::ResponsePolicy::configure(p, &config))
                }
                fn decide_batch(items: ::std::vec::Vec<$crate::Assessment>) -> ::std::vec::Vec<$crate::Action> {
                    __logsec_with(|p| $crate::ResponsePolicy::decide_batch(p, items))
                }
            }
            // Exported symbols only in the component: natively the crate stays a plain library, so
            // several plugins can be linked into one test or bench binary.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::policy::export_policy_world!(__LogsecExport);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn host_functions_work_natively() {
        host::log(host::Level::Info, "native log");
        assert_eq!(host::count("k", 60, 2), 2);
        assert_eq!(host::count("k", 60, 3), 5);
    }

    #[test]
    fn finding_clamps_score_and_evidence() {
        let f = Finding::new("sqli", "x", 42, &"a".repeat(1000));
        assert_eq!(f.score, 10);
        assert_eq!(f.evidence.len(), Finding::MAX_EVIDENCE);
    }
}
