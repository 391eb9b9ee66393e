use futures::StreamExt;
use serde::Deserialize;
use sift_core::{ChatRequest, ExtractError, Message, Mode, OutputFormat, Provider};

use crate::{client, provider};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
enum Color {
    Red,
    Green,
    Blue,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Address {
    #[schemars(length(max = 40))]
    city: String,
    country: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Person {
    #[schemars(length(min = 1, max = 30))]
    name: String,
    #[schemars(range(min = 0, max = 120))]
    age: i64,
    favourite_color: Color,
    address: Address,
    #[schemars(length(min = 1, max = 3))]
    hobbies: Vec<String>,
    nickname: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Order {
    #[schemars(range(min = 1, max = 99))]
    quantity: u8,
    item: String,
    express: bool,
    #[schemars(length(max = 2))]
    notes: Vec<Color>,
}

#[tokio::test]
async fn every_output_fits_varied_schemas_without_a_retry() {
    let _serial = crate::serial().await;
    let texts = [
        "Maria is 31, lives in Lisbon, Portugal, loves the colour green and plays chess and tennis.",
        "Bob, 45, from Leeds. He likes red. Hobbies: fishing.",
        "Nothing useful here at all, just some words.",
    ];
    for text in texts {
        // max_retries(0): the first answer must already parse and validate.
        let person = client()
            .extract::<Person>()
            .user(format!("Extract: `{text}`"))
            .max_retries(0)
            .send()
            .await;
        assert!(person.is_ok(), "{text}: {person:?}");
        let order = client()
            .extract::<Order>()
            .user(format!("Extract the order: `{text}`"))
            .mode(Mode::JsonSchema)
            .max_retries(0)
            .send()
            .await;
        assert!(order.is_ok(), "{text}: {order:?}");
    }
}

#[tokio::test]
async fn the_token_limit_is_an_error_not_a_truncated_answer() {
    let _serial = crate::serial().await;
    let err = client()
        .extract::<Person>()
        .user("Extract: `Maria is 31 and lives in Lisbon.`")
        .max_tokens(5)
        .max_retries(0)
        .send()
        .await
        .unwrap_err();
    match &err {
        ExtractError::TokenLimit {
            limit: Some(5),
            attempts,
            usage,
        } => {
            // One rule for every provider: the cut attempt is `Truncated` and not re-asked.
            assert_eq!(attempts.len(), 1);
            assert_eq!(attempts[0].outcome, sift_core::AttemptOutcome::Truncated);
            assert_eq!(usage.output_tokens, 5);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("limit of 5 tokens"), "{err}");
}

#[tokio::test]
async fn input_longer_than_the_context_is_input_too_long() {
    let _serial = crate::serial().await;
    let text = "Maria is 31 and lives in Lisbon. ".repeat(400);
    let err = client()
        .extract::<Person>()
        .user(text)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.provider_error(),
            Some(sift_core::ProviderError::InputTooLong(m)) if m.contains("exceed the context")
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_schema_the_grammar_cannot_take_is_refused_naming_keyword_and_pointer() {
    let _serial = crate::serial().await;
    // A look-ahead in a pattern: llguidance's regex engine has none, in either grammar.
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^(?!x).*$"}},
        "required": ["code"]
    });
    let err = provider().check_schema(&schema).unwrap_err();
    assert_eq!(err.kind(), "unsupported");
    assert_eq!(err.pointer(), Some("/properties/code/pattern"));
    assert!(err.to_string().contains("`pattern`"), "{err}");
    // The extraction is refused before any generation, never answered unconstrained.
    let before = provider().stats();
    let compiled = sift_core::Schema::compile("Code", schema).unwrap();
    let err = client()
        .extract_value(&compiled)
        .user("code x1")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExtractError::Schema(e) if e.kind() == "unsupported"),
        "{err:?}"
    );
    assert_eq!(provider().stats().completed, before.completed);
}

#[tokio::test]
async fn what_only_the_approximate_grammar_takes_is_served_and_validated() {
    let _serial = crate::serial().await;
    // `not` is not in llguidance's grammar: the approximate one ignores it, validation keeps it.
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "not": {"const": ""}},
            "kind": {"oneOf": [{"const": "town"}, {"const": "city"}]}
        },
        "required": ["city", "kind"]
    });
    provider().check_schema(&schema).unwrap();
    let compiled = sift_core::Schema::compile("Place", schema).unwrap();
    let out = client()
        .extract_value(&compiled)
        .user("Extract: `Lisbon is a city.`")
        .send()
        .await
        .unwrap();
    assert!(compiled.errors(&out.value).is_empty(), "{}", out.value);
}

