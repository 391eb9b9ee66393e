//! What `?attempts=true` and `?spans=true` add to an answer, one-shot and streamed: every call
//! with its errors, tokens and cost at the configured prices, and the spans of each streamed
//! element and of a partial stream's final value.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sift_config::{Prices, Pricing};
use sift_server::ServerConfig;
use sift_test_support::{Reply, ScriptedServer, split_chars};

use crate::v1::{examples, text};
use crate::{call, call_with, json, sse_events};

/// The characters `span` covers in `text`.
fn covered(text: &str, span: &Value) -> String {
    let (start, end) = (
        span["start"].as_u64().unwrap() as usize,
        span["end"].as_u64().unwrap() as usize,
    );
    text.chars().skip(start).take(end - start).collect()
}

fn priced() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.prices = Pricing::new(BTreeMap::from([(
        "gpt-4o-mini".to_owned(),
        Prices::new(0.15, 0.075, 0.60),
    )]));
    config
}

const CONTACT: &str = r#"{"name": "Maria Keller", "kind": "person", "email": "maria.keller@alpenlicht.ch", "city": "Zurich"}"#;

#[tokio::test]
async fn attempts_true_reports_every_call_with_its_errors_tokens_and_cost() {
    let upstream = ScriptedServer::start().await;
    let invented = CONTACT.replace("Zurich", "Zuraflasche");
    upstream
        .push(Reply::tool_call("Contact", invented).usage(1000, 100))
        .push(Reply::tool_call("Contact", CONTACT).usage(2000, 200));
    let app = examples(&upstream, priced());
    let input = json!({"text": text("contact.txt")}).to_string();
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/extractors/contact?attempts=yes&spans=1",
        &input,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json(&body);
    assert_eq!(answer["value"]["city"], "Zurich");
    assert_eq!(
        covered(&text("contact.txt"), &answer["spans"]["/city"][0]),
        "Zurich"
    );
    let attempts = answer["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{answer}");
    assert_eq!(attempts[0]["outcome"], "ungrounded");
    assert_eq!(attempts[0]["errors"][0]["path"], "city");
    assert!(
        attempts[0]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("'Zuraflasche' does not appear in the text"),
        "{answer}"
    );
    assert_eq!(attempts[0]["usage"]["input_tokens"], 1000);
    assert_eq!(attempts[0]["model"], "gpt-4o-mini");
    assert_eq!(attempts[1]["outcome"], "success");
    let cost = |v: &Value| v.as_f64().unwrap();
    // 1000 in at 0.15/M and 100 out at 0.60/M; then twice that.
    assert!((cost(&attempts[0]["cost_usd"]) - 0.00021).abs() < 1e-12);
    assert!((cost(&attempts[1]["cost_usd"]) - 0.00042).abs() < 1e-12);
    assert!((cost(&answer["cost_usd"]) - 0.00063).abs() < 1e-12);
    assert_eq!(answer["usage"]["input_tokens"], 3000);

    // A model without prices: the cost is unknown (null), not zero.
    upstream.push(Reply::tool_call("Contact", CONTACT).usage(10, 10));
    let app = examples(&upstream, ServerConfig::default());
    let (status, _, body) =
        call(&app, "POST", "/v1/extractors/contact?attempts=true", &input).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json(&body);
    assert_eq!(answer["cost_usd"], Value::Null);
    assert_eq!(answer["attempts"][0]["cost_usd"], Value::Null);
    assert!(answer.get("spans").is_none(), "only what was asked for");

    // Not a boolean: the caller's mistake, named by its key.
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/extractors/contact?attempts=maybe&spans=true",
        &input,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let detail = &json(&body)["detail"];
    assert_eq!(detail.as_array().unwrap().len(), 1, "{detail}");
    assert_eq!(detail[0]["loc"], json!(["query", "attempts"]));
    assert_eq!(detail[0]["input"], "maybe");
}

#[tokio::test]
async fn a_streamed_element_carries_its_spans_when_asked() {
    let upstream = ScriptedServer::start().await;
    let answer = r#"{"value": [{"title": "The spring fair opens", "date": "2027-04-02", "place": "Old Market Hall"}, {"title": "the summer party", "date": "2027-06-21"}]}"#;
    upstream.push(Reply::stream_tool_call("Events", split_chars(answer, 7)).usage(90, 60));
    let app = examples(&upstream, ServerConfig::default());
    let body = json!({"text": text("events.txt"), "year": 2027}).to_string();
    let (status, _, out) = call(
        &app,
        "POST",
        "/v1/extractors/events/stream?spans=true",
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let lines: Vec<Value> = out.lines().map(json).collect();
    assert_eq!(lines.len(), 2, "{out}");
    let source = text("events.txt");
    // Pointers into the element, offsets into the input.
    assert_eq!(lines[0]["value"]["place"], "Old Market Hall");
    assert_eq!(
        covered(&source, &lines[0]["spans"]["/place"][0]),
        "Old Market Hall"
    );
    assert_eq!(covered(&source, &lines[0]["spans"]["/date"][0]), "2 April");
    assert_eq!(
        covered(&source, &lines[1]["spans"]["/title"][0]),
        "the summer party"
    );
}

#[tokio::test]
async fn a_partial_streams_final_value_carries_its_spans_and_done_its_priced_calls() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::stream_tool_call("Contact", split_chars(CONTACT, 8)).usage(1000, 100));
    let app = examples(&upstream, priced());
    let body = json!({"text": text("contact.txt")}).to_string();
    let (status, _, out) = call_with(
        &app,
        "POST",
        "/v1/extractors/contact/stream?spans=true&attempts=true",
        &body,
        Some("text/event-stream"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let events = sse_events(&out);
    // Snapshots stay bare values; the final value comes with its spans.
    assert!(
        events
            .iter()
            .any(|(n, v)| n == "partial" && v.get("value").is_none())
    );
    let (name, last) = &events[events.len() - 2];
    assert_eq!(name, "message", "{out}");
    assert_eq!(last["value"]["email"], "maria.keller@alpenlicht.ch");
    assert_eq!(
        covered(&text("contact.txt"), &last["spans"]["/email"][0]),
        "maria.keller@alpenlicht.ch"
    );
    let (name, done) = events.last().unwrap();
    assert_eq!(name, "done");
    assert_eq!(done["attempts"][0]["outcome"], "success");
    assert!(
        (done["cost_usd"].as_f64().unwrap() - 0.00021).abs() < 1e-12,
        "{done}"
    );

    // Unasked, the stream's shapes are as before.
    upstream.push(Reply::stream_tool_call("Contact", split_chars(CONTACT, 8)).usage(1000, 100));
    let (_, _, out) = call_with(
        &app,
        "POST",
        "/v1/extractors/contact/stream",
        &body,
        Some("text/event-stream"),
    )
    .await;
    let events = sse_events(&out);
    assert_eq!(events[events.len() - 2].1["city"], "Zurich");
    assert_eq!(
        events.last().unwrap().1,
        json!({"usage": {"input_tokens": 1000, "output_tokens": 100}})
    );
}
