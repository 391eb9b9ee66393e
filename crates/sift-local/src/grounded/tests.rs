//! The grounded grammar on tricky texts: what it takes and what it refuses.

use super::*;
use crate::grammar::Grammars;

/// Whether the grammar takes `answer` whole (one byte a token).
fn takes(lark: &str, answer: &str) -> bool {
    let mut m = Grammars::offline()
        .compile_lark(lark)
        .unwrap_or_else(|e| panic!("{e}\n{lark}"));
    let tokens: Vec<u32> = answer.bytes().map(u32::from).collect();
    let n = m.validate_tokens(&tokens).unwrap_or(0);
    if n != tokens.len() {
        return false;
    }
    m.consume_tokens(&tokens).is_ok() && m.is_accepting().unwrap_or(false)
}

/// Whether the grammar lets an answer begin with `prefix` (one byte a token).
fn starts(lark: &str, prefix: &str) -> bool {
    let mut m = Grammars::offline()
        .compile_lark(lark)
        .unwrap_or_else(|e| panic!("{e}\n{lark}"));
    let tokens: Vec<u32> = prefix.bytes().map(u32::from).collect();
    m.validate_tokens(&tokens).unwrap_or(0) == tokens.len()
}

fn person() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "city": {"type": ["string", "null"]},
            "age": {"type": "integer", "maximum": 150},
            "born": {"type": "string", "format": "date"},
            "mood": {"enum": ["calm", "angry"]},
            "note": {"type": "string", "description": "A summary of the text"},
            "tags": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["name", "age"]
    })
}

