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
fn a_date_without_its_year_counts_when_the_inputs_give_the_year() {
    let schema = json!({"type": "object", "properties": {
        "date": {"type": "string", "format": "date"}
    }});
    let text = "The board meets on 14 January; the fair opens April 2nd.";
    let with_year = Sources::of_input(&json!({"text": text, "year": 2027}));
    let without = Sources::of_input(&json!({"text": text}));
    let grounded = |s: &Sources, d: &str| s.ground(&json!({ "date": d }), &schema);
    let g = grounded(&with_year, "2027-01-14");
    assert!(g.ungrounded.is_empty(), "{g:?}");
    let span = &g.spans["/date"][0];
    let read: String = text
        .chars()
        .skip(span.start)
        .take(span.end - span.start)
        .collect();
    assert_eq!(read, "14 January");
    assert!(grounded(&with_year, "2027-04-02").ungrounded.is_empty());
    assert!(!grounded(&with_year, "2026-01-14").ungrounded.is_empty());
    assert!(!grounded(&without, "2027-01-14").ungrounded.is_empty());
    assert_eq!(with_year.written().dates, ["2027-01-14", "2027-04-02"]);
    assert!(without.written().dates.is_empty());
}

#[test]
fn a_value_must_be_whole_words_of_the_text() {
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}});
    let text = "Jeffrey met Ann (ann@x.org) in 東京都.";
    let found = |name: &str| {
        ground(&json!({ "name": name }), &schema, &[("text", text)])
            .ungrounded
            .is_empty()
    };
    assert!(found("Jeffrey"));
    assert!(found("jeffrey met"));
    assert!(!found("Jeff"));
    assert!(!found("effrey"));
    assert!(found("ann@x.org"));
    assert!(found("(ann@x.org)"));
    assert!(!found("nn@x.or"));
    // No spaces between words in Japanese: any run of its characters.
    assert!(found("東京"));
}

#[test]
fn policies_set_by_path_cover_what_is_under_them() {
    let schema = invoice();
    let answer = json!({
        "seller": "Nobody Ltd",
        "lines": [{"item": "widgets", "qty": 7, "amount": 1.5}],
        "summary": "hammers and nails"
    });
    let sources = Sources::new()
        .with_input("text", TEXT)
        .with_policy("seller", Policy::Free)
        .with_policy("lines[]", Policy::Free)
        .with_policy("summary", Policy::Verbatim);
    let g = sources.ground(&answer, &schema);
    let pointers: Vec<&str> = g.ungrounded.iter().map(|u| u.pointer.as_str()).collect();
    assert_eq!(pointers, ["/summary"]);
    let all_free = Sources::new()
        .with_input("text", TEXT)
        .with_policy("*", Policy::Free);
    assert_eq!(all_free.ground(&answer, &schema), Grounding::default());
    assert!(describes(&schema, "lines[].amount"));
    assert!(describes(&schema, "lines[]"));
    assert!(describes(&schema, "seller"));
    assert!(!describes(&schema, "buyer"));
    assert!(!describes(&schema, "lines[].price"));
    assert!(describes(&schema, "*"));
}

#[test]
fn an_input_object_is_grounded_in_each_of_its_strings() {
    let sources = Sources::of_input(&json!({
        "text": "a", "doc": {"title": "b", "pages": ["c", "d"]}, "n": 3
    }));
    let fields: Vec<&str> = sources.inputs().iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["text", "doc.title", "doc.pages[0]", "doc.pages[1]", "n"]
    );
    assert_eq!(sources.inputs()[4].1, "3");
}

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
        "am 3. November 2026",
        "le 3 novembre 2026",
        "el 3 de noviembre de 2026",
        "il 3 novembre 2026",
        "em 3 de novembro de 2026",
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
    // A month's foreign name counts whole, not abbreviated (`ago`, `set` are words).
    for (text, date) in [
        ("am 14. März 2027", "2027-03-14"),
        ("le 1er février 2027", "2027-02-01"),
        ("el 2 de agosto de 2027", "2027-08-02"),
    ] {
        let g = ground(&json!({"d": date}), &schema, &[("text", text)]);
        assert!(g.ungrounded.is_empty(), "{text}: {:?}", g.ungrounded);
    }
    // Both ends of a range of days.
    for (text, date) in [
        ("from 5 to 7 May 2027", "2027-05-05"),
        ("from 5 to 7 May 2027", "2027-05-07"),
        ("5–7 May 2027", "2027-05-05"),
        ("du 12 au 14 avril 2027", "2027-04-12"),
    ] {
        let g = ground(&json!({"d": date}), &schema, &[("text", text)]);
        assert!(g.ungrounded.is_empty(), "{text} {date}: {:?}", g.ungrounded);
    }
    let g = ground(
        &json!({"d": "2027-08-03"}),
        &schema,
        &[("text", "3 ago 2027")],
    );
    assert_eq!(g.ungrounded.len(), 1, "`ago` is not August");
}

