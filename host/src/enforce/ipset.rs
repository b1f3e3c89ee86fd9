//! The `iptables` backend: ipset sets with per-entry timeouts (`logsec4`/`logsec6` of type
//! `hash:ip` for addresses, `logsec4net`/`logsec6net` of type `hash:net` for blocks) and one
//! iptables/ip6tables rule per set that drops matching sources on INPUT (and FORWARD when asked).
//!
//! Invariants:
//! - Entries reach ipset through `ipset -exist restore` on stdin, one `add`/`del` line each, built
//!   from parsed addresses (`Cidr`), never from log text; the iptables command lines are constant.
//! - `-exist` makes every step idempotent: creating a set that exists, adding an entry again (which
//!   gives it the new timeout), deleting one that is gone.
//! - A rule is inserted only when `iptables -C` does not find it, so restarts do not stack rules.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use super::backend::{Backend, Ban};
use crate::pipeline::memory::Cidr;
use crate::store::time;

/// ipset's longest timeout (seconds); a longer ban is re-added by the reconcile when it lapses.
const MAX_TIMEOUT_S: u64 = 2_000_000;
/// Most entries per set.
const MAX_ELEMENTS: u32 = 1_048_576;
/// The sets: (name, type, family, iptables binary).
const SETS: [(&str, &str, &str, &str); 4] = [
    ("logsec4", "hash:ip", "inet", "iptables"),
    ("logsec6", "hash:ip", "inet6", "ip6tables"),
    ("logsec4net", "hash:net", "inet", "iptables"),
    ("logsec6net", "hash:net", "inet6", "ip6tables"),
];

/// The iptables + ipset backend.
#[derive(Debug, Clone, Default)]
pub struct Ipset {
    forward: bool,
}

fn set_of(v: &Cidr) -> &'static str {
    SETS[super::backend::set_index(v)].0
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("writing to {program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Ipset {
    /// Drops banned sources on FORWARD too (containers' published ports).
    pub fn with_forward(forward: bool) -> Ipset {
        Ipset { forward }
    }

    fn restore(script: &str) -> Result<(), String> {
        if script.is_empty() {
            return Ok(());
        }
        run("ipset", &["-exist", "restore"], Some(script)).map(drop)
    }
}

impl Backend for Ipset {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn prepare(&mut self) -> Result<(), String> {
        let mut script = String::new();
        for (name, kind, family, _) in SETS {
            script.push_str(&format!(
                "create {name} {kind} family {family} timeout 0 maxelem {MAX_ELEMENTS}\n"
            ));
        }
        Self::restore(&script)?;
        let chains: &[&str] = if self.forward {
            &["INPUT", "FORWARD"]
        } else {
            &["INPUT"]
        };
        for (name, _, _, iptables) in SETS {
            for chain in chains {
                let rule = ["-m", "set", "--match-set", name, "src", "-j", "DROP"];
                let check: Vec<&str> = ["-w", "-C", chain].iter().chain(rule.iter()).copied().collect();
                if run(iptables, &check, None).is_err() {
                    let insert: Vec<&str> = ["-w", "-I", chain, "1"].iter().chain(rule.iter()).copied().collect();
                    run(iptables, &insert, None)?;
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, bans: &[Ban]) -> Result<(), String> {
        let now = time::now_ms();
        let mut script = String::new();
        for b in bans {
            let left = b.seconds_left(now).min(MAX_TIMEOUT_S);
            if left > 0 {
                script.push_str(&format!("add {} {} timeout {left}\n", set_of(&b.value), b.value));
            }
        }
        Self::restore(&script)
    }

    fn remove(&mut self, values: &[Cidr]) -> Result<(), String> {
        let script: String = values.iter().map(|v| format!("del {} {v}\n", set_of(v))).collect();
        Self::restore(&script)
    }

    fn present(&mut self) -> Result<Option<HashSet<Cidr>>, String> {
        let mut found = HashSet::new();
        for (name, ..) in SETS {
            let listing = match run("ipset", &["list", name, "-output", "save"], None) {
                Ok(l) => l,
                Err(e) if e.contains("does not exist") => continue,
                Err(e) => return Err(e),
            };
            // `add logsec4 203.0.113.7 timeout 3599`
            for line in listing.lines() {
                let mut words = line.split_whitespace();
                if words.next() == Some("add") && words.next() == Some(name) {
                    found.extend(words.next().and_then(|v| v.parse::<Cidr>().ok()));
                }
            }
        }
        Ok(Some(found))
    }

    fn expires_by_itself(&self) -> bool {
        true
    }
}
