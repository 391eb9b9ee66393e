//! Grounding: whether each value of an answer can be traced to the text it came from, and
//! where.
//!
//! Each leaf of the output schema has a [`Policy`]: `verbatim` values must appear in the
//! input (compared after Unicode lower-casing and whitespace collapsing), `normalized` ones
//! must stand for a mention (a number written `1.250,00` or `126.50`, a date written
//! `3 November 2026` for `2026-11-03`), `free` ones are not checked (enums, booleans,
//! summaries). The defaults go by type and keywords; the schema's `x-grounding` keyword
//! overrides them.
//!
//! Values are located in one pass over each input: the verbatim values together through
//! one Aho-Corasick automaton over the normalised text, the numbers and dates by one scan
//! that reads every mention the text holds. Spans count Unicode scalar values, end exclusive.

mod mentions;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use mentions::{key, mentions, parse_iso_date};

/// How a leaf of the output is checked against the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The value appears in the input (after case folding and whitespace normalisation).
    Verbatim,
    /// The value stands for a mention in the input (numbers, dates in other spellings).
    Normalized,
    /// Not checked.
    Free,
}

impl Policy {
    /// The policy `schema` (a leaf's subschema) asks for: its `x-grounding` keyword, else
    /// the default for its type and keywords.
    pub fn of(schema: &Value) -> Self {
        if let Some(policy) = schema
            .get("x-grounding")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
        {
            return policy;
        }
        if schema.get("enum").is_some() || schema.get("const").is_some() {
            return Policy::Free;
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if types.iter().any(|t| *t == "number" || *t == "integer") {
            return Policy::Normalized;
        }
        if !types.contains(&"string") {
            return Policy::Free;
        }
        if matches!(
            schema.get("format").and_then(Value::as_str),
            Some("date" | "date-time")
        ) {
            return Policy::Normalized;
        }
        let description = schema
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        const FREE_WORDS: &[&str] = &[
            "summar",
            "describe",
            "description of",
            "classif",
            "category",
            "sentiment",
            "explain",
            "reason",
            "in your own words",
        ];
        if FREE_WORDS.iter().any(|w| description.contains(w)) {
            return Policy::Free;
        }
        Policy::Verbatim
    }
}

/// Where a value was found: which input field, and the character range in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// The input field.
    pub field: String,
    /// The first character (Unicode scalar value), from 0.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// The page it starts on (from 1), for a value found in a paged document (a PDF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<usize>,
}

/// A value that should be grounded and is not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ungrounded {
    /// Its JSON pointer in the answer.
    pub pointer: String,
    /// The value.
    pub value: Value,
    /// Its policy.
    pub policy: Policy,
}

impl Ungrounded {
    /// A message the model can act on.
    pub fn message(&self) -> String {
        self.message_for("the text")
    }

    /// The message for a value that should come from `source` (`the text`, `the example's
    /// text`).
    pub fn message_for(&self, source: &str) -> String {
        format!(
            "{}; copy the value from {source} or leave the field out",
            self.finding(source)
        )
    }

    /// What is wrong, without advice: `'Lisle' does not appear in {source}`, or for a
    /// normalized value `33 is not written in {source} (in any spelling)`.
    pub fn finding(&self, source: &str) -> String {
        let shown = match &self.value {
            Value::String(s) => format!("'{s}'"),
            other => other.to_string(),
        };
        match self.policy {
            Policy::Normalized => format!("{shown} is not written in {source} (in any spelling)"),
            _ => format!("{shown} does not appear in {source}"),
        }
    }
}

/// Where each grounded value was found, by JSON pointer into the value.
pub type Spans = BTreeMap<String, Vec<Span>>;

/// What grounding found for one answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Grounding {
    /// Every grounded value's spans, by JSON pointer.
    pub spans: Spans,
    /// The values that should be grounded and are not.
    pub ungrounded: Vec<Ungrounded>,
}

