//! Host-side bindings for the three worlds of `wit/plugin.wit`.
//!
//! The `parser` module owns the shared `types` and `host` interfaces; the other two worlds reuse them
//! through `with`, so a `Request` parsed by one plugin is the very type passed to the next.

/// The `parser` world (and the shared `types` and `host` interfaces).
pub mod parser {
    wasmtime::component::bindgen!({ path: "../wit", world: "parser" });
}

/// The `detector` world.
pub mod detector {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "detector",
        with: {
            "logsec:plugin/types": super::parser::logsec::plugin::types,
            "logsec:plugin/host": super::parser::logsec::plugin::host,
        },
    });
}

/// The `response-policy` world.
pub mod policy {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "response-policy",
        with: {
            "logsec:plugin/types": super::parser::logsec::plugin::types,
            "logsec:plugin/host": super::parser::logsec::plugin::host,
        },
    });
}

pub use parser::logsec::plugin::host::Level;
pub use parser::logsec::plugin::types::{
    Action, ActionKind, Assessment, Field, Finding, Metadata, ParseResult, PluginKind, Request,
};

impl Request {
    /// A request with every field empty: the smoke-test input and a test helper.
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

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Parser => "parser",
            PluginKind::Detector => "detector",
            PluginKind::ResponsePolicy => "response-policy",
        })
    }
}
