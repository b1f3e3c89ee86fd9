//! The `nftables` backend: logsec's own table `inet logsec` with one set per address family for
//! single addresses and one for blocks (all with per-element timeouts), and rules that drop
//! matching sources on input, and on forward when asked (Docker hosts: published container ports
//! are forwarded traffic, which an input rule never sees).
//!
//! Invariants:
//! - `nft` is driven through its JSON interface on stdin (`nft -j -f -`): addresses are parsed into
//!   `IpAddr` and written as JSON values, never formatted into a command line.
//! - Only the `logsec` table is touched; other tables (the host's firewall, Docker's) are left alone.
//! - Creating the table is idempotent: it is re-created whenever a ban or a reconcile finds it gone
//!   (after `nft flush ruleset`).

use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::backend::{Backend, Ban};
use crate::pipeline::memory::Cidr;
use crate::store::time;

/// The table logsec owns.
pub const TABLE: &str = "logsec";
/// Elements per `nft` transaction: 8,000 addresses in one batch exceed the netlink message limit.
const ELEMENTS_PER_TRANSACTION: usize = 2000;
/// Priority of logsec's chains: before the usual filter chains (priority 0) and Docker's.
const PRIORITY: i32 = -10;
/// The sets: single IPv4 addresses, single IPv6 addresses, IPv4 blocks, IPv6 blocks.
const SETS: [&str; 4] = ["ban4", "ban6", "net4", "net6"];

/// The nftables backend.
#[derive(Debug, Clone)]
pub struct Nft {
    binary: String,
    forward: bool,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            binary: "nft".into(),
            forward: false,
        }
    }
}

fn set_of(v: &Cidr) -> &'static str {
    SETS[super::backend::set_index(v)]
}

/// `v` as an nft JSON value: a string for an address, a prefix object for a block.
fn value(v: &Cidr) -> Value {
    if v.is_host() {
        json!(v.addr().to_string())
    } else {
        json!({"prefix": {"addr": v.addr().to_string(), "len": v.prefix()}})
    }
}

impl Nft {
    /// Drops banned sources on the forward hook too (containers' published ports).
    pub fn with_forward(forward: bool) -> Nft {
        Nft {
            forward,
            ..Nft::default()
        }
    }

