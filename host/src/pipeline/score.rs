//! Combining findings into one score.
//!
//! The combined score is the highest finding's score, plus one when findings of two or more
//! distinct rules each reach [`CORROBORATING_SCORE`] (independent rules agreeing is evidence), at
//! most 10. It is deliberately simple so an operator can predict it from the rules file.

use crate::runtime::bindings::Finding;

/// Score from which a second rule's finding corroborates the first.
pub const CORROBORATING_SCORE: u8 = 5;

/// The combined score of `findings` (0 when there are none).
pub fn combined_score(findings: &[Finding]) -> u8 {
    let max = findings.iter().map(|f| f.score).max().unwrap_or(0);
    let mut strong = findings
        .iter()
        .filter(|f| f.score >= CORROBORATING_SCORE)
        .map(|f| f.rule_id.as_str());
    let corroborated = match strong.next() {
        Some(first) => strong.any(|id| id != first),
        None => false,
    };
    (max + u8::from(corroborated)).min(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(rule: &str, score: u8) -> Finding {
        Finding {
            category: "sqli".into(),
            rule_id: rule.into(),
            score,
            evidence: String::new(),
        }
    }

    #[test]
    fn max_plus_corroboration() {
        assert_eq!(combined_score(&[]), 0);
        assert_eq!(combined_score(&[f("a", 7)]), 7);
        assert_eq!(combined_score(&[f("a", 7), f("a", 6)]), 7);
        assert_eq!(combined_score(&[f("a", 7), f("b", 5)]), 8);
        assert_eq!(combined_score(&[f("a", 7), f("b", 4)]), 7);
        assert_eq!(combined_score(&[f("a", 10), f("b", 9)]), 10);
    }
}
