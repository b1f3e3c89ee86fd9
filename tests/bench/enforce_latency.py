#!/usr/bin/env python3
"""Time from an attack line being written to its address being cut off, with real nftables.

Run from the repository root after `cargo build --release`; it re-runs itself inside a private user
and network namespace (`unshare -Urn`), so the host firewall is never touched:

    python3 tests/bench/enforce_latency.py [--attackers 100]

Each attacker address lives on the namespace's loopback. For each one in turn the script appends
an attack line to the daemon's log and then keeps opening TCP connections from that address to a
local listener (a connection every 2 ms, each given 20 ms) until one fails: the time from the
write to that failure is the cut-off time (resolution about 20 ms). Prints p50/p90/p99/max and a
JSON line.
"""
import argparse, json, os, socket, subprocess, sys, tempfile, threading, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def inside(args):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    ips = [f"203.0.113.{10 + i}" for i in range(args.attackers)]
    for ip in ips:
        subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"], check=True)
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0)); srv.listen(512); port = srv.getsockname()[1]

    def accept():
        while True:
            c, _ = srv.accept(); c.close()
    threading.Thread(target=accept, daemon=True).start()

    work = Path(tempfile.mkdtemp(prefix="logsec-cutoff-"))
    (work / "logs").mkdir(); log = work / "logs" / "access.log"; log.write_text("")
    (work / "logsec.toml").write_text(f"""[agent]
data_dir = "{work}/data"
plugin_dir = "{REPO}/target/plugins"
rules = "{REPO}/rules/patterns.json"
[[sources]]
path = "{work}/logs/*.log"
read_from = "beginning"
[response]
backend = "nftables"
ban_ttl = "1h"
# the attackers live on this namespace's loopback: they are the host's own addresses here
allow_own_addresses = false
[http]
listen = ""
""")
    daemon = subprocess.Popen([str(REPO / "target/release/logsec"), "run", "--config", str(work / "logsec.toml")],
                              stdout=subprocess.DEVNULL, stderr=open(work / "daemon.log", "w"))
    time.sleep(1.5)

    def connects(ip):
        s = socket.socket(); s.settimeout(0.02); s.bind((ip, 0))
        try:
            s.connect(("127.0.0.1", port)); return True
        except OSError:
            return False
        finally:
            s.close()

    # Warm the pipeline (plugins instantiate on their first batch) with a benign line.
    with open(log, "a") as f:
        f.write('192.0.2.50 - - [25/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8"\n')
    time.sleep(0.5)
    results = []
    for i, ip in enumerate(ips):
        assert connects(ip), f"{ip} cannot connect before its attack"
        line = (f'{ip} - - [25/Nov/2026:10:00:00 +0000] "GET /item.php?id={i}%27%20union%20select%20password'
                f'%20from%20users-- HTTP/1.1" 200 1 "-" "sqlmap/1.8"\n')
        t0 = time.monotonic()
        with open(log, "a") as f:
            f.write(line)
        while connects(ip):
            if time.monotonic() - t0 > 10:
                break
            time.sleep(0.002)
        results.append((time.monotonic() - t0) * 1000)
    daemon.terminate(); daemon.wait(10)
    xs = sorted(results)
    pick = lambda q: xs[min(len(xs) - 1, int(len(xs) * q))]
    print(f"cut-off after an attack line, {len(xs)} attackers: p50 {pick(0.5):.0f} ms, p90 {pick(0.9):.0f} ms, "
          f"p99 {pick(0.99):.0f} ms, max {xs[-1]:.0f} ms (probe resolution ~20 ms)")
    print(json.dumps({"attackers": len(xs), "p50_ms": round(pick(0.5), 1), "p90_ms": round(pick(0.9), 1),
                      "p99_ms": round(pick(0.99), 1), "max_ms": round(xs[-1], 1)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attackers", type=int, default=100)
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        return inside(args)
    cmd = ["unshare", "-Urn", sys.executable, __file__, "--inside", "--attackers", str(args.attackers)]
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
