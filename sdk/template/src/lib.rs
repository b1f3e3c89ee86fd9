//! A minimal logsec detector: flags requests that probe for `.env` files.
use logsec_sdk::{Detector, Finding, Request};

#[derive(Default)]
pub struct EnvProbe;

impl Detector for EnvProbe {
    const NAME: &'static str = "env-probe";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "requests for .env files";

    fn detect(&mut self, request: &Request) -> Vec<Finding> {
        let path = request.uri.split(['?', '#']).next().unwrap_or("");
        if path.ends_with("/.env") || path.contains("/.env.") {
            return vec![Finding::new("sensitive_file", "env-probe", 7, path)];
        }
        Vec::new()
    }
}

logsec_sdk::export_detector!(EnvProbe);
