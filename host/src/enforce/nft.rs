//! The `nftables` backend: logsec's own table `inet logsec` with one set per address family
//! (per-element timeouts) and one rule per family that drops matching sources on input.
//!
//! Invariants:
//! - `nft` is driven through its JSON interface on stdin (`nft -j -f -`): addresses are parsed into
//!   `IpAddr` and written as JSON values, never formatted into a command line.
//! - Only the `logsec` table is touched; other tables (the host's firewall, Docker's) are left alone.
//! - Creating the table is idempotent: it is re-created whenever a ban or a reconcile finds it gone
//!   (after `nft flush ruleset`).

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// The table logsec owns.
pub const TABLE: &str = "logsec";
/// Elements per `nft` transaction: 8,000 addresses in one batch exceed the netlink message limit.
const ELEMENTS_PER_TRANSACTION: usize = 2000;
/// Priority of logsec's input chain: before the usual filter chains (priority 0).
const PRIORITY: i32 = -10;

/// One address to drop until its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    /// The address.
    pub ip: IpAddr,
    /// Seconds left.
    pub timeout_s: u64,
}

/// The nftables backend.
#[derive(Debug, Clone)]
pub struct Nft {
    binary: String,
}

impl Default for Nft {
    fn default() -> Self {
        Nft { binary: "nft".into() }
    }
}

fn set_name(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "ban4" } else { "ban6" }
}

impl Nft {
    /// The commands creating the table, its sets and its rules (idempotent).
    fn table_commands() -> Vec<Value> {
        let t = TABLE;
        let rule = |proto: &str, set: &str| {
            json!({"add": {"rule": {"family": "inet", "table": t, "chain": "input", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "saddr"}}, "right": format!("@{set}")}},
                {"counter": null},
                {"drop": null}
            ]}}})
        };
        vec![
            json!({"add": {"table": {"family": "inet", "name": t}}}),
            json!({"add": {"set": {"family": "inet", "table": t, "name": "ban4", "type": "ipv4_addr", "flags": ["timeout"]}}}),
            json!({"add": {"set": {"family": "inet", "table": t, "name": "ban6", "type": "ipv6_addr", "flags": ["timeout"]}}}),
            json!({"add": {"chain": {"family": "inet", "table": t, "name": "input", "type": "filter", "hook": "input", "prio": PRIORITY, "policy": "accept"}}}),
            json!({"flush": {"chain": {"family": "inet", "table": t, "name": "input"}}}),
            rule("ip", "ban4"),
            rule("ip6", "ban6"),
        ]
    }

    /// Creates the table (if needed) and adds `elements`: one transaction per
    /// [`ELEMENTS_PER_TRANSACTION`] (the kernel refuses larger netlink batches; 10,000 bans take
    /// five transactions, about 50 ms).
    pub fn apply(&self, elements: &[Element]) -> Result<(), String> {
        let live: Vec<&Element> = elements.iter().filter(|e| e.timeout_s > 0).collect();
        let mut chunks = live.chunks(ELEMENTS_PER_TRANSACTION);
        let mut commands = Self::table_commands();
        loop {
            let chunk = chunks.next().unwrap_or_default();
            for set in ["ban4", "ban6"] {
                let elem: Vec<Value> = chunk
                    .iter()
                    .filter(|e| set_name(&e.ip) == set)
                    .map(|e| json!({"elem": {"val": e.ip.to_string(), "timeout": e.timeout_s}}))
                    .collect();
                if !elem.is_empty() {
                    commands.push(
                        json!({"add": {"element": {"family": "inet", "table": TABLE, "name": set, "elem": elem}}}),
                    );
                }
            }
            self.run(&json!({"nftables": commands}))?;
            if chunks.len() == 0 {
                return Ok(());
            }
            commands = Vec::new();
        }
    }

    /// Gives `elements`, already in the sets, their new timeouts: delete and add in one transaction
    /// (adding an element that exists keeps its old timeout). When one of them is no longer there
    /// (the set was flushed) the transaction fails as a whole and they are simply added.
    pub fn renew(&self, elements: &[Element]) -> Result<(), String> {
        let live: Vec<&Element> = elements.iter().filter(|e| e.timeout_s > 0).collect();
        for chunk in live.chunks(ELEMENTS_PER_TRANSACTION) {
            let mut commands = Vec::new();
            for set in ["ban4", "ban6"] {
                let mine: Vec<&&Element> = chunk.iter().filter(|e| set_name(&e.ip) == set).collect();
                if mine.is_empty() {
                    continue;
                }
                let vals: Vec<Value> = mine.iter().map(|e| json!(e.ip.to_string())).collect();
                let elems: Vec<Value> = mine
                    .iter()
                    .map(|e| json!({"elem": {"val": e.ip.to_string(), "timeout": e.timeout_s}}))
                    .collect();
                commands.push(
                    json!({"delete": {"element": {"family": "inet", "table": TABLE, "name": set, "elem": vals}}}),
                );
                commands
                    .push(json!({"add": {"element": {"family": "inet", "table": TABLE, "name": set, "elem": elems}}}));
            }
            if self.run(&json!({"nftables": commands})).is_err() {
                let owned: Vec<Element> = chunk.iter().map(|e| **e).collect();
                self.apply(&owned)?;
            }
        }
        Ok(())
    }

    /// The addresses in logsec's sets now (empty when the table is gone).
    pub fn list(&self) -> Result<Vec<IpAddr>, String> {
        let out = Command::new(&self.binary)
            .args(["-j", "list", "table", "inet", TABLE])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.binary))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No such file or directory") {
                return Ok(Vec::new());
            }
            return Err(format!("nft list table: {}", err.trim()));
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("nft -j output: {e}"))?;
        let mut found = Vec::new();
        for item in v["nftables"].as_array().into_iter().flatten() {
            for elem in item["set"]["elem"].as_array().into_iter().flatten() {
                // `{"elem": {"val": "1.2.3.4", "timeout": .., "expires": ..}}` or a bare string.
                let val = elem["elem"]["val"].as_str().or_else(|| elem.as_str());
                if let Some(ip) = val.and_then(|s| s.parse().ok()) {
                    found.push(ip);
                }
            }
        }
        Ok(found)
    }

    fn run(&self, doc: &Value) -> Result<(), String> {
        let mut child = Command::new(&self.binary)
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary))?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(doc.to_string().as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("waiting for nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft refused the ruleset: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}
