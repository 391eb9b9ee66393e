//! The Gemini provider against the scripted server speaking Gemini's `generateContent` over
//! real HTTP: the conformance suite, and what only Gemini does.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::time::Duration;

use serde_json::json;
use sift_core::{Client, Mode};
use sift_gemini::{Gemini, GeminiConfig};
use sift_test_support::{Reply, ScriptedServer};

#[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema)]
struct Person {
    name: String,
    #[schemars(range(max = 150))]
    age: u32,
    nickname: Option<String>,
}

const KEY: &str = "AIzaSyTest0123456789abcdefghijklmnop";

fn client(server: &ScriptedServer, model: &str) -> Client {
    let provider = Gemini::new(
        GeminiConfig::new(server.gemini_base_url())
            .api_key(KEY)
            .default_model(model)
            .backoff(Duration::from_millis(5), Duration::from_millis(20)),
    )
    .unwrap();
    Client::new(provider)
}

/// The exact body sent in each mode, after a re-ask (so the turn shapes of a failed answer
/// are in it too), against golden files: what Gemini is asked is reviewed when it changes.
#[tokio::test]
async fn each_modes_requests_match_the_golden_files() {
    let mut shown = String::new();
    for mode in [Mode::Tools, Mode::JsonSchema, Mode::Json, Mode::MdJson] {
        let server = ScriptedServer::start().await;
        let (bad, good) = (
            r#"{"name": "Ada", "age": 360, "nickname": null}"#,
            r#"{"name": "Ada", "age": 36, "nickname": null}"#,
        );
        let reply = |text: &str| match mode {
            Mode::Tools => Reply::tool_call("Person", text),
            Mode::MdJson => Reply::content(format!("```json\n{text}\n```")),
            _ => Reply::content(text),
        };
        server.push(reply(bad)).push(reply(good));
        let out = client(&server, "gemini-2.5-flash")
            .extract::<Person>()
            .system("Extract the person.")
            .user("Ada is 36")
            .mode(mode)
            .temperature(0.0)
            .max_tokens(512)
            .seed(7)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(out.value.age, 36, "{mode}");
        let second = server.requests()[1].body.clone();
        shown.push_str(&format!(
            "== {mode}\n{}\n",
            serde_json::to_string_pretty(&second).unwrap()
        ));
    }
    insta::assert_snapshot!(shown);
}

/// Models before 2.5 take the OpenAPI subset: `responseSchema` and `parameters`, with
/// upper-case types and `nullable`; the answer is still validated against the whole schema.
#[tokio::test]
async fn older_models_get_the_openapi_subset() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::content(r#"{"name": "Ada", "age": 360}"#))
        .push(Reply::content(r#"{"name": "Ada", "age": 36}"#));
    let out = client(&server, "gemini-2.0-flash")
        .extract::<Person>()
        .user("Ada is 36")
        .mode(Mode::JsonSchema)
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.age, 36);
    assert_eq!(
        out.attempts.len(),
        2,
        "`maximum` validated after generation"
    );
    let config = &server.requests()[0].body["generationConfig"];
    assert!(config.get("responseJsonSchema").is_none(), "{config}");
    let schema = &config["responseSchema"];
    assert_eq!(schema["type"], "OBJECT");
    assert_eq!(
        schema["propertyOrdering"],
        json!(["name", "age", "nickname"])
    );
    assert_eq!(
        schema["properties"]["nickname"],
        json!({"type": "STRING", "nullable": true})
    );
    server.push(Reply::tool_call("Person", r#"{"name": "Ada", "age": 36}"#));
    client(&server, "gemini-1.5-pro")
        .extract::<Person>()
        .user("Ada is 36")
        .send()
        .await
        .unwrap();
    let declaration = &server.requests()[2].body["tools"][0]["functionDeclarations"][0];
    assert_eq!(declaration["parameters"]["type"], "OBJECT", "{declaration}");
    assert!(declaration.get("parametersJsonSchema").is_none());
}

/// The model is a path segment of the URL: a client's model name cannot reach another path,
/// and a `RetryInfo` delay in a `429`'s body is waited as a `Retry-After` would be.
#[tokio::test]
async fn models_stay_in_their_segment_and_body_retry_delays_are_honoured() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::json(
            429,
            json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded",
                   "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.3s"}]}}),
        ))
        .push(Reply::tool_call("Person", r#"{"name": "Ada", "age": 36}"#));
    client(&server, "models/gemini-2.5-flash")
        .extract::<Person>()
        .user("Ada is 36")
        .send()
        .await
        .unwrap();
    let sent = server.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body["model"], "gemini-2.5-flash");
    let waited = sent[1].at - sent[0].at;
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    server.push(Reply::tool_call("Person", r#"{"name": "Ada", "age": 36}"#));
    client(&server, "../files/x?alt=media")
        .extract::<Person>()
        .user("Ada is 36")
        .send()
        .await
        .unwrap();
    // The scripted server's Gemini route took it whole as the model's name.
    assert_eq!(server.requests().len(), 3);
    assert_eq!(server.requests()[2].body["model"], "../files/x?alt=media");
}
