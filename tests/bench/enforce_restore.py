#!/usr/bin/env python3
"""Time to restore bans from the store at start-up, with real nftables.

Run from the repository root after `cargo build --release`; it re-runs itself inside a private user
and network namespace (`unshare -Urn`), so the host firewall is never touched:

    python3 tests/bench/enforce_restore.py [--bans 10000]

The store (SQLite) is created by `logsec decisions list`, then filled with N decisions in force
(half IPv4, half IPv6, a few blocks). The daemon is started with the nftables backend, and the
script reports the time from process start to every ban being in the kernel's sets (polled with
`nft -j list table inet logsec`), and the enforcer's own figure from its log line
"bans restored from the store". Prints a JSON line.
"""
import argparse, json, os, re, sqlite3, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "target/release/logsec"


def in_kernel():
    out = subprocess.run(["nft", "-j", "list", "table", "inet", "logsec"], capture_output=True, text=True)
    if out.returncode != 0:
        return 0
    return sum(len(i["set"].get("elem", [])) for i in json.loads(out.stdout)["nftables"] if "set" in i)


def inside(args):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = Path(tempfile.mkdtemp(prefix="logsec-restore-"))
    (work / "logs").mkdir()
    (work / "logs" / "access.log").write_text("")
    config = work / "logsec.toml"
    config.write_text(f"""[agent]
data_dir = "{work}/data"
plugin_dir = "{REPO}/target/plugins"
rules = "{REPO}/rules/patterns.json"
[[sources]]
path = "{work}/logs/*.log"
[response]
backend = "nftables"
[http]
listen = ""
""")
    subprocess.run([str(BIN), "decisions", "list", "--config", str(config)], check=True, capture_output=True)
    db = sqlite3.connect(work / "data" / "logsec.db")
    now = int(time.time() * 1000)
    rows = []
    for i in range(args.bans):
        if i % 1000 == 999:
            value = f"198.{18 + i // 65536 % 2}.{i // 256 % 256}.0/24"
        elif i % 2:
            value = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        else:
            value = f"2001:db8:{i // 65536:x}:{i % 65536:x}::1"
        rows.append((f"bench-{i}", value, "logsec", "bench", "sqli", 1, now, now + 3_600_000))
    db.executemany("INSERT INTO decisions (uuid, value, origin, host, reason, offence, created_ms, until_ms) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    wanted = len({r[1] for r in rows})

    t0 = time.monotonic()
    daemon = subprocess.Popen([str(BIN), "run", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=open(work / "daemon.log", "w"))
    seen = 0
    while time.monotonic() - t0 < 30:
        seen = in_kernel()
        if seen >= wanted:
            break
        time.sleep(0.01)
    total_ms = (time.monotonic() - t0) * 1000
    daemon.terminate(); daemon.wait()
    log = (work / "daemon.log").read_text()
    m = re.search(r"bans restored from the store bans=(\d+) ms=(\d+)", log)
    enforcer_ms = int(m.group(2)) if m else None
    print(f"restored {seen} of {wanted} bans: {total_ms:.0f} ms from process start to all in the kernel; "
          f"the enforcer's restore took {enforcer_ms} ms", file=sys.stderr)
    print(json.dumps({"bans": wanted, "in_kernel": seen, "from_start_ms": round(total_ms),
                      "enforcer_ms": enforcer_ms}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bans", type=int, default=10000)
    ap.add_argument("--inside", action="store_true")
    args = ap.parse_args()
    if args.inside:
        inside(args)
        return
    if not BIN.exists():
        sys.exit("build first: cargo build --release")
    cmd = ["unshare", "-Urn", sys.executable, __file__, "--inside", "--bans", str(args.bans)]
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
