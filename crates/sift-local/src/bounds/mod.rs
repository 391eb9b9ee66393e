//! Bounds the embedded model's grammar puts on free values (those nothing grounds) where the
//! schema sets none. A small model asked for an instance of a real-world schema otherwise
//! keeps going until its token limit: one string repeated, one more list item, one more map
//! key. The bounds are the grammar's only: answers are still validated against the schema as
//! written, and every answer the bounded grammar allows is one the schema allows.

use serde_json::{Value, json};

/// The length bound given to a free string whose schema sets none.
pub(crate) const FREE_STRING_MAX: u64 = 256;

/// Most items a free array may hold when its schema sets no bound: a small model asked to make
/// a record up varies its items (so DRY sampling, which stops exact repeats, does not stop it)
/// and keeps adding them. Lists read from the text are grounded, bounded by the text instead.
pub(crate) const FREE_ARRAY_MAX: u64 = 16;

/// The same for a free array whose items are objects or arrays: each item costs many tokens.
pub(crate) const FREE_COMPOUND_ARRAY_MAX: u64 = 8;

/// Most keys a map (an object that lists no properties) may hold beyond its required ones
/// when its schema sets no `maxProperties`, for the same reason.
pub(crate) const FREE_MAP_MAX: u64 = 8;

/// Longest run of characters other than whitespace in a free string, and longest key of a
/// map. A small model making a record up writes letter soups ("A-I-J-K-..."), counts
/// ("2108-2109-2110-...") and digit runs without a space until the string's bound, and map
/// keys of thousands of characters (measured on JSONSchemaBench: 9 of the 41 answers cut off
/// by the token limit ended inside such a run). 64 keeps a SHA-256 in hex, most URLs, and
/// every word.
pub(crate) const FREE_WORD_MAX: u64 = 64;

/// The largest magnitude of a free number, 2^53 - 1: the integers every JSON reader keeps
/// exact. Without it an integer is any run of digits, and a small model writes them by the
/// thousand (4 of the 41 cut-off answers above).
pub(crate) const FREE_NUMBER_MAX: i64 = 9_007_199_254_740_991;

/// Decimal places of a free number (`multipleOf` 10^-6), for the same reason.
pub(crate) const FREE_DECIMALS: i32 = 6;

/// Which string rules of [`bound_free_values`] apply, tightest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tight {
    /// Every rule.
    All,
    /// No word pattern.
    NoWords,
    /// No word pattern, and no length bound on strings with a pattern or format of their own.
    Loose,
}

/// Lists and maps a value of any type (`{}`, a map's values or a list's items that the schema
/// does not describe) may nest; below them, only plain values. A small model otherwise nests
/// one made-up map in another until its token limit.
pub(crate) const FREE_DEPTH: usize = 3;

/// Gives, in `schema` (the grammar's copy), where a subschema that names no type counts as
/// each of them:
/// - every string subschema that sets no `maxLength`, enum or const a `maxLength` of
///   [`FREE_STRING_MAX`] (or its `minLength`, when more), and, when it sets no `pattern` or
///   `format` either, a pattern that ends every run of non-whitespace at [`FREE_WORD_MAX`];
/// - every number subschema that sets no bound on a side a bound of [`FREE_NUMBER_MAX`]
///   there, and, when it is not an integer and sets no `multipleOf`, at most
///   [`FREE_DECIMALS`] decimal places;
/// - every array subschema that sets no `maxItems` one of [`FREE_ARRAY_MAX`], or
///   [`FREE_COMPOUND_ARRAY_MAX`] when its items are (or may be) objects or arrays (or its
///   `minItems`, or its `prefixItems`, when more);
/// - every object that lists its properties and says nothing of others
///   `"additionalProperties": false` (llguidance, like JSON Schema, otherwise allows any key
///   with any value: what a small model invents), and every map (an object listing none) a
///   `maxProperties` of [`FREE_MAP_MAX`] and keys of [`FREE_WORD_MAX`] characters at most.
///
/// The object rules are left out of schemas whose objects are combined with others (`allOf`,
/// or `$ref`, `anyOf` or `oneOf` beside an object's own keywords, unless each branch only
/// requires listed properties): an intersection of closed objects can admit less than the
/// schema does, or nothing.
///
/// `tight` says which of the string rules apply: llguidance gives up on some intersections
/// of patterns within its budget, and the caller then asks for less (see [`Tight`]).
pub(crate) fn bound_free_values(schema: &mut Value, tight: Tight) {
    let mut walk = Walk {
        objects: !combines_objects(schema, 0),
        words: tight == Tight::All,
        patterned: tight != Tight::Loose,
        // Values of any type are defined once, in the root's `$defs`, where a `$ref` from
        // anywhere finds them: llguidance compiles each copy of a schema on its own, and a
        // large schema with a copy for every free value outgrows its lexer. Inline when a
        // nested `$id` would move what `#/$defs/...` means.
        shared: schema.is_object() && !nested_id(schema, 0),
        used: 0,
    };
    walk.walk(schema, 0);
    if walk.used > 0
        && let Value::Object(root) = schema
    {
        let defs = root
            .entry("$defs")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(defs) = defs {
            for levels in 0..walk.used {
                defs.insert(any_name(levels), walk.any_value_inline(levels));
            }
        }
    }
}

