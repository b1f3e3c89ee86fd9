//! The set of loaded plugins, swapped atomically as files come, change and go.
//!
//! Invariants:
//! - Readers take a [`PluginSet`] snapshot (lock-free) and use it for a whole batch, so a batch sees
//!   one consistent set; in-flight calls keep the old versions alive until they finish.
//! - A file that fails to load never replaces a working plugin from the same file: the old version
//!   keeps serving and the failure is recorded for `logsec plugins`.
//! - A deleted file unloads its plugin. Two files cannot provide plugins of the same name.
//! - Settings changes (the rules file) build new versions from the same compiled components and swap
//!   them in only when `configure` accepts the new settings.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::bindings::{Metadata, PluginKind};
use super::engine::Runtime;
use super::error::LoadError;
use super::plugin::{LoadedPlugin, load, sha256_hex};

/// The detector that gets the rules file as its settings.
pub const RULES_DETECTOR: &str = "patterns";

/// Settings handed to plugins' `configure`, by plugin name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginConfigs {
    /// Contents of the rules file, for the [`RULES_DETECTOR`].
    pub rules: Option<String>,
    /// JSON settings by plugin name; plugins not listed get `{}`.
    pub by_name: BTreeMap<String, String>,
}

impl PluginConfigs {
    /// The settings for the plugin described by `meta`.
    pub fn config_for(&self, meta: &Metadata) -> String {
        if let Some(c) = self.by_name.get(&meta.name) {
            return c.clone();
        }
        match (&self.rules, meta.kind) {
            (Some(rules), PluginKind::Detector) if meta.name == RULES_DETECTOR => rules.clone(),
            _ => "{}".to_owned(),
        }
    }
}

/// An immutable snapshot of the loaded plugins, sorted by name.
#[derive(Default)]
pub struct PluginSet {
    /// The plugins.
    pub plugins: Vec<Arc<LoadedPlugin>>,
}

impl PluginSet {
    /// The parser named `name`.
    pub fn parser(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins
            .iter()
            .find(|p| p.kind() == PluginKind::Parser && &*p.name == name)
    }

    /// Every detector.
    pub fn detectors(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.iter().filter(|p| p.kind() == PluginKind::Detector)
    }

    /// The response policy named `name`, or else the first one loaded.
    pub fn policy(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        let mut policies = self.plugins.iter().filter(|p| p.kind() == PluginKind::ResponsePolicy);
        policies.clone().find(|p| &*p.name == name).or_else(|| policies.next())
    }
}

/// What became of one plugin file.
#[derive(Debug, Clone)]
pub struct FileStatus {
    /// The file.
    pub path: PathBuf,
    /// sha256 of the bytes last read.
    pub sha256: String,
    /// The plugin loaded from this file (it may be an older version than the bytes on disk).
    pub loaded: Option<String>,
    /// Why the bytes last read could not be loaded.
    pub error: Option<LoadError>,
}

/// What a reload did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A plugin was loaded or replaced.
    Loaded {
        /// Its name.
        name: String,
        /// Its generation.
        generation: u64,
    },
    /// The bytes did not change.
    Unchanged,
    /// The file could not be loaded; any previous version keeps serving.
    Failed(LoadError),
    /// The file is gone and its plugin was unloaded.
    Removed(Option<String>),
    /// Not a plugin file (hidden, temporary, not `.wasm`).
    Ignored,
}

/// The plugin registry of one plugin directory.
pub struct Registry {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    current: ArcSwap<PluginSet>,
    files: Mutex<BTreeMap<PathBuf, FileStatus>>,
    configs: Mutex<PluginConfigs>,
    generation: AtomicU64,
    /// Serialises loads so two events for one file cannot race.
    loading: Mutex<()>,
    /// Plugins with a source's own settings, by file, generation and settings; refusals are kept
    /// too so refused settings are not validated again for every batch.
    variants: Mutex<Variants>,
}

type Variants = HashMap<(PathBuf, u64, Arc<str>), Result<Arc<LoadedPlugin>, LoadError>>;

