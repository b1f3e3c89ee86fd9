#!/usr/bin/env python3
"""End-to-end benchmarks of the logsec daemon (`logsec run`), stdlib only (Python 3.11).

Subcommands (see tests/bench/README.md):

  throughput [--lines 1000000]          a pre-generated nginx log read from the beginning: lines/s,
                                        CPU seconds, peak RSS, every attack line stored exactly once
  latency [--rate 10000] [--seconds 30] lines appended in real time to a followed file; per attack
                                        line: created_at in the store minus the time it was written
  soak [--lines 1000000] [--rotate-every 100000]
                                        lines appended through rename+create and copytruncate
                                        rotations; RSS over time, no loss, no duplicate

Every subcommand prints a human summary and, as its last stdout line, one JSON object with the figures.

Each run copies the daemon binary (default: <repo>/target/release/logsec), the plugin directory and
the rules file into the work directory (default /tmp/logsec-bench) first, so a rebuild in the
repository cannot swap them under a measurement, and runs the daemon with its own data directory,
SQLite store and HTTP port. Generated logs are cached in <workdir>/cache and reused by reruns; the
cache key covers the generator version, the seed, the binary, the plugins, the rules and the dev data.

How lines are made: benign lines come from the real Apache combined-format traffic in
<dev>/benign.log plus synthetic site traffic (pages, static files, API calls, searches with SQL-ish
words and apostrophes, OAuth callbacks, signed URLs, .well-known paths...); attack lines come from
<dev>/attacks.tsv and the attack lines of <dev>/access.log. Every template is first run through
`logsec check --json` once (the calibration, cached): benign templates the rules flag are dropped
(their number is reported: they are false positives of the rules) and attack templates the rules do
not flag are dropped. So each attack line must produce exactly one row and no benign line any row.
Client addresses vary (tens of thousands of benign clients, Zipf-like; a separate pool of attacker
addresses), because the daemon's request cache decides every later request of an address decided
malicious ("cache" rows).
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import http.client
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORKDIR = Path(os.environ.get("LOGSEC_BENCH_DIR", "/tmp/logsec-bench"))
DEFAULT_DEV = Path(os.environ.get("LOGSEC_DEV_DATA", "/work/shared/data/dev"))
GEN_VERSION = 3  # bump when the generated lines change
CLK_TCK = os.sysconf("SC_CLK_TCK")
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
# First second of the synthetic logs (throughput and soak): 2026-11-26T00:00:00Z.
SYNTH_EPOCH = calendar.timegm((2026, 11, 26, 0, 0, 0))
SYNTH_LINES_PER_SECOND = 120
QUEUE_GAUGES = ("logsec_queue_batches", "logsec_queue_analysed", "logsec_store_spool_batches")
CREATED_AT_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z$")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
LSID_RE = re.compile(r"[?&]lsid=(\d+)")
LATENCY_ID_RE = re.compile(r"[?&]id=(\d+)")
ENC = "utf-8"
ERRS = "surrogateescape"


def say(msg: str = "") -> None:
    print(msg, flush=True)


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def clf_time(epoch_s: float) -> str:
    t = time.gmtime(int(epoch_s))
    return (
        f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(k, len(sorted_values)) - 1]


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def rnd(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# --------------------------------------------------------------------------------------------
# Session: private copies of the binary, plugins and rules
# --------------------------------------------------------------------------------------------


@dataclass
class Session:
    workdir: Path
    binary: Path
    plugins: Path
    rules: Path
    dev: Path
    info: dict


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def copy_stable(src: Path, dst: Path, attempts: int = 10) -> os.stat_result:
    """Copies `src` to `dst` atomically, retrying while `src` changes under the copy (a rebuild)."""
    for _ in range(attempts):
        before = src.stat()
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copy2(src, tmp)
        after = src.stat()
        if (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size) and tmp.stat().st_size == before.st_size:
            os.replace(tmp, dst)
            return before
        say(f"  {src} changed while copying it (a rebuild?); retrying in 5 s")
        time.sleep(5)
    raise SystemExit(f"{src} keeps changing; cannot take a stable copy")


def prepare_session(args) -> Session:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "cache").mkdir(exist_ok=True)
    src_bin = Path(args.binary)
    if not src_bin.is_file():
        raise SystemExit(f"no binary at {src_bin} (build it, or pass --binary)")
    binary = workdir / "logsec"
    st = copy_stable(src_bin, binary)
    os.chmod(binary, 0o755)
    plugins = workdir / "plugins"
    if plugins.exists():
        shutil.rmtree(plugins)
    plugins.mkdir()
    src_plugins = Path(args.plugins)
    wasm = sorted(src_plugins.glob("*.wasm"))
    if not wasm:
        raise SystemExit(f"no plugins (*.wasm) in {src_plugins}")
    for p in wasm:
        copy_stable(p, plugins / p.name)
    rules = workdir / "patterns.json"
    copy_stable(Path(args.rules), rules)
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
    info = {
        "source": str(src_bin),
        "mtime": datetime.fromtimestamp(st.st_mtime).astimezone().isoformat(timespec="seconds"),
        "size": st.st_size,
        "sha256": sha256_file(binary)[:16],
        "version": version,
        "copy": str(binary),
        "plugins": {p.name: sha256_file(plugins / p.name)[:12] for p in wasm},
        "rules_sha256": sha256_file(rules)[:12],
    }
    say(f"binary   {src_bin} (mtime {info['mtime']}, {st.st_size:,} bytes, sha256 {info['sha256']}, {version})")
    say(f"         copied to {binary}; plugins and rules copied to {plugins} and {rules}")
    dev = Path(args.dev_data)
    for name in ("benign.log", "attacks.tsv", "access.log", "labels.tsv"):
        if not (dev / name).is_file():
            raise SystemExit(f"missing {dev / name} (pass --dev-data)")
    return Session(workdir, binary, plugins, rules, dev, info)


# --------------------------------------------------------------------------------------------
# Line templates and calibration against `logsec check`
# --------------------------------------------------------------------------------------------

# A template is [request, status, size, referer, user_agent]; a line is rendered with an address
# and a time. The request may hold "{ID}", replaced by the line's unique id.

COMBINED_RE = re.compile(r'^(\S+) \S+ \S+ \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}) (\S+) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"')

BROWSER_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
]
BOT_UAS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
]
TOOL_UAS = ["kube-probe/1.30", "Prometheus/2.54.1", "okhttp/4.12.0", "ShopApp/5.2.1 (iOS 18.1; iPhone15,2)"]
ATTACK_UAS = [
    "python-requests/2.32.3",
    "curl/8.5.0",
    "Go-http-client/1.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:129.0) Gecko/20100101 Firefox/129.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
]
WORDS = (
    "red blue wooden table chair lamp sofa desk garden hose kettle coffee mug jacket wool socks boots "
    "laptop stand usb cable charger phone case headphones running shoes yoga mat backpack tent "
    "select union drop update insert order group where from join script alert exec sleep"
).split()
TRICKY_QUERIES = [
    "o'reilly+books", "rock+%27n%27+roll", "select+wood+table", "union+jack+flag", "drop+leaf+table",
    "order+by+price", "where+to+buy+boots", "d%27angelo", "tom%27s+diner", "1%2B1%3D2+poster",
    "c%2B%2B+primer", "50%25+off", "caf%C3%A9+au+lait", "sleep+mask", "script+font",
]
CATEGORIES = ["furniture", "kitchen", "garden", "outdoor", "electronics", "apparel", "shoes", "books", "toys"]


def nginx_escape(target: str) -> str:
    """A request target the way nginx writes it into a log: `"`, `\\`, controls and non-ASCII as \\xHH."""
    out = []
    for b in target.encode(ENC, ERRS):
        if b == 0x20:
            out.append("%20")
        elif b < 0x20 or b >= 0x7F or b in (0x22, 0x5C):
            out.append(f"\\x{b:02X}")
        else:
            out.append(chr(b))
    return "".join(out)


def synth_benign(rng: random.Random, n: int) -> list[list]:
    """Synthetic benign templates of a shop with an API, a blog and monitoring."""
    site = "https://shop.example.com"
    out = []
    for _ in range(n):
        r = rng.random()
        method, status, ref = "GET", 200, "-"
        ua = rng.choice(BROWSER_UAS)
        page = f"{site}/{rng.choice(['', 'products/' + str(rng.randint(1, 9999)), 'category/' + rng.choice(CATEGORIES), 'blog', 'cart'])}"
        if r < 0.30:  # static assets, referred by a page
            kind = rng.random()
            if kind < 0.35:
                target = f"/static/js/{rng.choice(['app', 'vendor', 'runtime', 'checkout'])}.{rng.getrandbits(32):08x}.js"
                size = rng.randint(2_000, 480_000)
            elif kind < 0.55:
                target = f"/static/css/{rng.choice(['main', 'print', 'theme'])}.{rng.getrandbits(32):08x}.css"
                size = rng.randint(1_000, 90_000)
            elif kind < 0.92:
                target = f"/images/products/{rng.randint(1, 9999)}/{rng.choice(['main', 'thumb', 'alt1', 'alt2'])}.{rng.choice(['jpg', 'webp', 'png'])}"
                size = rng.randint(3_000, 600_000)
            else:
                target = rng.choice(["/favicon.ico", "/fonts/inter-var.woff2", "/manifest.webmanifest", "/apple-touch-icon.png"])
                size = rng.randint(500, 80_000)
            status = 304 if rng.random() < 0.2 else 200
            size = 0 if status == 304 else size
            ref = page
        elif r < 0.55:  # pages
            choice = rng.random()
            if choice < 0.25:
                target = f"/products/{rng.randint(1, 9999)}-{rng.choice(WORDS)}-{rng.choice(WORDS)}"
            elif choice < 0.45:
                target = f"/category/{rng.choice(CATEGORIES)}?page={rng.randint(1, 40)}&sort={rng.choice(['price_asc', 'price_desc', 'newest', 'rating'])}"
            elif choice < 0.60:
                q = rng.choice(TRICKY_QUERIES) if rng.random() < 0.3 else "+".join(rng.sample(WORDS, rng.randint(1, 3)))
                target = f"/search?q={q}&page={rng.randint(1, 5)}"
            elif choice < 0.72:
                target = f"/blog/{rng.randint(2019, 2026)}/{rng.randint(1, 12):02d}/{'-'.join(rng.sample(WORDS, 4))}"
            elif choice < 0.82:
                target = rng.choice(["/", "/about", "/contact", "/cart", "/checkout", "/account/orders", "/account/settings", "/help/shipping", "/help/returns"])
            elif choice < 0.90:
                target = f"/products/{rng.randint(1, 9999)}?utm_source={rng.choice(['google', 'newsletter', 'facebook'])}&utm_medium={rng.choice(['cpc', 'email', 'social'])}&utm_campaign=winter_sale_{rng.randint(1, 9)}"
            else:
                target = f"/go?url=https%3A%2F%2Fpartner.example.org%2Foffers%2F{rng.randint(1, 999)}&ref=home"
            size = rng.randint(8_000, 160_000)
            ref = rng.choice(["-", page, "https://www.google.com/", "https://duckduckgo.com/"])
            status = rng.choices([200, 301, 302, 404], weights=[90, 3, 2, 5])[0]
            if rng.random() < 0.15:
                ua = rng.choice(BOT_UAS)
        elif r < 0.85:  # API
            choice = rng.random()
            ua = rng.choice(BROWSER_UAS + TOOL_UAS[2:])
            ref = page if rng.random() < 0.7 else "-"
            if choice < 0.30:
                target = f"/api/v1/products?limit={rng.choice([12, 20, 50])}&offset={rng.randint(0, 2000)}&category={rng.choice(CATEGORIES)}"
            elif choice < 0.45:
                target = f"/api/v1/users/{rng.randint(1, 500000)}/orders?status={rng.choice(['shipped', 'pending', 'delivered'])}&page={rng.randint(1, 9)}"
            elif choice < 0.55:
                method = "POST"
                target = "/api/v1/cart/items"
                status = rng.choice([200, 201])
            elif choice < 0.62:
                method = rng.choice(["PUT", "DELETE", "PATCH"])
                target = f"/api/v1/cart/items/{rng.randint(1, 999999)}"
                status = rng.choice([200, 204])
            elif choice < 0.72:
                target = "/api/v2/search?filter=%7B%22price%22%3A%7B%22lt%22%3A" + str(rng.randint(5, 500)) + "%7D%2C%22tags%22%3A%5B%22" + rng.choice(WORDS) + "%22%5D%7D&lang=en"
            elif choice < 0.80:
                method = "POST"
                target = "/graphql"
            elif choice < 0.88:
                payload = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for _ in range(40))
                target = f"/api/v1/session/refresh?token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{payload}.{rng.getrandbits(128):032x}"
            else:
                target = (
                    f"/downloads/invoice-{rng.randint(10000, 99999)}.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261126%2Feu-west-1%2Fs3%2Faws4_request"
                    f"&X-Amz-Date=20261126T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={rng.getrandbits(256):064x}"
                )
            size = rng.randint(80, 40_000)
            if rng.random() < 0.04:
                status = rng.choice([400, 401, 403, 404, 409, 422, 500, 502])
        elif r < 0.93:  # auth
            choice = rng.random()
            if choice < 0.4:
                method = rng.choice(["GET", "POST"])
                target = "/login" if method == "POST" else f"/login?next=%2Faccount%2Forders%3Fpage%3D{rng.randint(1, 5)}"
                status = 302 if method == "POST" else 200
            elif choice < 0.8:
                target = f"/oauth/callback?code={rng.getrandbits(160):040x}&state={rng.getrandbits(64):016x}&scope=openid%20email%20profile"
                status = 302
                ref = "https://accounts.google.com/"
            else:
                target = f"/oauth/authorize?client_id=shop-web&response_type=code&redirect_uri=https%3A%2F%2Fshop.example.com%2Foauth%2Fcallback&state={rng.getrandbits(64):016x}"
                status = 302
            size = rng.randint(0, 6_000)
        else:  # monitoring, crawlers, .well-known
            choice = rng.random()
            if choice < 0.4:
                target = rng.choice(["/healthz", "/readyz", "/metrics"])
                ua = rng.choice(TOOL_UAS[:2])
                size = rng.randint(2, 9_000)
            elif choice < 0.7:
                target = rng.choice(["/robots.txt", "/sitemap.xml", "/sitemap-products-1.xml", "/feed.xml"])
                ua = rng.choice(BOT_UAS)
                size = rng.randint(200, 300_000)
            else:
                target = rng.choice([
                    "/.well-known/security.txt", "/.well-known/openid-configuration", "/.well-known/apple-app-site-association",
                    "/.well-known/assetlinks.json", f"/.well-known/acme-challenge/{rng.getrandbits(128):032x}",
                ])
                size = rng.randint(100, 4_000)
                status = rng.choice([200, 200, 404])
        if method == "HEAD" or rng.random() < 0.01:
            method = "HEAD"
            size = 0
        proto = "HTTP/2.0" if rng.random() < 0.35 else "HTTP/1.1"
        out.append([f"{method} {target} {proto}", status, str(size) if size or rng.random() < 0.5 else "-", ref, ua])
    return out


def parse_combined(line: str) -> list | None:
    m = COMBINED_RE.match(line)
    if not m:
        return None
    return [m[3], int(m[4]), m[5], m[6], m[7]]


def with_lsid(request: str) -> str:
    """Puts `lsid={ID}` first in the query string (or makes one)."""
    method, rest = request.split(" ", 1)
    target, proto = rest.rsplit(" ", 1)
    target = target.replace("?", "?lsid={ID}&", 1) if "?" in target else target + "?lsid={ID}"
    return f"{method} {target} {proto}"


# The latency test's attack: an id in the query and an obvious SQL injection right behind it.
LATENCY_ATTACKS = [
    "GET /products.php?id={ID}%27%20OR%201=1--%20- HTTP/1.1",
    "GET /item?id={ID}%27%20OR%20%271%27=%271 HTTP/1.1",
    "GET /news.php?id={ID}%20UNION%20SELECT%20username,password%20FROM%20users-- HTTP/1.1",
    "GET /catalog?id={ID}%27;DROP%20TABLE%20users;-- HTTP/1.1",
]


def render(ip: str, ts: str, tpl: list, ident: int | None = None) -> str:
    request = tpl[0] if ident is None else tpl[0].replace("{ID}", str(ident))
    return f'{ip} - - [{ts}] "{request}" {tpl[1]} {tpl[2]} "{tpl[3]}" "{tpl[4]}"\n'


def run_check(session: Session, lines: list[str]) -> set[int]:
    """0-based indices of `lines` that `logsec check` flags (score >= escalate_at)."""
    fd, name = tempfile.mkstemp(dir=session.workdir, prefix="calibrate-", suffix=".log")
    try:
        with os.fdopen(fd, "w", encoding=ENC, errors=ERRS) as f:
            f.writelines(lines)
        p = subprocess.run(
            [str(session.binary), "check", "--json", "--workers", "1", "--plugins", str(session.plugins), "--rules", str(session.rules), name],
            capture_output=True, text=True, encoding=ENC, errors=ERRS,
        )
        if p.returncode != 0:
            raise SystemExit(f"logsec check failed ({p.returncode}): {p.stderr.strip()}")
        return {json.loads(l)["line"] - 1 for l in p.stdout.splitlines() if l.strip()}
    finally:
        os.unlink(name)


def calibration_key(session: Session) -> str:
    h = hashlib.sha256(f"gen{GEN_VERSION}".encode())
    h.update(session.info["sha256"].encode())
    h.update(session.info["rules_sha256"].encode())
    h.update(json.dumps(session.info["plugins"], sort_keys=True).encode())
    for name in ("benign.log", "attacks.tsv", "access.log", "labels.tsv"):
        st = (session.dev / name).stat()
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def calibrate(session: Session) -> dict:
    key = calibration_key(session)
    path = session.workdir / "cache" / f"templates-{key}.json"
    if path.is_file():
        calib = json.loads(path.read_text())
        say(f"templates {path} (cached)")
        return calib
    say("calibrating line templates with `logsec check` (once per binary/plugins/rules)...")
    rng = random.Random(20261126)
    benign = []
    for line in (session.dev / "benign.log").read_text(encoding=ENC, errors=ERRS).splitlines():
        t = parse_combined(line)
        if t:
            benign.append(t)
    real_benign = len(benign)
    benign += synth_benign(rng, 20_000)
    ts = clf_time(SYNTH_EPOCH)
    flagged = run_check(session, [render("198.18.0.1", ts, t) for t in benign])
    dropped_real = sorted(i for i in flagged if i < real_benign)
    dropped_synth = sorted(i for i in flagged if i >= real_benign)
    benign_kept = [t for i, t in enumerate(benign) if i not in flagged]

    attacks = []
    for row in (session.dev / "attacks.tsv").read_text(encoding=ENC, errors=ERRS).splitlines()[1:]:
        parts = row.split("\t")
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        status = rng.choices([200, 400, 403, 404, 500], weights=[40, 15, 15, 25, 5])[0]
        attacks.append([f"GET {nginx_escape(parts[2])} HTTP/1.1", status, str(rng.randint(0, 5000)), "-", rng.choice(ATTACK_UAS)])
    labels = {}
    for row in (session.dev / "labels.tsv").read_text().splitlines()[1:]:
        parts = row.split("\t")
        if len(parts) >= 2:
            labels[int(parts[0])] = parts[1]
    for n, line in enumerate((session.dev / "access.log").read_text(encoding=ENC, errors=ERRS).splitlines(), 1):
        if labels.get(n) == "attack":
            t = parse_combined(line)
            if t:
                attacks.append(t)
    flagged = run_check(session, [render("198.18.0.2", ts, t) for t in attacks])
    attacks_kept = [t for i, t in enumerate(attacks) if i in flagged]

    # Attack templates carrying a unique id (soak): kept when flagged with two different ids.
    with_id = [[with_lsid(t[0])] + t[1:] for t in attacks_kept if t[0].count(" ") == 2]
    ok = None
    for ident in (7, 912_345):
        f = run_check(session, [render("198.18.0.2", ts, t, ident) for t in with_id])
        ok = f if ok is None else ok & f
    attacks_id = [t for i, t in enumerate(with_id) if i in ok]

    lat = [[r, 200, "512", "-", "sqlmap/1.8.11#stable (https://sqlmap.org)" if i % 2 else "python-requests/2.32.3"] for i, r in enumerate(LATENCY_ATTACKS)]
    ok = None
    for ident in (3, 1_234_567):
        f = run_check(session, [render("198.18.0.2", ts, t, ident) for t in lat])
        ok = f if ok is None else ok & f
    latency_attacks = [t for i, t in enumerate(lat) if i in ok]
    if not latency_attacks or not attacks_id or not attacks_kept:
        raise SystemExit("calibration left no attack template the rules flag: are the detector plugins loaded?")

    calib = {
        "key": key,
        "benign": benign_kept,
        "attack": attacks_kept,
        "attack_id": attacks_id,
        "latency_attack": latency_attacks,
        "stats": {
            "benign_real_templates": real_benign,
            "benign_real_flagged": len(dropped_real),
            "benign_synthetic_templates": len(benign) - real_benign,
            "benign_synthetic_flagged": len(dropped_synth),
            "benign_synthetic_flagged_examples": [benign[i][0] for i in dropped_synth[:8]],
            "attack_templates": len(attacks),
            "attack_unflagged": len(attacks) - len(attacks_kept),
            "attack_id_templates": len(attacks_id),
            "latency_attack_templates": len(latency_attacks),
        },
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(calib))
    os.replace(tmp, path)
    s = calib["stats"]
    say(
        f"  benign templates: {len(benign_kept):,} kept; dropped as flagged by the rules: {s['benign_real_flagged']} of "
        f"{real_benign:,} real (benign.log), {s['benign_synthetic_flagged']} of {s['benign_synthetic_templates']:,} synthetic"
    )
    if s["benign_synthetic_flagged_examples"]:
        say("  synthetic benign requests the rules flag (false positives), e.g.: " + "; ".join(s["benign_synthetic_flagged_examples"][:4]))
    say(
        f"  attack templates: {len(attacks_kept):,} of {len(attacks):,} flagged and kept; {len(attacks_id):,} still flagged with an id "
        f"inserted; latency SQLi templates {len(latency_attacks)}/{len(LATENCY_ATTACKS)}"
    )
    return calib


# --------------------------------------------------------------------------------------------
# Address pools and line factory
# --------------------------------------------------------------------------------------------

SKIP_FIRST_OCTETS = {0, 10, 100, 127, 169, 172, 192, 198, 203}


def random_ipv4(rng: random.Random) -> str:
    while True:
        a = rng.randint(1, 223)
        if a not in SKIP_FIRST_OCTETS:
            return f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def random_ipv6(rng: random.Random) -> str:
    return f"2a0{rng.randint(0, 9)}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}"


class LineFactory:
    """Deterministic stream of benign and attack lines."""

    def __init__(self, calib: dict, seed: int, benign_clients: int = 60_000, attackers: int = 400):
        self.rng = random.Random(seed)
        rng = self.rng
        seen: set[str] = set()

        def distinct_ips(n: int, v6_share: float) -> list[str]:
            # Addresses not drawn before (benign and attacker sets never overlap).
            ips = []
            while len(ips) < n:
                ip = random_ipv6(rng) if rng.random() < v6_share else random_ipv4(rng)
                if ip not in seen:
                    seen.add(ip)
                    ips.append(ip)
            return ips

        self.benign_ips = distinct_ips(benign_clients, 0.04)
        self.attack_ips = distinct_ips(attackers, 0.05)
        # Zipf-like: a few clients make many requests, most make few.
        self.benign_cum = list(itertools.accumulate(1.0 / (i + 1) ** 0.9 for i in range(benign_clients)))
        self.benign = calib["benign"]
        self.attack = calib["attack"]
        self.attack_id = calib["attack_id"]
        self.latency_attack = calib["latency_attack"]

    def benign_ip_batch(self, k: int) -> list[str]:
        return [self.benign_ips[i] for i in self.rng.choices(range(len(self.benign_ips)), cum_weights=self.benign_cum, k=k)]

    def benign_line(self, ip: str, ts: str) -> str:
        return render(ip, ts, self.rng.choice(self.benign), None)

    def attack_line(self, ts: str, ident: int | None, pool: str) -> str:
        tpl = self.rng.choice(getattr(self, pool))
        return render(self.rng.choice(self.attack_ips), ts, tpl, ident)


def generate_log(session: Session, calib: dict, lines: int, seed: int, attack_ratio: float, with_ids: bool, name: str,
                 attackers: int = 400) -> tuple[Path, dict]:
    """A synthetic log of `lines` lines (cached). With ids, each attack line carries lsid=<line index>."""
    tag = f"{name}-{lines}-s{seed}-a{attack_ratio}{'' if attackers == 400 else f'-x{attackers}'}-{calib['key']}"
    path = session.workdir / "cache" / f"{tag}.log"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size:
            say(f"log      {path} (cached: {lines:,} lines, {meta['attacks']:,} attacks, {meta['bytes'] / 1e6:.1f} MB)")
            return path, meta
    say(f"generating {path} ({lines:,} lines, seed {seed}, {attack_ratio:.1%} attacks)...")
    t0 = time.monotonic()
    factory = LineFactory(calib, seed, attackers=attackers)
    rng = factory.rng
    tmp = path.with_suffix(".tmp")
    attack_offsets, attack_ids = [], []
    offset = 0
    block = 10_000
    with open(tmp, "wb") as f:
        for start in range(0, lines, block):
            k = min(block, lines - start)
            ips = factory.benign_ip_batch(k)
            out = []
            for j in range(k):
                i = start + j
                ts = clf_time(SYNTH_EPOCH + i // SYNTH_LINES_PER_SECOND)
                if rng.random() < attack_ratio:
                    text = factory.attack_line(ts, i if with_ids else None, "attack_id" if with_ids else "attack")
                    data = text.encode(ENC, ERRS)
                    offset += len(data)
                    attack_offsets.append(offset)
                    attack_ids.append(i)
                else:
                    data = factory.benign_line(ips[j], ts).encode(ENC, ERRS)
                    offset += len(data)
                out.append(data)
            f.write(b"".join(out))
    os.replace(tmp, path)
    meta = {
        "lines": lines,
        "attacks": len(attack_offsets),
        "bytes": offset,
        "seed": seed,
        "attack_ratio": attack_ratio,
        "attack_offsets": attack_offsets,
        "attack_ids": attack_ids if with_ids else [],
        "benign_clients": len(factory.benign_ips),
        "attacker_addresses": len(factory.attack_ips),
    }
    meta_path.write_text(json.dumps(meta))
    say(f"  {lines:,} lines, {len(attack_offsets):,} attacks, {offset / 1e6:.1f} MB in {time.monotonic() - t0:.1f} s")
    return path, meta


# --------------------------------------------------------------------------------------------
# The daemon under test
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_str(s: object) -> str:
    return json.dumps(str(s))  # a JSON string is a valid TOML basic string for these paths


class DaemonDied(RuntimeError):
    pass


@dataclass
class Settled:
    ok: bool
    reason: str
    metrics: dict
    t_first_read: float | None  # monotonic, first poll that saw lines read
    t_done: float  # monotonic, poll that first saw the final (lines read, rows stored)
    cpu_done: float | None
    hwm_kb_done: int | None


class Daemon:
    def __init__(self, session: Session, rundir: Path, source: Path | str, read_from: str, workers: int | None):
        self.session = session
        self.rundir = rundir
        self.port = free_port()
        self.data = rundir / "data"
        self.config = rundir / "logsec.toml"
        lines = [
            "[agent]",
            f"data_dir = {toml_str(self.data)}",
            f"plugin_dir = {toml_str(session.plugins)}",
            f"rules = {toml_str(session.rules)}",
        ]
        if workers:
            lines.append(f"workers = {workers}")
        lines += [
            "",
            "[[sources]]",
            f"path = {toml_str(source)}",
            'format = "nginx"',
            f'read_from = "{read_from}"',
            "",
            "[http]",
            f'listen = "127.0.0.1:{self.port}"',
            "",
        ]
        self.config.write_text("\n".join(lines))
        self.proc: subprocess.Popen | None = None
        self.stderr_path = rundir / "daemon.stderr"
        self.stdout_path = rundir / "daemon.stdout"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.pop("LOGSEC_PLUGIN_DIR", None)
        env.pop("LOGSEC_RULES", None)
        self.t_start_wall = time.time()
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(
            [str(self.session.binary), "run", "--config", str(self.config)],
            stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL, cwd=self.rundir, env=env,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self, timeout: float = 2.0) -> dict | None:
        """Sums of every metric family over its labels, or None when the daemon does not answer."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read().decode(ENC, ERRS)
            conn.close()
        except (OSError, http.client.HTTPException):
            return None
        if resp.status != 200:
            return None
        out: dict[str, float] = {}
        for line in body.splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            try:
                v = float(value)
            except ValueError:
                continue
            out[name] = out.get(name, 0.0) + v
            if labels:
                out[f"{name}{{{labels}"] = v
        return out

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Waits for /metrics to answer; returns the monotonic time it did."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.alive():
                raise DaemonDied(f"logsec exited with {self.proc.returncode} while starting: {self.stderr_tail()}")
            if self.metrics(timeout=0.5) is not None:
                return time.monotonic()
            time.sleep(0.02)
        raise DaemonDied("logsec did not serve /metrics within {timeout} s")

    def cpu_seconds(self) -> float | None:
        try:
            data = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = data[data.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime (fields 14 and 15)

    def status_kb(self, key: str) -> int | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def threads(self) -> int | None:
        return self.status_kb("Threads")

    def open_files_under(self, directory: Path) -> list[str]:
        out = []
        try:
            for fd in os.listdir(f"/proc/{self.pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith(str(directory)):
                    out.append(target)
        except OSError:
            pass
        return out

    def wait_settled(self, expected_lines: int, *, quiet: float = 1.0, stall: float = 30.0, poll: float = 0.05) -> Settled:
        """Polls /metrics until `expected_lines` were read and stored, the queues are empty and
        (lines read, rows stored) has not changed for `quiet` seconds; gives up after `stall`
        seconds without progress."""
        last = None
        t_change = time.monotonic()
        t_first = None
        cpu_change = hwm_change = None
        m: dict = {}
        while True:
            if not self.alive():
                raise DaemonDied(f"logsec exited with {self.proc.returncode}: {self.stderr_tail()}")
            got = self.metrics()
            now = time.monotonic()
            if got is not None:
                m = got
                read = m.get("logsec_lines_read_total", 0.0)
                rows = m.get("logsec_rows_stored_total", 0.0)
                if t_first is None and read > 0:
                    t_first = now
                if (read, rows) != last:
                    last = (read, rows)
                    t_change = now
                    cpu_change = self.cpu_seconds()
                    hwm_change = self.status_kb("VmHWM")
                empty = all(m.get(g, 0.0) == 0 for g in QUEUE_GAUGES)
                if read >= expected_lines and empty and now - t_change >= quiet:
                    reason = "ok" if read == expected_lines else f"read {read:.0f} lines, more than the {expected_lines} written"
                    return Settled(read == expected_lines, reason, m, t_first, t_change, cpu_change, hwm_change)
            if now - t_change >= stall:
                read = m.get("logsec_lines_read_total", 0.0)
                return Settled(False, f"no progress for {stall:.0f} s at {read:.0f} of {expected_lines} lines read", m, t_first, t_change, cpu_change, hwm_change)
            time.sleep(poll)

    def stop(self, timeout: float = 120.0) -> tuple[int | None, float, bool]:
        """SIGTERM, wait; returns (exit code, seconds to exit, whether it had to be killed)."""
        if self.proc is None:
            return None, 0.0, False
        t = time.monotonic()
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        self._out.close()
        self._err.close()
        return self.proc.returncode, time.monotonic() - t, killed

    def kill_if_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stderr_lines(self) -> list[str]:
        try:
            return [ANSI_RE.sub("", l) for l in self.stderr_path.read_text(encoding=ENC, errors="replace").splitlines()]
        except OSError:
            return []

    def stderr_tail(self, n: int = 5) -> str:
        return " | ".join(self.stderr_lines()[-n:])

    def log_summary(self) -> dict:
        """Counts of interesting daemon log events, and its warnings/errors."""
        lines = self.stderr_lines()
        problems = [l for l in lines if re.search(r"\b(WARN|ERROR)\b", l) or "panicked" in l]
        return {
            "following_file": sum("following file" in l for l in lines),
            "file_truncated": sum("file truncated" in l for l in lines),
            "warnings_errors": len(problems),
            "first_problems": problems[:5],
        }

    def log_time(self, needle: str) -> float | None:
        """Wall time (epoch s) of the first daemon log line containing `needle`."""
        for l in self.stderr_lines():
            if needle in l:
                try:
                    stamp = l.split()[0]
                    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                except (ValueError, IndexError):
                    return None
        return None


def read_rows(db: Path, columns: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT {columns} FROM analyzed_requests").fetchall()
    finally:
        conn.close()


def created_epoch(text: str) -> float | None:
    m = CREATED_AT_RE.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s, ms = (int(x) for x in m.groups())
    return calendar.timegm((y, mo, d, h, mi, s)) + ms / 1000.0


def make_rundir(session: Session, kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=session.workdir))


def finish_rundir(rundir: Path, keep: bool, ok: bool) -> str:
    if keep or not ok:
        say(f"run directory kept: {rundir}")
        return str(rundir)
    shutil.rmtree(rundir, ignore_errors=True)
    return ""


def check_missing(session: Session, texts: list[str]) -> int:
    """How many of `texts` (lines) `logsec check` does not flag either (not a pipeline loss)."""
    if not texts:
        return 0
    flagged = run_check(session, texts)
    return len(texts) - len(flagged)


# --------------------------------------------------------------------------------------------
# throughput
# --------------------------------------------------------------------------------------------


def cmd_throughput(args) -> dict:
    session = prepare_session(args)
    calib = calibrate(session)
    log_path, meta = generate_log(session, calib, args.lines, args.seed, args.attack_ratio, False, "throughput", args.attackers)
    rundir = make_rundir(session, "throughput")
    daemon = Daemon(session, rundir, log_path, "beginning", args.workers)
    load_before = loadavg()
    say(f"\nstarting logsec run on {meta['lines']:,} lines (read_from = \"beginning\", SQLite in {daemon.data})...")
    result: dict = {"subcommand": "throughput", "binary": session.info, "load_before": load_before}
    ok = False
    try:
        daemon.start()
        t_ready = daemon.wait_ready()
        settled = daemon.wait_settled(meta["lines"], stall=args.stall)
        m = settled.metrics
        rss_done = daemon.status_kb("VmRSS")
        threads = daemon.threads()
        rc, stop_s, killed = daemon.stop()
        t0 = daemon.t_start
        total_s = settled.t_done - t0
        following = daemon.log_time("following file")
        t_follow = None if following is None else following - daemon.t_start_wall
        first_s = None if settled.t_first_read is None else settled.t_first_read - t0
        read_window = total_s - (t_follow if t_follow is not None else (first_s or 0.0))
        rows = read_rows(daemon.data / "logsec.db", "source_offset, decided_by, created_at")
        offsets = [r[0] for r in rows]
        expected = set(meta["attack_offsets"])
        got = set(offsets)
        missing = sorted(expected - got)
        extra = sorted(got - expected)
        dup = len(offsets) - len(got)
        by = {}
        for r in rows:
            by[r[1]] = by.get(r[1], 0) + 1
        not_flagged_by_check = 0
        if missing:
            texts = lines_at_offsets(log_path, set(missing))
            not_flagged_by_check = check_missing(session, texts)
        bad_created = sum(created_epoch(r[2]) is None for r in rows)
        logs = daemon.log_summary()
        read = int(m.get("logsec_lines_read_total", 0))
        ok = (settled.ok and rc == 0 and not killed and not missing and not extra and dup == 0
              and read == meta["lines"] and int(m.get("logsec_rows_stored_total", -1)) == len(expected))
        result.update({
            "ok": ok,
            "lines": meta["lines"],
            "bytes": meta["bytes"],
            "attack_lines": meta["attacks"],
            "settled": settled.reason,
            "startup_to_metrics_s": rnd(t_ready - t0),
            "startup_to_following_file_s": rnd(t_follow),
            "start_to_all_stored_s": rnd(total_s),
            "lines_per_s_from_start": rnd(meta["lines"] / total_s, 0),
            "first_read_to_all_stored_s": rnd(read_window),
            "lines_per_s_from_first_read": rnd(meta["lines"] / read_window, 0) if read_window > 0 else None,
            "first_batch_counted_s": rnd(first_s),
            "cpu_seconds": rnd(settled.cpu_done, 2),
            "cpu_cores_used": rnd(settled.cpu_done / total_s, 2) if settled.cpu_done else None,
            "cpu_us_per_line": rnd(settled.cpu_done / meta["lines"] * 1e6, 2) if settled.cpu_done else None,
            "peak_rss_mb": rnd((settled.hwm_kb_done or 0) / 1024, 1),
            "rss_at_end_mb": rnd((rss_done or 0) / 1024, 1),
            "threads": threads,
            "metrics": {
                "lines_read": read,
                "lines_parsed": int(m.get("logsec_lines_parsed_total", 0)),
                "lines_unparsed": int(m.get("logsec_lines_unparsed_total", 0)),
                "rows_stored": int(m.get("logsec_rows_stored_total", 0)),
                "plugin_errors": int(m.get("logsec_plugin_errors_total", 0)),
                "plugin_busy_s": {k.split('"')[1]: round(v, 2) for k, v in m.items() if k.startswith("logsec_plugin_busy_seconds_total{")},
            },
            "db_rows": len(rows),
            "db_rows_by_decided_by": by,
            "missing_attack_rows": len(missing),
            "missing_not_flagged_by_check_either": not_flagged_by_check,
            "unexpected_rows": len(extra),
            "duplicate_rows": dup,
            "created_at_bad_format": bad_created,
            "exit_code": rc,
            "killed": killed,
            "sigterm_to_exit_s": rnd(stop_s),
            "daemon_log": logs,
            "load_after": loadavg(),
        })
    finally:
        daemon.kill_if_running()
    result["run_dir"] = finish_rundir(rundir, args.keep, ok)
    r = result
    if "lines" in r:
        say("")
        say(f"throughput: {r['lines']:,} lines ({r['bytes'] / 1e6:.1f} MB), {r['attack_lines']:,} attack lines; settled: {r['settled']}")
        say(f"  process start -> /metrics up          {r['startup_to_metrics_s']} s; -> first file opened {r['startup_to_following_file_s']} s")
        say(f"  process start -> all stored           {r['start_to_all_stored_s']} s  = {fmt_rate(r['lines_per_s_from_start'])} lines/s")
        say(f"  first line read -> all stored         {r['first_read_to_all_stored_s']} s  = {fmt_rate(r['lines_per_s_from_first_read'])} lines/s")
        say(f"  CPU (user+sys) until all stored       {r['cpu_seconds']} s = {r['cpu_cores_used']} cores, {r['cpu_us_per_line']} us/line")
        say(f"  peak RSS (VmHWM)                      {r['peak_rss_mb']} MB (RSS at the end {r['rss_at_end_mb']} MB, {r['threads']} threads)")
        mm = r["metrics"]
        say(f"  metrics: read {mm['lines_read']:,}, parsed {mm['lines_parsed']:,}, unparsed {mm['lines_unparsed']:,}, rows stored {mm['rows_stored']:,}, plugin errors {mm['plugin_errors']}")
        say(f"  plugin busy seconds: {mm['plugin_busy_s']}")
        say(f"  store: {r['db_rows']:,} rows {r['db_rows_by_decided_by']}; missing attack lines {r['missing_attack_rows']} "
            f"(of which `check` does not flag either: {r['missing_not_flagged_by_check_either']}), unexpected rows {r['unexpected_rows']}, duplicates {r['duplicate_rows']}")
        say(f"  SIGTERM -> exit {r['exit_code']} in {r['sigterm_to_exit_s']} s{' (KILLED: did not exit)' if r['killed'] else ''}")
        say(f"  daemon log: {r['daemon_log']['warnings_errors']} warnings/errors {r['daemon_log']['first_problems']}")
        say(f"  load average before {r['load_before']} after {r['load_after']} (other work on the machine skews the figures)")
        say(f"  RESULT: {'PASS' if r['ok'] else 'FAIL'}")
    return result


def latency_histogram(values: list[float]) -> dict[str, int]:
    edges = list(range(0, 201, 10)) + [300, 500, 1000, 2000]
    labels = ["<0"] + [f"{a}-{b}" for a, b in zip(edges, edges[1:])] + [f">={edges[-1]}"]
    counts = [0] * len(labels)
    for v in values:
        if v < 0:
            counts[0] += 1
            continue
        for j in range(len(edges) - 1):
            if v < edges[j + 1]:
                counts[j + 1] += 1
                break
        else:
            counts[-1] += 1
    return {l: c for l, c in zip(labels, counts) if c}


def lines_at_offsets(path: Path, end_offsets: set[int]) -> list[str]:
    out = []
    pos = 0
    with open(path, "rb") as f:
        for raw in f:
            pos += len(raw)
            if pos in end_offsets:
                out.append(raw.decode(ENC, ERRS))
    return out


# --------------------------------------------------------------------------------------------
# latency
# --------------------------------------------------------------------------------------------


def cmd_latency(args) -> dict:
    session = prepare_session(args)
    calib = calibrate(session)
    factory = LineFactory(calib, args.seed, attackers=args.attackers)
    rng = factory.rng
    rundir = make_rundir(session, "latency")
    (rundir / "logs").mkdir()
    log_path = rundir / "logs" / "access.log"  # its own directory: the daemon's stdout/stderr files must not wake its tailer
    log_path.touch()
    daemon = Daemon(session, rundir, log_path, "end", args.workers)
    total = int(args.rate * args.seconds)
    interval = args.chunk_ms / 1000.0
    result: dict = {"subcommand": "latency", "binary": session.info, "load_before": loadavg()}
    ok = False
    say(f"\nlatency: {args.rate:,} lines/s for {args.seconds} s ({total:,} lines, {args.attack_ratio:.1%} attacks), a chunk every {args.chunk_ms} ms")
    say(f"  daemon follows {log_path} (empty at start-up, read_from = \"end\")")
    try:
        daemon.start()
        daemon.wait_ready()
        time.sleep(1.0)  # the tailer's first scan must see the file empty, or read_from="end" skips what is there
        cpu0 = daemon.cpu_seconds()
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
        written_at: dict[int, float] = {}
        attack_text: dict[int, str] = {}
        chunks = 0
        max_chunk = 0
        gaps = []
        last_write = None
        ts_cache: tuple[int, str] = (-1, "")
        t0 = time.monotonic()
        first_write = None
        written = 0
        next_tick = t0
        while written < total:
            now = time.monotonic()
            due = min(total, int((now - t0) * args.rate) + 1)
            if due > written:
                sec = int(time.time())
                if sec != ts_cache[0]:
                    ts_cache = (sec, clf_time(sec))
                ts = ts_cache[1]
                ips = factory.benign_ip_batch(due - written)
                parts = []
                ids = []
                for j, i in enumerate(range(written, due)):
                    if rng.random() < args.attack_ratio:
                        text = factory.attack_line(ts, i, "latency_attack")
                        parts.append(text)
                        attack_text[i] = text
                        ids.append(i)
                    else:
                        parts.append(factory.benign_line(ips[j], ts))
                data = "".join(parts).encode(ENC, ERRS)
                tw = time.time()  # the chunk's lines can be read from the moment write() starts
                write_all(fd, data)
                tm = time.monotonic()
                for i in ids:
                    written_at[i] = tw
                if first_write is None:
                    first_write = tm
                if last_write is not None:
                    gaps.append(tm - last_write)
                last_write = tm
                chunks += 1
                max_chunk = max(max_chunk, due - written)
                written = due
            next_tick += interval
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_tick = time.monotonic()
        os.close(fd)
        write_span = (last_write - first_write) if last_write and first_write else 0.0
        cpu1 = daemon.cpu_seconds()
        settled = daemon.wait_settled(written, stall=args.stall)
        m = settled.metrics
        hwm = daemon.status_kb("VmHWM")
        rc, stop_s, killed = daemon.stop()
        rows = read_rows(daemon.data / "logsec.db", "url, created_at, decided_by")
        lat = []
        seen: dict[int, int] = {}
        unexpected = 0
        bad_created = 0
        per_row = []
        for url, created, decided in rows:
            mm = LATENCY_ID_RE.search(url)
            ident = int(mm[1]) if mm else None
            if ident is None or ident not in written_at:
                unexpected += 1
                continue
            seen[ident] = seen.get(ident, 0) + 1
            ce = created_epoch(created)
            if ce is None:
                bad_created += 1
                continue
            ms = (ce - written_at[ident]) * 1000.0
            lat.append(ms)
            per_row.append((written_at[ident], ms, decided, ident))
        missing = sorted(set(written_at) - set(seen))
        dups = sum(c - 1 for c in seen.values() if c > 1)
        lat.sort()
        logs = daemon.log_summary()
        buckets = latency_histogram(lat)
        worst = sorted(per_row, key=lambda x: -x[1])[:8]
        start_wall = min(written_at.values()) if written_at else 0.0
        # the worst latency in each second of the run, to see periodic spikes
        per_second: dict[int, float] = {}
        for w, ms, _, _ in per_row:
            s = int(w - start_wall)
            per_second[s] = max(per_second.get(s, 0.0), ms)
        not_flagged = check_missing(session, [attack_text[i] for i in missing])
        achieved = (written - 1) / write_span if write_span > 0 else None
        ok = (settled.ok and rc == 0 and not killed and not missing and dups == 0 and unexpected == 0 and bad_created == 0
              and achieved is not None and achieved >= 0.98 * args.rate)
        over100 = sum(v > 100 for v in lat)
        warm = sorted(ms for w, ms, _, _ in per_row if w - start_wall >= args.warmup)
        result.update({
            "ok": ok,
            "rate_target": args.rate,
            "seconds": args.seconds,
            "lines_written": written,
            "achieved_rate": rnd(achieved, 0),
            "chunks": chunks,
            "chunk_interval_ms": args.chunk_ms,
            "mean_chunk_lines": rnd(written / chunks, 1) if chunks else None,
            "max_chunk_lines": max_chunk,
            "max_gap_between_writes_ms": rnd(max(gaps) * 1000, 1) if gaps else None,
            "attack_lines": len(written_at),
            "stored_attack_rows": len(lat),
            "missing": len(missing),
            "missing_ids_first": missing[:10],
            "missing_not_flagged_by_check_either": not_flagged,
            "duplicates": dups,
            "unexpected_rows": unexpected,
            "created_at_bad_format": bad_created,
            "latency_ms": {
                "count": len(lat),
                "min": rnd(lat[0] if lat else None, 1),
                "p50": rnd(percentile(lat, 50), 1),
                "p90": rnd(percentile(lat, 90), 1),
                "p99": rnd(percentile(lat, 99), 1),
                "p99_9": rnd(percentile(lat, 99.9), 1),
                "max": rnd(lat[-1] if lat else None, 1),
                "mean": rnd(sum(lat) / len(lat) if lat else None, 1),
                "over_100ms": over100,
            },
            "latency_ms_after_warmup": {
                "warmup_s": args.warmup,
                "count": len(warm),
                "p50": rnd(percentile(warm, 50), 1),
                "p90": rnd(percentile(warm, 90), 1),
                "p99": rnd(percentile(warm, 99), 1),
                "p99_9": rnd(percentile(warm, 99.9), 1),
                "max": rnd(warm[-1] if warm else None, 1),
            },
            "latency_histogram_ms": buckets,
            "worst": [{"t_s": round(w - start_wall, 3), "ms": round(ms, 1), "decided_by": d, "id": i} for w, ms, d, i in worst],
            "max_latency_per_second_ms": [round(per_second.get(s, 0.0), 1) for s in range(max(per_second) + 1)] if per_second else [],
            "db_rows_by_decided_by": {d: sum(1 for r in rows if r[2] == d) for d in sorted({r[2] for r in rows})},
            "daemon_cpu_cores_while_writing": rnd((cpu1 - cpu0) / write_span, 3) if cpu0 is not None and cpu1 is not None and write_span else None,
            "peak_rss_mb": rnd((hwm or 0) / 1024, 1),
            "metrics_lines_read": int(m.get("logsec_lines_read_total", 0)),
            "metrics_rows_stored": int(m.get("logsec_rows_stored_total", 0)),
            "settled": settled.reason,
            "exit_code": rc,
            "killed": killed,
            "sigterm_to_exit_s": rnd(stop_s),
            "daemon_log": logs,
            "load_after": loadavg(),
            "note": "created_at is stamped when the store stage builds the batch's rows, just before the batch INSERT "
                    "(one transaction) commits; it has millisecond resolution (truncated). Write time is time.time() right "
                    "before the write() of the chunk holding the line (so the write itself counts as latency); a created_at truncated to the millisecond can therefore be up to 1 ms early, which is why a few values are slightly negative. Both are CLOCK_REALTIME on this machine.",
        })
    finally:
        daemon.kill_if_running()
    result["run_dir"] = finish_rundir(rundir, args.keep, ok)
    r = result
    if "latency_ms" in r:
        L = r["latency_ms"]
        say("")
        say(f"latency: wrote {r['lines_written']:,} lines in {r['chunks']:,} chunks (mean {r['mean_chunk_lines']} lines, max {r['max_chunk_lines']}); "
            f"achieved {fmt_rate(r['achieved_rate'])} lines/s for a target of {r['rate_target']:,}; longest gap between writes {r['max_gap_between_writes_ms']} ms")
        say(f"  attack lines {r['attack_lines']:,}: stored {r['stored_attack_rows']:,}, missing {r['missing']}, duplicates {r['duplicates']}, unexpected rows {r['unexpected_rows']}; rows by decided_by {r['db_rows_by_decided_by']}")
        say(f"  latency (created_at - write time), ms: p50 {L['p50']}  p90 {L['p90']}  p99 {L['p99']}  p99.9 {L['p99_9']}  max {L['max']}  (min {L['min']}, mean {L['mean']}, >100 ms: {L['over_100ms']})")
        W = r["latency_ms_after_warmup"]
        say(f"  the same without the first {W['warmup_s']} s (workers instantiate their plugins on their first batch): "
            f"p50 {W['p50']}  p90 {W['p90']}  p99 {W['p99']}  p99.9 {W['p99_9']}  max {W['max']}  ({W['count']} lines)")
        say(f"  histogram (ms): {r['latency_histogram_ms']}")
        say(f"  worst: {r['worst'][:5]}")
        say(f"  daemon CPU while writing: {r['daemon_cpu_cores_while_writing']} cores; peak RSS {r['peak_rss_mb']} MB")
        say(f"  metrics: lines read {r['metrics_lines_read']:,}, rows stored {r['metrics_rows_stored']:,}; settled: {r['settled']}")
        say(f"  SIGTERM -> exit {r['exit_code']} in {r['sigterm_to_exit_s']} s{' (KILLED)' if r['killed'] else ''}; daemon log: {r['daemon_log']['warnings_errors']} warnings/errors {r['daemon_log']['first_problems']}")
        say(f"  note: {r['note']}")
        say(f"  load average before {r['load_before']} after {r['load_after']}")
        say(f"  RESULT: {'PASS' if r['ok'] else 'FAIL'}")
    return result


# --------------------------------------------------------------------------------------------
# soak
# --------------------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Samples the daemon's VmRSS (and lines read, open log files) every `every` seconds."""

    def __init__(self, daemon: Daemon, logdir: Path, every: float = 0.5):
        super().__init__(daemon=True)
        self.d, self.logdir, self.every = daemon, logdir, every
        self.samples: list[tuple[float, int, float, int]] = []  # (monotonic, rss kB, lines read, open log fds)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            rss = self.d.status_kb("VmRSS")
            m = self.d.metrics(timeout=1.0)
            read = m.get("logsec_lines_read_total", 0.0) if m else float("nan")
            fds = len(self.d.open_files_under(self.logdir))
            if rss is not None:
                self.samples.append((time.monotonic(), rss, read, fds))
            self.halt.wait(self.every)


def cmd_soak(args) -> dict:
    session = prepare_session(args)
    calib = calibrate(session)
    src_path, meta = generate_log(session, calib, args.lines, args.seed, args.attack_ratio, True, "soak", args.attackers)
    rundir = make_rundir(session, "soak")
    logdir = rundir / "logs"
    logdir.mkdir()
    log_path = logdir / "access.log"
    log_path.touch()
    source = str(logdir / "access.log*") if args.glob else str(log_path)
    daemon = Daemon(session, rundir, source, "beginning", args.workers)
    result: dict = {"subcommand": "soak", "binary": session.info, "load_before": loadavg()}
    ok = False
    n = meta["lines"]
    R = args.rotate_every
    say(f"\nsoak: {n:,} lines ({meta['attacks']:,} attacks with lsid=<line>), rate {'unthrottled' if not args.rate else f'{args.rate:,}/s'}, "
        f"rotation every {R:,} lines alternating rename+create / copytruncate")
    say(f"  daemon follows {source} with read_from = \"beginning\" (the file is created empty before start-up, so every line written is expected)")
    rotations: list[dict] = []

    def shift_rotated() -> None:
        for j in range(args.keep_rotated, 0, -1):
            p = logdir / f"access.log.{j}"
            if p.exists():
                if j == args.keep_rotated:
                    p.unlink()
                else:
                    os.rename(p, logdir / f"access.log.{j + 1}")

    sampler = Sampler(daemon, logdir)
    try:
        daemon.start()
        daemon.wait_ready()
        time.sleep(0.5)
        rss_baseline = daemon.status_kb("VmRSS")
        sampler.start()
        src = open(src_path, "rb")
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
        written = 0
        next_rot = R
        k = 0
        paused = 0.0
        chunk = max(1, int(args.rate * 0.01)) if args.rate else 2000
        t_write0 = time.monotonic()
        t0 = t_write0
        next_tick = t0
        while written < n:
            if args.rate:
                due = min(n, int((time.monotonic() - t0) * args.rate) + 1)
            else:
                due = min(n, written + chunk)
            while written < due:
                if written == next_rot:
                    k += 1
                    next_rot += R
                    tp = time.monotonic()
                    if k % 2 == 1:  # rename + create; the "server" writes a few lines to the old file before reopening
                        shift_rotated()
                        os.rename(log_path, logdir / "access.log.1")
                        late = min(args.late_lines, n - written)
                        if late:
                            write_all(fd, b"".join(itertools.islice(src, late)))
                            written += late
                        os.close(fd)
                        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
                        rotations.append({"n": k, "kind": "rename", "at_line": written - late, "late_lines": late, "pause_ms": round((time.monotonic() - tp) * 1000, 1)})
                    else:  # copytruncate, done by the writer between two appends: wait until the daemon read everything, copy, truncate
                        caught_up = False
                        end_wait = time.monotonic() + (0.0 if args.no_catchup else args.catchup_timeout)
                        while time.monotonic() < end_wait:
                            m = daemon.metrics()
                            if m and m.get("logsec_lines_read_total", 0) >= written:
                                caught_up = True
                                break
                            if not daemon.alive():
                                raise DaemonDied(f"logsec exited with {daemon.proc.returncode}: {daemon.stderr_tail()}")
                            time.sleep(0.01)
                        waited = time.monotonic() - tp
                        shift_rotated()
                        shutil.copyfile(log_path, logdir / "access.log.1")
                        os.ftruncate(fd, 0)
                        rotations.append({"n": k, "kind": "copytruncate", "at_line": written, "caught_up": caught_up,
                                          "wait_ms": round(waited * 1000, 1), "pause_ms": round((time.monotonic() - tp) * 1000, 1)})
                    pause = time.monotonic() - tp
                    paused += pause
                    t0 += pause  # keep the rate steady outside the pause instead of bursting to catch up
                    next_tick += pause
                    if args.rate:
                        due = min(n, max(due, int((time.monotonic() - t0) * args.rate) + 1))
                    continue
                upto = min(due, next_rot, n)
                write_all(fd, b"".join(itertools.islice(src, upto - written)))
                written = upto
            if args.rate:
                next_tick += 0.01
                delay = next_tick - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_tick = time.monotonic()
        os.close(fd)
        src.close()
        t_write_end = time.monotonic()
        settled = daemon.wait_settled(written, stall=args.stall)
        t_done = settled.t_done
        m = settled.metrics
        hwm = daemon.status_kb("VmHWM")
        open_logs = daemon.open_files_under(logdir)
        sampler.halt.set()
        sampler.join(5)
        rc, stop_s, killed = daemon.stop()

        rows = read_rows(daemon.data / "logsec.db", "url, decided_by, source_file, source_offset")
        expected = set(meta["attack_ids"])
        counts: dict[int, int] = {}
        unexpected = 0
        for url, _, _, _ in rows:
            mm = LSID_RE.search(url)
            ident = int(mm[1]) if mm else None
            if ident is None or ident not in expected:
                unexpected += 1
                continue
            counts[ident] = counts.get(ident, 0) + 1
        missing = sorted(expected - set(counts))
        dups = {i: c for i, c in counts.items() if c > 1}
        not_flagged = 0
        if missing:
            want = set(missing)
            texts = []
            with open(src_path, "rb") as f:
                for i, raw in enumerate(f):
                    if i in want:
                        texts.append(raw.decode(ENC, ERRS))
            not_flagged = check_missing(session, texts)
        read = int(m.get("logsec_lines_read_total", 0))
        run_s = t_done - t_write0
        samples = sampler.samples

        def rss_at(frac: float) -> float | None:
            target = t_write0 + frac * run_s
            best = min(samples, key=lambda s: abs(s[0] - target), default=None)
            return None if best is None else round(best[1] / 1024, 1)

        peak_sample = max((s[1] for s in samples), default=0)
        logs = daemon.log_summary()
        n_rename = sum(1 for r in rotations if r["kind"] == "rename")
        n_ct = sum(1 for r in rotations if r["kind"] == "copytruncate")
        ok = (rc == 0 and not killed and read == written and not missing and not dups and unexpected == 0
              and all(r.get("caught_up", True) for r in rotations))
        result.update({
            "ok": ok,
            "lines_written": written,
            "attack_lines": len(expected),
            "rate": args.rate or "unthrottled",
            "rotate_every": R,
            "rotations": {"rename": n_rename, "copytruncate": n_ct, "detail": rotations},
            "write_s": rnd(t_write_end - t_write0, 2),
            "writer_paused_s": rnd(paused, 2),
            "achieved_write_rate": rnd(written / (t_write_end - t_write0 - paused), 0) if t_write_end - t_write0 - paused > 0 else None,
            "elapsed_to_all_stored_s": rnd(run_s, 2),
            "settled": settled.reason,
            "metrics_lines_read": read,
            "metrics_lines_unparsed": int(m.get("logsec_lines_unparsed_total", 0)),
            "metrics_rows_stored": int(m.get("logsec_rows_stored_total", 0)),
            "lines_read_equals_written": read == written,
            "db_rows": len(rows),
            "db_rows_by_decided_by": {d: sum(1 for r in rows if r[1] == d) for d in sorted({r[1] for r in rows})},
            "attack_ids_stored": len(counts),
            "missing_ids": len(missing),
            "missing_ids_first": missing[:10],
            "missing_not_flagged_by_check_either": not_flagged,
            "duplicate_ids": len(dups),
            "duplicate_ids_first": sorted(dups)[:10],
            "unexpected_rows": unexpected,
            "rss_mb": {
                "baseline_before_writing": rnd((rss_baseline or 0) / 1024, 1),
                "at_10pct": rss_at(0.10),
                "at_50pct": rss_at(0.50),
                "at_90pct": rss_at(0.90),
                "peak_sampled": rnd(peak_sample / 1024, 1),
                "peak_vmhwm": rnd((hwm or 0) / 1024, 1),
                "samples": len(samples),
            },
            "rss_series_mb": [[round(s[0] - t_write0, 1), round(s[1] / 1024, 1)] for s in samples[:: max(1, len(samples) // 40)]],
            "open_log_files_at_end": open_logs,
            "max_open_log_files": max((s[3] for s in samples), default=0),
            "exit_code": rc,
            "killed": killed,
            "sigterm_to_exit_s": rnd(stop_s),
            "daemon_log": logs,
            "load_after": loadavg(),
            "note": "copytruncate is done by the writer itself between two appends, after waiting until the daemon "
                    "has read every line written so far (logsec_lines_read_total); without that wait, lines the tailer "
                    "has not read yet when the file is truncated are lost by any tailer (logrotate's copytruncate race). "
                    "Rename rotations write --late-lines lines to the renamed file before reopening, as nginx does until it gets USR1.",
        })
    finally:
        sampler.halt.set()
        daemon.kill_if_running()
    result["run_dir"] = finish_rundir(rundir, args.keep, ok)
    r = result
    if "rss_mb" in r:
        say("")
        say(f"soak: wrote {r['lines_written']:,} lines ({r['attack_lines']:,} attacks) in {r['write_s']} s (writer paused {r['writer_paused_s']} s for rotations; "
            f"{fmt_rate(r['achieved_write_rate'])} lines/s outside pauses); {r['rotations']['rename']} rename + {r['rotations']['copytruncate']} copytruncate rotations")
        for rot in rotations:
            say(f"    rotation {rot}")
        say(f"  elapsed from first write to all stored: {r['elapsed_to_all_stored_s']} s; settled: {r['settled']}")
        say(f"  lines read (metrics) {r['metrics_lines_read']:,} vs written {r['lines_written']:,}: {'equal' if r['lines_read_equals_written'] else 'DIFFERENT'}; unparsed {r['metrics_lines_unparsed']}")
        say(f"  store: {r['db_rows']:,} rows {r['db_rows_by_decided_by']}; attack ids stored {r['attack_ids_stored']:,}, missing {r['missing_ids']} "
            f"(not flagged by check either: {r['missing_not_flagged_by_check_either']}), duplicated {r['duplicate_ids']}, unexpected rows {r['unexpected_rows']}")
        rs = r["rss_mb"]
        say(f"  RSS MB: before writing {rs['baseline_before_writing']}, at 10% {rs['at_10pct']}, 50% {rs['at_50pct']}, 90% {rs['at_90pct']}; peak sampled {rs['peak_sampled']}, VmHWM {rs['peak_vmhwm']} ({rs['samples']} samples)")
        say(f"  open log files at the end {len(r['open_log_files_at_end'])} (max while running {r['max_open_log_files']})")
        say(f"  daemon log: following file x{r['daemon_log']['following_file']}, file truncated x{r['daemon_log']['file_truncated']}, "
            f"{r['daemon_log']['warnings_errors']} warnings/errors {r['daemon_log']['first_problems']}")
        say(f"  SIGTERM -> exit {r['exit_code']} in {r['sigterm_to_exit_s']} s{' (KILLED)' if r['killed'] else ''}")
        say(f"  note: {r['note']}")
        say(f"  load average before {r['load_before']} after {r['load_after']}")
        say(f"  RESULT: {'PASS' if r['ok'] else 'FAIL'}")
    return result


# --------------------------------------------------------------------------------------------


def main() -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--binary", default=str(REPO / "target" / "release" / "logsec"), help="logsec binary to copy and run")
    common.add_argument("--plugins", default=str(REPO / "target" / "plugins"), help="plugin directory to copy")
    common.add_argument("--rules", default=str(REPO / "rules" / "patterns.json"), help="rules file to copy")
    common.add_argument("--dev-data", default=str(DEFAULT_DEV), help="directory with benign.log, attacks.tsv, access.log, labels.tsv")
    common.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="copies, caches and run directories")
    common.add_argument("--workers", type=int, default=None, help="[agent] workers (default: the daemon's, one per core)")
    common.add_argument("--seed", type=int, default=1, help="generator seed")
    common.add_argument("--stall", type=float, default=30.0, help="give up waiting after this many seconds without progress")
    common.add_argument("--attackers", type=int, default=400, help="attacker addresses (disjoint from the benign clients)")
    common.add_argument("--keep", action="store_true", help="keep the run directory (data dir, SQLite, logs, daemon output)")

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput", parents=[common], help="read a pre-generated log from the beginning")
    t.add_argument("--lines", type=int, default=1_000_000)
    t.add_argument("--attack-ratio", type=float, default=0.02)
    t.set_defaults(func=cmd_throughput)
    lt = sub.add_parser("latency", parents=[common], help="write at a steady rate, measure write-to-store latency")
    lt.add_argument("--rate", type=int, default=10_000, help="lines per second")
    lt.add_argument("--seconds", type=float, default=30.0)
    lt.add_argument("--chunk-ms", type=float, default=5.0, help="write a chunk every this many ms")
    lt.add_argument("--attack-ratio", type=float, default=0.01)
    lt.add_argument("--warmup", type=float, default=1.0, help="seconds at the start left out of the second set of percentiles")
    lt.set_defaults(func=cmd_latency)
    s = sub.add_parser("soak", parents=[common], help="write through rotations, watch memory, check no loss/duplicate")
    s.add_argument("--lines", type=int, default=1_000_000)
    s.add_argument("--rotate-every", type=int, default=100_000)
    s.add_argument("--rate", type=int, default=50_000, help="lines per second; 0 writes as fast as possible")
    s.add_argument("--attack-ratio", type=float, default=0.02)
    s.add_argument("--late-lines", type=int, default=200, help="lines written to the renamed file before reopening (rename rotations)")
    s.add_argument("--keep-rotated", type=int, default=3, help="rotated files kept (access.log.1..N)")
    s.add_argument("--catchup-timeout", type=float, default=120.0, help="longest wait for the daemon before a copytruncate")
    s.add_argument("--no-catchup", action="store_true", help="copytruncate without waiting for the daemon to read what was written (shows the race)")
    s.add_argument("--glob", action="store_true", help="follow access.log* (rotated files match the source too) instead of access.log")
    s.set_defaults(func=cmd_soak)
    args = p.parse_args()
    try:
        result = args.func(args)
    except DaemonDied as e:
        say(f"FAIL: {e}")
        result = {"subcommand": args.command, "ok": False, "error": str(e)}
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    print(json.dumps(result, separators=(",", ":")), flush=True)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