impl Policy {
    /// The policy's name (`verbatim`, `normalized`, `free`).
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Verbatim => "verbatim",
            Policy::Normalized => "normalized",
            Policy::Free => "free",
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "verbatim" => Ok(Policy::Verbatim),
            "normalized" => Ok(Policy::Normalized),
            "free" => Ok(Policy::Free),
            other => Err(format!(
                "`{other}` is not a grounding policy; expected verbatim, normalized or free"
            )),
        }
    }
}

/// The numbers and dates the inputs write (see [`Sources::written`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    /// Every number (in digits or words, in any of the spellings [`ground`] reads), each
    /// once, in the order first written.
    pub numbers: Vec<f64>,
    /// Every date as `YYYY-MM-DD`, each once, in the order first written; a day and month
    /// written without a year (`14 January`) with each year the inputs write.
    pub dates: Vec<String>,
}

/// What an extraction's answers are grounded in: the input texts by field, and the policies
/// set by rule path (`seller.name`, `lines[].amount`, `*` for every leaf; a path covers what
/// is under it), which win over the schema's `x-grounding` and the defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    inputs: Vec<(String, String)>,
    policies: BTreeMap<String, Policy>,
}

impl Sources {
    /// No inputs and no policies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every string (and number) of an input value, named by its path (`text`, `pages[2]`,
    /// `doc.title`): what a configured extractor's answers are grounded in.
    pub fn of_input(input: &Value) -> Self {
        fn walk(v: &Value, path: String, out: &mut Vec<(String, String)>, depth: usize) {
            match v {
                Value::String(s) if depth <= 64 => out.push((path, s.clone())),
                // A number given with the input (a year, say) may be copied too.
                Value::Number(n) if depth <= 64 => out.push((path, n.to_string())),
                Value::Object(map) if depth <= 64 => {
                    for (k, v) in map {
                        let child = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        walk(v, child, out, depth + 1);
                    }
                }
                Value::Array(items) if depth <= 64 => {
                    for (i, v) in items.iter().enumerate() {
                        walk(v, format!("{path}[{i}]"), out, depth + 1);
                    }
                }
                _ => {}
            }
        }
        let mut inputs = Vec::new();
        walk(input, String::new(), &mut inputs, 0);
        Self {
            inputs,
            policies: BTreeMap::new(),
        }
    }

    /// Adds an input text, named `field` in spans.
    #[must_use]
    pub fn with_input(mut self, field: impl Into<String>, text: impl Into<String>) -> Self {
        self.inputs.push((field.into(), text.into()));
        self
    }

    /// Sets the policy of the leaves at `path` and under it.
    #[must_use]
    pub fn with_policy(mut self, path: impl Into<String>, policy: Policy) -> Self {
        self.policies.insert(path.into(), policy);
        self
    }

    /// Sets the policies of several paths.
    #[must_use]
    pub fn with_policies(mut self, policies: &BTreeMap<String, Policy>) -> Self {
        self.policies
            .extend(policies.iter().map(|(k, v)| (k.clone(), *v)));
        self
    }

    /// The input texts, by field.
    pub fn inputs(&self) -> &[(String, String)] {
        &self.inputs
    }

    /// The policy of the leaf at rule path `rule` (`lines[].amount`) whose subschema is
    /// `leaf`: the one set for the path or the nearest path above it, else the schema's
    /// `x-grounding`, else the default for its type and keywords. The rule [`ground`] checks
    /// by, for a grammar that enforces it while decoding.
    pub fn policy(&self, rule: &str, leaf: &Value) -> Policy {
        set_for(&self.policies, rule).unwrap_or_else(|| Policy::of(leaf))
    }