impl Registry {
    /// An empty registry for `dir`; call [`Registry::load_dir`] to fill it.
    pub fn new(runtime: Arc<Runtime>, dir: impl Into<PathBuf>, configs: PluginConfigs) -> Arc<Registry> {
        Arc::new(Registry {
            runtime,
            dir: dir.into(),
            current: ArcSwap::from_pointee(PluginSet::default()),
            files: Mutex::new(BTreeMap::new()),
            configs: Mutex::new(configs),
            generation: AtomicU64::new(1),
            loading: Mutex::new(()),
            variants: Mutex::default(),
        })
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runtime plugins run in.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The current plugins (lock-free).
    pub fn snapshot(&self) -> Arc<PluginSet> {
        self.current.load_full()
    }

    /// Every plugin file seen, with its state.
    pub fn files(&self) -> Vec<FileStatus> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Loads every plugin file in the directory and unloads plugins whose file is gone.
    pub fn load_dir(&self) -> std::io::Result<Vec<(PathBuf, ReloadOutcome)>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_plugin_file(p))
            .collect();
        paths.sort();
        let known: Vec<PathBuf> = self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let gone: Vec<PathBuf> = known.into_iter().filter(|k| !paths.contains(k)).collect();
        paths.extend(gone);
        Ok(paths.into_iter().map(|p| (p.clone(), self.reload_path(&p))).collect())
    }

    /// Brings the plugin from `path` up to date with the file: load, replace, or unload.
    pub fn reload_path(&self, path: &Path) -> ReloadOutcome {
        if !is_plugin_file(path) {
            return ReloadOutcome::Ignored;
        }
        let _serial = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.unload(path),
            Err(e) => return self.record_failure(path, String::new(), LoadError::Read(e.to_string())),
        };
        let sha = sha256_hex(&bytes);
        if let Some(st) = self.files.lock().unwrap_or_else(|p| p.into_inner()).get(path)
            && st.sha256 == sha
        {
            return ReloadOutcome::Unchanged;
        }
        let configs = self.configs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let loaded = match load(&self.runtime, path, &bytes, &|m| configs.config_for(m), generation) {
            Ok(p) => p,
            Err(e) => return self.record_failure(path, sha, e),
        };
        let set = self.snapshot();
        if let Some(other) = set.plugins.iter().find(|p| p.name == loaded.name && p.path != path) {
            let e = LoadError::Duplicate {
                name: loaded.name.to_string(),
                other: other.path.display().to_string(),
            };
            return self.record_failure(path, sha, e);
        }
        let name = loaded.name.to_string();
        tracing::info!(
            plugin = %name,
            kind = %loaded.kind(),
            version = %loaded.meta.version,
            generation,
            file = %path.display(),
            compile_ms = loaded.compile_time.as_millis() as u64,
            "plugin loaded"
        );
        let loaded = Arc::new(loaded);
        self.swap(|plugins| {
            plugins.retain(|p| p.path != path);
            plugins.push(loaded.clone());
        });
        self.files.lock().unwrap_or_else(|p| p.into_inner()).insert(
            path.to_owned(),
            FileStatus {
                path: path.to_owned(),
                sha256: sha,
                loaded: Some(name.clone()),
                error: None,
            },
        );
        ReloadOutcome::Loaded { name, generation }
    }

    /// `plugin` configured with `settings` instead of its own (a source's parser settings): built and
    /// validated once per plugin version, then shared by every worker.
    pub fn variant(&self, plugin: &Arc<LoadedPlugin>, settings: &str) -> Result<Arc<LoadedPlugin>, LoadError> {
        if *plugin.config == *settings {
            return Ok(plugin.clone());
        }
        let key = (plugin.path.clone(), plugin.generation, Arc::<str>::from(settings));
        let mut variants = self.variants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = variants.get(&key) {
            return v.clone();
        }
        let set = self.snapshot();
        variants.retain(|(path, generation, _), _| {
            set.plugins
                .iter()
                .any(|p| &p.path == path && p.generation == *generation)
        });
        let id = self.generation.fetch_add(1, Ordering::Relaxed);
        let built = plugin.variant(&self.runtime, settings, id).map(Arc::new);
        if let Err(e) = &built {
            tracing::error!(plugin = %plugin.name, error = %e, "a source's parser settings were refused");
        }
        variants.insert(key, built.clone());
        built
    }

    /// Replaces the plugins' settings; plugins whose settings change are reconfigured and swapped in
    /// when they accept them. Returns the plugins that refused, with why (they keep the old settings).
    pub fn set_configs(&self, configs: PluginConfigs) -> Vec<(String, LoadError)> {
        let _serial = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        let mut refused = Vec::new();
        let mut replaced = Vec::new();
        for plugin in self.snapshot().plugins.iter() {
            let config = configs.config_for(&plugin.meta);
            if *plugin.config == *config {
                continue;
            }
            let generation = self.generation.fetch_add(1, Ordering::Relaxed);
            match plugin.reconfigured(&self.runtime, &config, generation) {
                Ok(p) => {
                    tracing::info!(plugin = %p.name, generation, "plugin reconfigured");
                    replaced.push(Arc::new(p));
                }
                Err(e) => {
                    tracing::warn!(plugin = %plugin.name, error = %e, "new settings refused; keeping the previous ones");
                    refused.push((plugin.name.to_string(), e));
                }
            }
        }
        if refused.is_empty() {
            *self.configs.lock().unwrap_or_else(|p| p.into_inner()) = configs;
        }
        if !replaced.is_empty() {
            self.swap(|plugins| {
                for new in &replaced {
                    plugins.retain(|p| p.path != new.path);
                    plugins.push(new.clone());
                }
            });
        }
        refused
    }

    /// Replaces the rules file's contents (reconfiguring the rules detector).
    pub fn set_rules(&self, rules: String) -> Vec<(String, LoadError)> {
        let mut configs = self.configs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        configs.rules = Some(rules);
        self.set_configs(configs)
    }

    fn unload(&self, path: &Path) -> ReloadOutcome {
        let status = self.files.lock().unwrap_or_else(|p| p.into_inner()).remove(path);
        let name = status.and_then(|s| s.loaded);
        self.swap(|plugins| plugins.retain(|p| p.path != path));
        if let Some(n) = &name {
            tracing::info!(plugin = %n, file = %path.display(), "plugin file deleted; plugin unloaded");
        }
        ReloadOutcome::Removed(name)
    }

    fn record_failure(&self, path: &Path, sha256: String, error: LoadError) -> ReloadOutcome {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = files.get(path).and_then(|s| s.loaded.clone());
        match &loaded {
            Some(name) => tracing::warn!(
                file = %path.display(), plugin = %name, error = %error,
                "plugin file could not be loaded; the previous version keeps serving"
            ),
            None => tracing::warn!(file = %path.display(), error = %error, "plugin file could not be loaded"),
        }
        files.insert(
            path.to_owned(),
            FileStatus {
                path: path.to_owned(),
                sha256,
                loaded,
                error: Some(error.clone()),
            },
        );
        ReloadOutcome::Failed(error)
    }

    fn swap(&self, change: impl Fn(&mut Vec<Arc<LoadedPlugin>>)) {
        self.current.rcu(|cur| {
            let mut plugins = cur.plugins.clone();
            change(&mut plugins);
            plugins.sort_by(|a, b| a.name.cmp(&b.name));
            PluginSet { plugins }
        });
    }
}

