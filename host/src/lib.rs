//! logsec: a real-time log security agent. Parsers, detectors and response policies are
//! WebAssembly components (`wit/plugin.wit`) run by [`runtime`]; [`pipeline`] chains them.

pub mod analyst;
pub mod cmd;
pub mod config;
pub mod enforce;
pub mod http;
pub mod lines;
pub mod metrics;
pub mod paths;
pub mod pipeline;
pub mod runtime;
pub mod store;
pub mod tail;
