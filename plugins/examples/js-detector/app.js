// js-scanner: a logsec detector written in JavaScript (componentize-js).
//
// Category `scanner`, from a small rule list:
//   * scanner-ua-<tool>  (score 6): the User-Agent names an attack or reconnaissance tool.
//   * scanner-method-<m> (score 3): an HTTP method that web applications do not serve but probes
//     send (TRACE, TRACK, DEBUG, PROPFIND, ...).
//   * scanner-no-agent   (score 2): no User-Agent at all on a request that failed (4xx), the habit
//     of bare scripts and port scanners rather than browsers.
//
// Settings (JSON, optional; the host passes `{}` when it has none): {"extra_agents": ["mytool"]}.
//
// Every request field is attacker-controlled: strings are cut before they are examined, evidence is
// cleaned of control characters and bounded, and an unexpected error on one request yields no
// findings for it rather than a trap that would fail the batch.

import { log } from "logsec:plugin/host@0.1.0";

const NAME = "js-scanner";
const VERSION = "0.1.0";
const MAX_AGENT_CHARS = 512;
const MAX_EVIDENCE_BYTES = 256;
const MAX_EXTRA_AGENTS = 64;

// [tool, lower-case substring of its User-Agent]
const AGENT_RULES = [
  ["sqlmap", "sqlmap"],
  ["nikto", "nikto"],
  ["nmap", "nmap scripting engine"],
  ["masscan", "masscan"],
  ["zgrab", "zgrab"],
  ["nuclei", "nuclei"],
  ["wpscan", "wpscan"],
  ["dirbuster", "dirbuster"],
  ["gobuster", "gobuster"],
  ["ffuf", "fuzz faster u fool"],
  ["wfuzz", "wfuzz"],
  ["acunetix", "acunetix"],
  ["netsparker", "netsparker"],
  ["openvas", "openvas"],
];

// Methods a probe sends and an ordinary site never serves; upper case as logged.
const METHOD_RULES = new Set(["TRACE", "TRACK", "DEBUG", "PROPFIND", "PROPPATCH", "MKCOL", "SEARCH", "CONNECT"]);

let agents = AGENT_RULES;
let errorsLogged = 0;

// Cuts `text` to at most MAX_EVIDENCE_BYTES of UTF-8 on a character boundary and replaces control
// characters with spaces.
function clip(text) {
  let out = "";
  let bytes = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0);
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + size > MAX_EVIDENCE_BYTES) break;
    bytes += size;
    out += cp < 0x20 || (cp >= 0x7f && cp < 0xa0) ? " " : ch;
  }
  return out;
}

function finding(ruleId, score, evidence) {
  return { category: "scanner", ruleId, score, evidence: clip(evidence) };
}

function detectOne(request) {
  const findings = [];
  const agent = typeof request.userAgent === "string" ? request.userAgent.slice(0, MAX_AGENT_CHARS) : "";
  if (agent) {
    const lower = agent.toLowerCase();
    for (const [tool, token] of agents) {
      if (lower.includes(token)) {
        findings.push(finding(`scanner-ua-${tool}`, 6, agent));
        break;
      }
    }
  } else if (request.status >= 400 && request.status < 500) {
    findings.push(finding("scanner-no-agent", 2, `${request.status} ${String(request.uri).slice(0, 200)}`));
  }

  const method = typeof request.method === "string" ? request.method.slice(0, 16).toUpperCase() : "";
  if (METHOD_RULES.has(method)) {
    findings.push(finding(`scanner-method-${method.toLowerCase()}`, 3, `${method} ${String(request.uri).slice(0, 200)}`));
  }
  return findings;
}

export function metadata() {
  return {
    name: NAME,
    version: VERSION,
    kind: "detector",
    apiVersion: 1,
    description: "scanner tools by User-Agent and probe-only HTTP methods (JavaScript)",
  };
}

// Throwing makes configure return `err(string)`; the previous settings stay in force.
export function configure(config) {
  let raw = {};
  if (config.trim() !== "") {
    try {
      raw = JSON.parse(config);
    } catch (e) {
      throw `${NAME}: settings are not valid JSON: ${e.message}`;
    }
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw `${NAME}: settings must be a JSON object`;
  }
  for (const key of Object.keys(raw)) {
    if (key !== "extra_agents") throw `${NAME}: unknown setting ${JSON.stringify(key.slice(0, 64))}; known: extra_agents`;
  }
  const extra = raw.extra_agents ?? [];
  if (!Array.isArray(extra) || extra.length > MAX_EXTRA_AGENTS) {
    throw `${NAME}: extra_agents must be a list of at most ${MAX_EXTRA_AGENTS} strings`;
  }
  const next = [...AGENT_RULES];
  for (const item of extra) {
    const token = typeof item === "string" ? item.trim().toLowerCase() : "";
    if (!/^[a-z0-9][a-z0-9 ._\/+-]{2,63}$/.test(token)) {
      throw `${NAME}: extra_agents entries must be 3..=64 characters of a-z 0-9 space . _ / + -`;
    }
    next.push([token.replace(/[^a-z0-9]+/g, "-"), token]);
  }
  agents = next;
  log("info", `${NAME} ${VERSION} configured: ${agents.length} agent rules, ${METHOD_RULES.size} method rules`);
}

export function detectBatch(requests) {
  const out = [];
  for (const request of requests) {
    try {
      out.push(detectOne(request));
    } catch (e) {
      out.push([]);
      if (errorsLogged < 5) {
        errorsLogged++;
        log("warn", `${NAME}: skipped a request: ${String(e && e.name)}`);
      }
    }
  }
  return out;
}
