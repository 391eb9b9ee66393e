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
    bound_free_values(&mut s, Tight::All);
    let p = &s["properties"];
    assert_eq!(p["a"]["maxLength"], FREE_STRING_MAX);
    assert_eq!(p["b"]["maxLength"], 3);
    assert!(p["c"].get("maxLength").is_none());
    assert_eq!(p["d"]["items"]["maxLength"], FREE_STRING_MAX);
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
    bound_free_values(&mut s, Tight::All);
    let p = &s["properties"];
    assert_eq!(p["any"]["maxLength"], FREE_STRING_MAX);
    assert_eq!(p["any"]["maxItems"], FREE_COMPOUND_ARRAY_MAX);
    assert_eq!(p["any"]["maxProperties"], FREE_MAP_MAX);
    assert_eq!(p["described"]["maxLength"], FREE_STRING_MAX);
    assert_eq!(p["long"]["maxLength"], 300);
    assert_eq!(p["short"]["maxLength"], FREE_STRING_MAX);
    assert_eq!(p["pat"]["maxLength"], FREE_STRING_MAX);
    assert_eq!(p["date"]["maxLength"], FREE_STRING_MAX);
    assert!(p["date"].get("pattern").is_none());
    assert_eq!(p["list"]["maxItems"], FREE_COMPOUND_ARRAY_MAX);
    // What defers to other schemas is bounded there.
    assert!(p["refd"].get("maxLength").is_none());
    assert!(p["either"].get("maxLength").is_none());
    assert_eq!(p["either"]["anyOf"][1]["maxLength"], FREE_STRING_MAX);

    // Through the grammar: a value of any type is held to each type's bound.
    let any = json!({"type": "object", "properties": {"v": {}}, "required": ["v"]});
    let most = "xxxxxxx ".repeat(FREE_STRING_MAX as usize / 8);
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
    bound_free_values(&mut s, Tight::All);
    assert_eq!(s["additionalProperties"], false);
    let p = &s["properties"];
    assert_eq!(p["m"]["maxProperties"], FREE_MAP_MAX);
    assert_eq!(p["n"]["maxProperties"], 12);
    assert_eq!(p["o"]["maxProperties"], 2);
    assert!(p["p"].get("additionalProperties").is_none());
    assert_eq!(
        p["q"]["additionalProperties"],
        json!({"type": "integer", "minimum": -FREE_NUMBER_MAX, "maximum": FREE_NUMBER_MAX})
    );
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
fn words_numbers_keys_and_nesting_of_free_values_are_bounded() {
    let schema = json!({"type": "object", "required": ["s"], "properties": {
        "s": {"type": "string"},
        "n": {"type": "number"},
        "i": {"type": "integer", "minimum": 0},
        "m": {"type": "object", "additionalProperties": {"type": "integer"}},
        "o": {"type": "object", "properties": {"x": {"type": "integer"}},
              "additionalProperties": {"type": "string", "maxLength": 4}},
        "any": {},
        "kept": {"type": "integer", "maximum": 5}
    }});
    let mut s = schema.clone();
    bound_free_values(&mut s, Tight::All);
    let p = &s["properties"];
    assert_eq!(p["i"]["minimum"], 0);
    assert_eq!(p["i"]["maximum"], FREE_NUMBER_MAX);
    assert!(p["i"].get("multipleOf").is_none());
    assert_eq!(p["kept"]["maximum"], 5);
    assert_eq!(p["kept"]["minimum"], -FREE_NUMBER_MAX);
    // Bounded twice is bounded once.
    let again = {
        let mut t = s.clone();
        bound_free_values(&mut t, Tight::All);
        t
    };
    assert_eq!(again, s);

    let with = |field: &str, value: &str| format!(r#"{{"s": "x", "{field}": {value}}}"#);
    // Words end at the bound; whitespace separates them.
    let word = "w".repeat(FREE_WORD_MAX as usize);
    assert!(accepts(&schema, &format!(r#"{{"s": "{word} {word}"}}"#)));
    assert!(!accepts(&schema, &format!(r#"{{"s": "{word}w"}}"#)));
    assert!(accepts(&schema, r#"{"s": " a  b\nc "}"#));
    // A format is held to the length bound too.
    let uri = json!({"type": "string", "format": "uri"});
    let path = "a/".repeat(FREE_STRING_MAX as usize / 2);
    assert!(accepts(&uri, "\"https://example.com/a\""));
    assert!(!accepts(&uri, &format!("\"https://example.com/{path}\"")));
    // Numbers: 16 digits and 6 decimal places at most.
    assert!(accepts(&schema, &with("n", "-12.5")));
    assert!(accepts(&schema, &with("n", "9007199254740991")));
    assert!(accepts(&schema, &with("n", "0.000001")));
    assert!(!accepts(&schema, &with("n", "0.0000001")));
    assert!(!accepts(&schema, &with("n", "90071992547409911")));
    assert!(accepts(&schema, &with("i", "42")));
    assert!(!accepts(&schema, &with("i", &"1".repeat(17))));
    // Map keys end at the bound; named keys keep their own schema.
    let key = "k".repeat(FREE_WORD_MAX as usize);
    assert!(accepts(&schema, &with("m", &format!(r#"{{"{key}": 1}}"#))));
    assert!(!accepts(
        &schema,
        &with("m", &format!(r#"{{"{key}k": 1}}"#))
    ));
    assert!(accepts(&schema, &with("o", r#"{"x": 7, "y": "abcd"}"#)));
    assert!(!accepts(&schema, &with("o", r#"{"x": "abcd"}"#)));
    assert!(!accepts(&schema, &with("o", r#"{"y": "abcde"}"#)));
    // A value of any type nests lists and maps `FREE_DEPTH` deep, then plain values.
    assert!(accepts(&schema, &with("any", r#"{"a": [{"b": 1}]}"#)));
    assert!(accepts(
        &schema,
        &with("any", r#"[[[null, "x", 1.5, true]]]"#)
    ));
    assert!(!accepts(&schema, &with("any", r#"{"a": [{"b": [1]}]}"#)));
    assert!(!accepts(&schema, &with("any", r#"[[[[1]]]]"#)));
}

#[test]
fn values_of_any_type_are_defined_once_unless_an_id_moves_the_root() {
    let mut s = json!({"properties": {"a": {}, "b": {"type": "array"}, "c": {"type": "object"}}});
    bound_free_values(&mut s, Tight::All);
    let text = s.to_string();
    // `a` and `c` (maps), and the two definitions that hold lists and maps.
    assert_eq!(text.matches("\"patternProperties\"").count(), 4, "{text}");
    assert_eq!(
        s["properties"]["b"]["items"]["$ref"],
        "#/$defs/sift-free-any-2"
    );
    assert!(s["$defs"]["sift-free-any-0"].is_object());
    // Below a nested `$id`, `#/$defs/...` would name that resource's: inline instead.
    let mut s = json!({"properties": {"a": {"$id": "http://x.example/a", "type": "array"}}});
    bound_free_values(&mut s, Tight::All);
    assert!(s.get("$defs").is_none());
    assert_eq!(
        s["properties"]["a"]["items"]["maxItems"],
        FREE_COMPOUND_ARRAY_MAX
    );
    assert!(accepts(&s, r#"{"a": [[1], {"k": "v"}]}"#));
    assert!(!accepts(&s, r#"{"a": [[[[1]]]]}"#));
}

#[test]
fn bounds_llguidance_cannot_decide_fall_back_to_fewer() {
    // An unanchored pattern (found anywhere in the string) beside the length bound:
    // llguidance cannot decide in its budget whether the two leave anything, so that
    // string goes without the bound; the rest keeps its bounds.
    let s = json!({"type": "object", "required": ["t"], "properties": {
        "t": {"type": "string", "pattern": "(([0-9]+)\\.)?([0-9][0-9]):(60|([0-5][0-9])):(60|([0-5][0-9]))"},
        "n": {"type": "integer"}
    }});
    let compiles = |tight: Tight| {
        let mut b = s.clone();
        bound_free_values(&mut b, tight);
        Grammars::offline().compile_as_written(&b).is_ok()
    };
    assert!(!compiles(Tight::All) && !compiles(Tight::NoWords) && compiles(Tight::Loose));
    assert!(accepts(&s, r#"{"t": "at 12:30:00"}"#));
    assert!(!accepts(&s, r#"{"t": "at noon"}"#));
    assert!(!accepts(
        &s,
        &format!(r#"{{"t": "12:30:00", "n": {}}}"#, "1".repeat(17))
    ));
}

#[test]
fn branches_that_only_require_fields_are_made_exclusive() {
    // JSONSchemaBench's Glaive `calculate_area`: a rectangle's or a circle's dimensions.
    let s = json!({"type": "object", "required": ["dimensions"], "properties": {
        "dimensions": {"type": "object",
            "properties": {"length": {"type": "number"}, "width": {"type": "number"},
                           "radius": {"type": "number"}},
            "oneOf": [{"required": ["length", "width"]}, {"required": ["radius"]}]}
    }});
    assert!(accepts(&s, r#"{"dimensions": {"length": 2, "width": 3}}"#));
    assert!(accepts(&s, r#"{"dimensions": {"radius": 2}}"#));
    assert!(!accepts(
        &s,
        r#"{"dimensions": {"length": 2, "width": 3, "radius": 1}}"#
    ));
    assert!(!accepts(
        &s,
        r#"{"dimensions": {"radius": 2, "length": 1}}"#
    ));
    // The object requiring a branch's keys: only that branch is left.
    let mut t = s.clone();
    t["properties"]["dimensions"]["required"] = json!(["length", "width"]);
    let mut b = t.clone();
    bound_free_values(&mut b, Tight::All);
    assert_eq!(
        b["properties"]["dimensions"]["oneOf"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(accepts(&t, r#"{"dimensions": {"length": 2, "width": 3}}"#));
    assert!(!accepts(
        &t,
        r#"{"dimensions": {"length": 2, "width": 3, "radius": 1}}"#
    ));
}

#[test]
fn objects_combined_with_others_are_left_open() {
    for mut s in [
        json!({"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}),
        json!({"$defs": {"x": {"properties": {"a": {}}}}, "properties": {"b": {}}, "$ref": "#/$defs/x"}),
        json!({"properties": {"b": {}}, "anyOf": [{"properties": {"a": {}}}, {"required": ["b"]}]}),
    ] {
        let before = s.to_string();
        bound_free_values(&mut s, Tight::All);
        // (Values of any type under them are bounded, with maps of their own.)
        let opened = |v: &Value| v.get("additionalProperties").is_none();
        assert!(
            opened(&s)
                && s["allOf"].as_array().is_none_or(|a| a.iter().all(opened))
                && s["anyOf"].as_array().is_none_or(|a| a.iter().all(opened))
                && s["$defs"].as_object().is_none_or(|d| {
                    d.iter()
                        .all(|(k, v)| k.starts_with("sift-free-any") || opened(v))
                }),
            "{before} became {s}"
        );
    }
    // Branches that only require listed properties are not a combination either.
    let mut s = json!({"properties": {"a": {}, "b": {}}, "required": ["a"],
                       "oneOf": [{"required": ["b"]}, {"required": ["a"], "type": "object"}]});
    bound_free_values(&mut s, Tight::All);
    assert_eq!(s["additionalProperties"], false);
    let mut s = json!({"properties": {"a": {}}, "anyOf": [{"required": ["c"]}]});
    bound_free_values(&mut s, Tight::All);
    assert!(s.get("additionalProperties").is_none());
    // A union of whole objects is not a combination: each is closed.
    let mut s = json!({"anyOf": [{"type": "object", "properties": {"a": {}}}, {"type": "null"}]});
    bound_free_values(&mut s, Tight::All);
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
