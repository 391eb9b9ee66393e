use futures::StreamExt;
use serde::Deserialize;
use sift_core::{ChatRequest, ExtractError, Message, Mode, OutputFormat, Provider, ProviderError};

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
    let err = client()
        .extract::<Person>()
        .user("Extract: `Maria is 31 and lives in Lisbon.`")
        .max_tokens(5)
        .max_retries(0)
        .send()
        .await
        .unwrap_err();
    match &err {
        ExtractError::Provider {
            source: ProviderError::TokenLimit(5),
            ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn dropping_a_stream_stops_its_generation() {
    let p = provider();
    let request = ChatRequest {
        model: p.default_model().to_owned(),
        messages: vec![Message::user("Write forty hobbies, one per item.")],
        output: sift_core_schema_for_long_list(),
        temperature: None,
        max_tokens: Some(400),
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