/// Where the root's `$defs` holds the value of any type `levels` deep.
fn any_name(levels: usize) -> String {
    format!("sift-free-any-{levels}")
}

/// Whether a subschema below the root sets its own `$id` (or draft 4's `id`).
fn nested_id(v: &Value, depth: usize) -> bool {
    if depth > 64 {
        return true;
    }
    match v {
        Value::Object(obj) => {
            (depth > 0
                && ["$id", "id"]
                    .iter()
                    .any(|k| obj.get(*k).is_some_and(Value::is_string)))
                || obj.iter().filter(|(k, _)| !is_data(k)).any(|(k, child)| {
                    if is_schema_map(k) {
                        child
                            .as_object()
                            .is_some_and(|m| m.values().any(|c| nested_id(c, depth + 1)))
                    } else {
                        nested_id(child, depth + 1)
                    }
                })
        }
        Value::Array(items) => items.iter().any(|c| nested_id(c, depth + 1)),
        _ => false,
    }
}

/// Keywords that make an object's allowed keys depend on another subschema.
const COMBINING: &[&str] = &[
    "allOf",
    "if",
    "not",
    "dependencies",
    "dependentSchemas",
    "dependentRequired",
    "unevaluatedProperties",
];

/// Object keywords that are intersected with sibling `$ref`, `anyOf` and `oneOf`.
const OBJECT_KEYWORDS: &[&str] = &[
    "properties",
    "additionalProperties",
    "patternProperties",
    "required",
    "minProperties",
    "maxProperties",
];

/// Whether any subschema of `v` combines objects (see [`bound_free_values`]).
fn combines_objects(v: &Value, depth: usize) -> bool {
    if depth > 64 {
        return true;
    }
    match v {
        Value::Object(obj) => {
            if COMBINING.iter().any(|k| obj.contains_key(*k)) {
                return true;
            }
            let branches = obj.contains_key("$ref")
                || ["anyOf", "oneOf"]
                    .iter()
                    .any(|k| obj.contains_key(*k) && !only_requires_listed(obj, k));
            if branches && OBJECT_KEYWORDS.iter().any(|k| obj.contains_key(*k)) {
                return true;
            }
            obj.iter()
                .filter(|(k, _)| !is_data(k))
                .any(|(_, child)| combines_objects(child, depth + 1))
        }
        Value::Array(items) => items.iter().any(|c| combines_objects(c, depth + 1)),
        _ => false,
    }
}

/// Whether every branch of `obj[keyword]` (an `anyOf` or `oneOf`) only requires some of the
/// properties `obj` lists ("one of these must be there"): closing `obj` leaves each branch
/// what it had.
fn only_requires_listed(obj: &serde_json::Map<String, Value>, keyword: &str) -> bool {
    let listed = obj.get("properties").and_then(Value::as_object);
    let Some(branches) = obj.get(keyword).and_then(Value::as_array) else {
        return false;
    };
    branches.iter().all(|b| {
        b.as_object().is_some_and(|b| {
            // (The schema a provider is given says `"type": "object"` where only object
            // keywords are: see sift-core's `close_objects`.)
            b.iter().all(|(k, v)| match k.as_str() {
                "required" | "title" | "description" | "$comment" => true,
                "type" => v == "object",
                _ => false,
            }) && b
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| {
                    r.iter().all(|name| {
                        name.as_str()
                            .is_some_and(|n| listed.is_some_and(|l| l.contains_key(n)))
                    })
                })
        })
    })
}

