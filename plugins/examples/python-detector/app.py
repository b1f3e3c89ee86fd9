"""py-scanner: a logsec detector written in Python.

It looks for automated scanning rather than for attack payloads, which the regex rules of the
built-in `patterns` detector already cover:

* `scanner-ua-<tool>` (score 6): the User-Agent names a known attack or reconnaissance tool
  (sqlmap, nikto, nmap, masscan, zgrab, nuclei, wpscan, dirbuster, gobuster, ffuf, ...).
* `scanner-404-burst` (score 5): the client address has produced at least 20 responses with status
  404 in the last 60 seconds, the footprint of content discovery and path brute forcing. The count
  is kept by the host (`count`), so it survives hot swaps of this plugin and spans batches.

Settings (JSON, every key optional; the host passes `{}` when it has none):

    {"not_found_threshold": 20, "window_seconds": 60, "extra_agents": ["mytool"]}

Every request field is attacker-controlled: strings are cut to a fixed length before they are
examined, addresses are reduced to the characters an IP address can contain, and any unexpected
error while looking at one request yields no findings for that request instead of a trap that would
fail the whole batch.

Build with ./build.sh OUT.wasm (componentize-py 0.25.1).
"""

import json
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Finding, Metadata, PluginKind, Request

NAME = "py-scanner"
VERSION = "0.1.0"
API_VERSION = 1
CATEGORY = "scanner"

# Longest part of a User-Agent that is examined, in characters; real tool banners sit at the start.
MAX_AGENT_CHARS = 512
# Longest evidence the host keeps, in UTF-8 bytes.
MAX_EVIDENCE_BYTES = 256
# The longest textual IPv6 address (with an embedded IPv4 tail) has 45 characters.
MAX_IP_CHARS = 45
# Limits on operator settings, so a bad configuration cannot make every request slow.
MAX_EXTRA_AGENTS = 64
MAX_AGENT_TOKEN_CHARS = 64
# How many internal errors are logged before the plugin goes quiet about them.
MAX_ERROR_LOGS = 5

AGENT_SCORE = 6
BURST_SCORE = 5

# (tool, substring its User-Agent carries, lower case); a tool may have several. The substrings are
# chosen to be specific: "nmap" appears as "Nmap Scripting Engine", "ffuf" as "Fuzz Faster U Fool",
# THC Hydra as "(Hydra)", and so on.
KNOWN_AGENTS = (
    ("sqlmap", "sqlmap"),
    ("nikto", "nikto"),
    ("nmap", "nmap"),
    ("masscan", "masscan"),
    ("zgrab", "zgrab"),
    ("nuclei", "nuclei"),
    ("wpscan", "wpscan"),
    ("dirbuster", "dirbuster"),
    ("gobuster", "gobuster"),
    ("feroxbuster", "feroxbuster"),
    ("ffuf", "fuzz faster u fool"),
    ("ffuf", "ffuf/"),
    ("wfuzz", "wfuzz"),
    ("acunetix", "acunetix"),
    ("netsparker", "netsparker"),
    ("w3af", "w3af"),
    ("havij", "havij"),
    ("openvas", "openvas"),
    ("arachni", "arachni"),
    ("skipfish", "skipfish"),
    ("commix", "commix"),
    ("hydra", "(hydra)"),
    ("jaeles", "jaeles"),
    ("zmeu", "zmeu"),
    ("whatweb", "whatweb"),
    ("xsstrike", "xsstrike"),
    ("interactsh", "interactsh"),
)

_IP_CHARS = re.compile(r"[^0-9A-Fa-f.:]")
_TOKEN_CHARS = re.compile(r"^[a-z0-9][a-z0-9 ._/+-]*$")


def _agent_pattern(agents):
    """One alternation over every tool token, longest first so the most specific name wins, and the
    map from token back to tool."""
    ordered = sorted(agents, key=lambda pair: -len(pair[1]))
    return re.compile("|".join(re.escape(token) for _, token in ordered)), {t: n for n, t in ordered}


