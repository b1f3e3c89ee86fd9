//! Loading one plugin file: compile, recognise its world, and validate it before anyone uses it.
//!
//! Invariants:
//! - A [`LoadedPlugin`] has passed every check: it compiled, its imports are satisfied by the host,
//!   it exports one of the three worlds, `metadata()` names that same kind and api version
//!   [`API_VERSION`], `configure` accepted its settings, and a smoke call over one input returned one
//!   result. Anything less is a [`LoadError`] and never reaches the registry.
//! - A loaded plugin is immutable. New settings (an edited rules file) make a new `LoadedPlugin` with
//!   a new generation from the same compiled component, validated the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::bindings::detector::DetectorPre;
use super::bindings::parser::ParserPre;
use super::bindings::policy::ResponsePolicyPre;
use super::bindings::{Assessment, Metadata, PluginKind, Request};
use super::engine::Runtime;
use super::error::{CallError, LoadError, first_line};
use super::instance::{Instance, PluginPre};
use super::supervisor::Health;

/// The contract's major version (`logsec:plugin@0.1.0` is api 1).
pub const API_VERSION: u32 = 1;
/// Longest plugin name accepted.
const MAX_NAME_BYTES: usize = 64;

/// A validated, pre-instantiated plugin version.
pub struct LoadedPlugin {
    /// `metadata().name`.
    pub name: Arc<str>,
    /// What `metadata()` returned.
    pub meta: Metadata,
    /// The file it came from.
    pub path: PathBuf,
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
    /// Increases with every load or reconfiguration; workers rebuild instances when it changes.
    pub generation: u64,
    /// The settings `configure` accepted.
    pub config: Arc<str>,
    /// Time spent compiling (near zero when the on-disk cache had it).
    pub compile_time: Duration,
    /// Linear memory of the smoke-test instance after configure and one call.
    pub instance_memory_bytes: usize,
    pub(crate) pre: PluginPre,
    /// Call statistics and quarantine state, shared by the plugin's variants.
    pub health: Arc<Health>,
    /// 0 for the plugin as loaded; another number for a variant with a source's own settings
    /// (see [`LoadedPlugin::variant`]).
    pub variant: u64,
}

impl LoadedPlugin {
    /// The plugin's kind.
    pub fn kind(&self) -> PluginKind {
        self.meta.kind
    }

    /// A fresh, configured instance for a worker.
    pub fn instantiate(&self, runtime: &Runtime) -> Result<Instance, CallError> {
        let mut inst = Instance::instantiate(runtime, &self.pre, self.name.clone())?;
        match inst.configure(&self.config, runtime.limits.setup_timeout)? {
            Ok(()) => Ok(inst),
            Err(msg) => Err(CallError::Instantiate(format!(
                "configure refused: {}",
                first_line(&msg)
            ))),
        }
    }

    /// The same component with other settings, validated like a fresh load.
    pub fn reconfigured(&self, runtime: &Runtime, config: &str, generation: u64) -> Result<LoadedPlugin, LoadError> {
        let (meta, _, memory) = validate(runtime, &self.pre, &|_| config.to_owned(), Some(self.meta.kind))?;
        Ok(LoadedPlugin {
            name: self.name.clone(),
            meta,
            path: self.path.clone(),
            sha256: self.sha256.clone(),
            generation,
            config: config.into(),
            compile_time: Duration::ZERO,
            instance_memory_bytes: memory,
            pre: self.pre.clone(),
            health: Arc::default(),
            variant: 0,
        })
    }

    /// This version with other settings (a source's own parser settings): same generation, same
    /// health, its own warm instances (`id` tells them apart). Validated like a fresh load.
    pub fn variant(&self, runtime: &Runtime, config: &str, id: u64) -> Result<LoadedPlugin, LoadError> {
        let mut v = self.reconfigured(runtime, config, self.generation)?;
        v.health = self.health.clone();
        v.variant = id;
        Ok(v)
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compiles and validates the component in `bytes` (read from `path`). `config_for` gives the
/// settings for the plugin once its metadata is known.
pub fn load(
    runtime: &Runtime,
    path: &Path,
    bytes: &[u8],
    config_for: &dyn Fn(&Metadata) -> String,
    generation: u64,
) -> Result<LoadedPlugin, LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::Compile("the file is empty".into()));
    }
    let started = Instant::now();
    let component = Component::from_binary(&runtime.engine, bytes)
        .map_err(|e| LoadError::Compile(first_line(&format!("{e:#}"))))?;
    let compile_time = started.elapsed();
    let pre = recognise(runtime, &component)?;
    let (meta, config, memory) = validate(runtime, &pre, config_for, None)?;
    Ok(LoadedPlugin {
        name: meta.name.as_str().into(),
        meta,
        path: path.to_owned(),
        sha256: sha256_hex(bytes),
        generation,
        config: config.into(),
        compile_time,
        instance_memory_bytes: memory,
        pre,
        health: Arc::default(),
        variant: 0,
    })
}