/// Makes the branches of a `oneOf` that only require listed properties exclusive, as
/// `oneOf` means and llguidance does not enforce (it reads `oneOf` as `anyOf`, and a small
/// model fills every field, so the answer matches every branch): each branch leaves out the
/// keys the other branches require beyond its own. A branch that cannot match alone (another
/// requires only keys it requires too, or the object itself requires a key it must leave
/// out) is dropped, unless none would be left.
fn exclusive_branches(obj: &mut serde_json::Map<String, Value>) {
    use std::collections::BTreeSet;
    if !only_requires_listed(obj, "oneOf") {
        return;
    }
    let names = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| required_names(o).into_iter().collect())
            .unwrap_or_default()
    };
    let required: BTreeSet<String> = required_names(obj).into_iter().collect();
    let Some(Value::Array(branches)) = obj.get("oneOf") else {
        return;
    };
    let needs: Vec<BTreeSet<String>> = branches.iter().map(names).collect();
    let mut exclusive = Vec::new();
    for (i, branch) in branches.iter().enumerate() {
        let mut left_out = BTreeSet::new();
        let mut alone = true;
        for (j, other) in needs.iter().enumerate() {
            if j == i {
                continue;
            }
            let beyond: Vec<&String> = other.difference(&needs[i]).collect();
            alone &= !beyond.is_empty();
            left_out.extend(beyond);
        }
        if !alone || left_out.iter().any(|k| required.contains(*k)) {
            continue;
        }
        let mut branch = branch.clone();
        let forbidden: serde_json::Map<String, Value> = left_out
            .into_iter()
            .map(|k| (k.clone(), Value::Bool(false)))
            .collect();
        branch["properties"] = Value::Object(forbidden);
        exclusive.push(branch);
    }
    if !exclusive.is_empty() {
        obj.insert("oneOf".into(), Value::Array(exclusive));
    }
}

