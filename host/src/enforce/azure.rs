//! The `azure` backend: deny rules in a Network Security Group, through `azure_mgmt_network` 0.21
//! with a credential from `azure_identity` 0.21 (the standard `AZURE_*` environment variables:
//! `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, or a managed identity;
//! `AZURE_CREDENTIAL_KIND` picks one; `AZURE_AUTHORITY_HOST` moves the token endpoint).
//!
//! Invariants:
//! - Rules are named `logsec-deny-NNN` at priorities `priority_base + NNN`; rules with other names
//!   are never touched.
//! - Many addresses share one rule (`sourceAddressPrefixes`, up to `prefixes_per_rule`), which
//!   keeps the NSG under Azure's limits (1,000 rules; 4,000 addresses per rule). An address stays
//!   in the rule it was put in, so a ban or a lift rewrites one rule, not all of them; restoring
//!   10,000 bans is one PUT per rule.
//! - Only rules whose content changed are written; a rule left empty is deleted.
//! - Azure does not end rules by itself: the enforcer removes ended bans (delete on expiry).
//! - Addresses reach Azure as JSON values of parsed addresses (`Cidr`), never as text from a log.

use std::collections::{BTreeSet, HashMap, HashSet};

use azure_mgmt_network::package_2024_03 as network;
use network::models::{
    SecurityRule, SecurityRuleAccess, SecurityRuleDirection, SecurityRulePropertiesFormat,
    security_rule_properties_format::Protocol,
};

use super::backend::{Backend, Ban};
use crate::config::AzureConfig;
use crate::pipeline::memory::Cidr;

/// Every page of a rules listing.
async fn list_all(list: network::security_rules::list::RequestBuilder) -> azure_core::Result<Vec<SecurityRule>> {
    use futures::StreamExt;
    let mut pages = list.into_stream();
    let mut rules = Vec::new();
    while let Some(page) = pages.next().await {
        rules.extend(page?.value);
    }
    Ok(rules)
}

/// Rule name prefix.
pub const RULE_PREFIX: &str = "logsec-deny-";

/// The Azure NSG backend.
pub struct Azure {
    client: network::Client,
    config: AzureConfig,
    runtime: tokio::runtime::Runtime,
    /// Addresses of each rule, by rule index.
    slots: Vec<BTreeSet<Cidr>>,
    /// The rule index of each address.
    slot_of: HashMap<Cidr, usize>,
    /// Rules to write.
    dirty: BTreeSet<usize>,
    /// Rules known to exist in Azure.
    written: BTreeSet<usize>,
    /// Priorities of the NSG's other rules (inbound), which logsec's rules skip.
    foreign: BTreeSet<i32>,
}

impl std::fmt::Debug for Azure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Azure")
            .field("nsg", &self.config.nsg)
            .field("rules", &self.slots.len())
            .finish()
    }
}

impl Azure {
    /// The backend for `[response.azure]`, with credentials from the environment.
    pub fn from_config(config: &AzureConfig) -> anyhow::Result<Azure> {
        let credential = azure_identity::create_credential()
            .map_err(|e| anyhow::anyhow!("Azure credentials (AZURE_* environment variables): {e}"))?;
        let endpoint = azure_core::Url::parse(&config.endpoint)
            .map_err(|e| anyhow::anyhow!("response.azure.endpoint {:?}: {e}", config.endpoint))?;
        let client = network::Client::builder(credential)
            .endpoint(endpoint)
            // The enforcer retries at its next reconcile; a retrying client would stall it.
            .retry(azure_core::RetryOptions::none())
            .build()
            .map_err(|e| anyhow::anyhow!("Azure client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("azure")
            .enable_all()
            .build()?;
        Ok(Azure {
            client,
            config: config.clone(),
            runtime,
            slots: Vec::new(),
            slot_of: HashMap::new(),
            dirty: BTreeSet::new(),
            written: BTreeSet::new(),
            foreign: BTreeSet::new(),
        })
    }

    fn rule_name(i: usize) -> String {
        format!("{RULE_PREFIX}{i:03}")
    }

    /// Runs `fut` on the backend's runtime from a thread of its own (the enforcer's thread is
    /// inside a runtime already, where blocking on another one is not allowed).
    fn block_on<T: Send>(&self, fut: impl std::future::Future<Output = T> + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| self.runtime.block_on(fut))
                .join()
                .expect("the Azure call panicked")
        })
    }

    /// The priority of rule `i`: the `i`-th priority from `priority_base` that no other inbound
    /// rule of the NSG uses.
    fn priority(&self, i: usize) -> i32 {
        (i32::from(self.config.priority_base)..=4096)
            .filter(|p| !self.foreign.contains(p))
            .nth(i)
            .unwrap_or(4096)
    }

    fn rule(&self, i: usize, prefixes: &BTreeSet<Cidr>) -> SecurityRule {
        let priority = self.priority(i);
        let mut p = SecurityRulePropertiesFormat::new(
            // `*` (any protocol); the generated enum names it U2a.
            Protocol::U2a,
            SecurityRuleAccess::Deny,
            priority,
            SecurityRuleDirection::Inbound,
        );
        p.description = Some("logsec: addresses banned for attacks (managed by logsec; edits are overwritten)".into());
        p.source_address_prefixes = prefixes.iter().map(ToString::to_string).collect();
        p.source_port_range = Some("*".into());
        p.destination_port_range = Some("*".into());
        p.destination_address_prefix = Some("*".into());
        SecurityRule {
            properties: Some(p),
            ..SecurityRule::new()
        }
    }

    /// Writes the dirty rules (PUT, or DELETE for an empty one); stops at the first error, leaving
    /// the rest dirty for the next try.
    fn push(&mut self) -> Result<(), String> {
        let c = &self.config;
        let rules = self.client.security_rules_client();
        while let Some(&i) = self.dirty.iter().next() {
            let name = Self::rule_name(i);
            let empty = self.slots.get(i).is_none_or(BTreeSet::is_empty);
            let result = if empty {
                if !self.written.contains(&i) {
                    self.dirty.remove(&i);
                    continue;
                }
                let call = rules.delete(&c.resource_group, &c.nsg, &name, &c.subscription_id);
                self.block_on(async move { call.send().await.map(drop) })
            } else {
                let body = self.rule(i, &self.slots[i]);
                let call = rules.create_or_update(&c.resource_group, &c.nsg, &name, body, &c.subscription_id);
                self.block_on(async move { call.await.map(drop) })
            };
            match result {
                Ok(()) => {
                    self.dirty.remove(&i);
                    if empty {
                        self.written.remove(&i);
                    } else {
                        self.written.insert(i);
                    }
                }
                Err(e) => return Err(format!("Azure NSG {} rule {name}: {e}", c.nsg)),
            }
        }
        Ok(())
    }

    /// Every rule of the NSG.
    fn list_rules(&self) -> Result<Vec<SecurityRule>, String> {
        let c = &self.config;
        let list = self
            .client
            .security_rules_client()
            .list(&c.resource_group, &c.nsg, &c.subscription_id);
        self.block_on(list_all(list))
            .map_err(|e| format!("Azure NSG {}: {e}", c.nsg))
    }

    fn capacity(&self) -> usize {
        self.config.max_rules * self.config.prefixes_per_rule
    }
}

