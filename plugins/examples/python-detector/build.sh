#!/usr/bin/env bash
# Builds the py-scanner detector into a WebAssembly component.
#
#   ./build.sh OUT.wasm
#
# Needs componentize-py 0.25.1 (`pip install componentize-py==0.25.1`). The WIT package is the
# repository's wit/ directory; the world is `detector`. --stub-wasi replaces every WASI import with a
# trapping stub, so the component imports nothing but logsec:plugin/host: it needs no WASI from the
# host at all. Python's start-up (which does touch WASI) runs at build time
# and is snapshotted, so the stubs are never reached as long as the app does not print, read files,
# ask for the time or draw random numbers while handling calls.
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

if ! command -v componentize-py >/dev/null; then
    echo "build.sh: componentize-py not found; pip install componentize-py==0.25.1" >&2
    exit 1
fi

# Build from a scratch directory that holds app.py alone: componentize-py bundles the Python path it
# is given, and the guest interpreter writes __pycache__ there during the build.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$here/app.py" "$stage/"
cd "$stage"
componentize-py -d "$repo/wit" -w detector componentize --stub-wasi -p "$stage" app -o "$out"
echo "built $out ($(wc -c <"$out") bytes)"