#[test]
fn grounded_values_come_from_the_text() {
    let text = "Jeffrey \"Jeff\" Smith lives down in Leeds; he turned thirty-three on 3 November 2026. Path: C:\\tmp\nnext line 😀 €1.250,00";
    let sources = Sources::new().with_input("text", text);
    let lark = lark(&person(), &sources, true).expect("a grounded grammar");
    let ok = |a: &str| takes(&lark, a);
    assert!(ok(r#"{"name": "Jeffrey", "age": 33}"#), "{lark}");
    assert!(ok(
        r#"{"name":"Jeffrey \"Jeff\" Smith","city":"Leeds","age":33}"#
    ));
    assert!(ok(
        r#"{"name": "Smith", "city": null, "age": 33, "born": "2026-11-03"}"#
    ));
    assert!(ok(
        r#"{"name": "C:\\tmp\nnext", "age": 33, "mood": "calm", "tags": ["Leeds", "😀"]}"#
    ));
    assert!(ok(
        r#"{"name": "Jeffrey", "age": 33, "note": "anything at all"}"#
    ));
    // Not in the text, not whole words, not a number it writes.
    assert!(!ok(r#"{"name": "Lisle", "age": 33}"#));
    assert!(!ok(r#"{"name": "Jeff Smith", "age": 33}"#));
    assert!(!ok(r#"{"name": "Jeffre", "age": 33}"#));
    assert!(!ok(r#"{"name": "Jeffrey", "age": 34}"#));
    assert!(!ok(
        r#"{"name": "Jeffrey", "age": 33, "born": "2026-11-04"}"#
    ));
    assert!(!ok(r#"{"name": "", "age": 33}"#));
    // A quote of the text cannot close the string early, nor a backslash escape it.
    assert!(!ok(r#"{"name": "Jeffrey "Jeff", "age": 33}"#));
    assert!(!ok(r#"{"name": "C:\", "age": 33}"#));
    // Required fields are required; a number over the maximum is not offered.
    assert!(!ok(r#"{"name": "Jeffrey"}"#));
    assert!(!ok(r#"{"name": "Jeffrey", "age": 1250}"#));
}

#[test]
fn a_list_holds_at_most_one_item_per_line_or_sentence() {
    let schema = json!({"type": "array", "items": {"type": "string"}});
    let sources = Sources::new().with_input("text", "Ann. Bo\nCy");
    let g = lark(&schema, &sources, false).expect("a grounded grammar");
    assert!(takes(&g, r#"["Ann","Bo","Cy"]"#), "{g}");
    assert!(takes(&g, r#"[]"#));
    assert!(!takes(&g, r#"["Ann","Bo","Cy","Ann"]"#));
    // Semicolons part it too.
    let sources = Sources::new().with_input("text", "Team: Ann, 30; Bo, 31; Cy");
    let g = lark(&schema, &sources, false).expect("a grounded grammar");
    assert!(takes(&g, r#"["Ann","Bo","Cy"]"#), "{g}");
    assert!(!takes(&g, r#"["Ann","Bo","Cy","Ann"]"#));
    // One line: at most one item (a grammar that compiles).
    let sources = Sources::new().with_input("text", "Ann");
    let g = lark(&schema, &sources, false).expect("a grounded grammar");
    assert!(takes(&g, r#"["Ann"]"#), "{g}");
    assert!(!takes(&g, r#"["Ann","Ann"]"#));
}

#[test]
fn what_the_text_cannot_hold_is_left_out_and_its_list_is_empty() {
    let person = json!({"type": "object", "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "born": {"type": "string", "format": "date"}
    }, "required": ["name"]});
    // No number and no date in the text: the optional age and birthday are left out.
    let sources = Sources::new().with_input("text", "Ann lives in Leeds");
    let g = lark(&person, &sources, false).expect("a grounded grammar");
    assert!(takes(&g, r#"{"name":"Ann"}"#), "{g}");
    assert!(!takes(&g, r#"{"name":"Ann","age":30}"#));
    assert!(!takes(&g, r#"{"name":"Ann","born":"2026-01-01"}"#));
    // A list of people who each need an age the text does not give is empty.
    let people = json!({"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}
    }, "required": ["name", "age"]}});
    let sources = Sources::new().with_input("text", "It rained all day in Leeds.");
    let g = lark(&people, &sources, false).expect("a grounded grammar");
    assert!(takes(&g, "[]"), "{g}");
    assert!(!takes(&g, r#"[{"name":"Leeds","age":22}]"#));
    // Nullable, it may be null.
    let nullable = json!({"type": "object", "properties": {
        "age": {"type": ["integer", "null"]}
    }, "required": ["age"]});
    let g = lark(&nullable, &sources, false).expect("a grounded grammar");
    assert!(takes(&g, r#"{"age":null}"#), "{g}");
    assert!(!takes(&g, r#"{"age":3}"#));
}

#[test]
fn a_verbatim_string_keeps_its_pattern_and_length() {
    let schema = json!({"type": "object", "properties": {
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "code": {"type": "string", "pattern": "[0-9]/[0-9]"},
        "short": {"type": "string", "maxLength": 4}
    }});
    let sources = Sources::new().with_input("text", "Gesamtbetrag: 899,00 EUR, Pos 3/4, Café");
    let g = lark(&schema, &sources, false).expect("a grounded grammar");
    assert!(takes(&g, r#"{"currency":"EUR"}"#), "{g}");
    assert!(!takes(&g, r#"{"currency":"Gesamtbetrag"}"#));
    assert!(!takes(&g, r#"{"currency":"USD"}"#));
    assert!(takes(&g, r#"{"code":"Pos 3/4"}"#), "{g}");
    assert!(!takes(&g, r#"{"code":"Pos"}"#));
    assert!(takes(&g, r#"{"short":"Café"}"#), "{g}");
    assert!(!takes(&g, r#"{"short":"Gesamtbetrag"}"#));
    // A text with no value of the pattern: the field can only be left out.
    let email = json!({"type": "object", "properties": {
        "name": {"type": "string"},
        "email": {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$"}
    }, "required": ["name"]});
    let sources = Sources::new().with_input("text", "RSVP to Hannah Schmidt by Friday.");
    let g = lark(&email, &sources, false).expect("a grounded grammar");
    assert!(takes(&g, r#"{"name":"Hannah Schmidt"}"#), "{g}");
    assert!(!takes(&g, r#"{"name":"Hannah Schmidt","email":"Friday"}"#));
    assert!(
        !starts(&g, r#"{"name":"Hannah Schmidt","email":"#),
        "no key without a value to follow it: {g}"
    );
}

#[test]
fn chunks_keep_words_and_escapes_whole() {
    assert_eq!(
        chunks("Ann \"Jo\" O'Neil\\x\n東京 😀"),
        [
            "Ann", " ", "\\\"", "Jo", "\\\"", " ", "O", "'", "Neil", "\\\\", "x", "\\n", "東",
            "京", " ", "😀"
        ]
    );
}

#[test]
fn nothing_grounded_means_no_grammar() {
    let sources = Sources::new().with_input("text", "Ann is 30");
    let schema = json!({"type": "object", "properties": {"mood": {"enum": ["a", "b"]}}});
    assert!(lark(&schema, &sources, true).is_none());
    let big = Sources::new().with_input("text", "x".repeat(MAX_GROUNDED_TEXT + 1));
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}});
    assert!(lark(&schema, &big, true).is_none());
    assert!(lark(&schema, &sources, true).is_some());
}

#[test]
fn a_schema_whose_refs_branch_and_nest_gets_the_plain_grammar_not_an_endless_walk() {
    // Each definition refers to the next twice: 2^22 paths to the one grounded leaf.
    let mut defs = serde_json::Map::new();
    for i in 0..22 {
        let next = json!({"$ref": format!("#/$defs/d{}", i + 1)});
        defs.insert(
            format!("d{i}"),
            json!({"type": "object", "properties": {"a": next, "b": next}}),
        );
    }
    defs.insert(
        "d22".into(),
        json!({"type": "object", "properties": {"name": {"type": "string"}}}),
    );
    let schema = json!({"$defs": defs, "$ref": "#/$defs/d0"});
    let sources = Sources::new().with_input("text", "Ann lives in Leeds.");
    assert!(lark(&schema, &sources, true).is_none());
    // A schema of ordinary size is still grounded.
    let small = json!({"type": "object", "properties": {"name": {"type": "string"}}});
    assert!(lark(&small, &sources, true).is_some());
}
