//! A grounded grammar: the request's schema written as a Lark grammar for llguidance in
//! which every value that must be grounded can only be what the input says. A `verbatim`
//! string is a run of whole words of an input (llguidance's suffix-automaton substring
//! constraint, over the input as JSON escapes it, so quotes, backslashes and newlines in the
//! text cannot break the JSON); a `normalized` number is one of the numbers the text writes
//! (in digits or in words), a `normalized` date one of its dates; a field the schema does not
//! require may be left out, and a nullable one may be `null`, rather than invented. Parts of
//! the schema with nothing to ground are inlined as llguidance's own JSON Schema grammar
//! (`%json {...}`); free strings there get a length bound unless the schema sets one.
//!
//! Written by hand because no crate turns a JSON Schema into Lark with a hook per leaf:
//! llguidance's JSON Schema compiler has no way to constrain a string to a text's substrings.
//!
//! When the schema uses something this walk does not translate where a grounded value sits
//! (a recursive `$ref`, `allOf`, a pattern of properties), there is no grounded grammar and
//! the plain schema grammar is used; the answer is still checked against the text after
//! decoding, and re-asked.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};
use sift_core::grounding::{Policy, Sources, Written};

/// Inputs larger than this (in bytes, all fields together) are not made into a substring
/// constraint: its compile cost grows with the text (measured in the README's benchmarks),
/// and past this it would hold up every other generation on the model thread.
pub(crate) const MAX_GROUNDED_TEXT: usize = 64 * 1024;

/// Most items a grounded array may hold when its schema sets no bound (the same reason).
const ARRAY_MAX: usize = 64;

/// Whitespace between tokens where it is flexible (every grammar: the grounded one, the
/// JSON Schema parts inlined in it, and the schema-only one): at most two line breaks and an
/// indent of at most 16, or a run of at most 16 spaces and tabs, as a small model otherwise
/// fills its answer's token limit with blank lines (measured on JSONSchemaBench: of the 48
/// answers cut off with runs of any 16, 7 more close with this; one line break at most closed
/// 10 but emptied the example `events` extractor's answer, which two keep right).
pub(crate) const WHITESPACE: &str = r"((\r?\n){1,2}[ \t]{0,16}|[ \t]{1,16})";

/// llguidance's JSON Schema options for whitespace: none, or runs of [`WHITESPACE`].
pub(crate) fn whitespace_options(flexible: bool) -> Map<String, Value> {
    let mut options = Map::new();
    options.insert("whitespace_flexible".into(), json!(flexible));
    if flexible {
        options.insert("whitespace_pattern".into(), json!(WHITESPACE));
    }
    options
}

/// Nesting followed, `$ref`s included.
const MAX_DEPTH: usize = 24;

/// Schema nodes the walk may visit for one grammar, `$ref`s followed each time. A schema
/// whose references branch and nest makes the walk exponential in its depth: one of
/// JSONSchemaBench's held a server core for over ten minutes, past its request's deadline.
/// Past this (a few milliseconds of work) the schema gets the plain grammar instead.
const MAX_VISITS: usize = 50_000;

/// The Lark grammar for `schema` grounded in `sources`, or `None` when nothing in it is
/// grounded, the inputs are too large, or the schema uses what the walk does not translate.
/// `whitespace_flexible` allows whitespace between tokens, as the JSON grammar does.
pub(crate) fn lark(schema: &Value, sources: &Sources, whitespace_flexible: bool) -> Option<String> {
    let size: usize = sources.inputs().iter().map(|(_, t)| t.len()).sum();
    if size == 0 || size > MAX_GROUNDED_TEXT {
        return None;
    }
    let mut g = Gen {
        root: schema,
        sources,
        whitespace_flexible,
        rules: String::new(),
        next: 0,
        grounded: 0,
        text_token: None,
        written: None,
        visits: std::cell::Cell::new(0),
    };
    let start = g.value(schema, "", 0).ok()?;
    if g.grounded == 0 || g.spent() {
        return None;
    }
    let mut out = format!("start: {start}\n");
    if whitespace_flexible {
        let _ = writeln!(out, "WS: /{WHITESPACE}/");
    }
    out.push_str(&g.rules);
    Some(out)
}

