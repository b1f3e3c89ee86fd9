//! The compiled rule book: each field's rules grouped into regex sets, and the matching loop over
//! a decoded request.
//!
//! Invariants:
//! - A field's rules are split into groups: ungated rules (see [`crate::gate`]) in groups of at
//!   most `UNGATED_PER_SET`, gated ones in groups of at most `RULES_PER_SET`, rules of one view
//!   kept together. Each group has one set over all its rules and, only when it mixes views, one
//!   set per view. A set is compiled the first time a text reaches it (most are never needed by
//!   benign traffic); if its rules do not compile together, they are matched one by one with
//!   their own regexes, which finds the same hits.
//! - A group is scanned only when its gate is open for the text; a benign URL with no rare byte
//!   costs one `is_match` per group of ungated rules. The per-rule regex runs only after its set
//!   matched, to pick the evidence.
//! - At most one finding per rule per request.

use logsec_sdk::Finding;
use regex_automata::util::syntax;
use std::sync::OnceLock;

use regex_automata::{Input, MatchKind, PatternSet, meta};

use crate::gate;
use crate::normalize::View;
use crate::rules::{self, Field, Rule, RuleError};
use crate::subject::{Needs, Subject};

/// Most memory one regex set's lazy DFA may use for its cache of states. Measured on the dev
/// attacks, 2 MiB made novel text half again as slow; the cache only grows as far as traffic needs.
const DFA_CACHE_BYTES: usize = 4 << 20;

/// Most gated rules in one regex set. One set over every rule of a field is fastest on text whose
/// DFA states are cached, but novel (attack) text makes the lazy DFA build states over the whole
/// combined automaton: measured on the dev attacks, groups of about sixteen rules scan novel text
/// several times faster at a small cost on benign text.
const RULES_PER_SET: usize = 16;

/// Most ungated rules in one set. Ungated rules run on every text, so their sets should be few;
/// their states are mostly warm because benign text is repetitive.
const UNGATED_PER_SET: usize = 64;

/// Context kept on each side of a short match in the evidence, in bytes.
const EVIDENCE_CONTEXT: usize = 24;

/// A regex set, compiled on first use, and for each of its patterns the index of the rule it came
/// from.
#[derive(Debug)]
struct IndexedSet {
    rules: Vec<usize>,
    /// `None` inside once the rules failed to compile together (the combined NFA is over its
    /// limit); the rules are then matched one by one.
    set: OnceLock<Option<meta::Regex>>,
}

impl IndexedSet {
    fn new(members: Vec<usize>) -> Self {
        IndexedSet {
            rules: members,
            set: OnceLock::new(),
        }
    }

    /// The compiled set, built on first use; `None` when the rules do not compile together.
    fn compiled(&self, rules: &[Rule]) -> Option<&meta::Regex> {
        self.set.get_or_init(|| build_set(rules, &self.rules)).as_ref()
    }
}

/// Compiles the rules `members` into one set reporting every matching pattern.
fn build_set(rules: &[Rule], members: &[usize]) -> Option<meta::Regex> {
    let syntax = syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(true)
        .multi_line(true);
    let config = meta::Config::new()
        .match_kind(MatchKind::All)
        .utf8_empty(false)
        .auto_prefilter(false)
        .nfa_size_limit(Some(64 << 20))
        .hybrid_cache_capacity(DFA_CACHE_BYTES);
    meta::Builder::new()
        .syntax(syntax)
        .configure(config)
        .build_many(&members.iter().map(|&i| rules[i].source.as_str()).collect::<Vec<_>>())
        .ok()
}

/// The sets of one group of a field's rules.
#[derive(Debug)]
struct GroupSets {
    /// Gate bits of the group (see [`crate::gate`]): text without any of them cannot match. `None`
    /// when a member is ungated.
    gate: Option<u64>,
    /// Every rule of the group; used on the plain text when no item of the field has a distinct
    /// view, and on the group's view when all its rules share one.
    all: IndexedSet,
    /// The view shared by every rule of the group, if there is one.
    single_view: Option<View>,
    /// For groups mixing views: the rules of each view.
    by_view: [Option<IndexedSet>; View::ALL.len()],
}

impl GroupSets {
    fn new(rules: &[Rule], members: &[usize]) -> Self {
        let gate = members.iter().try_fold(0, |m, &i| Some(m | rules[i].gate?));
        let first = rules[members[0]].view;
        let single_view = members.iter().all(|&i| rules[i].view == first).then_some(first);
        let mut by_view: [Option<IndexedSet>; View::ALL.len()] = Default::default();
        if single_view.is_none() {
            for view in View::ALL {
                let of_view: Vec<usize> = members.iter().copied().filter(|&i| rules[i].view == view).collect();
                if !of_view.is_empty() {
                    by_view[view.index()] = Some(IndexedSet::new(of_view));
                }
            }
        }
        GroupSets {
            gate,
            all: IndexedSet::new(members.to_vec()),
            single_view,
            by_view,
        }
    }
}

/// A finding before it is turned into the WIT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Index of the rule in [`RuleBook::rules`].
    pub rule: usize,
    /// The field it matched.
    pub field: Field,
    /// The matched normalised text with a little context.
    pub evidence: String,
}

/// Every rule of a rule file, compiled for matching.
#[derive(Debug, Default)]
pub struct RuleBook {
    rules: Vec<Rule>,
    /// For each field, its rules in groups (ungated groups first).
    fields: [Vec<GroupSets>; Field::ALL.len()],
    needs: Needs,
}