    /// Every number and every date the inputs write, read in one scan of each.
    pub fn written(&self) -> Written {
        let mut numbers = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut dates = Vec::new();
        let mut day_months = Vec::new();
        let mut years = Vec::new();
        for (_, text) in &self.inputs {
            for m in mentions(text) {
                for &x in &m.numbers {
                    if x.is_finite() && seen.insert(key(x)) {
                        numbers.push(x);
                    }
                    years.extend(year_of(x));
                }
                if let Some((y, mo, d)) = m.date {
                    dates.push(format!("{y:04}-{mo:02}-{d:02}"));
                }
                day_months.extend(m.day_month);
            }
        }
        for (mo, d) in day_months {
            for y in &years {
                dates.push(format!("{y:04}-{mo:02}-{d:02}"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        dates.retain(|d| seen.insert(d.clone()));
        Written { numbers, dates }
    }

    /// Grounds `value` (an answer to `schema`) in these inputs.
    pub fn ground(&self, value: &Value, schema: &Value) -> Grounding {
        let inputs: Vec<(&str, &str)> = self
            .inputs
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect();
        ground_with(value, schema, &inputs, &self.policies)
    }
}

/// Up to this many bytes of folded text times values to find, each value is looked for on its
/// own; past it, all of them together by one automaton.
const SMALL_SEARCH: usize = 16 * 1024;

/// A leaf to locate.
struct Leaf {
    pointer: String,
    value: Value,
    policy: Policy,
}

/// Grounds `value` (an answer to `schema`) in `inputs` (each input field's name and text),
/// every leaf by its default policy or its schema's `x-grounding`.
pub fn ground(value: &Value, schema: &Value, inputs: &[(&str, &str)]) -> Grounding {
    ground_with(value, schema, inputs, &BTreeMap::new())
}

/// [`ground`], with `policies` set by rule path (they win over the schema's keyword).
fn ground_with(
    value: &Value,
    schema: &Value,
    inputs: &[(&str, &str)],
    policies: &BTreeMap<String, Policy>,
) -> Grounding {
    let mut walk = Walk {
        root: schema,
        policies,
        out: Vec::new(),
    };
    let at = At {
        pointer: "",
        rule: "",
    };
    walk.collect(value, schema, at, 0);
    let leaves = walk.out;
    let mut out = Grounding::default();
    if leaves.is_empty() {
        return out;
    }
    let texts: Vec<Normalized> = inputs.iter().map(|(f, t)| Normalized::new(f, t)).collect();
    // Strings: one automaton over all of them, one pass per input.
    let needles: Vec<(usize, String)> = leaves
        .iter()
        .enumerate()
        // A normalized string written as it is counts too (`2026-11-03` in the text).
        .filter_map(|(i, l)| l.value.as_str().map(|s| (i, fold(s))))
        .filter(|(_, n)| !n.is_empty())
        .collect();
    let folded: usize = texts.iter().map(|t| t.folded.len()).sum();
    let one_by_one = needles.len().saturating_mul(folded) <= SMALL_SEARCH;
    let mut found = locate(&needles, &texts, one_by_one);
    // Numbers and dates: every mention of each input read once, indexed by what it means.
    let mut by_number: HashMap<u64, Vec<Span>> = HashMap::new();
    let mut by_date: HashMap<(i32, u32, u32), Vec<Span>> = HashMap::new();
    let mut by_day_month: HashMap<(u32, u32), Vec<Span>> = HashMap::new();
    let mut years = std::collections::HashSet::new();
    // Read only when a leaf is to be found among them.
    let normalized = leaves.iter().any(|l| l.policy == Policy::Normalized);
    for text in texts.iter().filter(|_| normalized) {
        for m in mentions(text.original) {
            let span = Span {
                field: text.field.to_owned(),
                start: m.start,
                end: m.end,
                page: None,
            };
            for x in &m.numbers {
                by_number.entry(key(*x)).or_default().push(span.clone());
                years.extend(year_of(*x));
            }
            if let Some(dm) = m.day_month {
                by_day_month.entry(dm).or_default().push(span.clone());
            }
            if let Some(d) = m.date {
                by_date.entry(d).or_default().push(span);
            }
        }
    }
    for (i, leaf) in leaves.iter().enumerate() {
        if leaf.policy != Policy::Normalized {
            continue;
        }
        let number = match &leaf.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        let date = leaf.value.as_str().and_then(parse_iso_date);
        // A date written without its year counts when the inputs write the year too.
        let day_month = date
            .filter(|(y, _, _)| years.contains(y))
            .and_then(|(_, m, d)| by_day_month.get(&(m, d)));
        let hits = number
            .and_then(|x| by_number.get(&key(x)))
            .into_iter()
            .chain(date.and_then(|d| by_date.get(&d)))
            .chain(day_month)
            .flatten();
        for span in hits {
            found.entry(i).or_default().push(span.clone());
        }
    }
    for (i, leaf) in leaves.into_iter().enumerate() {
        match found.remove(&i) {
            Some(mut spans) => {
                spans.sort_by(|a, b| (&a.field, a.start).cmp(&(&b.field, b.start)));
                spans.dedup();
                out.spans.insert(leaf.pointer, spans);
            }
            None => out.ungrounded.push(Ungrounded {
                pointer: leaf.pointer,
                value: leaf.value,
                policy: leaf.policy,
            }),
        }
    }
    out
}

/// `x` as a year, when it can be one (a whole number from 1000 to 2999).
fn year_of(x: f64) -> Option<i32> {
    (x.fract() == 0.0 && (1000.0..3000.0).contains(&x)).then_some(x as i32)
}

/// Where each needle (a leaf's index, its folded value) occurs in `texts` as whole words,
/// every occurrence, overlapping ones too, by leaf. `one_by_one`: each needle is looked for on
/// its own (few values in a short text, a seed `/user` request: building an automaton costs
/// more than these few scans, measured at a third of such a request's CPU); else one
/// automaton finds them all in one pass per input (a noncontiguous NFA, whose build is
/// cheap: the default's DFA costs more to build than it saves here).
fn locate(
    needles: &[(usize, String)],
    texts: &[Normalized],
    one_by_one: bool,
) -> HashMap<usize, Vec<Span>> {
    let mut found: HashMap<usize, Vec<Span>> = HashMap::new();
    let mut record = |leaf: usize, text: &Normalized, start: usize, end: usize| {
        // Whole words only: `Jeff` is not written in `Jeffrey`.
        if on_word_edges(&text.folded, start, end) {
            found.entry(leaf).or_default().push(text.span(start, end));
        }
    };
    if needles.is_empty() {
        return found;
    }
    if one_by_one {
        for (leaf, needle) in needles {
            for text in texts {
                let mut from = 0;
                while let Some(at) = text
                    .folded
                    .get(from..)
                    .and_then(|rest| rest.find(needle.as_str()))
                {
                    let start = from + at;
                    record(*leaf, text, start, start + needle.len());
                    // On past the match's first character.
                    from = start
                        + text.folded[start..]
                            .chars()
                            .next()
                            .map_or(1, char::len_utf8);
                }
            }
        }
    } else if let Ok(automaton) = aho_corasick::AhoCorasick::builder()
        .kind(Some(aho_corasick::AhoCorasickKind::NoncontiguousNFA))
        .build(needles.iter().map(|(_, n)| n))
    {
        for text in texts {
            // The default (standard) match kind, so overlapping search is available.
            let Ok(matches) = automaton.try_find_overlapping_iter(text.folded.as_str()) else {
                continue;
            };
            for m in matches {
                record(needles[m.pattern().as_usize()].0, text, m.start(), m.end());
            }
        }
    }
    found
}

/// The subschema `schema` stands for, its local `$ref` followed (one level per call).
fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    let mut current = schema;
    for _ in 0..16 {
        match current.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with('#') => match root.pointer(&r[1..]) {
                Some(target) => current = target,
                None => return current,
            },
            _ => return current,
        }
    }
    current
}

/// Where a leaf is, as a JSON pointer and as a rule path (`lines[].amount`, the paths
/// `[extractors.NAME.grounding]` and `sift eval` rules use).
struct At<'a> {
    pointer: &'a str,
    rule: &'a str,
}

/// The walk over an answer: its schema's root (for `$ref`s) and the policies set by path.
struct Walk<'a> {
    root: &'a Value,
    policies: &'a BTreeMap<String, Policy>,
    out: Vec<Leaf>,
}