/// Why a schema (or a part of it) has no grounded grammar.
#[derive(Debug, PartialEq)]
enum Stop {
    /// It uses what the walk does not translate: no grounded grammar at all.
    Untranslated,
    /// No value of it can be grounded in the inputs (a number where the text writes none):
    /// an optional member holding it is left out, a list of it is empty, and a required
    /// member makes its object impossible in turn.
    Impossible,
}

use Stop::{Impossible, Untranslated};

struct Gen<'a> {
    root: &'a Value,
    sources: &'a Sources,
    whitespace_flexible: bool,
    /// Rules and tokens written so far, one a line.
    rules: String,
    next: usize,
    /// Grounded leaves written.
    grounded: usize,
    /// The token for a verbatim string, once written.
    text_token: Option<String>,
    /// The numbers and dates the inputs write, read once when first needed.
    written: Option<Written>,
    /// Schema nodes visited so far (see [`MAX_VISITS`]).
    visits: std::cell::Cell<usize>,
}

impl<'a> Gen<'a> {
    /// Counts one node visited; `false` once the walk has used its budget.
    fn visit(&self) -> bool {
        let n = self.visits.get().saturating_add(1);
        self.visits.set(n);
        n <= MAX_VISITS
    }

    /// Whether the walk ran out of its budget (its result is then not used).
    fn spent(&self) -> bool {
        self.visits.get() > MAX_VISITS
    }

    fn name(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    /// The literal `lit`, with optional whitespace when whitespace is flexible: before a
    /// closing bracket, after anything else (never two runs of it in a row).
    fn sep(&self, lit: &str) -> String {
        let quoted = lark_string(lit);
        match (self.whitespace_flexible, lit) {
            (false, _) => quoted,
            (true, "}" | "]") => format!("WS? {quoted}"),
            (true, _) => format!("{quoted} WS?"),
        }
    }

    /// A Lark expression for any value of `schema` at rule path `rule`.
    fn value(&mut self, schema: &Value, rule: &str, depth: usize) -> Result<String, Stop> {
        if depth > MAX_DEPTH || !self.visit() {
            return Err(Untranslated);
        }
        let schema = self.resolve(schema)?;
        if !self.holds_grounded(schema, rule, depth) {
            return self.inline(schema, depth);
        }
        let Some(obj) = schema.as_object() else {
            return Err(Untranslated);
        };
        if obj.contains_key("allOf")
            || obj.contains_key("patternProperties")
            || obj.contains_key("if")
            || obj.contains_key("not")
        {
            return Err(Untranslated);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = obj.get(key) {
                let mut alts = Vec::new();
                for b in branches {
                    match self.value(b, rule, depth + 1) {
                        Ok(alt) => alts.push(alt),
                        Err(Impossible) => {}
                        Err(e) => return Err(e),
                    }
                }
                if alts.is_empty() {
                    return Err(Impossible);
                }
                return Ok(format!("({})", alts.join(" | ")));
            }
        }
        let mut alts = Vec::new();
        let mut impossible = false;
        for t in types(schema) {
            let alt = match t {
                "null" => Ok("\"null\"".to_owned()),
                "object" => self.object(schema, rule, depth),
                "array" => self.array(schema, rule, depth),
                "string" | "number" | "integer" => self.leaf(schema, t, rule, depth),
                "boolean" => Ok("(\"true\" | \"false\")".to_owned()),
                _ => Err(Untranslated),
            };
            match alt {
                Ok(alt) => alts.push(alt),
                Err(Impossible) => impossible = true,
                Err(e) => return Err(e),
            }
        }
        if alts.is_empty() {
            return Err(if impossible { Impossible } else { Untranslated });
        }
        Ok(format!("({})", alts.join(" | ")))
    }

    /// Whether some leaf under `schema` is grounded.
    fn holds_grounded(&self, schema: &Value, rule: &str, depth: usize) -> bool {
        if depth > MAX_DEPTH || !self.visit() {
            return false;
        }
        let Ok(schema) = self.resolve(schema) else {
            return false;
        };
        if schema.get("enum").is_some() || schema.get("const").is_some() {
            return false;
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(branches)) = schema.get(key) {
                return branches
                    .iter()
                    .any(|b| self.holds_grounded(b, rule, depth + 1));
            }
        }
        let ts = types(schema);
        if ts.contains(&"object")
            && let Some(props) = schema.get("properties").and_then(Value::as_object)
            && props
                .iter()
                .any(|(k, v)| self.holds_grounded(v, &child_rule(rule, k), depth + 1))
        {
            return true;
        }
        if ts.contains(&"array")
            && let Some(items) = schema.get("items")
            && self.holds_grounded(items, &format!("{rule}[]"), depth + 1)
        {
            return true;
        }
        ts.iter()
            .any(|t| matches!(*t, "string" | "number" | "integer"))
            && self.sources.policy(rule, schema) != Policy::Free
    }

