//! The subcommands of the `logsec` binary.

mod analysis;
pub mod check;
pub mod decisions;
pub mod explain;
pub mod plugins;
pub mod replay;
pub mod run;
mod stage;