    /// The commands creating the table, its sets, chains and rules (idempotent).
    fn table_commands(&self) -> Vec<Value> {
        let t = TABLE;
        let mut cmds = vec![json!({"add": {"table": {"family": "inet", "name": t}}})];
        for (name, kind, interval) in [
            ("ban4", "ipv4_addr", false),
            ("ban6", "ipv6_addr", false),
            ("net4", "ipv4_addr", true),
            ("net6", "ipv6_addr", true),
        ] {
            let flags = if interval {
                json!(["interval", "timeout"])
            } else {
                json!(["timeout"])
            };
            cmds.push(
                json!({"add": {"set": {"family": "inet", "table": t, "name": name, "type": kind, "flags": flags}}}),
            );
        }
        let hooks: &[&str] = if self.forward {
            &["input", "forward"]
        } else {
            &["input"]
        };
        for hook in ["input", "forward"] {
            if !hooks.contains(&hook) {
                // A forward chain left by an earlier configuration stops dropping.
                cmds.push(json!({"add": {"chain": {"family": "inet", "table": t, "name": hook, "type": "filter", "hook": hook, "prio": PRIORITY, "policy": "accept"}}}));
                cmds.push(json!({"flush": {"chain": {"family": "inet", "table": t, "name": hook}}}));
                continue;
            }
            cmds.push(json!({"add": {"chain": {"family": "inet", "table": t, "name": hook, "type": "filter", "hook": hook, "prio": PRIORITY, "policy": "accept"}}}));
            cmds.push(json!({"flush": {"chain": {"family": "inet", "table": t, "name": hook}}}));
            for (proto, set) in [("ip", "ban4"), ("ip6", "ban6"), ("ip", "net4"), ("ip6", "net6")] {
                cmds.push(json!({"add": {"rule": {"family": "inet", "table": t, "chain": hook, "expr": [
                    {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "saddr"}}, "right": format!("@{set}")}},
                    {"counter": null},
                    {"drop": null}
                ]}}}));
            }
        }
        cmds
    }

    /// `add element` commands for `bans`, one per set.
    fn add_commands(bans: &[&Ban], now: i64) -> Vec<Value> {
        let mut cmds = Vec::new();
        for set in SETS {
            let elem: Vec<Value> = bans
                .iter()
                .filter(|b| set_of(&b.value) == set)
                .map(|b| json!({"elem": {"val": value(&b.value), "timeout": b.seconds_left(now)}}))
                .collect();
            if !elem.is_empty() {
                cmds.push(json!({"add": {"element": {"family": "inet", "table": TABLE, "name": set, "elem": elem}}}));
            }
        }
        cmds
    }

    /// `delete element` commands for `values`, one per set.
    fn delete_commands(values: &[Cidr]) -> Vec<Value> {
        let mut cmds = Vec::new();
        for set in SETS {
            let elem: Vec<Value> = values.iter().filter(|v| set_of(v) == set).map(value).collect();
            if !elem.is_empty() {
                cmds.push(
                    json!({"delete": {"element": {"family": "inet", "table": TABLE, "name": set, "elem": elem}}}),
                );
            }
        }
        cmds
    }

    /// Creates the table (if needed) and adds `bans`: one transaction per
    /// [`ELEMENTS_PER_TRANSACTION`] (the kernel refuses larger netlink batches; 10,000 bans take
    /// five transactions, about 50 ms).
    fn apply(&self, bans: &[Ban]) -> Result<(), String> {
        let now = time::now_ms();
        let live: Vec<&Ban> = bans.iter().filter(|b| b.seconds_left(now) > 0).collect();
        let mut chunks = live.chunks(ELEMENTS_PER_TRANSACTION);
        let mut commands = self.table_commands();
        loop {
            commands.extend(Self::add_commands(chunks.next().unwrap_or_default(), now));
            self.run(&json!({"nftables": commands}))?;
            if chunks.len() == 0 {
                return Ok(());
            }
            commands = Vec::new();
        }
    }

    /// The addresses and blocks in logsec's sets now (empty when the table is gone).
    pub fn list(&self) -> Result<HashSet<Cidr>, String> {
        let out = Command::new(&self.binary)
            .args(["-j", "list", "table", "inet", TABLE])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.binary))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No such file or directory") {
                return Ok(HashSet::new());
            }
            return Err(format!("nft list table: {}", err.trim()));
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("nft -j output: {e}"))?;
        let mut found = HashSet::new();
        for item in v["nftables"].as_array().into_iter().flatten() {
            for elem in item["set"]["elem"].as_array().into_iter().flatten() {
                // `{"elem": {"val": .., "timeout": .., "expires": ..}}` or a bare value; a value is
                // "1.2.3.4" or {"prefix": {"addr": "1.2.3.0", "len": 24}}.
                let val = if elem["elem"].is_object() {
                    &elem["elem"]["val"]
                } else {
                    elem
                };
                let parsed = match val {
                    Value::String(s) => s.parse::<IpAddr>().ok().map(Cidr::host),
                    _ => {
                        let p = &val["prefix"];
                        let addr = p["addr"].as_str().and_then(|a| a.parse::<IpAddr>().ok());
                        let len = p["len"].as_u64().and_then(|l| u8::try_from(l).ok());
                        addr.zip(len).map(|(a, l)| Cidr::new(a, l))
                    }
                };
                found.extend(parsed);
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

impl Backend for Nft {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn prepare(&mut self) -> Result<(), String> {
        self.apply(&[])
    }

    fn add(&mut self, bans: &[Ban]) -> Result<(), String> {
        self.apply(bans)
    }

    /// An element already in a set keeps its old timeout when added again, so these are deleted
    /// and added in one transaction; when one of them is gone (the set was flushed) that
    /// transaction fails as a whole and they are simply added.
    fn renew(&mut self, bans: &[Ban]) -> Result<(), String> {
        let now = time::now_ms();
        let live: Vec<&Ban> = bans.iter().filter(|b| b.seconds_left(now) > 0).collect();
        for chunk in live.chunks(ELEMENTS_PER_TRANSACTION) {
            let values: Vec<Cidr> = chunk.iter().map(|b| b.value).collect();
            let mut commands = Self::delete_commands(&values);
            commands.extend(Self::add_commands(chunk, now));
            if self.run(&json!({"nftables": commands})).is_err() {
                let owned: Vec<Ban> = chunk.iter().map(|b| **b).collect();
                self.apply(&owned)?;
            }
        }
        Ok(())
    }

    fn remove(&mut self, values: &[Cidr]) -> Result<(), String> {
        let present = self.list()?;
        let here: Vec<Cidr> = values.iter().filter(|v| present.contains(v)).copied().collect();
        for chunk in here.chunks(ELEMENTS_PER_TRANSACTION) {
            self.run(&json!({"nftables": Self::delete_commands(chunk)}))?;
        }
        Ok(())
    }

    fn present(&mut self) -> Result<Option<HashSet<Cidr>>, String> {
        self.list().map(Some)
    }

    fn expires_by_itself(&self) -> bool {
        true
    }
}
