//! Worked examples: a configured extractor's `[[extractors.NAME.examples]]` and an ad-hoc
//! request's `examples` reach the upstream before the request's own text; ad-hoc examples
//! that do not fit the schema, or invent, are 422s naming the place.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sift_server::ServerConfig;
use sift_test_support::{Reply, ScriptedServer};

use crate::v1::examples;
use crate::{app, call, json};

/// The user turns of a recorded request, and the answers the examples give.
fn turns(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = match m["tool_calls"][0]["function"]["arguments"].as_str() {
                Some(arguments) => arguments.to_owned(),
                None => m["content"].as_str().unwrap_or_default().to_owned(),
            };
            (m["role"].as_str().unwrap().to_owned(), text)
        })
        .collect()
}

#[tokio::test]
async fn a_configured_extractors_examples_come_before_its_prompt() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call(
        "Contact",
        r#"{"name": "Tom Reilly", "kind": "person", "email": null, "phone": "087 123 4567", "city": "Galway"}"#,
    ));
    let app = examples(&upstream, ServerConfig::default());
    let text = "Hi, it's Tom Reilly from Galway, my number is 087 123 4567.";
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/extractors/contact",
        &json!({ "text": text }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["city"], "Galway");
    let sent = turns(&upstream.requests()[0].body);
    let roles: Vec<&str> = sent.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "tool",
            "user",
            "assistant",
            "tool",
            "user"
        ],
        "{sent:?}"
    );
    assert!(
        sent[0].1.starts_with(
            "Extract the contact details from this message:\n\nYou can reach Lotte Jansen"
        ),
        "{sent:?}"
    );
    let first: Value = serde_json::from_str(&sent[1].1).unwrap();
    // Shown as strict mode asks answers to be written: every property, null where absent.
    assert_eq!(
        first,
        json!({"name": "Lotte Jansen", "kind": "person", "email": "lotte@jansen-design.example", "phone": "020 555 0101", "city": null})
    );
    assert!(sent[6].1.ends_with(text), "{sent:?}");
}

#[tokio::test]
async fn adhoc_examples_and_policies_are_shown_and_checked() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::content(r#"{"city": "Leeds"}"#));
    let app = app(&upstream, ServerConfig::default());
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let request = json!({
        "schema": schema,
        "text": "Jeffrey lives down in Leeds",
        "prompt": "Where does the person live?",
        "mode": "json",
        "examples": [{"text": "Ann moved to York.", "output": {"city": "York"}}]
    });
    let (status, _, body) = call(&app, "POST", "/v1/extract", &request.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sent = turns(&upstream.requests()[0].body);
    assert_eq!(
        sent[1..],
        [
            (
                "user".to_owned(),
                "Where does the person live?\n\nAnn moved to York.".to_owned()
            ),
            ("assistant".to_owned(), r#"{"city":"York"}"#.to_owned()),
            (
                "user".to_owned(),
                "Where does the person live?\n\nJeffrey lives down in Leeds".to_owned()
            ),
        ],
        "{sent:?}"
    );

    let bad = json!({
        "schema": schema,
        "text": "t",
        "examples": [
            {"text": "Ann moved to York.", "output": {"town": "York"}},
            {"text": "Ann moved to York.", "output": {"city": "Lisle"}},
            {"output": {"city": "York"}},
            "Ann moved to York."
        ]
    });
    let (status, _, body) = call(&app, "POST", "/v1/extract", &bad.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let details = json(&body)["detail"].clone();
    let found: Vec<(Value, Value)> = details
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["type"].clone(), d["loc"].clone()))
        .collect();
    assert_eq!(
        found,
        [
            (
                json!("missing"),
                json!(["body", "examples", 0, "output", "city"])
            ),
            (
                json!("ungrounded"),
                json!(["body", "examples", 1, "output", "city"])
            ),
            (json!("missing"), json!(["body", "examples", 2, "text"])),
            (json!("dict_type"), json!(["body", "examples", 3])),
        ],
        "{details}"
    );
    assert!(
        details[1]["msg"]
            .as_str()
            .unwrap()
            .contains("'Lisle' does not appear in the example's text"),
        "{details}"
    );

    let many: Vec<Value> = (0..33)
        .map(|_| json!({"text": "Ann moved to York.", "output": {"city": "York"}}))
        .collect();
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/extract",
        &json!({"schema": schema, "text": "t", "examples": many}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(json(&body)["detail"][0]["loc"], json!(["body", "examples"]));

    // The request's own policies: a field made free may hold what the text does not.
    upstream.push(Reply::content(r#"{"city": "Lisle"}"#));
    let free = json!({
        "schema": schema,
        "text": "Jeffrey lives down in Leeds",
        "mode": "json",
        "grounding": {"city": "free"},
        "examples": [{"text": "Ann moved.", "output": {"city": "York"}}]
    });
    let (status, _, body) = call(&app, "POST", "/v1/extract", &free.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body), json!({"city": "Lisle"}));
    let wrong =
        json!({"schema": schema, "text": "t", "grounding": {"town": "free", "city": "exact"}});
    let (status, _, body) = call(&app, "POST", "/v1/extract", &wrong.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let locs: Vec<Value> = json(&body)["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["loc"].clone())
        .collect();
    assert_eq!(
        locs,
        [
            json!(["body", "grounding", "town"]),
            json!(["body", "grounding", "city"])
        ],
        "{body}"
    );
    assert_eq!(
        upstream.requests().len(),
        2,
        "refused requests never reach the model"
    );
}
