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

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

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
        match schema.get("x-grounding").and_then(Value::as_str) {
            Some("verbatim") => return Policy::Verbatim,
            Some("normalized") => return Policy::Normalized,
            Some("free") => return Policy::Free,
            _ => {}
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    /// The input field.
    pub field: String,
    /// The first character (Unicode scalar value), from 0.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
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
        let shown = match &self.value {
            Value::String(s) => format!("'{s}'"),
            other => other.to_string(),
        };
        match self.policy {
            Policy::Normalized => format!(
                "{shown} is not written in the text (in any spelling); copy the value from the text or leave the field out"
            ),
            _ => format!(
                "{shown} does not appear in the text; copy the value from the text or leave the field out"
            ),
        }
    }
}

/// What grounding found for one answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Grounding {
    /// Every grounded value's spans, by JSON pointer.
    pub spans: BTreeMap<String, Vec<Span>>,
    /// The values that should be grounded and are not.
    pub ungrounded: Vec<Ungrounded>,
}

/// A leaf to locate.
struct Leaf {
    pointer: String,
    value: Value,
    policy: Policy,
}

/// Grounds `value` (an answer to `schema`) in `inputs` (each input field's name and text).
pub fn ground(value: &Value, schema: &Value, inputs: &[(&str, &str)]) -> Grounding {
    let mut leaves = Vec::new();
    collect(value, schema, schema, "", &mut leaves, 0);
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
    let mut found: HashMap<usize, Vec<Span>> = HashMap::new();
    if !needles.is_empty()
        && let Ok(automaton) = aho_corasick::AhoCorasick::new(needles.iter().map(|(_, n)| n))
    {
        for text in &texts {
            // The default (standard) match kind, so overlapping search is available.
            let Ok(matches) = automaton.try_find_overlapping_iter(text.folded.as_str()) else {
                continue;
            };
            for m in matches {
                let leaf = needles[m.pattern().as_usize()].0;
                found
                    .entry(leaf)
                    .or_default()
                    .push(text.span(m.start(), m.end()));
            }
        }
    }
    // Numbers and dates: every mention of each input read once, indexed by what it means.
    let mut by_number: HashMap<u64, Vec<Span>> = HashMap::new();
    let mut by_date: HashMap<(i32, u32, u32), Vec<Span>> = HashMap::new();
    for text in &texts {
        for m in mentions(&text.original) {
            let span = Span {
                field: text.field.clone(),
                start: m.start,
                end: m.end,
            };
            for x in &m.numbers {
                by_number.entry(key(*x)).or_default().push(span.clone());
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
        let hits = number
            .and_then(|x| by_number.get(&key(x)))
            .into_iter()
            .chain(date.and_then(|d| by_date.get(&d)))
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

/// The leaves of `value` under `schema`, with their policies.
fn collect(
    value: &Value,
    schema: &Value,
    root: &Value,
    pointer: &str,
    out: &mut Vec<Leaf>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    let schema = resolve(schema, root);
    // A union: the first branch whose type fits the value.
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = schema.get(key) {
            let fits = branches
                .iter()
                .map(|b| resolve(b, root))
                .find(|b| type_fits(b, value));
            if let Some(branch) = fits {
                return collect(value, branch, root, pointer, out, depth + 1);
            }
            return;
        }
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for (k, v) in map {
                let sub = properties.and_then(|p| p.get(k)).unwrap_or(&Value::Null);
                let child = format!("{pointer}/{}", crate::escape_pointer_token(k));
                collect(v, sub, root, &child, out, depth + 1);
            }
        }
        Value::Array(items) => {
            let sub = schema.get("items").unwrap_or(&Value::Null);
            for (i, v) in items.iter().enumerate() {
                collect(v, sub, root, &format!("{pointer}/{i}"), out, depth + 1);
            }
        }
        Value::Null | Value::Bool(_) => {}
        Value::String(_) | Value::Number(_) => {
            let policy = if schema.is_null() {
                // A field the schema does not describe: by its value's type.
                if value.is_number() {
                    Policy::Normalized
                } else {
                    Policy::Verbatim
                }
            } else {
                Policy::of(schema)
            };
            if policy != Policy::Free {
                out.push(Leaf {
                    pointer: pointer.to_owned(),
                    value: value.clone(),
                    policy,
                });
            }
        }
    }
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

/// Lower case, runs of whitespace as one space, trimmed.
fn fold(s: &str) -> String {
    Normalized::new("", s).folded
}

/// An input's text folded for matching, with the way back to its characters.
struct Normalized {
    field: String,
    original: String,
    folded: String,
    /// For each byte of `folded`, the index of the original character it came from.
    origin: Vec<usize>,
    /// Characters in the original.
    chars: usize,
}

impl Normalized {
    fn new(field: &str, text: &str) -> Self {
        let mut folded = String::with_capacity(text.len());
        let mut origin = Vec::with_capacity(text.len());
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
                origin.push(ci.saturating_sub(1));
                space = false;
            }
            for l in c.to_lowercase() {
                let before = folded.len();
                folded.push(l);
                origin.extend(std::iter::repeat_n(ci, folded.len() - before));
            }
        }
        Self {
            field: field.to_owned(),
            original: text.to_owned(),
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
            field: self.field.clone(),
            start: first,
            end: last.min(self.chars),
        }
    }
}

/// A number or date written in a text, with what it can mean.
#[derive(Debug)]
struct Mention {
    start: usize,
    end: usize,
    numbers: Vec<f64>,
    date: Option<(i32, u32, u32)>,
}

/// A number as a map key: its bits, with `-0` as `0`.
fn key(x: f64) -> u64 {
    (x + 0.0).to_bits()
}

/// `2026-11-03` (or the date part of a date-time).
fn parse_iso_date(s: &str) -> Option<(i32, u32, u32)> {
    let s = s.trim();
    let date = s.get(..10)?;
    let mut parts = date.split('-');
    let y = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let d = parts.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

const UNITS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];

const TENS: &[&str] = &[
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

fn month(word: &str) -> Option<u32> {
    let w = word.to_lowercase();
    let w = w.trim_end_matches('.');
    if w.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| m.starts_with(w) && (w.len() >= 3))
        .map(|i| i as u32 + 1)
}

/// `thirty-three`, `seven`, `ninety`: the number a word (or hyphenated pair) spells.
fn number_word(word: &str) -> Option<f64> {
    let w = word.to_lowercase();
    if let Some(i) = UNITS.iter().position(|u| *u == w) {
        return Some(i as f64);
    }
    if let Some(i) = TENS.iter().position(|t| !t.is_empty() && *t == w) {
        return Some((i * 10) as f64);
    }
    let (tens, unit) = w.split_once('-')?;
    let t = TENS.iter().position(|x| !x.is_empty() && *x == tens)?;
    let u = UNITS
        .iter()
        .position(|x| *x == unit)
        .filter(|&u| (1..10).contains(&u))?;
    Some((t * 10 + u) as f64)
}

/// The numbers a run of digits and separators can mean: `1.250,00` and `1,250.00` are
/// 1250; `126.50` is 126.5; `3` is 3.
fn readings(token: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let plain: String = token
        .chars()
        .filter(|c| !matches!(c, '\'' | '_' | ' '))
        .collect();
    let mut push = |s: String| {
        if let Ok(x) = s.parse::<f64>()
            && !out.contains(&x)
        {
            out.push(x);
        }
    };
    // `,` thousands, `.` decimals.
    push(plain.replace(',', ""));
    // `.` thousands, `,` decimals.
    push(plain.replace('.', "").replace(',', "."));
    out
}

/// A word starting at character `start`, its trailing punctuation dropped: its range and text.
fn word(start: usize, raw: String) -> (usize, usize, String) {
    let text = raw.trim_end_matches(['.', ',', '-', '/', '\'']).to_owned();
    (start, start + text.chars().count(), text)
}

/// Every number and date mention in `text`, in one pass over its words.
fn mentions(text: &str) -> Vec<Mention> {
    // Words with their character ranges.
    let mut words: Vec<(usize, usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (i, c) in text.chars().enumerate() {
        let part = c.is_alphanumeric()
            || (matches!(c, '.' | ',' | '-' | '/' | '\'') && !current.is_empty());
        if part {
            if current.is_empty() {
                start = i;
            }
            current.push(c);
        } else if !current.is_empty() {
            words.push(word(start, std::mem::take(&mut current)));
        }
    }
    if !current.is_empty() {
        words.push(word(start, current));
    }
    let mut out = Vec::new();
    for (k, (s, _, raw)) in words.iter().enumerate() {
        // Trailing punctuation is not part of the word.
        let word = raw.trim_end_matches(['.', ',', '-', '/', '\'']);
        // 2026-11-03, 03/11/2026, 11/03/2026
        if let Some(date) = parse_iso_date(word) {
            out.push(Mention {
                start: *s,
                end: s + word.chars().count(),
                numbers: Vec::new(),
                date: Some(date),
            });
            continue;
        }
        if let Some((a, b, c)) = slashed(word) {
            for (d, m) in [(a, b), (b, a)] {
                if (1..=12).contains(&m) && (1..=31).contains(&d) {
                    out.push(Mention {
                        start: *s,
                        end: s + word.chars().count(),
                        numbers: Vec::new(),
                        date: Some((c, m, d)),
                    });
                }
            }
            continue;
        }
        let digits = word.chars().next().is_some_and(|c| c.is_ascii_digit());
        if digits {
            // `90th`, `3rd`: the number before the suffix.
            let number_part: String = word
                .chars()
                .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '\''))
                .collect();
            let numbers = readings(&number_part);
            // `3 November 2026`
            let day = number_part.parse::<u32>().ok();
            if let (Some(d), Some((_, _, w1)), Some((_, e2, w2))) =
                (day, words.get(k + 1), words.get(k + 2))
                && let (Some(m), Ok(y)) = (
                    month(w1.trim_end_matches(',')),
                    w2.trim_end_matches(['.', ',']).parse::<i32>(),
                )
                && (1..=31).contains(&d)
            {
                out.push(Mention {
                    start: *s,
                    end: *e2,
                    numbers: numbers.clone(),
                    date: Some((y, m, d)),
                });
            }
            out.push(Mention {
                start: *s,
                end: s + number_part.chars().count(),
                numbers,
                date: None,
            });
            continue;
        }
        // `November 3, 2026`
        if let Some(m) = month(word)
            && let (Some((_, _, w1)), Some((_, e2, w2))) = (words.get(k + 1), words.get(k + 2))
            && let (Ok(d), Ok(y)) = (
                w1.trim_end_matches([',', '.'])
                    .trim_end_matches(|c: char| c.is_alphabetic())
                    .parse::<u32>(),
                w2.trim_end_matches(['.', ',']).parse::<i32>(),
            )
            && (1..=31).contains(&d)
        {
            out.push(Mention {
                start: *s,
                end: *e2,
                numbers: Vec::new(),
                date: Some((y, m, d)),
            });
            continue;
        }
        if let Some(x) = number_word(word) {
            out.push(Mention {
                start: *s,
                end: s + word.chars().count(),
                numbers: vec![x],
                date: None,
            });
        }
    }
    out
}