impl Backend for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }

    /// Reads the NSG's logsec rules, adopting what they hold (after a restart the store restores
    /// the same bans into the same rules); checks the credentials and the NSG.
    fn prepare(&mut self) -> Result<(), String> {
        let found = self.list_rules()?;
        self.written.clear();
        self.foreign.clear();
        for rule in found {
            let ours = rule.name.as_deref().is_some_and(|n| n.starts_with(RULE_PREFIX));
            if !ours {
                if let Some(p) = &rule.properties
                    && p.direction == SecurityRuleDirection::Inbound
                {
                    self.foreign.insert(p.priority);
                }
                continue;
            }
            let Some(i) = rule
                .name
                .as_deref()
                .and_then(|n| n.strip_prefix(RULE_PREFIX))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            // Rewritten (or deleted when nothing is restored into it) at the first push.
            self.written.insert(i);
            self.dirty.insert(i);
        }
        Ok(())
    }

    fn add(&mut self, bans: &[Ban]) -> Result<(), String> {
        let cap = self.config.prefixes_per_rule;
        let mut over = 0;
        for b in bans {
            if let Some(&i) = self.slot_of.get(&b.value) {
                self.dirty.insert(i);
                continue;
            }
            if self.slot_of.len() >= self.capacity() {
                over += 1;
                continue;
            }
            let i = match self.slots.iter().position(|s| s.len() < cap) {
                Some(i) => i,
                None => {
                    self.slots.push(BTreeSet::new());
                    self.slots.len() - 1
                }
            };
            self.slots[i].insert(b.value);
            self.slot_of.insert(b.value, i);
            self.dirty.insert(i);
        }
        self.push()?;
        if over > 0 {
            return Err(format!(
                "the NSG rules are full ({} addresses in {} rules): {over} bans not applied; raise response.azure.max_rules or prefixes_per_rule",
                self.capacity(),
                self.config.max_rules
            ));
        }
        Ok(())
    }

    fn remove(&mut self, values: &[Cidr]) -> Result<(), String> {
        for v in values {
            if let Some(i) = self.slot_of.remove(v) {
                self.slots[i].remove(v);
                self.dirty.insert(i);
            }
        }
        self.push()
    }

    fn present(&mut self) -> Result<Option<HashSet<Cidr>>, String> {
        let found = self.list_rules()?;
        let mut present = HashSet::new();
        for rule in found {
            if !rule.name.as_deref().is_some_and(|n| n.starts_with(RULE_PREFIX)) {
                continue;
            }
            for p in rule
                .properties
                .iter()
                .flat_map(|p| p.source_address_prefixes.iter().chain(p.source_address_prefix.iter()))
            {
                present.extend(p.parse::<Cidr>().ok());
            }
        }
        Ok(Some(present))
    }

    fn expires_by_itself(&self) -> bool {
        false
    }

    /// A minute: each reconcile is a Resource Manager read, and the subscription's reads are
    /// rate limited.
    fn reconcile_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }
}