    /// `schema`'s local `$ref` followed.
    fn resolve<'s>(&self, schema: &'s Value) -> Result<&'s Value, Stop>
    where
        'a: 's,
    {
        let mut current = schema;
        for _ in 0..16 {
            match current.get("$ref").and_then(Value::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|p| self.root.pointer(p)) {
                    Some(target) => current = target,
                    None => return Err(Untranslated),
                },
                None => return Ok(current),
            }
        }
        Err(Untranslated)
    }

    fn object(&mut self, schema: &Value, rule: &str, depth: usize) -> Result<String, Stop> {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return self.inline(schema, depth);
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // Each property as `"key": value`, with whether it must be there.
        let colon = self.sep(":");
        let comma = self.sep(",");
        let mut items: Vec<(String, bool)> = Vec::new();
        for (k, sub) in props {
            let required = required.contains(&k.as_str());
            let value = match self.value(sub, &child_rule(rule, k), depth + 1) {
                Ok(v) => v,
                // Left out: the text holds no value for it.
                Err(Impossible) if !required => continue,
                Err(e) => return Err(e),
            };
            let key = lark_string(&json_string(k));
            items.push((format!("{key} {colon} {value}"), required));
        }
        // The members in order, each optional one may be left out: `t_i` is what may follow
        // once something was written (each member after a comma), `h_i` what may come first.
        let name = self.name("obj");
        let mut tail: Option<String> = None;
        let mut head: Option<String> = None;
        for (i, (item, required)) in items.iter().enumerate().rev() {
            let t = format!("{name}_t{i}");
            let h = format!("{name}_h{i}");
            let after = tail.as_ref().map(|t| format!(" {t}")).unwrap_or_default();
            if *required {
                let _ = writeln!(self.rules, "{t}: {comma} {item}{after}");
                let _ = writeln!(self.rules, "{h}: {item}{after}");
            } else {
                let _ = writeln!(self.rules, "{t}: ({comma} {item})?{after}");
                let rest = head.as_ref().map(|h| format!(" | {h}")).unwrap_or_default();
                let _ = writeln!(self.rules, "{h}: {item}{after}{rest}");
            }
            tail = Some(t);
            head = Some(h);
        }
        let all_optional = items.iter().all(|(_, r)| !r);
        let body = match head {
            None => String::new(),
            Some(h) if all_optional => format!(" {h}?"),
            Some(h) => format!(" {h}"),
        };
        let (open, close) = (self.sep("{"), self.sep("}"));
        let _ = writeln!(self.rules, "{name}: {open}{body} {close}");
        Ok(name)
    }

    fn array(&mut self, schema: &Value, rule: &str, depth: usize) -> Result<String, Stop> {
        let Some(items) = schema.get("items").filter(|i| i.is_object()) else {
            return self.inline(schema, depth);
        };
        let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        // A list held to the text has at most one item per line or sentence of it: a small
        // model otherwise goes on listing (the example invoice's three lines, twelve times).
        let max = schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .map_or(ARRAY_MAX, |m| m.min(ARRAY_MAX as u64) as usize)
            .min(segments(self.sources).max(1));
        if min > 1 || max == 0 {
            return Err(Untranslated);
        }
        let (open, close) = (self.sep("["), self.sep("]"));
        let item = match self.value(items, &format!("{rule}[]"), depth + 1) {
            Ok(item) => item,
            // Nothing in the text can be an item: the list is empty.
            Err(Impossible) if min == 0 => return Ok(format!("{open} {close}")),
            Err(e) => return Err(e),
        };
        let name = self.name("arr");
        let more = max.saturating_sub(1);
        let comma = self.sep(",");
        // (llguidance refuses a repetition of `{0,0}`.)
        let list = if more == 0 {
            item.clone()
        } else {
            format!("{item} ({comma} {item}){{0,{more}}}")
        };
        let body = if min == 0 { format!("({list})?") } else { list };
        let _ = writeln!(self.rules, "{name}: {open} {body} {close}");
        Ok(name)
    }

    /// A string, number or integer leaf.
    fn leaf(&mut self, schema: &Value, ty: &str, rule: &str, depth: usize) -> Result<String, Stop> {
        // The type alone (a leaf typed `["string", "null"]` is read one type at a time).
        let mut one = schema.clone();
        if let Some(obj) = one.as_object_mut() {
            obj.insert("type".into(), json!(ty));
        }
        let policy = self.sources.policy(rule, &one);
        match (policy, ty) {
            (Policy::Verbatim, "string") => {
                self.grounded += 1;
                let token = self.text_token();
                match string_regex(schema) {
                    // No word run of the text can match the pattern: the field can only be
                    // left out (a grammar that let its key be written would leave the model
                    // nowhere to go after it).
                    Some(_) if !self.pattern_found(schema) => Err(Impossible),
                    Some(re) => Ok(self.narrowed(&re)),
                    None => Ok(token),
                }
            }
            (Policy::Normalized, "string")
                if matches!(schema.get("format").and_then(Value::as_str), Some("date")) =>
            {
                let dates = self.written().dates.clone();
                if dates.is_empty() {
                    self.grounded += 1;
                    return Err(Impossible);
                }
                self.grounded += 1;
                let alts: Vec<String> =
                    dates.iter().map(|d| lark_string(&json_string(d))).collect();
                Ok(format!("({})", alts.join(" | ")))
            }
            (Policy::Normalized, "number" | "integer") => {
                let literals: Vec<String> = self
                    .written()
                    .numbers
                    .iter()
                    .copied()
                    .filter(|x| ty == "number" || x.fract() == 0.0)
                    .filter(|x| within(schema, *x))
                    .filter_map(|x| number_literal(x, ty == "integer"))
                    .collect();
                if literals.is_empty() {
                    self.grounded += 1;
                    return Err(Impossible);
                }
                self.grounded += 1;
                let alts: Vec<String> = literals.iter().map(|l| lark_string(l)).collect();
                Ok(format!("({})", alts.join(" | ")))
            }
            _ => self.inline(&one, depth),
        }
    }

    /// The numbers and dates the inputs write.
    fn written(&mut self) -> &Written {
        let sources = self.sources;
        self.written.get_or_insert_with(|| sources.written())
    }

    /// The token of a verbatim string: whole words of one of the inputs, as JSON writes
    /// them, quoted; at least one character.
    fn text_token(&mut self) -> String {
        if let Some(t) = &self.text_token {
            return t.clone();
        }
        let mut alts = Vec::new();
        for (i, (_, text)) in self.sources.inputs().iter().enumerate() {
            let chunks = chunks(text);
            if chunks.is_empty() {
                continue;
            }
            let inner = format!("TXT{i}_IN");
            let list = Value::from(chunks);
            let _ = writeln!(
                self.rules,
                "{inner}: %regex {{\"substring_chunks\": {list}}} & /.+/"
            );
            alts.push(format!("\"\\\"\" {inner} \"\\\"\""));
        }
        let _ = writeln!(self.rules, "TXT: {}", alts.join(" | "));
        self.text_token = Some("TXT".into());
        "TXT".into()
    }

    /// Whether the inputs (as JSON escapes them) hold a match of `schema`'s `pattern`
    /// somewhere, its anchors set aside; `true` when it sets none, or when the pattern is
    /// one this check cannot read (llguidance then decides).
    fn pattern_found(&self, schema: &Value) -> bool {
        let Some(p) = schema.get("pattern").and_then(Value::as_str) else {
            return true;
        };
        let (_, p, _) = unanchored(p);
        let Ok(re) = regex::RegexBuilder::new(p).size_limit(1 << 20).build() else {
            return true;
        };
        self.sources.inputs().iter().any(|(_, text)| {
            let escaped = json_string(text);
            re.is_match(&escaped[1..escaped.len() - 1])
        })
    }

    /// A verbatim string token that also matches `re` (Lark regexes joined by `&`: the
    /// string's pattern and length bounds, over its JSON-escaped text): the text's words,
    /// as the schema allows them.
    fn narrowed(&mut self, re: &str) -> String {
        let n = self.next;
        self.next += 1;
        let name = format!("TXTP{n}");
        let inputs: Vec<String> = (0..self.sources.inputs().len())
            .filter(|i| self.rules.contains(&format!("TXT{i}_IN:")))
            .map(|i| format!("TXT{i}_IN"))
            .collect();
        let _ = writeln!(self.rules, "{name}_IN: ({}) & {re}", inputs.join(" | "));
        let _ = writeln!(self.rules, "{name}: \"\\\"\" {name}_IN \"\\\"\"");
        name
    }

    /// `schema` as llguidance's own JSON Schema grammar, free strings bounded.
    fn inline(&mut self, schema: &Value, depth: usize) -> Result<String, Stop> {
        let mut schema = self.inline_refs(schema, depth)?;
        // Not the word pattern: a grounded grammar llguidance refuses costs the answer its
        // grounding (the schema's own grammar is used instead), and the pattern's
        // intersections are what it may refuse.
        crate::bounds::bound_free_values(&mut schema, crate::bounds::Tight::NoWords);
        if let Value::Object(obj) = &mut schema {
            obj.insert(
                "x-guidance".into(),
                Value::Object(whitespace_options(self.whitespace_flexible)),
            );
        }
        Ok(format!("%json {schema}"))
    }

    /// `schema` with its local `$ref`s replaced by what they point at (an inlined schema
    /// stands alone); recursion cannot be.
    fn inline_refs(&self, schema: &Value, depth: usize) -> Result<Value, Stop> {
        if depth > MAX_DEPTH || !self.visit() {
            return Err(Untranslated);
        }
        match schema {
            Value::Object(obj) => {
                if obj.contains_key("$ref") {
                    let target = self.resolve(schema)?;
                    return self.inline_refs(target, depth + 1);
                }
                let mut out = Map::new();
                for (k, v) in obj {
                    if k == "$defs" || k == "definitions" {
                        continue;
                    }
                    out.insert(k.clone(), self.inline_refs(v, depth + 1)?);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .map(|v| self.inline_refs(v, depth + 1))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }
}

/// The types `schema` allows (`type` as a string or a list).
fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ if schema.get("properties").is_some() => vec!["object"],
        _ => Vec::new(),
    }
}