/// The names an object schema's `required` lists.
fn required_names(obj: &serde_json::Map<String, Value>) -> Vec<String> {
    obj.get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Keywords whose values are data (or names), not schemas.
fn is_data(keyword: &str) -> bool {
    matches!(
        keyword,
        "enum" | "const" | "default" | "examples" | "required" | "x-guidance"
    )
}

/// Keywords whose values map names to schemas.
fn is_schema_map(keyword: &str) -> bool {
    matches!(
        keyword,
        "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas"
    )
}

/// One walk of [`bound_free_values`].
struct Walk {
    /// Whether the object rules apply.
    objects: bool,
    /// Whether free strings get the word pattern.
    words: bool,
    /// Whether strings with a pattern or format of their own get the length bound.
    patterned: bool,
    /// Whether values of any type are `$ref`s to the root's `$defs`.
    shared: bool,
    /// How many levels of those the root's `$defs` must hold.
    used: usize,
}

/// Whether the schema's `type` (a name or a list) allows `name`; `None` when it sets none.
fn allows(schema: &serde_json::Map<String, Value>, name: &str) -> Option<bool> {
    match schema.get("type") {
        Some(Value::String(t)) => Some(t == name),
        Some(Value::Array(ts)) => Some(ts.iter().any(|t| t == name)),
        _ => None,
    }
}

/// The number rules of [`bound_free_values`] on one number schema; `fractions`: whether it
/// allows numbers that are not integers.
fn bound_number(obj: &mut serde_json::Map<String, Value>, fractions: bool) {
    // A side is bounded by `minimum`, or by a numeric `exclusiveMinimum` (draft 4's is a
    // flag on `minimum`). A bound is added only where it keeps what the other side allows.
    let bound = |obj: &serde_json::Map<String, Value>, inclusive: &str, exclusive: &str| {
        obj.get(inclusive)
            .and_then(Value::as_f64)
            .or_else(|| obj.get(exclusive).and_then(Value::as_f64))
    };
    let most = FREE_NUMBER_MAX as f64;
    let low = bound(obj, "minimum", "exclusiveMinimum");
    let high = bound(obj, "maximum", "exclusiveMaximum");
    if low.is_none() && high.is_none_or(|h| h > -most) {
        obj.insert("minimum".into(), json!(-FREE_NUMBER_MAX));
    }
    if high.is_none() && low.is_none_or(|l| l < most) {
        obj.insert("maximum".into(), json!(FREE_NUMBER_MAX));
    }
    if fractions && !obj.contains_key("multipleOf") {
        obj.insert("multipleOf".into(), json!(10f64.powi(-FREE_DECIMALS)));
    }
}

/// The pattern of a free string: runs of non-whitespace end at [`FREE_WORD_MAX`].
fn word_pattern() -> String {
    format!(r"^\s*(\S{{1,{FREE_WORD_MAX}}}\s+)*\S{{0,{FREE_WORD_MAX}}}$")
}

/// The pattern of a free map's keys: at most [`FREE_WORD_MAX`] characters.
fn key_pattern() -> String {
    format!("^.{{1,{FREE_WORD_MAX}}}$")
}

impl Walk {
    /// Bounds the schema `v` and every schema under it.
    fn walk(&mut self, v: &mut Value, depth: usize) {
        if depth > 64 {
            return;
        }
        let Value::Object(obj) = v else {
            return;
        };
        let sets = |obj: &serde_json::Map<String, Value>, keys: &[&str]| {
            keys.iter().any(|k| obj.contains_key(*k))
        };
        // A schema that names no type and defers to no other schema takes any value: each type's
        // bound applies to it (llguidance reads `maxLength` and the rest per type, as JSON Schema
        // does).
        let untyped = !obj.contains_key("type")
            && !sets(
                obj,
                &[
                    "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "not", "if",
                ],
            );
        let is_string = allows(obj, "string").unwrap_or(untyped);
        let is_array = allows(obj, "array").unwrap_or_else(|| untyped || obj.contains_key("items"));
        let is_object = allows(obj, "object").unwrap_or_else(|| {
            untyped
                || ["properties", "additionalProperties", "patternProperties"]
                    .iter()
                    .any(|k| obj.contains_key(*k))
        });
        // A `pattern` or a `format` is bounded too (llguidance intersects them: a URI is
        // otherwise any run of URI characters, and a small model writes one without end); one
        // llguidance cannot intersect in its budget, or that needs more than the bound, is
        // compiled without it (see `Grammars::compile`).
        let shaped = sets(obj, &["pattern", "format"]);
        if is_string && !sets(obj, &["maxLength", "enum", "const"]) && (self.patterned || !shaped) {
            let least = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            obj.insert("maxLength".into(), json!(FREE_STRING_MAX.max(least)));
            if self.words && !shaped {
                obj.insert("pattern".into(), json!(word_pattern()));
            }
        }
        let is_integer = allows(obj, "integer").unwrap_or(untyped);
        let is_number = allows(obj, "number").unwrap_or(untyped);
        if (is_integer || is_number) && !sets(obj, &["enum", "const"]) {
            bound_number(obj, is_number);
        }
        if is_array && !obj.contains_key("maxItems") {
            let least = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let prefix = obj
                .get("prefixItems")
                .and_then(Value::as_array)
                .map_or(0, |p| p.len() as u64);
            // Items of any kind (no `items`) may be objects or arrays.
            let compound = obj.get("items").is_none_or(|items| {
                items.as_object().is_some_and(|items| {
                    sets(
                        items,
                        &["properties", "items", "$ref", "additionalProperties"],
                    ) || allows(items, "object") == Some(true)
                        || allows(items, "array") == Some(true)
                })
            });
            let most = if compound {
                FREE_COMPOUND_ARRAY_MAX
            } else {
                FREE_ARRAY_MAX
            };
            let max = most.max(least).max(prefix);
            obj.insert("maxItems".into(), json!(max));
        }
        if is_array && !sets(obj, &["items", "enum", "const"]) {
            // Items of any kind, nesting at most `FREE_DEPTH` deep. (A `prefixItems` schema's
            // `items` is what follows the prefix: the same rule.)
            obj.insert("items".into(), self.any_value(FREE_DEPTH - 1));
        }
        if self.objects && is_object && !sets(obj, &["enum", "const"]) {
            self.close(obj);
        }
        exclusive_branches(obj);
        for (k, child) in obj.iter_mut() {
            if is_data(k) {
                continue;
            }
            if is_schema_map(k) {
                if let Value::Object(map) = child {
                    for sub in map.values_mut() {
                        self.walk(sub, depth + 1);
                    }
                }
                continue;
            }
            match child {
                Value::Array(items) => {
                    for sub in items {
                        self.walk(sub, depth + 1);
                    }
                }
                sub => self.walk(sub, depth + 1),
            }
        }
    }

    /// A value of any type with every bound above, holding lists and maps `levels` deep: a
    /// `$ref` to the root's definition when shared. Bounded already, so the walk leaves it as it
    /// is.
    fn any_value(&mut self, levels: usize) -> Value {
        if self.shared {
            self.used = self.used.max(levels + 1);
            json!({ "$ref": format!("#/$defs/{}", any_name(levels)) })
        } else {
            self.any_value_inline(levels)
        }
    }

    /// The definition of [`Walk::any_value`]; what it holds is itself shared when the walk
    /// shares.
    fn any_value_inline(&mut self, levels: usize) -> Value {
        let mut any = json!({
            "maxLength": FREE_STRING_MAX,
            "minimum": -FREE_NUMBER_MAX,
            "maximum": FREE_NUMBER_MAX,
            "multipleOf": 10f64.powi(-FREE_DECIMALS),
        });
        if self.words {
            any["pattern"] = json!(word_pattern());
        }
        if levels == 0 {
            any["type"] = json!(["string", "number", "boolean", "null"]);
        } else {
            let inner = self.any_value(levels - 1);
            any["maxItems"] = json!(FREE_COMPOUND_ARRAY_MAX);
            any["items"] = inner.clone();
            any["maxProperties"] = json!(FREE_MAP_MAX);
            any["patternProperties"] = json!({ key_pattern(): inner });
            any["additionalProperties"] = json!(false);
        }
        any
    }

    /// Bounds the keys an object's `additionalProperties` admits: llguidance reads no
    /// `propertyNames`, so their schema moves to a pattern every key up to [`FREE_WORD_MAX`]
    /// characters matches. Only for maps (a listed name matching the pattern would have to
    /// fit both schemas), and not beside patterns of the schema's own (a key matching one of
    /// those must fit its schema, not this one); the caller makes sure no key is required.
    fn bound_keys(&mut self, obj: &mut serde_json::Map<String, Value>) {
        let values = match obj.get("additionalProperties") {
            None | Some(Value::Bool(true)) => self.any_value(FREE_DEPTH - 1),
            Some(s @ Value::Object(_)) => s.clone(),
            Some(_) => return,
        };
        if obj.contains_key("patternProperties") {
            return;
        }
        obj.insert("patternProperties".into(), json!({ key_pattern(): values }));
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }

    /// The object rules of [`bound_free_values`] on one object schema.
    fn close(&mut self, obj: &mut serde_json::Map<String, Value>) {
        let listed: Vec<String> = obj
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let required = required_names(obj);
        let least = obj
            .get("minProperties")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let open = matches!(
            obj.get("additionalProperties"),
            None | Some(Value::Bool(true))
        );
        if !listed.is_empty() {
            // Named fields and nothing said of others: only the named ones. Not when a required
            // key or `minProperties` needs more than the names.
            let fits = required.iter().all(|r| listed.iter().any(|l| l == r))
                && least <= listed.len() as u64;
            // Others allowed by a schema of their own keep unbounded keys: a pattern that bounds
            // them matches the named keys too, whose values would then have to fit both schemas.
            if open && !obj.contains_key("patternProperties") && fits {
                obj.insert("additionalProperties".into(), Value::Bool(false));
            }
            return;
        }
        // A map: llguidance bounds its keys when no listed property is optional, which holds here.
        if !obj.contains_key("maxProperties")
            && required.is_empty()
            && obj.get("additionalProperties") != Some(&Value::Bool(false))
        {
            obj.insert("maxProperties".into(), json!(FREE_MAP_MAX.max(least)));
        }
        if required.is_empty() {
            self.bound_keys(obj);
        }
    }
}

#[cfg(test)]
mod tests;
