//! `threshold`: the built-in response policy.
//!
//! Blocks when the decision is malicious and its confidence reaches `block_at` (default 8), monitors
//! anything else that reached the policy, and never acts on a request judged benign. Settings (JSON):
//! `{"block_at": 8, "ban_ttl_seconds": 3600, "monitor_ttl_seconds": 3600}`.

use logsec_sdk::{Action, ActionKind, Assessment, ResponsePolicy};
use serde::Deserialize;

/// The policy's settings; every field optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Lowest confidence (1..=10) at which a malicious request is blocked.
    pub block_at: u8,
    /// Ban length in seconds; 0 lets the host use its configured `ban_ttl`.
    pub ban_ttl_seconds: u64,
    /// How long a monitored address is watched; 0 lets the host decide.
    pub monitor_ttl_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            block_at: 8,
            ban_ttl_seconds: 0,
            monitor_ttl_seconds: 0,
        }
    }
}

/// The policy: its settings, nothing else.
#[derive(Default)]
pub struct Threshold {
    settings: Settings,
}

impl Threshold {
    /// The action for one assessment under the current settings.
    pub fn action_for(&self, item: &Assessment) -> Action {
        let s = &self.settings;
        if !item.malicious {
            return Action::new(ActionKind::None, 0, format!("judged benign by {}", item.decided_by));
        }
        if item.confidence >= s.block_at {
            Action::new(
                ActionKind::Block,
                s.ban_ttl_seconds,
                format!(
                    "confidence {} >= block_at {} ({})",
                    item.confidence, s.block_at, item.decided_by
                ),
            )
        } else {
            Action::new(
                ActionKind::Monitor,
                s.monitor_ttl_seconds,
                format!(
                    "confidence {} < block_at {} ({})",
                    item.confidence, s.block_at, item.decided_by
                ),
            )
        }
    }
}

impl ResponsePolicy for Threshold {
    const NAME: &'static str = "threshold";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "block at a confidence threshold, monitor below it";

    fn configure(&mut self, config: &str) -> Result<(), String> {
        let settings: Settings = if config.trim().is_empty() {
            Settings::default()
        } else {
            serde_json::from_str(config).map_err(|e| format!("threshold settings: {e}"))?
        };
        if !(1..=10).contains(&settings.block_at) {
            return Err(format!(
                "threshold settings: block_at must be 1..=10, got {}",
                settings.block_at
            ));
        }
        self.settings = settings;
        Ok(())
    }

    fn decide(&mut self, item: &Assessment) -> Action {
        self.action_for(item)
    }
}

logsec_sdk::export_policy!(Threshold);

#[cfg(test)]
mod tests {
    use super::*;
    use logsec_sdk::Request;

    fn item(malicious: bool, confidence: u8) -> Assessment {
        Assessment {
            request: Request::empty(),
            findings: vec![],
            score: confidence,
            confidence,
            malicious,
            decided_by: "rules".into(),
        }
    }

    #[test]
    fn blocks_at_threshold_and_monitors_below() {
        let t = Threshold::default();
        assert_eq!(t.action_for(&item(true, 8)).kind, ActionKind::Block);
        assert_eq!(t.action_for(&item(true, 7)).kind, ActionKind::Monitor);
        assert_eq!(t.action_for(&item(false, 10)).kind, ActionKind::None);
    }

    #[test]
    fn configure_rejects_bad_settings_and_keeps_old_ones() {
        let mut t = Threshold::default();
        assert!(t.configure(r#"{"block_at": 6, "ban_ttl_seconds": 60}"#).is_ok());
        assert_eq!(t.action_for(&item(true, 6)).ttl_seconds, 60);
        assert!(t.configure(r#"{"block_at": 0}"#).is_err());
        assert!(t.configure(r#"{"blok_at": 5}"#).unwrap_err().contains("blok_at"));
        assert_eq!(t.action_for(&item(true, 6)).kind, ActionKind::Block);
    }
}