fn child_rule(rule: &str, key: &str) -> String {
    if rule.is_empty() {
        key.to_owned()
    } else {
        format!("{rule}.{key}")
    }
}

/// Whether `x` is within the schema's `minimum`/`maximum` (and exclusive ones).
fn within(schema: &Value, x: f64) -> bool {
    let get = |k: &str| schema.get(k).and_then(Value::as_f64);
    get("minimum").is_none_or(|m| x >= m)
        && get("maximum").is_none_or(|m| x <= m)
        && get("exclusiveMinimum").is_none_or(|m| x > m)
        && get("exclusiveMaximum").is_none_or(|m| x < m)
}

/// `x` as a JSON number literal (`126.5`, `33`).
fn number_literal(x: f64, integer: bool) -> Option<String> {
    if integer || (x.fract() == 0.0 && x.abs() < 1e15) {
        if x.abs() >= 9.0e15 {
            return None;
        }
        return Some(format!("{}", x as i64));
    }
    serde_json::Number::from_f64(x).map(|n| n.to_string())
}

/// A `pattern` without its anchors: whether it had `^`, the rest, and whether it had an
/// (unescaped) `$`.
fn unanchored(p: &str) -> (bool, &str, bool) {
    let (start, p) = match p.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    match p.strip_suffix('$').filter(|r| !r.ends_with('\\')) {
        Some(rest) => (start, rest, true),
        None => (start, p, false),
    }
}

