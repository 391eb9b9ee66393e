//! The scores of an evaluation: per field, over all fields, per example; the misses; and the
//! comparison with an earlier report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::score::{Leaf, Verdict};

/// Counts and scores of one field (or of all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldScore {
    /// Matches.
    pub true_positives: u64,
    /// Extracted but not expected, or different.
    pub false_positives: u64,
    /// Expected but not extracted, or different.
    pub false_negatives: u64,
    /// `tp / (tp + fp)` (1 when nothing was extracted).
    pub precision: f64,
    /// `tp / (tp + fn)` (1 when nothing was expected).
    pub recall: f64,
    /// Their harmonic mean.
    pub f1: f64,
}

impl FieldScore {
    fn add(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Match => self.true_positives += 1,
            Verdict::Missing => self.false_negatives += 1,
            Verdict::Extra => self.false_positives += 1,
            Verdict::Mismatch => {
                self.false_positives += 1;
                self.false_negatives += 1;
            }
        }
    }

    fn finish(&mut self) {
        let ratio = |a: u64, b: u64| {
            if a + b == 0 {
                1.0
            } else {
                a as f64 / (a + b) as f64
            }
        };
        self.precision = ratio(self.true_positives, self.false_positives);
        self.recall = ratio(self.true_positives, self.false_negatives);
        self.f1 = if self.precision + self.recall == 0.0 {
            0.0
        } else {
            2.0 * self.precision * self.recall / (self.precision + self.recall)
        };
    }
}

/// One field that did not match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Miss {
    /// The example's id.
    pub id: String,
    /// The field's path.
    pub field: String,
    /// `missing`, `extra` or `mismatch`.
    pub kind: String,
    /// What was expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// What was extracted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub got: Option<Value>,
}

/// An example whose extraction failed (all its fields count as missing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The example's id.
    pub id: String,
    /// The failure's kind (`retries_exhausted`, ...).
    pub kind: String,
    /// What failed.
    pub message: String,
}

/// The report of one evaluation (`--report FILE` writes it as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The extractor.
    pub extractor: String,
    /// The model asked.
    pub model: String,
    /// Examples scored.
    pub examples: usize,
    /// Examples with every field right.
    pub exact: usize,
    /// `exact / examples`.
    pub exact_match: f64,
    /// Scores per field path.
    pub fields: BTreeMap<String, FieldScore>,
    /// Over every field.
    pub all: FieldScore,
    /// Every field that did not match.
    pub misses: Vec<Miss>,
    /// Examples whose extraction failed.
    pub failures: Vec<Failure>,
    /// Of the values answered that grounding checks (policy `verbatim` or `normalized`), in
    /// every answer that fitted the schema (failed ones included), those found in the input.
    #[serde(default)]
    pub grounded: Grounded,
}

/// The share of checked values found in the input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Grounded {
    /// Values checked.
    pub checked: usize,
    /// Of those, found in the input.
    pub grounded: usize,
    /// `grounded / checked` (1 when nothing was checked).
    pub share: f64,
}

/// One example's outcome, to be scored.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The example's id.
    pub id: String,
    /// Its compared fields.
    pub leaves: Vec<Leaf>,
    /// Why its extraction failed, if it did.
    pub failure: Option<Failure>,
    /// Of its answer's values that grounding checks, those found in the input.
    pub grounded: usize,
    /// Its answer's values that grounding checks.
    pub checked: usize,
}

