#!/usr/bin/env python3
"""Loads a logsec detector component outside logsec and checks that it behaves.

    python3 -m venv /tmp/wt && /tmp/wt/bin/pip install wasmtime
    /tmp/wt/bin/python plugins/examples/smoke_test.py py-scanner.wasm [--scanner]

A stand-in host for plugin authors and for the example plugins: it defines `logsec:plugin/host`
(log to stdout, counters in a dict without expiry) and, for components that import WASI, a WASI
with nothing in it. It calls metadata(), configure() with good and bad settings, and detect-batch
with ordinary and hostile requests, and fails (exit 1) when the answers break the contract.
`--scanner` also expects the findings of the example scanner detectors (sqlmap User-Agent).

The timings it prints are this harness's: wasmtime-py converts every value through Python, which
costs far more per request than the component itself. `logsec check --plugins DIR` is the real test.
"""

import argparse
import sys
import time

try:
    import wasmtime
    from wasmtime import component as cm
except ImportError:
    sys.exit("smoke_test.py needs the wasmtime package: pip install wasmtime")

HOST = "logsec:plugin/host@0.1.0"
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


class Rec(cm.Record):
    pass


def request(ip="203.0.113.7", agent="Mozilla/5.0", status=200, uri="/", method="GET"):
    r = Rec()
    fields = {
        "ip": ip, "forwarded-for": None, "user": "", "time": "", "timestamp-ms": None,
        "method": method, "uri": uri, "protocol": "HTTP/1.1", "status": status, "bytes": 0,
        "referer": "", "user-agent": agent, "extra": [],
    }
    for name, value in fields.items():
        setattr(r, name, value)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("component")
    ap.add_argument("--scanner", action="store_true", help="expect the example scanner findings")
    args = ap.parse_args()

    engine = wasmtime.Engine()
    t0 = time.monotonic()
    component = cm.Component.from_file(engine, args.component)
    print(f"compiled in {time.monotonic() - t0:.1f}s")
    imports = list(component.type.imports(engine))
    print("imports:", ", ".join(imports))
    wants_wasi = any(name.startswith("wasi:") for name in imports)

    counters, logs = {}, []
    linker = cm.Linker(engine)
    if wants_wasi:
        linker.add_wasip2()
    with linker.root() as root:
        with root.add_instance(HOST) as host:
            def log(_store, level, message):
                logs.append((level, message))
                print(f"     plugin log [{level}] {message}")

            def count(_store, key, window, delta):
                counters[key] = counters.get(key, 0) + delta
                return counters[key]

            host.add_func("log", log)
            host.add_func("count", count)

    store = wasmtime.Store(engine)
    store.set_limits(memory_size=64 << 20)
    if wants_wasi:
        store.set_wasi(wasmtime.WasiConfig())
    instance = linker.instantiate(store, component)

    def call(name, *params):
        func = instance.get_func(store, name)
        if func is None:
            raise SystemExit(f"the component exports no `{name}`")
        result = func(store, *params)
        func.post_return(store)
        return result

    meta = call("metadata")
    check(meta.kind == "detector" and getattr(meta, "api-version") == 1,
          f"metadata: {meta.name} {meta.version}, kind {meta.kind}, api {getattr(meta, 'api-version')}")
    check(call("configure", "{}") is None, "configure('{}') succeeds")
    err = call("configure", "{not json")
    if err is None:
        print("note configure('{not json') succeeded: fine for a plugin without settings")
    else:
        check(isinstance(err, str) and err != "", f"configure('{{not json') fails with a message: {err!r}")
    check(call("configure", "{}") is None, "configure('{}') succeeds again")

    batch = [
        request(agent="sqlmap/1.8#stable (https://sqlmap.org)"),
        request(agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0"),
        request(agent="", status=0, ip="", uri=""),
        request(agent="\x00\x1b[2J" + "\u00e9" * 5000, uri="/" + "%" * 100_000, ip="<script>"),
        request(agent="x" * 1_000_000, status=404, ip="ffff:" * 100),
    ]
    batch += [request(ip="198.51.100.9", status=404, uri=f"/probe{i}") for i in range(30)]
    t0 = time.monotonic()
    out = call("detect-batch", batch)
    print(f"     detect-batch of {len(batch)} in {(time.monotonic() - t0) * 1000:.0f} ms")
    check(len(out) == len(batch), "one list of findings per request")
    valid = all(
        isinstance(f.category, str) and f.category and 0 <= f.score <= 10
        and len(f.evidence.encode()) <= 1024
        for findings in out for f in findings
    )
    check(valid, "findings have a category, a score in 0..=10 and bounded evidence")
    for i, findings in enumerate(out):
        for f in findings:
            print(f"     [{i}] {f.category}/{getattr(f, 'rule-id')} score {f.score}: {f.evidence[:80]!r}")
    if args.scanner:
        check(any(getattr(f, "rule-id") == "scanner-ua-sqlmap" for f in out[0]), "sqlmap User-Agent flagged")
        check(out[1] == [], "a browser User-Agent is not flagged")

    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