/// The regular expressions a string of `schema` must match beyond being text (as Lark
/// regexes joined by `&`), from its
/// `pattern` (a search, so unanchored ends may hold anything) and its length bounds; `None`
/// when it sets neither. Lengths count JSON-escaped characters here (an escape is two), a
/// looser bound the answer's validation tightens.
fn string_regex(schema: &Value) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        let (start, p, end) = unanchored(p);
        let open = |anchored: bool| if anchored { "" } else { ".*" };
        parts.push(format!("{}({p}){}", open(start), open(end)));
    }
    let min = schema.get("minLength").and_then(Value::as_u64);
    let max = schema.get("maxLength").and_then(Value::as_u64);
    if min.is_some() || max.is_some() {
        let min = min.unwrap_or(0);
        parts.push(match max {
            Some(max) => format!(".{{{min},{}}}", max.saturating_mul(2)),
            None => format!(".{{{min},}}"),
        });
    }
    if parts.is_empty() {
        return None;
    }
    // Each a Lark regex, intersected with the text's words (and with each other).
    Some(
        parts
            .iter()
            .map(|p| format!("/{}/", p.replace('/', "\\/")))
            .collect::<Vec<_>>()
            .join(" & "),
    )
}

/// The parts of the inputs that hold a letter or digit, split at lines, sentences and
/// semicolons ("Team: Ava, 30; Liam, 35"): the most items a list held to the text may have.
/// (Splitting at commas too let the example invoice, whose addresses hold commas, list
/// items until the token limit.)
fn segments(sources: &Sources) -> usize {
    sources
        .inputs()
        .iter()
        .flat_map(|(_, t)| t.split(['\n', '\r', ';']))
        .flat_map(|line| line.split(". "))
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .count()
}

/// `s` as a JSON string literal, quotes included.
fn json_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// `s` as a Lark string literal (Lark's literals are read as JSON strings).
fn lark_string(s: &str) -> String {
    json_string(s)
}

/// `text` as JSON writes it inside a string, cut where a value may start or end: words
/// whole (runs of letters and digits, except in scripts written without spaces, whose
/// characters stand alone), every other character alone, an escape never split.
pub(crate) fn chunks(text: &str) -> Vec<String> {
    let wordy = sift_core::grounding::joins_words;
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if wordy(c) {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        let escaped = json_string(&c.to_string());
        out.push(escaped[1..escaped.len() - 1].to_owned());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests;
