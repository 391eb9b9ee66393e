use super::*;
use serde_json::json;

fn parse_in(chunks: &[&str]) -> (Result<Option<Value>, ParseError>, Vec<Event>) {
    let mut p = JsonStreamParser::new();
    let mut events = Vec::new();
    for c in chunks {
        if let Err(e) = p.feed(c.as_bytes(), &mut events) {
            return (Err(e), events);
        }
    }
    let r = p.finish(&mut events).map(|()| p.into_value());
    (r, events)
}

fn bytewise(text: &str) -> Result<Option<Value>, ParseError> {
    let mut p = JsonStreamParser::new();
    let mut events = Vec::new();
    for b in text.as_bytes() {
        p.feed(std::slice::from_ref(b), &mut events)?;
    }
    p.finish(&mut events)?;
    Ok(p.into_value())
}

#[test]
fn escapes_and_surrogates_split_anywhere() {
    let text = r#"{"a\"b": "x\\y\/z\n\t\u00e9 \ud83d\ude00 }]{[", "n": -12.5e+3, "t": [true, false, null]}"#;
    let expected: Value = serde_json::from_str(text).unwrap();
    assert_eq!(bytewise(text).unwrap(), Some(expected.clone()));
    for split in 0..text.len() {
        let (a, b) = text.split_at(split);
        assert_eq!(
            parse_in(&[a, b]).0.unwrap(),
            Some(expected.clone()),
            "split at {split}"
        );
    }
}

#[test]
fn events_report_fields_and_elements_with_paths() {
    let (r, events) = parse_in(&[r#"{"items": [{"name": "a"}, 2], "k": null}"#]);
    assert!(r.is_ok());
    let shown: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::FieldComplete { path } => format!("field {path}"),
            Event::ElementComplete { path, .. } => format!("element {path}"),
            Event::RootComplete => "root".into(),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "field items[0].name",
            "element items[0]",
            "element items[1]",
            "field items",
            "field k",
            "root"
        ]
    );
}

