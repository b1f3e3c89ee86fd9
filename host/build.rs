//! Builds the built-in plugins (the workspace members under `plugins/`) for `wasm32-wasip2` as part
//! of the normal `cargo build` / `cargo test`, and copies each component to `target/plugins/NAME.wasm`.
//!
//! The nested cargo runs in its own target directory (`target/wasm`) with the `plugin` profile, so
//! it never waits on the lock of the build that runs this script. Variables that cargo sets for build scripts and that would
//! leak host settings into the wasm build (rustflags, wrappers, the target dir) are removed.
//! `LOGSEC_SKIP_PLUGIN_BUILD=1` skips the step (for packagers who build the plugins separately).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the plugins are built for; components come out of the linker directly.
const WASM_TARGET: &str = "wasm32-wasip2";
/// The cargo profile of the plugin builds (see the workspace Cargo.toml).
const PROFILE: &str = "plugin";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives in the workspace root")
        .to_path_buf();
    let plugins = plugin_members(&root);
    for watched in ["plugins", "sdk/src", "sdk/Cargo.toml", "wit", "Cargo.toml"] {
        watch(&root.join(watched));
    }
    println!("cargo:rerun-if-env-changed=LOGSEC_SKIP_PLUGIN_BUILD");
    if env::var_os("LOGSEC_SKIP_PLUGIN_BUILD").is_some() {
        return;
    }

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let wasm_target_dir = target_dir.join("wasm");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--profile", PROFILE, "--target", WASM_TARGET, "--target-dir"])
        .arg(&wasm_target_dir);
    for (package, _) in &plugins {
        cmd.args(["-p", package]);
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
        "CARGO_INCREMENTAL",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins failed ({status}); is the {WASM_TARGET} target installed? \
             `rustup target add {WASM_TARGET}`"
        );
    }

    let built = wasm_target_dir.join(WASM_TARGET).join(PROFILE);
    let out = target_dir.join("plugins");
    fs::create_dir_all(&out).expect("create target/plugins");
    for (_, name) in &plugins {
        let from = built.join(format!("{name}.wasm"));
        let to = out.join(format!("{name}.wasm"));
        copy_if_changed(&from, &to);
    }
}

/// (package name, library name) of each workspace member under `plugins/`.
fn plugin_members(root: &Path) -> Vec<(String, String)> {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let start = manifest.find("members").expect("the workspace lists its members");
    let list = &manifest[start..manifest[start..].find(']').map_or(manifest.len(), |e| start + e)];
    list.split('"')
        .skip(1)
        .step_by(2)
        .filter(|m| m.starts_with("plugins/"))
        .map(|member| {
            let krate = fs::read_to_string(root.join(member).join("Cargo.toml")).expect("read a plugin's Cargo.toml");
            let field = |section: &str, key: &str| {
                krate.split(section).nth(1).and_then(|s| {
                    s.lines().take_while(|l| !l.starts_with('[')).find_map(|l| {
                        let (k, v) = l.split_once('=')?;
                        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
                    })
                })
            };
            let package = field("[package]", "name").expect("a plugin crate has a package name");
            let lib = field("[lib]", "name").unwrap_or_else(|| package.replace('-', "_"));
            (package, lib)
        })
        .collect()
}

/// Copies through a temporary file and a rename, so a running `logsec` watching target/plugins never
/// sees a half-written component; an unchanged component is left alone (no reload event).
fn copy_if_changed(from: &Path, to: &Path) {
    let bytes = fs::read(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    if fs::read(to).map(|old| old == bytes).unwrap_or(false) {
        return;
    }
    let tmp = to.with_extension("wasm.tmp");
    fs::write(&tmp, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, to).unwrap_or_else(|e| panic!("rename to {}: {e}", to.display()));
}

fn watch(path: &Path) {
    if path.is_dir() {
        for entry in fs::read_dir(path).into_iter().flatten().flatten() {
            let p = entry.path();
            let name = entry.file_name();
            if name == "target"
                || name == "node_modules"
                || name == "examples" && path.ends_with("plugins")
                || name.to_string_lossy().starts_with('.') && name != ".cargo"
            {
                continue;
            }
            watch(&p);
        }
    }
    println!("cargo:rerun-if-changed={}", path.display());
}
