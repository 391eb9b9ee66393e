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

/// Gives, in `schema` (the grammar's copy), where a subschema that names no type counts as
/// each of them:
/// - every string subschema that sets no `maxLength`, format, enum or const a `maxLength` of
///   [`FREE_STRING_MAX`] (or its `minLength`, when more);
/// - every array subschema that sets no `maxItems` one of [`FREE_ARRAY_MAX`], or
///   [`FREE_COMPOUND_ARRAY_MAX`] when its items are (or may be) objects or arrays (or its
///   `minItems`, or its `prefixItems`, when more);
/// - every object that lists its properties and says nothing of others
///   `"additionalProperties": false` (llguidance, like JSON Schema, otherwise allows any key
///   with any value: what a small model invents), and every map (an object listing none) a
///   `maxProperties` of [`FREE_MAP_MAX`].
///
/// The object rules are left out of schemas whose objects are combined with others (`allOf`,
/// or `$ref`, `anyOf` or `oneOf` beside an object's own keywords): an intersection of closed
/// objects can admit less than the schema does, or nothing.
pub(crate) fn bound_free_values(schema: &mut Value) {
    let objects = !combines_objects(schema, 0);
    walk(schema, objects, 0);
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
            let branches = ["$ref", "anyOf", "oneOf"]
                .iter()
                .any(|k| obj.contains_key(*k));
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

/// Bounds the schema `v` and every schema under it; `objects`: whether the object rules apply.
fn walk(v: &mut Value, objects: bool, depth: usize) {
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
    // A `pattern` is bounded too (llguidance intersects the two; a pattern that needs more
    // than the bound is compiled without it, see `Grammars::compile`); a `format` is left
    // to its own grammar.
    if is_string && !sets(obj, &["maxLength", "format", "enum", "const"]) {
        let least = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0);
        obj.insert("maxLength".into(), json!(FREE_STRING_MAX.max(least)));
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
    if objects && is_object && !sets(obj, &["enum", "const"]) {
        close(obj);
    }
    for (k, child) in obj.iter_mut() {
        if is_data(k) {
            continue;
        }
        if is_schema_map(k) {
            if let Value::Object(map) = child {
                for sub in map.values_mut() {
                    walk(sub, objects, depth + 1);
                }
            }
            continue;
        }
        match child {
            Value::Array(items) => {
                for sub in items {
                    walk(sub, objects, depth + 1);
                }
            }
            sub => walk(sub, objects, depth + 1),
        }
    }
}

/// Whether the schema's `type` (a name or a list) allows `name`; `None` when it sets none.
fn allows(schema: &serde_json::Map<String, Value>, name: &str) -> Option<bool> {
    match schema.get("type") {
        Some(Value::String(t)) => Some(t == name),
        Some(Value::Array(ts)) => Some(ts.iter().any(|t| t == name)),
        _ => None,
    }
}

/// The object rules of [`bound_free_values`] on one object schema.
fn close(obj: &mut serde_json::Map<String, Value>) {
    let listed: Vec<String> = obj
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let required: Vec<&str> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
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
        let fits =
            required.iter().all(|r| listed.iter().any(|l| l == r)) && least <= listed.len() as u64;
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::grammar::Grammars;

    /// Whether the embedded model's grammar for `schema` takes `answer` (one byte a token).
    fn accepts(schema: &Value, answer: &str) -> bool {
        let mut m = Grammars::offline()
            .matcher(schema)
            .expect("the schema compiles");
        let tokens: Vec<u32> = answer.bytes().map(u32::from).collect();
        m.validate_tokens(&tokens).unwrap_or(0) == tokens.len()
            && m.consume_tokens(&tokens).is_ok()
            && m.is_accepting().unwrap_or(false)
    }

    #[test]
    fn free_strings_and_lists_get_a_bound_unless_they_have_one() {
        let mut s = json!({"type": "object", "properties": {
            "a": {"type": "string"},
            "b": {"type": "string", "maxLength": 3},
            "c": {"type": ["string", "null"], "enum": ["x", null]},
            "d": {"type": "array", "items": {"type": "string", "format": "date"}},
            "e": {"type": "array", "maxItems": 100},
            "f": {"type": ["array", "null"], "minItems": 40},
            "g": {"items": {"type": "integer"}, "prefixItems": vec![json!({}); 20]},
            "h": {"const": [1, 2]},
            "i": {"type": "array", "items": {"type": ["object", "null"]}},
            "j": {"type": "array", "items": {"$ref": "#/properties/a"}}
        }});
        bound_free_values(&mut s);
        let p = &s["properties"];
        assert_eq!(p["a"]["maxLength"], FREE_STRING_MAX);
        assert_eq!(p["b"]["maxLength"], 3);
        assert!(p["c"].get("maxLength").is_none());
        assert!(p["d"]["items"].get("maxLength").is_none());
        assert_eq!(p["d"]["maxItems"], FREE_ARRAY_MAX);
        assert_eq!(p["e"]["maxItems"], 100);
        // Never below what the schema asks for at least.
        assert_eq!(p["f"]["maxItems"], 40);
        assert_eq!(p["g"]["maxItems"], 20);
        assert!(p["h"].get("maxItems").is_none());
        assert_eq!(p["i"]["maxItems"], FREE_COMPOUND_ARRAY_MAX);
        assert_eq!(p["j"]["maxItems"], FREE_COMPOUND_ARRAY_MAX);
    }

    #[test]
    fn values_of_any_type_and_patterned_strings_are_bounded_too() {
        let mut s = json!({"type": "object", "properties": {
            "any": {},
            "described": {"description": "anything"},
            "long": {"type": "string", "minLength": 300},
            "short": {"type": "string", "minLength": 3},
            "pat": {"type": "string", "pattern": "^[a-z]+$"},
            "date": {"type": "string", "format": "date"},
            "list": {"type": "array"},
            "refd": {"$ref": "#/properties/any"},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        }});
        bound_free_values(&mut s);
        let p = &s["properties"];
        assert_eq!(p["any"]["maxLength"], FREE_STRING_MAX);
        assert_eq!(p["any"]["maxItems"], FREE_COMPOUND_ARRAY_MAX);
        assert_eq!(p["any"]["maxProperties"], FREE_MAP_MAX);
        assert_eq!(p["described"]["maxLength"], FREE_STRING_MAX);
        assert_eq!(p["long"]["maxLength"], 300);
        assert_eq!(p["short"]["maxLength"], FREE_STRING_MAX);
        assert_eq!(p["pat"]["maxLength"], FREE_STRING_MAX);
        assert!(p["date"].get("maxLength").is_none());
        assert_eq!(p["list"]["maxItems"], FREE_COMPOUND_ARRAY_MAX);
        // What defers to other schemas is bounded there.
        assert!(p["refd"].get("maxLength").is_none());
        assert!(p["either"].get("maxLength").is_none());
        assert_eq!(p["either"]["anyOf"][1]["maxLength"], FREE_STRING_MAX);

        // Through the grammar: a value of any type is held to each type's bound.
        let any = json!({"type": "object", "properties": {"v": {}}, "required": ["v"]});
        let most = "x".repeat(FREE_STRING_MAX as usize);
        assert!(accepts(&any, &format!("{{\"v\":\"{most}\"}}")));
        assert!(!accepts(&any, &format!("{{\"v\":\"{most}x\"}}")));
        assert!(accepts(&any, "{\"v\":[1,2,3]}"));
        assert!(accepts(&any, "{\"v\":12}"));
        assert!(!accepts(
            &any,
            &format!("{{\"v\":[{}]}}", ["1"; 9].join(","))
        ));
        // A pattern that needs more than the bound is compiled as written, not refused.
        let needs = json!({"type": "string", "pattern": "^a{300}$"});
        assert!(accepts(&needs, &format!("\"{}\"", "a".repeat(300))));
        assert!(!accepts(&needs, &format!("\"{}\"", "a".repeat(299))));
    }

    #[test]
    fn objects_that_name_their_fields_get_only_those_and_maps_a_bound() {
        let mut s = json!({"type": "object", "required": ["a"], "properties": {
            "a": {"type": "string", "maxLength": 3},
            // A map: a bound on its keys.
            "m": {"type": "object", "additionalProperties": {"type": "integer"}},
            "n": {"type": "object", "minProperties": 12},
            "o": {"type": "object", "maxProperties": 2},
            // A key required beyond the names: left open.
            "p": {"type": "object", "required": ["z"], "properties": {"y": {"type": "integer"}}},
            // Others allowed by a schema of their own: left as they are.
            "q": {"type": "object", "properties": {"y": {}}, "additionalProperties": {"type": "integer"}},
            "r": {"type": "object", "properties": {"y": {}}, "patternProperties": {"^x": {}}},
            // A property named like keywords is a property, not a keyword.
            "s": {"type": "object", "properties": {"items": {"type": "integer"}, "type": {"type": "string", "maxLength": 2}}}
        }});
        let original = s.clone();
        bound_free_values(&mut s);
        assert_eq!(s["additionalProperties"], false);
        let p = &s["properties"];
        assert_eq!(p["m"]["maxProperties"], FREE_MAP_MAX);
        assert_eq!(p["n"]["maxProperties"], 12);
        assert_eq!(p["o"]["maxProperties"], 2);
        assert!(p["p"].get("additionalProperties").is_none());
        assert_eq!(p["q"]["additionalProperties"], json!({"type": "integer"}));
        assert!(p["r"].get("additionalProperties").is_none());
        assert_eq!(p["s"]["additionalProperties"], false);
        assert!(p["s"]["properties"].get("maxItems").is_none());
        assert!(p["s"].get("maxItems").is_none());
        // An answer with a key the schema does not name is refused by the bounded grammar,
        // one with only named keys is not.
        assert!(!accepts(&original, r#"{"a": "x", "extra": 1}"#));
        assert!(accepts(&original, r#"{"a": "x", "s": {"items": 3}}"#));
        let nine: Vec<String> = (0..9).map(|i| format!("\"k{i}\": {i}")).collect();
        let map = |n: usize| format!(r#"{{"a": "x", "m": {{{}}}}}"#, nine[..n].join(", "));
        assert!(accepts(&original, &map(8)));
        assert!(!accepts(&original, &map(9)));
    }

    #[test]
    fn objects_combined_with_others_are_left_open() {
        for mut s in [
            json!({"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}),
            json!({"$defs": {"x": {"properties": {"a": {}}}}, "properties": {"b": {}}, "$ref": "#/$defs/x"}),
            json!({"properties": {"b": {}}, "anyOf": [{"properties": {"a": {}}}, {"required": ["b"]}]}),
        ] {
            let before = s.to_string();
            bound_free_values(&mut s);
            assert!(
                !s.to_string().contains("additionalProperties"),
                "{before} became {s}"
            );
        }
        // A union of whole objects is not a combination: each is closed.
        let mut s =
            json!({"anyOf": [{"type": "object", "properties": {"a": {}}}, {"type": "null"}]});
        bound_free_values(&mut s);
        assert_eq!(s["anyOf"][0]["additionalProperties"], false);
    }

    #[test]
    fn whitespace_is_two_line_breaks_and_an_indent_at_most() {
        let s = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        assert!(accepts(&s, "{\n  \"a\": 1\n}"));
        assert!(accepts(&s, "{\n\n  \"a\": 1}"));
        assert!(accepts(&s, "{\r\n\t\"a\" :  1}"));
        assert!(!accepts(&s, "{\n\n\n  \"a\": 1}"));
        assert!(!accepts(&s, "{\n \n\"a\": 1}"));
        assert!(!accepts(&s, &format!("{{\"a\":{}1}}", " ".repeat(17))));
    }
}
