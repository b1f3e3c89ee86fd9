//! Hostile and minimal components written inline in WAT.
//!
//! Each component is a core module in WAT, wrapped into a component of one of our worlds by
//! `wit-component` (the same encoder `cargo build --target wasm32-wasip2` uses), so the tests need no
//! guest toolchain. `metadata` and `configure` behave; the batch function does what the test asks.

use std::path::Path;

/// What a test detector's `detect-batch` does.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Returns one empty list of findings per request.
    Benign,
    /// Never returns.
    Loop,
    /// Grows its memory until the host refuses.
    MemoryBomb,
    /// Executes `unreachable` (what a Rust panic compiles to).
    Unreachable,
    /// Returns a list that points far outside its memory.
    OversizedOutput,
    /// Returns one result more than it was given.
    WrongCount,
    /// Traps when given three requests or more, works otherwise.
    TrapOnLargeBatches,
}

/// A detector component named `name`, version `version`, whose `configure` refuses any settings that
/// start with `x`, and whose `detect-batch` turns hostile when the first request has an IP address
/// (so it passes the host's smoke test, which sends an empty request, and misbehaves in service).
pub fn detector(name: &str, version: &str, behaviour: Behaviour) -> Vec<u8> {
    detector_armed(name, version, behaviour, false)
}

/// As [`detector`]; with `always`, hostile on every call (so it fails the smoke test at load).
pub fn detector_armed(name: &str, version: &str, behaviour: Behaviour, always: bool) -> Vec<u8> {
    let hostile = match behaviour {
        Behaviour::Benign => "",
        Behaviour::Loop => "(loop $forever (br $forever))",
        Behaviour::MemoryBomb => "(loop $more (drop (memory.grow (i32.const 256))) (br $more))",
        Behaviour::Unreachable => "(unreachable)",
        Behaviour::OversizedOutput => {
            "(i32.store (i32.const 1200) (i32.const 65536)) (i32.store (i32.const 1204) (i32.const 100000000)) (return (i32.const 1200))"
        }
        Behaviour::WrongCount => "(local.set $len (i32.add (local.get $len) (i32.const 1)))",
        Behaviour::TrapOnLargeBatches => "(if (i32.ge_u (local.get $len) (i32.const 3)) (then (unreachable)))",
    };
    // The first request's `ip` is a string at offset 0 of the record: (pointer, length).
    let armed = if always {
        "(i32.const 1)"
    } else {
        "(i32.and (i32.gt_u (local.get $len) (i32.const 0)) (i32.gt_u (i32.load offset=4 (local.get $ptr)) (i32.const 0)))"
    };
    let body = format!("(if {armed} (then {hostile})) {BENIGN}");
    let wat = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (data (i32.const 2048) "{name}")
  (data (i32.const 2112) "{version}")
  (data (i32.const 2176) "bad settings")
  (func $alloc (param $size i32) (param $align i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1))) (i32.const -1))
        (then (unreachable)))))
    (global.set $heap (local.get $end))
    (local.get $p))
  (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
    (call $alloc (local.get $size) (local.get $align)))
  (func (export "metadata") (result i32)
    (i32.store (i32.const 1024) (i32.const 2048))
    (i32.store (i32.const 1028) (i32.const {name_len}))
    (i32.store (i32.const 1032) (i32.const 2112))
    (i32.store (i32.const 1036) (i32.const {version_len}))
    (i32.store8 (i32.const 1040) (i32.const 1))
    (i32.store (i32.const 1044) (i32.const 1))
    (i32.store (i32.const 1048) (i32.const 2048))
    (i32.store (i32.const 1052) (i32.const 0))
    (i32.const 1024))
  (func (export "configure") (param $ptr i32) (param $len i32) (result i32)
    (i32.store8 (i32.const 1100) (i32.const 0))
    (if (i32.and (i32.gt_u (local.get $len) (i32.const 0)) (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 120)))
      (then
        (i32.store8 (i32.const 1100) (i32.const 1))
        (i32.store (i32.const 1104) (i32.const 2176))
        (i32.store (i32.const 1108) (i32.const 12))))
    (i32.const 1100))
  (func (export "detect-batch") (param $ptr i32) (param $len i32) (result i32)
    (local $out i32)
    {body})
)"#,
        name_len = name.len(),
        version_len = version.len(),
    );
    encode(&wat, "detector")
}

/// Returns `$len` empty lists at a fresh address.
const BENIGN: &str = "(local.set $out (call $alloc (i32.mul (local.get $len) (i32.const 8)) (i32.const 4)))
    (memory.fill (local.get $out) (i32.const 0) (i32.mul (local.get $len) (i32.const 8)))
    (i32.store (i32.const 1200) (local.get $out))
    (i32.store (i32.const 1204) (local.get $len))
    (i32.const 1200)";

fn encode(wat: &str, world: &str) -> Vec<u8> {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(&wit).expect("parse wit/");
    let world = resolve.select_world(&[pkg], Some(world)).expect("world exists");
    let mut module = wat::parse_str(wat).expect("test WAT parses");
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)
        .expect("embed WIT");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module fits the world")
        .validate(true)
        .encode()
        .expect("encode component")
}