impl Report {
    /// The report of `outcomes`.
    pub fn new(extractor: &str, model: &str, outcomes: Vec<Scored>) -> Self {
        let mut fields: BTreeMap<String, FieldScore> = BTreeMap::new();
        let mut all = FieldScore::default();
        let mut misses = Vec::new();
        let mut failures = Vec::new();
        let mut exact = 0;
        let mut grounded = Grounded::default();
        let examples = outcomes.len();
        for o in outcomes {
            grounded.checked += o.checked;
            grounded.grounded += o.grounded;
            let mut right = o.failure.is_none();
            for l in o.leaves {
                fields.entry(l.field.clone()).or_default().add(l.verdict);
                all.add(l.verdict);
                if l.verdict != Verdict::Match {
                    right = false;
                    misses.push(Miss {
                        id: o.id.clone(),
                        field: l.field,
                        kind: match l.verdict {
                            Verdict::Missing => "missing",
                            Verdict::Extra => "extra",
                            _ => "mismatch",
                        }
                        .into(),
                        expected: l.expected,
                        got: l.got,
                    });
                }
            }
            if right {
                exact += 1;
            }
            failures.extend(o.failure);
        }
        for s in fields.values_mut() {
            s.finish();
        }
        all.finish();
        Self {
            extractor: extractor.to_owned(),
            model: model.to_owned(),
            examples,
            exact,
            exact_match: if examples == 0 {
                0.0
            } else {
                exact as f64 / examples as f64
            },
            fields,
            all,
            misses,
            failures,
            grounded: Grounded {
                share: if grounded.checked == 0 {
                    1.0
                } else {
                    grounded.grounded as f64 / grounded.checked as f64
                },
                ..grounded
            },
        }
    }

    /// The report for people: the table (with deltas against `baseline`), then the misses.
    pub fn table(&self, baseline: Option<&Report>, max_misses: usize) -> String {
        let mut out = String::new();
        let delta = |now: f64, then: Option<f64>| match then {
            Some(t) => format!(" {:+.3}", now - t),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{} on {}: {} examples, exact match {}/{} ({:.1}%){}",
            self.extractor,
            self.model,
            self.examples,
            self.exact,
            self.examples,
            self.exact_match * 100.0,
            delta(self.exact_match, baseline.map(|b| b.exact_match))
        );
        let width = self
            .fields
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            out,
            "{:width$}  {:>9}  {:>6}  {:>6}  {:>7}{}",
            "field",
            "precision",
            "recall",
            "f1",
            "support",
            if baseline.is_some() { "  Δf1" } else { "" }
        );
        let row = |out: &mut String, name: &str, s: &FieldScore, then: Option<&FieldScore>| {
            let change = match (baseline, then) {
                (None, _) => String::new(),
                (Some(_), Some(t)) => format!("  {:+.3}", s.f1 - t.f1),
                (Some(_), None) => "  new".into(),
            };
            let _ = writeln!(
                out,
                "{name:width$}  {:>9.3}  {:>6.3}  {:>6.3}  {:>7}{change}",
                s.precision,
                s.recall,
                s.f1,
                s.true_positives + s.false_negatives,
            );
        };
        for (name, s) in &self.fields {
            row(&mut out, name, s, baseline.and_then(|b| b.fields.get(name)));
        }
        row(&mut out, "all", &self.all, baseline.map(|b| &b.all));
        let _ = writeln!(
            out,
            "grounded: {}/{} values found in the text ({:.1}%){}",
            self.grounded.grounded,
            self.grounded.checked,
            self.grounded.share * 100.0,
            delta(self.grounded.share, baseline.map(|b| b.grounded.share))
        );
        let unexpected = self.misses.iter().filter(|m| m.kind == "extra").count();
        let _ = writeln!(
            out,
            "unexpected: {unexpected} values extracted where the gold has none"
        );
        if !self.failures.is_empty() {
            let _ = writeln!(out, "failed extractions: {}", self.failures.len());
            for f in self.failures.iter().take(max_misses) {
                let _ = writeln!(out, "  {}: {} ({})", f.id, f.message, f.kind);
            }
        }
        if !self.misses.is_empty() {
            let _ = writeln!(out, "misses: {}", self.misses.len());
            for m in self.misses.iter().take(max_misses) {
                let show =
                    |v: &Option<Value>| v.as_ref().map_or("nothing".into(), Value::to_string);
                let _ = writeln!(
                    out,
                    "  {} {} ({}): expected {}, got {}",
                    m.id,
                    m.field,
                    m.kind,
                    show(&m.expected),
                    show(&m.got)
                );
            }
            if self.misses.len() > max_misses {
                let _ = writeln!(out, "  ... and {} more", self.misses.len() - max_misses);
            }
        }
        out
    }
}
