//! Comparing an expected value with an extracted one, field by field.
//!
//! Both values are walked together down to their leaves; each leaf is a field path (`name`,
//! `address.city`, `people[].age`: list elements share their list's path) with a verdict:
//! a match, missing (expected, not extracted), extra (extracted, not expected) or a mismatch.
//! `null` counts as absent. Lists are multisets: each expected element is paired with the
//! extracted one it matches best (most matching leaves), whatever their order; what is left
//! over is missing or extra.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sift_config::{FieldRule, Matching};

/// What became of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Extracted as expected.
    Match,
    /// Expected, not extracted.
    Missing,
    /// Extracted, not expected.
    Extra,
    /// Both there, different.
    Mismatch,
}

/// One field compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leaf {
    /// The field's path (`people[].age`).
    pub field: String,
    /// The verdict.
    pub verdict: Verdict,
    /// What was expected, if anything.
    pub expected: Option<Value>,
    /// What was extracted, if anything.
    pub got: Option<Value>,
}

/// How fields are compared: the config's rules by path, the defaults elsewhere.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    by_field: BTreeMap<String, FieldRule>,
}

impl Rules {
    /// The rules of an extractor's `[eval]` table.
    pub fn new(by_field: BTreeMap<String, FieldRule>) -> Self {
        Self { by_field }
    }

    fn matching(&self, field: &str) -> (Matching, Option<f64>) {
        match self.by_field.get(field) {
            Some(r) => (r.matching, r.tolerance),
            None => (Matching::Text, None),
        }
    }

    fn ignored(&self, field: &str) -> bool {
        self.matching(field).0 == Matching::Ignore
    }
}

/// Compares `expected` with `got`: every leaf with its verdict.
pub fn compare(expected: &Value, got: Option<&Value>, rules: &Rules) -> Vec<Leaf> {
    let mut out = Vec::new();
    walk("", Some(expected), got, rules, &mut out);
    out
}

fn absent(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(
    path: &str,
    expected: Option<&Value>,
    got: Option<&Value>,
    rules: &Rules,
    out: &mut Vec<Leaf>,
) {
    let (expected, got) = (absent(expected), absent(got));
    if rules.ignored(path) && !path.is_empty() {
        return;
    }
    match (expected, got) {
        (None, None) => {}
        (Some(Value::Object(e)), Some(Value::Object(g))) => {
            for (k, v) in e {
                walk(&join(path, k), Some(v), g.get(k), rules, out);
            }
            for (k, v) in g {
                if !e.contains_key(k) {
                    walk(&join(path, k), None, Some(v), rules, out);
                }
            }
        }
        (Some(Value::Array(e)), Some(Value::Array(g))) => lists(path, e, g, rules, out),
        // One side a container and the other not (or absent): its leaves are missing or
        // extra, and a scalar on the other side is a mismatch of the whole.
        (Some(e @ (Value::Object(_) | Value::Array(_))), g) => {
            children(path, e, true, rules, out);
            if let Some(g) = g {
                children(path, g, false, rules, out);
            }
        }
        (e, Some(g @ (Value::Object(_) | Value::Array(_)))) => {
            if let Some(e) = e {
                children(path, e, true, rules, out);
            }
            children(path, g, false, rules, out);
        }
        (Some(e), None) => out.push(leaf(path, Verdict::Missing, Some(e), None)),
        (None, Some(g)) => out.push(leaf(path, Verdict::Extra, None, Some(g))),
        (Some(e), Some(g)) => {
            let verdict = if scalars_match(path, e, g, rules) {
                Verdict::Match
            } else {
                Verdict::Mismatch
            };
            out.push(leaf(path, verdict, Some(e), Some(g)));
        }
    }
}

fn leaf(path: &str, verdict: Verdict, expected: Option<&Value>, got: Option<&Value>) -> Leaf {
    Leaf {
        field: if path.is_empty() {
            "(value)".into()
        } else {
            path.to_owned()
        },
        verdict,
        expected: expected.cloned(),
        got: got.cloned(),
    }
}

/// Every leaf of the container `v`, as missing (`expected`) or extra.
fn children(path: &str, v: &Value, expected: bool, rules: &Rules, out: &mut Vec<Leaf>) {
    let mut one = |p: &str, child: &Value| {
        if expected {
            walk(p, Some(child), None, rules, out);
        } else {
            walk(p, None, Some(child), rules, out);
        }
    };
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                one(&join(path, k), child);
            }
        }
        Value::Array(items) => {
            let element = format!("{path}[]");
            for child in items {
                one(&element, child);
            }
        }
        scalar => one(path, scalar),
    }
}

