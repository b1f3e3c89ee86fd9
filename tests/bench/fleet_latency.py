#!/usr/bin/env python3
"""Time for a ban decided on one agent to be applied on another agent of the same Redis brain.

Run from the repository root after `cargo build --release`, with Redis at 127.0.0.1:6379:

    python3 tests/bench/fleet_latency.py [--attackers 200]

Two `logsec run` agents (dry-run backend, their own stores and logs) share a Redis brain and a
fresh fleet stream. Attack lines from N addresses are appended to agent A's log, one every 20 ms.
Both agents log "ban decided" with a timestamp (one clock, one machine): the latency of an
address is B's timestamp (origin=fleet) minus A's (origin=logsec). Prints p50/p90/p99/max and a
JSON line.
"""
import argparse, json, re, subprocess, sys, tempfile, time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "target/release/logsec"
LINE = re.compile(r"^(\S+)\s+INFO ban decided value=(\S+) .*origin=(\S+)")


def agent(root, name, stream):
    work = root / name
    (work / "logs").mkdir(parents=True)
    log = work / "logs" / "access.log"
    log.write_text("")
    config = work / "logsec.toml"
    config.write_text(f"""[agent]
name = "{name}"
data_dir = "{work}/data"
plugin_dir = "{REPO}/target/plugins"
rules = "{REPO}/rules/patterns.json"
[[sources]]
path = "{work}/logs/*.log"
read_from = "beginning"
[brain]
url = "redis://127.0.0.1:6379/11"
[response]
backend = "log"
fleet_stream = "{stream}"
[http]
listen = ""
""")
    daemon = subprocess.Popen([str(BIN), "run", "--config", str(config)], stdout=subprocess.DEVNULL,
                              stderr=open(work / "daemon.log", "w"))
    return daemon, log, work / "daemon.log"


def decided(path, origin):
    out = {}
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        if m and m.group(3) == origin:
            out.setdefault(m.group(2), datetime.fromisoformat(m.group(1).replace("Z", "+00:00")))
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attackers", type=int, default=200)
    args = ap.parse_args()
    if not BIN.exists():
        sys.exit("build first: cargo build --release")
    root = Path(tempfile.mkdtemp(prefix="logsec-fleet-"))
    stream = f"logsec:bench:{int(time.time() * 1000)}"
    a, log_a, dlog_a = agent(root, "agent-a", stream)
    b, _, dlog_b = agent(root, "agent-b", stream)
    time.sleep(2)
    ips = [f"10.{i // 250}.{i % 250}.7" for i in range(args.attackers)]
    with open(log_a, "a") as f:
        for ip in ips:
            f.write(f'{ip} - - [25/Nov/2026:10:00:00 +0000] "GET /item.php?id=1%27%20union%20select%20password%20from%20users-- '
                    f'HTTP/1.1" 200 1 "-" "sqlmap/1.8"\n')
            f.flush()
            time.sleep(0.02)
    time.sleep(2)
    for d in (a, b):
        d.terminate(); d.wait()
    on_a, on_b = decided(dlog_a, "logsec"), decided(dlog_b, "fleet")
    lat = [(on_b[ip] - on_a[ip]).total_seconds() * 1000 for ip in ips if ip in on_a and ip in on_b]
    missing = len(ips) - len(lat)
    if not lat:
        sys.exit(f"no ban reached agent B; logs in {root}")
    print(f"A's ban applied on B, {len(lat)} addresses ({missing} missing): p50 {pct(lat, 50):.1f} ms, "
          f"p90 {pct(lat, 90):.1f} ms, p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms", file=sys.stderr)
    print(json.dumps({"addresses": len(lat), "missing": missing, "p50_ms": round(pct(lat, 50), 1),
                      "p90_ms": round(pct(lat, 90), 1), "p99_ms": round(pct(lat, 99), 1),
                      "max_ms": round(max(lat), 1)}))


if __name__ == "__main__":
    main()