/// Finds which world the component implements.
fn recognise(runtime: &Runtime, component: &Component) -> Result<PluginPre, LoadError> {
    let pre = runtime
        .linker
        .instantiate_pre(component)
        .map_err(|e| LoadError::Contract(first_line(&format!("{e:#}"))))?;
    if let Ok(p) = DetectorPre::new(pre.clone()) {
        return Ok(PluginPre::Detector(p));
    }
    if let Ok(p) = ParserPre::new(pre.clone()) {
        return Ok(PluginPre::Parser(p));
    }
    match ResponsePolicyPre::new(pre) {
        Ok(p) => Ok(PluginPre::Policy(p)),
        Err(e) => Err(LoadError::Contract(format!(
            "exports none of the worlds parser, detector, response-policy ({})",
            first_line(&format!("{e:#}"))
        ))),
    }
}

fn kind_of(pre: &PluginPre) -> PluginKind {
    match pre {
        PluginPre::Parser(_) => PluginKind::Parser,
        PluginPre::Detector(_) => PluginKind::Detector,
        PluginPre::Policy(_) => PluginKind::ResponsePolicy,
    }
}

fn check_metadata(meta: &Metadata, pre: &PluginPre) -> Result<(), LoadError> {
    if meta.api_version != API_VERSION {
        return Err(LoadError::Metadata(format!(
            "api-version {} is not supported (this host speaks {API_VERSION})",
            meta.api_version
        )));
    }
    if meta.kind != kind_of(pre) {
        return Err(LoadError::Metadata(format!(
            "says it is a {} but exports the {} world",
            meta.kind,
            kind_of(pre)
        )));
    }
    let valid = !meta.name.is_empty()
        && meta.name.len() <= MAX_NAME_BYTES
        && meta
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return Err(LoadError::Metadata(format!(
            "name {:?} must be 1..={MAX_NAME_BYTES} characters of a-z, 0-9, '-' or '_'",
            logsec_escape(&meta.name)
        )));
    }
    Ok(())
}

fn logsec_escape(s: &str) -> String {
    super::counters::logsec_truncate(s, MAX_NAME_BYTES)
        .escape_debug()
        .to_string()
}

/// Instantiates once, reads `metadata()`, configures with the settings `config_for` gives for that
/// metadata, and makes one smoke call. Returns the metadata, the settings, and the instance's memory
/// afterwards.
fn validate(
    runtime: &Runtime,
    pre: &PluginPre,
    config_for: &dyn Fn(&Metadata) -> String,
    expect: Option<PluginKind>,
) -> Result<(Metadata, String, usize), LoadError> {
    let setup = runtime.limits.setup_timeout;
    let mut inst =
        Instance::instantiate(runtime, pre, "loading".into()).map_err(|e| LoadError::Smoke(e.to_string()))?;
    let meta = inst.metadata(setup).map_err(|e| LoadError::Metadata(e.to_string()))?;
    check_metadata(&meta, pre)?;
    if expect.is_some_and(|k| k != meta.kind) {
        return Err(LoadError::Metadata("the plugin changed its kind".into()));
    }
    let config = config_for(&meta);
    match inst.configure(&config, setup) {
        Ok(Ok(())) => {}
        Ok(Err(msg)) => return Err(LoadError::Configure(first_line(&msg))),
        Err(e) => return Err(LoadError::Configure(e.to_string())),
    }
    let smoke = match pre {
        PluginPre::Parser(_) => inst.parse_batch(&["-".to_owned()]).map(drop),
        PluginPre::Detector(_) => inst.detect_batch(&[Request::empty()]).map(drop),
        PluginPre::Policy(_) => inst
            .decide_batch(&[Assessment {
                request: Request::empty(),
                findings: vec![],
                score: 0,
                confidence: 1,
                malicious: false,
                decided_by: "rules".into(),
            }])
            .map(drop),
    };
    smoke.map_err(|e| LoadError::Smoke(e.to_string()))?;
    Ok((meta, config, inst.memory_bytes()))
}