/// Element pairs scored one by one at most: past it, the elements left after pairing equal
/// ones are paired in list order (a pair scored costs a walk of both elements).
const MAX_SCORED_PAIRS: usize = 250_000;

/// A form of `v` equal for two values whose every leaf matches under the default rules:
/// strings normalised, keys sorted, ignored fields left out.
fn fingerprint(path: &str, v: &Value, rules: &Rules, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for k in keys {
                let child = join(path, k);
                if rules.ignored(&child) {
                    continue;
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                fingerprint(&child, &map[k.as_str()], rules, out);
                out.push(',');
            }
            out.push('}');
        }
        Value::Array(items) => {
            let element = format!("{path}[]");
            out.push('[');
            for item in items {
                fingerprint(&element, item, rules, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::String(s) => {
            out.push('"');
            out.push_str(&normalize(s));
            out.push('"');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Pairs the elements of two lists: equal ones first (by fingerprint, in linear time), then
/// the rest by best match, greedily (the pair with the most matching leaves first), or in
/// list order when too many are left to score; then compares each pair; the unpaired are
/// missing or extra.
fn lists(path: &str, e: &[Value], g: &[Value], rules: &Rules, out: &mut Vec<Leaf>) {
    let element = format!("{path}[]");
    let mut e_taken = vec![false; e.len()];
    let mut g_taken = vec![false; g.len()];
    let mut pairs = Vec::new();
    let mut by_print: std::collections::HashMap<String, Vec<usize>> =
        std::collections::HashMap::new();
    for (j, gv) in g.iter().enumerate().rev() {
        let mut print = String::new();
        fingerprint(&element, gv, rules, &mut print);
        by_print.entry(print).or_default().push(j);
    }
    for (i, ev) in e.iter().enumerate() {
        let mut print = String::new();
        fingerprint(&element, ev, rules, &mut print);
        if let Some(j) = by_print.get_mut(&print).and_then(Vec::pop) {
            e_taken[i] = true;
            g_taken[j] = true;
            pairs.push((i, j));
        }
    }
    let e_left: Vec<usize> = (0..e.len()).filter(|&i| !e_taken[i]).collect();
    let g_left: Vec<usize> = (0..g.len()).filter(|&j| !g_taken[j]).collect();
    if e_left.len().saturating_mul(g_left.len()) > MAX_SCORED_PAIRS {
        for (&i, &j) in e_left.iter().zip(&g_left) {
            e_taken[i] = true;
            g_taken[j] = true;
            pairs.push((i, j));
        }
    }
    let mut scores = Vec::new();
    for &i in e_left.iter().filter(|&&i| !e_taken[i]) {
        let ev = &e[i];
        for &j in g_left.iter().filter(|&&j| !g_taken[j]) {
            let gv = &g[j];
            let mut leaves = Vec::new();
            walk(&element, Some(ev), Some(gv), rules, &mut leaves);
            let matched = leaves
                .iter()
                .filter(|l| l.verdict == Verdict::Match)
                .count();
            if matched > 0 {
                scores.push((matched, i, j));
            }
        }
    }
    // Most matching leaves first; ties in list order, so the pairing is deterministic.
    scores.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (_, i, j) in scores {
        if !e_taken[i] && !g_taken[j] {
            e_taken[i] = true;
            g_taken[j] = true;
            pairs.push((i, j));
        }
    }
    pairs.sort_unstable();
    for (i, j) in pairs {
        walk(&element, Some(&e[i]), Some(&g[j]), rules, out);
    }
    for (i, ev) in e.iter().enumerate() {
        if !e_taken[i] {
            walk(&element, Some(ev), None, rules, out);
        }
    }
    for (j, gv) in g.iter().enumerate() {
        if !g_taken[j] {
            walk(&element, None, Some(gv), rules, out);
        }
    }
}

fn scalars_match(path: &str, e: &Value, g: &Value, rules: &Rules) -> bool {
    let (matching, tolerance) = rules.matching(path);
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match matching {
        Matching::Ignore => true,
        Matching::Exact => e == g,
        Matching::Number => match (number(e), number(g)) {
            (Some(a), Some(b)) => (a - b).abs() <= tolerance.unwrap_or(0.0),
            _ => false,
        },
        _ => match (e, g) {
            (Value::Number(_), Value::Number(_)) => match (number(e), number(g)) {
                (Some(a), Some(b)) => (a - b).abs() <= tolerance.unwrap_or(0.0),
                _ => e == g,
            },
            (Value::Bool(a), Value::Bool(b)) => a == b,
            _ => normalize(&text(e)) == normalize(&text(g)),
        },
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A string for comparing: Unicode lower case, punctuation dropped, whitespace collapsed.
pub fn normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let kept: String = lower
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn verdicts(expected: Value, got: Value, rules: &Rules) -> Vec<(String, Verdict)> {
        compare(&expected, Some(&got), rules)
            .into_iter()
            .map(|l| (l.field, l.verdict))
            .collect()
    }

    #[test]
    fn strings_are_compared_folded_and_normalised() {
        assert_eq!(normalize("  Jean-Luc   PICARD. "), "jean luc picard");
        assert_eq!(normalize("ÉLODIE"), "élodie");
        let v = verdicts(
            json!({"name": "Jean-Luc Picard", "city": "São Paulo"}),
            json!({"name": "jean luc picard", "city": "Sao Paulo"}),
            &Rules::default(),
        );
        assert_eq!(
            v,
            [
                ("name".into(), Verdict::Match),
                ("city".into(), Verdict::Mismatch)
            ]
        );
    }

    #[test]
    fn missing_extra_and_null_are_told_apart() {
        let v = verdicts(
            json!({"name": "Ann", "age": 31, "email": null}),
            json!({"name": "Ann", "phone": "555", "email": null}),
            &Rules::default(),
        );
        assert_eq!(
            v,
            [
                ("name".into(), Verdict::Match),
                ("age".into(), Verdict::Missing),
                ("phone".into(), Verdict::Extra),
            ]
        );
    }

    #[test]
    fn numbers_exactly_or_within_a_tolerance() {
        let rules = Rules::new(BTreeMap::from([(
            "total".to_owned(),
            FieldRule::new(Matching::Number, Some(0.01)),
        )]));
        let v = verdicts(
            json!({"total": 126.5, "count": 3}),
            json!({"total": "126.504", "count": 3.0}),
            &rules,
        );
        assert_eq!(
            v,
            [
                ("total".into(), Verdict::Match),
                ("count".into(), Verdict::Match)
            ]
        );
        let v = verdicts(json!({"count": 3}), json!({"count": 4}), &Rules::default());
        assert_eq!(v, [("count".into(), Verdict::Mismatch)]);
    }

    #[test]
    fn lists_are_multisets_paired_by_best_match() {
        let v = verdicts(
            json!([{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}, {"name": "Cy", "age": 20}]),
            json!([{"name": "Bob", "age": 43}, {"name": "Alice", "age": 33}, {"name": "Dee", "age": 50}]),
            &Rules::default(),
        );
        assert_eq!(
            v,
            [
                ("[].name".into(), Verdict::Match),
                ("[].age".into(), Verdict::Mismatch),
                ("[].name".into(), Verdict::Match),
                ("[].age".into(), Verdict::Match),
                ("[].name".into(), Verdict::Missing),
                ("[].age".into(), Verdict::Missing),
                ("[].name".into(), Verdict::Extra),
                ("[].age".into(), Verdict::Extra),
            ]
        );
    }

    #[test]
    fn large_lists_pair_equal_elements_without_scoring_every_pair() {
        let people: Vec<Value> = (0..3000)
            .map(|i| json!({"name": format!("Person {i}"), "age": i % 90}))
            .collect();
        let mut got: Vec<Value> = people.iter().rev().cloned().collect();
        // One changed, one in other case and spacing (still equal as text).
        got[0] = json!({"name": "Person 2999", "age": 1});
        got[1] = json!({"age": 28, "name": "  person   2998 "});
        let v = verdicts(Value::Array(people), Value::Array(got), &Rules::default());
        assert_eq!(v.len(), 6000);
        let mismatched: Vec<&(String, Verdict)> = v
            .iter()
            .filter(|(_, verdict)| *verdict != Verdict::Match)
            .collect();
        assert_eq!(mismatched, [&("[].age".to_owned(), Verdict::Mismatch)]);
    }

    #[test]
    fn nested_objects_and_ignored_fields() {
        let rules = Rules::new(BTreeMap::from([(
            "meta".to_owned(),
            FieldRule::new(Matching::Ignore, None),
        )]));
        let v = verdicts(
            json!({"seller": {"name": "Acme", "vat": "GB1"}, "meta": {"x": 1}}),
            json!({"seller": {"name": "ACME"}, "meta": {"y": 2}}),
            &rules,
        );
        assert_eq!(
            v,
            [
                ("seller.name".into(), Verdict::Match),
                ("seller.vat".into(), Verdict::Missing),
            ]
        );
        // A scalar where an object was expected: the object's leaves are missing, the
        // scalar extra.
        let v = verdicts(
            json!({"seller": {"name": "Acme"}}),
            json!({"seller": "Acme"}),
            &Rules::default(),
        );
        assert_eq!(
            v,
            [
                ("seller.name".into(), Verdict::Missing),
                ("seller".into(), Verdict::Extra),
            ]
        );
    }
}