def _clip_utf8(text, limit):
    """The longest prefix of `text` that is at most `limit` UTF-8 bytes."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _printable(text):
    """Evidence is shown to operators: control characters become spaces."""
    return "".join(c if c.isprintable() else " " for c in text)


def _client_ip(value):
    """The address reduced to IP characters, lower case; empty when nothing usable is left."""
    if not isinstance(value, str):
        return ""
    ip = _IP_CHARS.sub("", value[: MAX_IP_CHARS * 2])[:MAX_IP_CHARS].lower()
    # An address has at least one separator; "" or a bare number is not worth a host counter.
    if "." not in ip and ":" not in ip:
        return ""
    return ip


class Settings:
    def __init__(self, threshold=20, window=60, agents=None):
        self.threshold = threshold
        self.window = window
        self.pattern, self.tool_of = _agent_pattern(agents if agents is not None else KNOWN_AGENTS)

    @staticmethod
    def parse(text):
        """Settings from JSON text; raises ValueError with a message for the operator."""
        if text is None or not text.strip():
            return Settings()
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise ValueError(f"settings are not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError("settings must be a JSON object")
        known = {"not_found_threshold", "window_seconds", "extra_agents"}
        unknown = sorted(k for k in raw if k not in known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")

        threshold = raw.get("not_found_threshold", 20)
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= 1_000_000:
            raise ValueError("not_found_threshold must be an integer in 1..=1000000")
        window = raw.get("window_seconds", 60)
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 3600:
            raise ValueError("window_seconds must be an integer in 1..=3600")

        agents = list(KNOWN_AGENTS)
        extra = raw.get("extra_agents", [])
        if not isinstance(extra, list) or len(extra) > MAX_EXTRA_AGENTS:
            raise ValueError(f"extra_agents must be a list of at most {MAX_EXTRA_AGENTS} strings")
        for token in extra:
            if not isinstance(token, str):
                raise ValueError("extra_agents must hold strings")
            token = token.strip().lower()
            if not 3 <= len(token) <= MAX_AGENT_TOKEN_CHARS or not _TOKEN_CHARS.match(token):
                raise ValueError(
                    f"extra_agents entry {token[:MAX_AGENT_TOKEN_CHARS]!r} must be 3..={MAX_AGENT_TOKEN_CHARS} "
                    "characters of a-z 0-9 space . _ / + -"
                )
            agents.append((token, token))
        return Settings(threshold, window, agents)


class WitWorld(wit_world.WitWorld):
    """The exported `detector` world. componentize-py creates one instance and keeps it."""

    def __init__(self):
        self.settings = Settings()
        self.errors_logged = 0

    def metadata(self) -> Metadata:
        return Metadata(
            name=NAME,
            version=VERSION,
            kind=PluginKind.DETECTOR,
            api_version=API_VERSION,
            description="scanner tools by User-Agent and 404 bursts per address (Python)",
        )

    def configure(self, config: str) -> None:
        try:
            settings = Settings.parse(config)
        except ValueError as e:
            # Err becomes the `result` error string; the previous settings stay in force.
            raise Err(f"{NAME}: {e}")
        self.settings = settings
        host.log(
            host.Level.INFO,
            f"{NAME} {VERSION} configured: {len(settings.tool_of)} tool agent tokens, "
            f"404 burst at {settings.threshold} in {settings.window}s",
        )

    def detect_batch(self, requests):
        results = []
        for request in requests:
            try:
                results.append(self._detect(request))
            except Exception as e:  # never trap the batch over one odd request
                results.append([])
                if self.errors_logged < MAX_ERROR_LOGS:
                    self.errors_logged += 1
                    host.log(host.Level.WARN, f"{NAME}: skipped a request: {type(e).__name__}")
        return results

    def _detect(self, request: Request):
        findings = []
        s = self.settings

        agent = request.user_agent
        if agent:
            head = agent[:MAX_AGENT_CHARS]
            match = s.pattern.search(head.lower())
            if match:
                tool = s.tool_of.get(match.group(0), "custom")
                findings.append(
                    Finding(
                        category=CATEGORY,
                        rule_id=f"scanner-ua-{tool.replace(' ', '-').replace('/', '-')}"[:64],
                        score=AGENT_SCORE,
                        evidence=_clip_utf8(_printable(head), MAX_EVIDENCE_BYTES),
                    )
                )

        if request.status == 404:
            ip = _client_ip(request.ip)
            if ip:
                total = host.count("404:" + ip, s.window, 1)
                if total >= s.threshold:
                    findings.append(
                        Finding(
                            category=CATEGORY,
                            rule_id="scanner-404-burst",
                            score=BURST_SCORE,
                            evidence=_clip_utf8(
                                f"{total} 404s in {s.window}s from {ip}: {_printable(request.uri[:200])}",
                                MAX_EVIDENCE_BYTES,
                            ),
                        )
                    )
        return findings
