//! Where logsec finds its plugins and rules when not told.
//!
//! Run from the workspace (`cargo run`, `target/release/logsec`), the defaults are the build's
//! `target/plugins/` and the repository's `rules/patterns.json`. An installed binary uses
//! [`INSTALLED_PLUGIN_DIR`] and [`INSTALLED_RULES`]. `LOGSEC_PLUGIN_DIR` and `LOGSEC_RULES` override both.

use std::path::PathBuf;

/// Plugin directory of an installed binary.
pub const INSTALLED_PLUGIN_DIR: &str = "/usr/lib/logsec/plugins";
/// Rules file of an installed binary.
pub const INSTALLED_RULES: &str = "/usr/share/logsec/rules/patterns.json";

/// The default plugin directory.
pub fn default_plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LOGSEC_PLUGIN_DIR") {
        return dir.into();
    }
    // <target>/<profile>/logsec (or <target>/<profile>/deps/... for tests) → <target>/plugins
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(3) {
            let candidate = dir.join("plugins");
            if dir.join("wasm").is_dir() && candidate.is_dir() {
                return candidate;
            }
        }
    }
    INSTALLED_PLUGIN_DIR.into()
}

/// The default rules file.
pub fn default_rules() -> PathBuf {
    if let Some(file) = std::env::var_os("LOGSEC_RULES") {
        return file.into();
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("rules")
        .join("patterns.json");
    if workspace.is_file() {
        return workspace;
    }
    INSTALLED_RULES.into()
}
