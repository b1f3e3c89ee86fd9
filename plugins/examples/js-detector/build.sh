#!/usr/bin/env bash
# Builds the js-scanner detector into a WebAssembly component.
#
#   ./build.sh OUT.wasm
#
# Needs Node.js 18+ and npm. componentize-js (pinned in package.json and package-lock.json) is
# installed with `npm ci` into a cache directory outside the source tree, $LOGSEC_JS_TOOLS or
# ~/.cache/logsec/componentize-js, and reinstalled only when the lock file changes. The WIT package is
# the repository's wit/ directory; the world is `detector`. `--disable stdio random clocks http
# fetch-event` switches off every WASI feature of the JS engine, so the component imports nothing but
# logsec:plugin/host and needs no WASI from the host.
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

tools="${LOGSEC_JS_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/logsec/componentize-js}"
if ! cmp -s "$here/package-lock.json" "$tools/package-lock.json" || [ ! -x "$tools/node_modules/.bin/componentize-js" ]; then
    mkdir -p "$tools"
    cp "$here/package.json" "$here/package-lock.json" "$tools/"
    (cd "$tools" && npm ci --no-audit --no-fund)
fi

"$tools/node_modules/.bin/componentize-js" "$here/app.js" \
    --wit "$repo/wit" --world-name detector \
    --disable stdio random clocks http fetch-event \
    --out "$out"
echo "built $out ($(wc -c <"$out") bytes)"