/// `03/11/2026`: its three numbers, the year last.
fn slashed(word: &str) -> Option<(u32, u32, i32)> {
    let mut parts = word.split(['/', '.']);
    let a = parts.next()?.parse().ok()?;
    let b = parts.next()?.parse().ok()?;
    let c_text = parts.next()?;
    if parts.next().is_some() || c_text.len() != 4 {
        return None;
    }
    Some((a, b, c_text.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn invoice() -> Value {
        json!({
            "type": "object",
            "properties": {
                "seller": {"type": "string"},
                "issued": {"type": "string", "format": "date"},
                "total": {"type": "number"},
                "currency": {"enum": ["GBP", "EUR"]},
                "summary": {"type": "string", "description": "A one-line summary"},
                "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}}
            },
            "$defs": {"line": {"type": "object", "properties": {
                "item": {"type": "string"}, "qty": {"type": "integer"}, "amount": {"type": "number"}
            }}}
        })
    }

    const TEXT: &str = "Invoice from Brightwater  Tools Ltd, issued 3 November 2026.\n\
        Two hammers: 1.250,00 EUR\nthirty-three nails: 90.50\nTotal due: 1,340.50";

    #[test]
    fn defaults_go_by_type_and_keywords_and_the_keyword_overrides() {
        assert_eq!(Policy::of(&json!({"type": "string"})), Policy::Verbatim);
        assert_eq!(Policy::of(&json!({"type": "integer"})), Policy::Normalized);
        assert_eq!(
            Policy::of(&json!({"type": "string", "format": "date"})),
            Policy::Normalized
        );
        assert_eq!(Policy::of(&json!({"enum": ["a"]})), Policy::Free);
        assert_eq!(Policy::of(&json!({"type": "boolean"})), Policy::Free);
        assert_eq!(
            Policy::of(&json!({"type": "string", "description": "Summarise the mail"})),
            Policy::Free
        );
        assert_eq!(
            Policy::of(&json!({"type": "string", "x-grounding": "free"})),
            Policy::Free
        );
    }

    #[test]
    fn values_from_the_text_are_located_and_invented_ones_are_not() {
        let answer = json!({
            "seller": "brightwater tools ltd",
            "issued": "2026-11-03",
            "total": 1340.5,
            "currency": "EUR",
            "summary": "An invoice for tools",
            "lines": [
                {"item": "hammers", "qty": 2, "amount": 1250},
                {"item": "nails", "qty": 33, "amount": 90.5},
                {"item": "Bristall Bank", "qty": 1, "amount": 9.0}
            ]
        });
        let g = ground(&answer, &invoice(), &[("text", TEXT)]);
        let chars: Vec<char> = TEXT.chars().collect();
        let at = |p: &str| {
            let s = &g.spans[p][0];
            chars[s.start..s.end].iter().collect::<String>()
        };
        assert_eq!(at("/seller"), "Brightwater  Tools Ltd");
        assert_eq!(at("/issued"), "3 November 2026");
        assert_eq!(at("/total"), "1,340.50");
        assert_eq!(at("/lines/0/amount"), "1.250,00");
        assert_eq!(at("/lines/1/qty"), "thirty-three");
        assert_eq!(at("/lines/1/amount"), "90.50");
        // `Two` spells 2.
        assert_eq!(at("/lines/0/qty"), "Two");
        // Enums and summaries are free: neither located nor refused.
        assert!(!g.spans.contains_key("/currency") && !g.spans.contains_key("/summary"));
        let missing: Vec<&str> = g.ungrounded.iter().map(|u| u.pointer.as_str()).collect();
        assert_eq!(
            missing,
            ["/lines/2/item", "/lines/2/qty", "/lines/2/amount"]
        );
        assert_eq!(
            g.ungrounded[0].message(),
            "'Bristall Bank' does not appear in the text; copy the value from the text or leave the field out"
        );
    }

    #[test]
    fn spans_count_characters_and_survive_tricky_text() {
        let text = "Zoë said \"Ünïcode\" \\ ok 🎉\nthen  left  for  Köln";
        let g = ground(
            &json!({"who": "zoë", "city": "KÖLN", "quote": "\"ünïcode\" \\ ok 🎉"}),
            &json!({"type": "object", "properties": {
                "who": {"type": "string"}, "city": {"type": "string"}, "quote": {"type": "string"}}}),
            &[("text", text)],
        );
        assert!(g.ungrounded.is_empty(), "{:?}", g.ungrounded);
        let chars: Vec<char> = text.chars().collect();
        for (pointer, spans) in &g.spans {
            let s = &spans[0];
            let got: String = chars[s.start..s.end].iter().collect();
            let value = match pointer.as_str() {
                "/who" => "zoë",
                "/city" => "KÖLN",
                _ => "\"ünïcode\" \\ ok 🎉",
            };
            assert_eq!(fold(&got), fold(value), "{pointer}");
        }
    }

    #[test]
    fn dates_in_several_spellings_mean_the_same_day() {
        let schema =
            json!({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}});
        for text in [
            "on 3 November 2026",
            "on November 3, 2026",
            "on Nov 3rd, 2026",
            "on 2026-11-03",
            "on 03/11/2026",
            "on 3.11.2026",
        ] {
            let g = ground(&json!({"d": "2026-11-03"}), &schema, &[("text", text)]);
            assert!(g.ungrounded.is_empty(), "{text}: {:?}", g.ungrounded);
        }
        let g = ground(
            &json!({"d": "3101-04-20"}),
            &schema,
            &[("text", "on 3 November 2026")],
        );
        assert_eq!(g.ungrounded.len(), 1);
    }

    #[test]
    fn a_large_input_is_grounded_in_one_pass() {
        let text = "filler words here. ".repeat(1000) + "Ann Smith paid 126.50";
        let g = ground(
            &json!({"name": "Ann Smith", "paid": 126.5}),
            &json!({"type": "object", "properties": {"name": {"type": "string"}, "paid": {"type": "number"}}}),
            &[("text", &text)],
        );
        assert!(g.ungrounded.is_empty());
        assert_eq!(g.spans["/name"][0].start, 19_000);
    }

    proptest::proptest! {
        #[test]
        fn any_substring_is_found_and_its_span_reads_back(
            text in "[a-zA-Zéß🎉\"\\\\ \n\t]{1,80}",
            a in 0usize..80,
            len in 1usize..20,
        ) {
            let chars: Vec<char> = text.chars().collect();
            let a = a % chars.len();
            let b = (a + len).min(chars.len());
            let value: String = chars[a..b].iter().collect();
            proptest::prop_assume!(!fold(&value).is_empty());
            let g = ground(
                &json!({"v": value}),
                &json!({"type": "object", "properties": {"v": {"type": "string"}}}),
                &[("text", &text)],
            );
            proptest::prop_assert!(g.ungrounded.is_empty(), "{:?}", g.ungrounded);
            for s in &g.spans["/v"] {
                let got: String = chars[s.start..s.end].iter().collect();
                proptest::prop_assert_eq!(fold(&got), fold(&value));
            }
        }
    }
}