#[tokio::test]
async fn every_mode_answers_a_bare_list_without_a_wrapper() {
    let _serial = crate::serial().await;
    // A list root: the embedded model is given the schema as it is (no `{"value": ...}`).
    let schema = sift_core::Schema::compile(
        "Cities",
        serde_json::json!({
            "type": "array",
            "items": {"type": "string", "maxLength": 12},
            "maxItems": 3
        }),
    )
    .unwrap();
    for mode in [Mode::Tools, Mode::JsonSchema, Mode::Json, Mode::MdJson] {
        let out = client()
            .extract_value(&schema)
            .user("List the cities: `I went from Paris to Rome.`")
            .mode(mode)
            .max_retries(0)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e:?}"));
        assert!(out.value.is_array(), "{mode}: {}", out.value);
        let text = match mode {
            Mode::Tools => out.response.tool_calls[0].arguments.clone(),
            _ => out.response.content.clone().unwrap(),
        };
        assert!(!text.contains("\"value\""), "{mode}: {text}");
        if mode == Mode::MdJson {
            assert!(
                text.starts_with("```json\n") && text.ends_with("\n```"),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn dropping_a_stream_stops_its_generation() {
    let _serial = crate::serial().await;
    let p = provider();
    let request = ChatRequest {
        model: p.default_model().to_owned(),
        messages: vec![Message::user("Write forty hobbies, one per item.")],
        output: sift_core_schema_for_long_list(),
        temperature: None,
        max_tokens: Some(400),
        seed: None,
        structured: None,
    };
    let before = p.stats();
    let mut stream = p.chat_stream(&request).await.unwrap();
    // Wait for real output, then walk away.
    let mut got_text = false;
    while let Some(delta) = stream.next().await {
        if matches!(delta.unwrap(), sift_core::ChatDelta::Content(_)) {
            got_text = true;
            break;
        }
    }
    assert!(got_text);
    drop(stream);
    // The next request is served once the dropped one has stopped.
    let out = client()
        .extract::<Order>()
        .user("Extract the order: `2 pizzas, express`")
        .send()
        .await
        .unwrap();
    assert!(out.value.quantity >= 1);
    let after = p.stats();
    assert_eq!(
        after.cancelled,
        before.cancelled + 1,
        "{before:?} -> {after:?}"
    );
    assert!(
        after.generated_tokens - before.generated_tokens < 400,
        "the dropped generation did not run to its limit: {before:?} -> {after:?}"
    );
}

fn sift_core_schema_for_long_list() -> OutputFormat {
    sift_core::OutputFormat::JsonSchema {
        name: "hobbies".into(),
        schema: serde_json::json!({
            "type": "object",
            "properties": {"hobbies": {"type": "array", "items": {"type": "string"}, "minItems": 40}},
            "required": ["hobbies"]
        }),
        strict: false,
    }
}

/// A made-up record whose schema bounds nothing: held to the schema alone (nothing grounded),
/// the model used to repeat list items until the token limit. With DRY on every constrained
/// generation the list closes and the answer fits (before: a token-limit failure).
#[tokio::test]
async fn an_unbounded_list_of_made_up_items_closes_before_the_token_limit() {
    let _serial = crate::serial().await;
    let schema = sift_core::Schema::compile(
        "Record",
        serde_json::json!({
            "type": "object",
            "properties": {"rows": {"type": "array", "items": {
                "type": "object",
                "properties": {"key": {"type": "string"}, "value": {"type": "integer"}},
                "required": ["key", "value"]
            }}},
            "required": ["rows"]
        }),
    )
    .unwrap();
    let out = client()
        .extract_value(&schema)
        .user(
            "Write one realistic, complete example record of this kind, inventing plausible \
             values for its fields.",
        )
        .max_retries(0)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.value["rows"].is_array(), "{}", out.value);
    assert!(out.usage.output_tokens < 512, "{:?}", out.usage);
}

/// With no limit asked for, an answer may run past the default 512 tokens into the room the
/// prompt leaves in the context (up to 1024); a limit asked for is kept.
#[tokio::test]
async fn an_answer_grows_past_512_tokens_only_when_no_limit_is_asked_for() {
    let _serial = crate::serial().await;
    let schema = sift_core::Schema::compile(
        "Codes",
        serde_json::json!({
            "type": "array",
            "items": {"type": "integer", "minimum": 100000, "maximum": 999999},
            "minItems": 90,
            "maxItems": 90
        }),
    )
    .unwrap();
    let ask = || {
        client()
            .extract_value(&schema)
            .user("List ninety six-digit codes.")
            .max_retries(0)
    };
    let out = ask().send().await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(out.value.as_array().map(Vec::len), Some(90));
    assert!(
        out.usage.output_tokens > 512,
        "the answer took {} tokens: not a test of the stretched limit",
        out.usage.output_tokens
    );
    match ask().max_tokens(512).send().await.unwrap_err() {
        ExtractError::TokenLimit {
            limit: Some(512), ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
}