#[test]
fn detached_elements_are_handed_over() {
    let mut p = JsonStreamParser::new()
        .detach_elements(true)
        .field_events(false);
    let mut events = Vec::new();
    p.feed(br#"[{"a": [1, 2]}, 3]"#, &mut events).unwrap();
    p.finish(&mut events).unwrap();
    assert_eq!(
        events,
        [
            Event::ElementComplete {
                path: JsonPath(vec![PathSegment::Index(0)]),
                value: Some(json!({"a": [1, 2]})),
                raw: None,
            },
            Event::ElementComplete {
                path: JsonPath(vec![PathSegment::Index(1)]),
                value: Some(json!(3)),
                raw: None,
            },
            Event::RootComplete,
        ]
    );
    assert_eq!(p.into_value(), Some(json!([])));
}

#[test]
fn raw_elements_keep_their_exact_text_across_chunks() {
    let text =
        r#"{"value": [ {"a": "x\"}", "n": [1, 2.5e3]} , "s\u00e9", 7, true, null ], "k": 1}"#;
    for size in [1, 2, 3, 5, 64] {
        let mut p = JsonStreamParser::new().detach_raw(true);
        let mut events = Vec::new();
        for piece in text.as_bytes().chunks(size) {
            p.feed(piece, &mut events).unwrap();
        }
        p.finish(&mut events).unwrap();
        let raws: Vec<(String, String)> = events
            .iter()
            .filter_map(|e| match e {
                Event::ElementComplete {
                    path, raw: Some(r), ..
                } => Some((path.to_string(), r.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            raws,
            [
                (
                    "value[0]".into(),
                    r#"{"a": "x\"}", "n": [1, 2.5e3]}"#.into()
                ),
                ("value[1]".into(), r#""s\u00e9""#.into()),
                ("value[2]".into(), "7".into()),
                ("value[3]".into(), "true".into()),
                ("value[4]".into(), "null".into()),
            ],
            "chunks of {size}"
        );
        assert_eq!(p.into_value(), Some(json!({"value": [], "k": 1})));
    }
}

#[test]
fn raw_elements_are_still_checked() {
    let bad: [&[u8]; 5] = [
        br#"[{"a" 1}]"#,
        br#"[{"a": 01}]"#,
        br#"["\x"]"#,
        b"[\"\xff\"]",
        br#"[[1,]]"#,
    ];
    for text in bad {
        let mut p = JsonStreamParser::new().detach_raw(true);
        let mut events = Vec::new();
        let r = p
            .feed(text, &mut events)
            .and_then(|()| p.finish(&mut events));
        assert!(r.is_err(), "{}", String::from_utf8_lossy(text));
    }
}

#[test]
fn partial_values_grow() {
    let mut p = JsonStreamParser::new();
    let mut events = Vec::new();
    p.feed(br#"{"name": "Ali"#, &mut events).unwrap();
    assert_eq!(p.partial(), Some(json!({"name": "Ali"})));
    p.feed(br#"ce", "age": 3"#, &mut events).unwrap();
    assert_eq!(
        p.partial(),
        Some(json!({"name": "Alice"})),
        "number not yet complete"
    );
    p.feed(br#"2, "tags": ["x"#, &mut events).unwrap();
    assert_eq!(
        p.partial(),
        Some(json!({"name": "Alice", "age": 32, "tags": ["x"]}))
    );
}

#[test]
fn top_level_scalars() {
    assert_eq!(parse_in(&["4", "2"]).0.unwrap(), Some(json!(42)));
    assert_eq!(parse_in(&[" \"s\" "]).0.unwrap(), Some(json!("s")));
    assert_eq!(parse_in(&["nu", "ll"]).0.unwrap(), Some(json!(null)));
    assert_eq!(
        parse_in(&["18446744073709551615"]).0.unwrap(),
        Some(json!(18446744073709551615u64))
    );
}

#[test]
fn malformed_input_is_rejected_with_offset_and_expectation() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "a JSON value"),
        ("{", 1, "a string key or '}'"),
        ("{\"a\" 1}", 5, "':'"),
        ("{\"a\": 1,}", 8, "a string key"),
        ("[1 2]", 3, "',' or ']'"),
        ("[1,]", 3, "a JSON value"),
        ("{\"a\": tru}", 9, "'true'"),
        ("01", 0, "a valid number"),
        ("-", 0, "a valid number"),
        ("1.", 0, "a valid number"),
        ("[1e]", 1, "a valid number"),
        ("\"abc", 4, "'\"' closing the string"),
        ("\"a\\x\"", 3, "a valid escape"),
        ("\"\\u12g4\"", 5, "a hex digit"),
        ("\"\\ud800\"", 7, "'\\u' with a low surrogate"),
        ("\"\\udc00\"", 7, "a high surrogate first"),
        ("\"tab\there\"", 4, "an escaped control character"),
        ("{} x", 3, "end of input"),
        ("]", 0, "a JSON value"),
        ("{\"a\": 1]", 7, "',' or '}'"),
    ];
    for (text, offset, expected) in cases {
        let err = parse_in(&[text]).0.unwrap_err();
        assert_eq!(
            (err.offset, err.expected),
            (*offset, *expected),
            "{text:?}: {err}"
        );
        assert!(
            serde_json::from_str::<Value>(text).is_err(),
            "{text:?} is invalid"
        );
        let bytewise = bytewise(text).unwrap_err();
        assert_eq!(bytewise.expected, err.expected, "{text:?} fed bytewise");
    }
}

#[test]
fn invalid_utf8_in_a_string_is_an_error() {
    let mut p = JsonStreamParser::new();
    let mut events = Vec::new();
    let err = p.feed(b"[\"ab\xff\"]", &mut events).unwrap_err();
    assert_eq!(err.expected, "UTF-8 text in the string");
}

#[test]
fn nesting_is_bounded() {
    let deep = "[".repeat(200);
    let err = parse_in(&[&deep]).0.unwrap_err();
    assert_eq!(err.expected, "less nesting");
    assert_eq!(err.offset, 127);
    for depth in [127, 128] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(
            parse_in(&[&text]).0.is_ok(),
            serde_json::from_str::<Value>(&text).is_ok(),
            "depth {depth} as serde_json"
        );
    }
}
