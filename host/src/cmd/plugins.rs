//! `logsec plugins`: every plugin file in a directory, with kind, version and state
//! (loaded, quarantined, failed and why).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::runtime::{Limits, PluginConfigs, Registry, Runtime};

/// Loads `dir` the way the daemon would and writes one line per plugin file to `out`. Returns the
/// number of files that failed.
pub fn run(dir: &PathBuf, rules: Option<String>, out: &mut dyn Write) -> anyhow::Result<usize> {
    let runtime = Runtime::new(Limits::default())?;
    let registry = Registry::new(
        runtime,
        dir,
        PluginConfigs {
            rules,
            ..Default::default()
        },
    );
    registry
        .load_dir()
        .with_context(|| format!("cannot read the plugin directory {}", dir.display()))?;
    let set = registry.snapshot();
    writeln!(
        out,
        "{:<22} {:<16} {:<15} {:<10} STATE",
        "FILE", "NAME", "KIND", "VERSION"
    )?;
    let mut failed = 0;
    for file in registry.files() {
        let name = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let plugin = set.plugins.iter().find(|p| p.path == file.path);
        let (pname, kind, version) = match plugin {
            Some(p) => (p.name.to_string(), p.kind().to_string(), p.meta.version.clone()),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let state = match (plugin, &file.error) {
            (Some(p), None) => match p.health.quarantined_for() {
                Some(d) => format!(
                    "quarantined for {:.0} s: {}",
                    d.as_secs_f64(),
                    p.health.last_error().unwrap_or_default()
                ),
                None => format!(
                    "loaded (compile {} ms, instance memory {:.1} MiB) — {}",
                    p.compile_time.as_millis(),
                    p.instance_memory_bytes as f64 / (1 << 20) as f64,
                    super::check::printable(&p.meta.description, 80)
                ),
            },
            (Some(_), Some(e)) => format!("loaded, but the file on disk was refused: {e}"),
            (None, Some(e)) => {
                failed += 1;
                format!("failed: {e}")
            }
            (None, None) => "unloaded".into(),
        };
        writeln!(
            out,
            "{:<22} {:<16} {:<15} {:<10} {}",
            super::check::printable(&name, 40),
            pname,
            kind,
            super::check::printable(&version, 10),
            state
        )?;
    }
    Ok(failed)
}