impl Walk<'_> {
    /// The leaves of `value` under `schema`, with their policies.
    fn collect(&mut self, value: &Value, schema: &Value, at: At<'_>, depth: usize) {
        if depth > 64 {
            return;
        }
        let schema = resolve(schema, self.root);
        // A union: the first branch whose type fits the value.
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = schema.get(key) {
                let fits = branches
                    .iter()
                    .map(|b| resolve(b, self.root))
                    .find(|b| type_fits(b, value));
                if let Some(branch) = fits {
                    return self.collect(value, branch, at, depth + 1);
                }
                return;
            }
        }
        match value {
            Value::Object(map) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                for (k, v) in map {
                    let sub = properties.and_then(|p| p.get(k)).unwrap_or(&Value::Null);
                    let pointer = format!("{}/{}", at.pointer, crate::escape_pointer_token(k));
                    // Rule paths are only read to find a policy set by path.
                    let rule = if self.policies.is_empty() {
                        String::new()
                    } else if at.rule.is_empty() {
                        k.clone()
                    } else {
                        format!("{}.{k}", at.rule)
                    };
                    let child = At {
                        pointer: &pointer,
                        rule: &rule,
                    };
                    self.collect(v, sub, child, depth + 1);
                }
            }
            Value::Array(items) => {
                let sub = schema.get("items").unwrap_or(&Value::Null);
                let rule = if self.policies.is_empty() {
                    String::new()
                } else {
                    format!("{}[]", at.rule)
                };
                for (i, v) in items.iter().enumerate() {
                    let pointer = format!("{}/{i}", at.pointer);
                    let child = At {
                        pointer: &pointer,
                        rule: &rule,
                    };
                    self.collect(v, sub, child, depth + 1);
                }
            }
            Value::Null | Value::Bool(_) => {}
            Value::String(_) | Value::Number(_) => {
                let policy = match set_for(self.policies, at.rule) {
                    Some(p) => p,
                    // A field the schema does not describe: by its value's type.
                    None if schema.is_null() => {
                        if value.is_number() {
                            Policy::Normalized
                        } else {
                            Policy::Verbatim
                        }
                    }
                    None => Policy::of(schema),
                };
                if policy != Policy::Free {
                    self.out.push(Leaf {
                        pointer: at.pointer.to_owned(),
                        value: value.clone(),
                        policy,
                    });
                }
            }
        }
    }
}

