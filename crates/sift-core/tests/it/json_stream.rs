//! Property tests: the streaming parser agrees with serde_json however the input is split.

use proptest::prelude::*;
use serde_json::{Map, Value};
use sift_core::json_stream::{Event, JsonStreamParser, ParseError};

/// Strings full of the characters that break naive splitters.
fn tricky_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(vec!['{', '}', '[', ']', '"', '\\', ',', ':', '\n', '\t', '/', ' ']),
            2 => prop::char::range('a', 'z'),
            1 => prop::sample::select(vec!['é', 'ß', '中', '😀', '\u{1F9E0}', '\u{7f}', '\u{1}']),
            1 => any::<char>(),
        ],
        0..12,
    )
    .prop_map(String::from_iter)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((tricky_string(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Replaces every non-ASCII character with `\u` escapes (surrogate pairs above the BMP) and
/// every `/` with `\/`; only strings hold these in serialised JSON, so this is always valid.
fn escape_non_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '/' {
            out.push_str("\\/");
        } else if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn serialised() -> impl Strategy<Value = String> {
    (json_value(), 0..3u8).prop_map(|(v, style)| match style {
        0 => serde_json::to_string(&v).unwrap(),
        1 => serde_json::to_string_pretty(&v).unwrap(),
        _ => escape_non_ascii(&serde_json::to_string(&v).unwrap()),
    })
}

fn run(
    bytes: &[u8],
    sizes: &[usize],
    detach: bool,
) -> (Result<Option<Value>, ParseError>, Vec<Event>) {
    run_with(
        JsonStreamParser::new().detach_elements(detach),
        bytes,
        sizes,
    )
}

fn run_with(
    mut parser: JsonStreamParser,
    bytes: &[u8],
    sizes: &[usize],
) -> (Result<Option<Value>, ParseError>, Vec<Event>) {
    let mut events = Vec::new();
    let mut rest = bytes;
    let mut k = 0;
    while !rest.is_empty() {
        let n = sizes[k % sizes.len()].min(rest.len());
        k += 1;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        if let Err(e) = parser.feed(chunk, &mut events) {
            return (Err(e), events);
        }
    }
    let result = parser.finish(&mut events).map(|()| parser.into_value());
    (result, events)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_split_gives_serde_jsons_value_and_the_bytewise_events(
        text in serialised(),
        sizes in prop::collection::vec(1usize..48, 1..12),
    ) {
        let expected: Value = serde_json::from_str(&text).unwrap();
        let (chunked, chunked_events) = run(text.as_bytes(), &sizes, false);
        prop_assert_eq!(chunked.unwrap(), Some(expected));
        let (_, bytewise_events) = run(text.as_bytes(), &[1], false);
        prop_assert_eq!(&chunked_events, &bytewise_events);
        prop_assert_eq!(chunked_events.last(), Some(&Event::RootComplete));
    }

    #[test]
    fn detached_elements_are_the_list_items_in_order(
        items in prop::collection::vec(json_value(), 0..10),
        wrapped in any::<bool>(),
        sizes in prop::collection::vec(1usize..32, 1..8),
    ) {
        let doc = if wrapped {
            serde_json::json!({"value": items})
        } else {
            Value::Array(items.clone())
        };
        let text = serde_json::to_string(&doc).unwrap();
        let expected: Vec<Value> = serde_json::from_str::<Value>(&serde_json::to_string(&items).unwrap())
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        let (result, events) = run(text.as_bytes(), &sizes, true);
        prop_assert!(result.is_ok());
        let got: Vec<Value> = events
            .into_iter()
            .filter_map(|e| match e {
                Event::ElementComplete { value: Some(v), .. } => Some(v),
                _ => None,
            })
            .collect();
        prop_assert_eq!(&got, &expected);

        // Raw detaching hands over each element's exact text.
        let (result, events) = run_with(JsonStreamParser::new().detach_raw(true), text.as_bytes(), &sizes);
        prop_assert!(result.is_ok());
        let raw: Vec<Value> = events
            .into_iter()
            .filter_map(|e| match e {
                Event::ElementComplete { raw: Some(r), .. } => Some(serde_json::from_str(&r).unwrap()),
                _ => None,
            })
            .collect();
        prop_assert_eq!(raw, expected);
    }

    #[test]
    fn any_bytes_agree_with_serde_json_and_never_panic(
        bytes in prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(b"{}[]\",:0123456789-+.eEtrufalsn \\u\n".to_vec()),
                1 => any::<u8>(),
            ],
            0..64,
        ),
        sizes in prop::collection::vec(1usize..16, 1..6),
    ) {
        let ours = run(&bytes, &sizes, false).0;
        let theirs = serde_json::from_slice::<Value>(&bytes);
        // Raw detaching checks the same grammar.
        let raw = run_with(JsonStreamParser::new().detach_raw(true), &bytes, &sizes).0;
        prop_assert_eq!(raw.is_ok(), theirs.is_ok(), "raw mode on {:?}: {:?}", String::from_utf8_lossy(&bytes), raw);
        match (&ours, &theirs) {
            (Ok(Some(a)), Ok(b)) => prop_assert_eq!(a, b),
            (Err(e), Err(_)) => prop_assert!(e.offset <= bytes.len()),
            _ => prop_assert!(false, "disagree on {:?}: ours {:?}, serde_json {:?}",
                String::from_utf8_lossy(&bytes), ours, theirs),
        }
    }

    #[test]
    fn truncated_documents_are_errors_at_or_before_the_cut(
        text in serialised(),
        cut in any::<prop::sample::Index>(),
    ) {
        let at = cut.index(text.len().max(1));
        let prefix = &text.as_bytes()[..at];
        let ours = run(prefix, &[7], false).0;
        match serde_json::from_slice::<Value>(prefix) {
            Ok(v) => prop_assert_eq!(ours.unwrap(), Some(v)),
            Err(_) => {
                let e = ours.unwrap_err();
                prop_assert!(e.offset <= at, "{} > {}", e.offset, at);
            }
        }
    }
}

#[test]
fn lone_surrogates_are_rejected_like_serde_json_does() {
    for text in [r#""\ud800""#, r#""\ud800\u0041""#, r#""\udfff""#] {
        assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
        assert!(run(text.as_bytes(), &[1], false).0.is_err(), "{text}");
    }
    let ok = r#""\ud83d\ude00""#;
    assert_eq!(
        run(ok.as_bytes(), &[1], false).0.unwrap(),
        Some(Value::from("😀"))
    );
}