/// Whether `path` names a plugin file: `*.wasm`, not hidden, not a temporary file.
pub fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".wasm")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, kind: PluginKind) -> Metadata {
        Metadata {
            name: name.into(),
            version: "1".into(),
            kind,
            api_version: 1,
            description: String::new(),
        }
    }

    #[test]
    fn rules_go_to_the_rules_detector_only() {
        let mut c = PluginConfigs {
            rules: Some("RULES".into()),
            ..Default::default()
        };
        assert_eq!(c.config_for(&meta("patterns", PluginKind::Detector)), "RULES");
        assert_eq!(c.config_for(&meta("other", PluginKind::Detector)), "{}");
        assert_eq!(c.config_for(&meta("patterns", PluginKind::Parser)), "{}");
        c.by_name.insert("nginx".into(), r#"{"format":"common"}"#.into());
        assert_eq!(
            c.config_for(&meta("nginx", PluginKind::Parser)),
            r#"{"format":"common"}"#
        );
    }

    #[test]
    fn only_visible_wasm_files_are_plugins() {
        assert!(is_plugin_file(Path::new("/p/nginx.wasm")));
        assert!(!is_plugin_file(Path::new("/p/.nginx.wasm.tmp")));
        assert!(!is_plugin_file(Path::new("/p/.hidden.wasm")));
        assert!(!is_plugin_file(Path::new("/p/nginx.wasm.tmp")));
        assert!(!is_plugin_file(Path::new("/p/README.md")));
    }
}