/// The policy set for `rule` or the nearest path above it (`*` for all).
fn set_for(policies: &BTreeMap<String, Policy>, rule: &str) -> Option<Policy> {
    if policies.is_empty() {
        return None;
    }
    let mut path = rule;
    loop {
        if let Some(p) = policies.get(path) {
            return Some(*p);
        }
        if path.is_empty() {
            return policies.get("*").copied();
        }
        path = parent(path);
    }
}

/// The rule path one level up: `lines[].amount` → `lines[]` → `lines` → ``.
fn parent(path: &str) -> &str {
    if let Some(p) = path.strip_suffix("[]") {
        return p;
    }
    path.rfind(['.', '[']).map_or("", |i| &path[..i])
}

/// Whether `path` (a rule path: `seller.name`, `lines[].amount`, `*`) names a place in
/// `schema`: a config that sets a policy for a field the output does not have is wrong.
pub fn describes(schema: &Value, path: &str) -> bool {
    if path == "*" || path.is_empty() {
        return true;
    }
    fn walk(schema: &Value, root: &Value, rest: &str, depth: usize) -> bool {
        if depth > 64 {
            return false;
        }
        let schema = resolve(schema, root);
        if rest.is_empty() {
            return true;
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(branches)) = schema.get(key)
                && branches.iter().any(|b| walk(b, root, rest, depth + 1))
            {
                return true;
            }
        }
        if let Some(rest) = rest.strip_prefix("[]") {
            let rest = rest.strip_prefix('.').unwrap_or(rest);
            return schema
                .get("items")
                .is_some_and(|items| walk(items, root, rest, depth + 1));
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (key, rest) = rest.split_at(end);
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        schema
            .get("properties")
            .and_then(|p| p.get(key))
            .is_some_and(|sub| walk(sub, root, rest, depth + 1))
    }
    walk(schema, schema, path, 0)
}

