#!/usr/bin/env bash
# Builds the null-byte detector (C) into a WebAssembly component.
#
#   ./build.sh OUT.wasm
#
# Needs wit-bindgen 0.61 (`cargo install wit-bindgen-cli --version 0.61.1`) and one of:
#   * wasi-sdk 24 or later, with WASI_SDK_PATH set: its clang targets wasm32-wasip2 and links a
#     component directly;
#   * otherwise a clang with the wasm32 target, wasm-ld and a wasi-libc sysroot (Debian:
#     `apt-get install clang-19 lld-19 wasi-libc`; CC=/usr/lib/llvm-19/bin/clang, WASI_SYSROOT=/usr),
#     plus wasm-tools: clang builds a core module for wasm32-wasi and `wasm-tools component new` wraps
#     it. That works without a WASI adapter only while the code calls nothing that needs WASI (no stdio,
#     files, clocks or randomness), which a logsec plugin never should.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT.wasm" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="$1"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$(dirname "$out")"

gen="$(mktemp -d)"
trap 'rm -rf "$gen"' EXIT
wit-bindgen c "$repo/wit" --world detector --out-dir "$gen" >/dev/null

flags=(-O2 -Wall -Wextra -mexec-model=reactor -Wl,--strip-debug -I"$gen")
sources=("$here/null_byte.c" "$gen/detector.c" "$gen/detector_component_type.o")
if [ -n "${WASI_SDK_PATH:-}" ]; then
    "$WASI_SDK_PATH/bin/clang" --target=wasm32-wasip2 "${flags[@]}" -o "$out" "${sources[@]}"
else
    "${CC:-clang}" --target=wasm32-wasi --sysroot="${WASI_SYSROOT:-/usr}" "${flags[@]}" -o "$gen/core.wasm" "${sources[@]}"
    wasm-tools component new "$gen/core.wasm" -o "$out"
fi
echo "built $out ($(wc -c <"$out") bytes)"