#[test]
fn month_and_number_words_are_read_in_any_case_and_in_accented_spellings() {
    let date = json!({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}});
    for (text, day) in [
        ("on 3 NOVEMBER 2026", "2026-11-03"),
        ("on SEPT 3, 2026", "2026-09-03"),
        ("on 3 Sept. 2026", "2026-09-03"),
        ("le 3 DÉCEMBRE 2026", "2026-12-03"),
        ("el 3 de ENERO de 2026", "2026-01-03"),
        ("am 3. MÄRZ 2026", "2026-03-03"),
        ("il 3 Luglio 2026", "2026-07-03"),
        ("from 5 TO 7 May 2027", "2027-05-05"),
        ("el 5 DE mayo DEL 2027", "2027-05-05"),
    ] {
        let g = ground(&json!({"d": day}), &date, &[("text", text)]);
        assert!(g.ungrounded.is_empty(), "{text}: {:?}", g.ungrounded);
    }
    // Words that only start like a month are not one.
    for text in ["on 3 Marsupial 2026", "on 3 Ju 2026", "on 3 décembres 2026"] {
        let g = ground(&json!({"d": "2026-12-03"}), &date, &[("text", text)]);
        assert_eq!(g.ungrounded.len(), 1, "{text}");
    }
    let number = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
    for (text, n) in [
        ("THIRTY-THREE years", 33),
        ("Seven days", 7),
        ("ninety-Nine bottles", 99),
        ("zero", 0),
        ("Nineteen", 19),
    ] {
        let g = ground(&json!({"n": n}), &number, &[("text", text)]);
        assert!(g.ungrounded.is_empty(), "{text}: {:?}", g.ungrounded);
    }
    for (text, n) in [
        ("thirty-zero", 30),
        ("twenty-ten", 30),
        ("élevé", 11),
        ("sevens", 7),
    ] {
        let g = ground(&json!({"n": n}), &number, &[("text", text)]);
        assert_eq!(g.ungrounded.len(), 1, "{text}");
    }
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
    fn both_ways_of_looking_find_the_same_places(
        text in "[abAB é🎉\n]{0,60}",
        values in proptest::collection::vec("[abAB é]{1,4}", 1..6),
    ) {
        let texts = [Normalized::new("text", &text)];
        let needles: Vec<(usize, String)> = values
            .iter()
            .map(|v| fold(v))
            .enumerate()
            .filter(|(_, n)| !n.is_empty())
            .collect();
        let sorted = |mut found: HashMap<usize, Vec<Span>>| {
            let mut all: Vec<(usize, Vec<Span>)> = found.drain().collect();
            for (_, spans) in &mut all {
                spans.sort_by_key(|s| (s.start, s.end));
            }
            all.sort_by_key(|(leaf, _)| *leaf);
            all
        };
        proptest::prop_assert_eq!(
            sorted(locate(&needles, &texts, true)),
            sorted(locate(&needles, &texts, false))
        );
    }

    #[test]
    fn any_run_of_whole_words_is_found_and_its_span_reads_back(
        text in "[a-zA-Zéß🎉\"\\\\ \n\t]{1,80}",
        a in 0usize..80,
        len in 1usize..20,
    ) {
        let chars: Vec<char> = text.chars().collect();
        let wordy = |i: usize| chars.get(i).is_some_and(|c| c.is_alphanumeric());
        // Widened to whole words: a value is never part of a word.
        let mut a = a % chars.len();
        while a > 0 && wordy(a) && wordy(a - 1) {
            a -= 1;
        }
        let mut b = (a + len).min(chars.len());
        while b < chars.len() && wordy(b) && wordy(b - 1) {
            b += 1;
        }
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