fn type_fits(schema: &Value, value: &Value) -> bool {
    let name = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let ok = |t: &str| t == name || (t == "number" && name == "integer");
    match schema.get("type") {
        Some(Value::String(t)) => ok(t),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(ok),
        _ => true,
    }
}

/// Whether `c` runs on into the characters beside it as one word: letters and digits, except
/// in scripts written without spaces (Han, kana, Hangul), whose characters stand alone. A
/// value is a run of whole words, here and in the embedded model's grammar alike.
pub fn joins_words(c: char) -> bool {
    c.is_alphanumeric()
        && !matches!(c as u32,
            0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF
            | 0xF900..=0xFAFF | 0x20000..=0x3FFFF)
}

/// Whether `text[start..end]` starts and ends on word edges: no letter or digit runs on
/// across either end. Scripts written without spaces (Han, kana, Hangul) have an edge at
/// every character.
fn on_word_edges(text: &str, start: usize, end: usize) -> bool {
    let (Some(before), Some(inside), Some(after)) =
        (text.get(..start), text.get(start..end), text.get(end..))
    else {
        return false;
    };
    let joined = |outside: Option<char>, edge: Option<char>| matches!((outside, edge), (Some(o), Some(e)) if joins_words(o) && joins_words(e));
    !joined(before.chars().next_back(), inside.chars().next())
        && !joined(after.chars().next(), inside.chars().next_back())
}

/// Lower case, runs of whitespace as one space, trimmed.
fn fold(s: &str) -> String {
    let mut folded = String::with_capacity(s.len());
    fold_into(s, &mut folded, |_, _| {});
    folded
}

/// Folds `text` into `folded` (lower case, runs of whitespace as one space, trimmed), telling
/// `each` how many bytes it wrote for which character of `text` (by index) as it goes.
fn fold_into(text: &str, folded: &mut String, mut each: impl FnMut(usize, usize)) -> usize {
    let mut space = false;
    let mut chars = 0;
    for (ci, c) in text.chars().enumerate() {
        chars = ci + 1;
        if c.is_whitespace() {
            space = !folded.is_empty();
            continue;
        }
        if space {
            folded.push(' ');
            each(ci.saturating_sub(1), 1);
            space = false;
        }
        if c.is_ascii() {
            folded.push(c.to_ascii_lowercase());
            each(ci, 1);
            continue;
        }
        for l in c.to_lowercase() {
            let before = folded.len();
            folded.push(l);
            each(ci, folded.len() - before);
        }
    }
    chars
}

/// An input's text folded for matching, with the way back to its characters.
struct Normalized<'a> {
    field: &'a str,
    original: &'a str,
    folded: String,
    /// For each byte of `folded`, the index of the original character it came from.
    origin: Vec<usize>,
    /// Characters in the original.
    chars: usize,
}

impl<'a> Normalized<'a> {
    fn new(field: &'a str, text: &'a str) -> Self {
        let mut folded = String::with_capacity(text.len());
        let mut origin = Vec::with_capacity(text.len());
        let chars = fold_into(text, &mut folded, |ci, bytes| {
            origin.extend(std::iter::repeat_n(ci, bytes));
        });
        Self {
            field,
            original: text,
            folded,
            origin,
            chars,
        }
    }

    /// The original characters of `folded[start..end]`.
    fn span(&self, start: usize, end: usize) -> Span {
        let first = self.origin.get(start).copied().unwrap_or(0);
        let last = end
            .checked_sub(1)
            .and_then(|i| self.origin.get(i).copied())
            .map_or(first, |l| l + 1);
        Span {
            field: self.field.to_owned(),
            start: first,
            end: last.min(self.chars),
            page: None,
        }
    }
}