impl RuleBook {
    /// Parses and compiles a rule file (see `rules/README.md`).
    ///
    /// Only the rules are compiled here; each group's regex sets are compiled the first time a text
    /// reaches them, so a detector pays only for the sets its traffic needs.
    pub fn from_json(json: &str) -> Result<Self, RuleError> {
        let rules = rules::parse(json)?;
        let mut needs = Needs::default();
        let mut fields: [Vec<GroupSets>; Field::ALL.len()] = Default::default();
        for field in Field::ALL {
            let of_field: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].fields.contains(&field)).collect();
            if of_field.is_empty() {
                continue;
            }
            needs.fields[field.index()] = true;
            for &i in &of_field {
                needs.views[field.index()][rules[i].view.index()] = true;
            }
            // Ungated rules first, gated ones after: benign text usually only needs the former.
            // Within each, rules of one view are kept together so most groups need one set.
            let (mut ungated, mut gated): (Vec<usize>, Vec<usize>) =
                of_field.iter().partition(|&&i| rules[i].gate.is_none());
            ungated.sort_by_key(|&i| rules[i].view.index());
            gated.sort_by_key(|&i| rules[i].view.index());
            let groups = &mut fields[field.index()];
            for members in ungated.chunks(UNGATED_PER_SET).chain(gated.chunks(RULES_PER_SET)) {
                groups.push(GroupSets::new(&rules, members));
            }
        }
        Ok(RuleBook { rules, fields, needs })
    }

    /// The compiled rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The fields and views the rules need decoded.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    /// Prepares `seen` (one flag per rule) for a new request.
    pub fn begin(&self, seen: &mut Vec<bool>) {
        seen.clear();
        seen.resize(self.rules.len(), false);
    }

    /// Matches the rules of `field` against its decoded `subject`, skipping rules already in
    /// `seen` and marking the ones that hit.
    pub fn scan_field(&self, field: Field, subject: &Subject, seen: &mut [bool], hits: &mut Vec<Hit>) {
        if !self.needs.fields[field.index()] || subject.text().is_empty() {
            return;
        }
        let distinct_views = subject.has_views();
        let mut gates = [None; View::ALL.len()];
        let mut run = |view: View, set: &IndexedSet, gate: Option<u64>, seen: &mut [bool], hits: &mut Vec<Hit>| {
            let hay = subject.view(view).as_bytes();
            let open = match gate {
                None => true,
                Some(g) => g & *gates[view.index()].get_or_insert_with(|| gate::text_gate(hay)) != 0,
            };
            if open {
                self.scan_set(set, field, subject, hay, seen, hits);
            }
        };
        for group in &self.fields[field.index()] {
            match (distinct_views, group.single_view) {
                (false, _) => run(View::Plain, &group.all, group.gate, seen, hits),
                (true, Some(view)) => run(view, &group.all, group.gate, seen, hits),
                (true, None) => {
                    for view in View::ALL {
                        if let Some(set) = &group.by_view[view.index()] {
                            run(view, set, group.gate, seen, hits);
                        }
                    }
                }
            }
        }
    }

    fn scan_set(
        &self,
        set: &IndexedSet,
        field: Field,
        subject: &Subject,
        hay: &[u8],
        seen: &mut [bool],
        hits: &mut Vec<Hit>,
    ) {
        let record = |idx: usize, seen: &mut [bool], hits: &mut Vec<Hit>| {
            if seen[idx] {
                return;
            }
            let rule = &self.rules[idx];
            if let Some(evidence) = evidence(rule, subject.view(rule.view)) {
                seen[idx] = true;
                hits.push(Hit {
                    rule: idx,
                    field,
                    evidence,
                });
            }
        };
        let Some(compiled) = set.compiled(&self.rules) else {
            for &idx in &set.rules {
                record(idx, seen, hits);
            }
            return;
        };
        let input = Input::new(hay);
        if !compiled.is_match(input.clone()) {
            return;
        }
        let mut matched = PatternSet::new(compiled.pattern_len());
        compiled.which_overlapping_matches(&input, &mut matched);
        for k in matched.iter() {
            record(set.rules[k.as_usize()], seen, hits);
        }
    }

    /// Findings for `hits`, highest score first.
    pub fn findings(&self, hits: &[Hit]) -> Vec<Finding> {
        let mut out: Vec<Finding> = hits
            .iter()
            .map(|h| {
                let r = &self.rules[h.rule];
                Finding::new(
                    &r.category,
                    &r.id,
                    r.score,
                    &format!("{}: {}", h.field.name(), h.evidence),
                )
            })
            .collect();
        out.sort_by_key(|f| std::cmp::Reverse(f.score));
        out
    }
}

/// The first match of `rule` in `text` that no `unless` pattern cancels, with some context; `None`
/// when every match is cancelled.
fn evidence(rule: &Rule, text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    while let Some(m) = rule.regex().find_at(bytes, pos) {
        let line_start = memchr::memrchr(b'\n', &bytes[..m.start()]).map_or(0, |i| i + 1);
        let line_end = memchr::memchr(b'\n', &bytes[m.end()..]).map_or(bytes.len(), |i| m.end() + i);
        if rule.unless.iter().any(|u| u.is_match(&bytes[line_start..line_end])) {
            // The whole line is cancelled; each line is tested at most once.
            pos = line_end + 1;
            if pos > bytes.len() {
                return None;
            }
            continue;
        }
        let short = m.len() < 2 * EVIDENCE_CONTEXT;
        let mut start = if short {
            m.start().saturating_sub(EVIDENCE_CONTEXT).max(line_start)
        } else {
            m.start()
        };
        let mut end = if short {
            (m.end() + EVIDENCE_CONTEXT).min(line_end)
        } else {
            m.end()
        };
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        while !text.is_char_boundary(end) {
            end += 1;
        }
        return Some(text[start..end].replace('\r', " "));
    }
    None
}
