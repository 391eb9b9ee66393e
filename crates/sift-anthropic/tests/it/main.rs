//! The Anthropic provider against the scripted server speaking Anthropic's Messages API over
//! real HTTP: each mode's request, whole and streamed answers, re-asks as `tool_result`s with
//! `is_error`, usage with the cache's share, truncation, and each error kind.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sift_anthropic::{Anthropic, AnthropicConfig};
use sift_core::{Client, Event, ExtractError, Mode, ProviderError};
use sift_test_support::{Reply, ScriptedServer, split_chars};

#[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema)]
struct Person {
    name: String,
    #[schemars(range(max = 150))]
    age: u32,
}

const KEY: &str = "sk-ant-test-0123456789abcdef";

fn client(server: &ScriptedServer) -> Client {
    let provider = Anthropic::new(
        AnthropicConfig::new(server.anthropic_base_url())
            .api_key(KEY)
            .default_model("claude-test")
            .backoff(Duration::from_millis(5), Duration::from_millis(20)),
    )
    .unwrap();
    Client::new(provider)
}

#[tokio::test]
async fn tools_mode_forces_the_tool_and_reads_the_tool_use_block() {
    let server = ScriptedServer::start().await;
    server.push(
        Reply::tool_call("Person", r#"{"name": "Ada", "age": 36}"#)
            .usage(1200, 12)
            .cached(1000),
    );
    let out = client(&server)
        .extract::<Person>()
        .system("Extract the person.")
        .user("Ada is 36")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.value,
        Person {
            name: "Ada".into(),
            age: 36
        }
    );
    assert_eq!(out.usage.input_tokens, 1200);
    assert_eq!(out.usage.cached_input_tokens, 1000);
    assert_eq!(out.usage.output_tokens, 12);
    let sent = &server.requests()[0];
    assert_eq!(sent.headers["x-api-key"], KEY);
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(sent.headers.get("authorization").is_none());
    let body = &sent.body;
    assert_eq!(body["model"], "claude-test");
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "Person"})
    );
    assert_eq!(body["tools"][0]["name"], "Person");
    assert!(body["tools"][0]["input_schema"]["properties"]["age"].is_object());
    assert!(body["max_tokens"].as_u64().unwrap() >= 1024, "{body}");
    // The system prompt apart, marked for the cache; the user turn as a text block.
    assert_eq!(body["system"][0]["text"], "Extract the person.");
    assert_eq!(body["system"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Ada is 36"}]}])
    );
}

#[tokio::test]
async fn an_invalid_call_is_reasked_as_a_tool_result_with_is_error() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::tool_call("Person", r#"{"name": "Ada", "age": 360}"#).usage(100, 10))
        .push(Reply::tool_call("Person", r#"{"name": "Ada", "age": 36}"#).usage(150, 10));
    let out = client(&server)
        .extract::<Person>()
        .user("Ada is 36")
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.age, 36);
    assert_eq!(out.attempts.len(), 2);
    assert_eq!(out.usage.input_tokens, 250);
    let second = &server.requests()[1].body;
    let turns = second["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{second}");
    assert_eq!(turns[1]["role"], "assistant");
    assert_eq!(turns[1]["content"][0]["type"], "tool_use");
    assert_eq!(turns[1]["content"][0]["input"]["age"], 360);
    let result = &turns[2]["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["is_error"], true);
    assert_eq!(result["tool_use_id"], turns[1]["content"][0]["id"]);
    assert!(
        result["content"].as_str().unwrap().contains("age"),
        "{result}"
    );
}

#[tokio::test]
async fn json_schema_mode_asks_for_structured_output_in_anthropics_subset() {
    let server = ScriptedServer::start().await;
    server.push(Reply::content(r#"{"name": "Ada", "age": 36}"#));
    let out = client(&server)
        .extract::<Person>()
        .mode(Mode::JsonSchema)
        .user("Ada is 36")
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.name, "Ada");
    let body = &server.requests()[0].body;
    assert!(body.get("tools").is_none(), "{body}");
    let format = &body["output_config"]["format"];
    assert_eq!(format["type"], "json_schema");
    // `maximum` is not in the subset Anthropic takes: left out, and still validated.
    let age = &format["schema"]["properties"]["age"];
    assert!(age.get("maximum").is_none(), "{format}");
    assert_eq!(format["schema"]["additionalProperties"], false);
    server.push(Reply::content(r#"{"name": "Ada", "age": 360}"#));
    server.push(Reply::content(r#"{"name": "Ada", "age": 360}"#));
    server.push(Reply::content(r#"{"name": "Ada", "age": 360}"#));
    let err = client(&server)
        .extract::<Person>()
        .mode(Mode::JsonSchema)
        .user("Ada is 36")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExtractError::RetriesExhausted { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_streamed_list_gives_each_element_as_it_closes() {
    let server = ScriptedServer::start().await;
    let answer = r#"{"value": [{"name": "Ada", "age": 36}, {"name": "Bob", "age": 43}]}"#;
    server.push(
        Reply::stream_tool_call("Array_of_Person", split_chars(answer, 7))
            .usage(80, 30)
            .cached(50),
    );
    let client = client(&server);
    let mut stream = client
        .extract::<Person>()
        .user("Ada is 36, Bob 43")
        .elements();
    let mut names = Vec::new();
    while let Some(event) = stream.next().await {
        if let Event::Element { value, .. } = event.unwrap() {
            names.push(value.name);
        }
    }
    assert_eq!(names, ["Ada", "Bob"]);
    let usage = stream.usage();
    assert_eq!(usage.input_tokens, 80);
    assert_eq!(usage.cached_input_tokens, 50);
    assert_eq!(usage.output_tokens, 30);
    let body = &server.requests()[0].body;
    assert_eq!(body["stream"], true);
}

#[tokio::test]
async fn max_tokens_is_truncation_and_overload_is_retried() {
    let server = ScriptedServer::start().await;
    server.push(Reply::error(529, "Overloaded")).push(
        Reply::tool_call("Person", r#"{"name": "Ada", "ag"#)
            .finish_reason("length")
            .usage(10, 1024),
    );
    let err = client(&server)
        .extract::<Person>()
        .user("Ada is 36")
        .max_retries(0)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, ExtractError::TokenLimit { .. }), "{err}");
    assert_eq!(server.requests().len(), 2, "the 529 was retried");
}

#[tokio::test]
async fn errors_keep_anthropics_message_with_the_key_masked() {
    let server = ScriptedServer::start().await;
    server.push(Reply::json(
        401,
        json!({"type": "error", "error": {"type": "authentication_error", "message": format!("invalid x-api-key {KEY}")}}),
    ));
    let err = client(&server)
        .extract::<Person>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    let text = format!("{err:#} {:?}", err.provider_error());
    assert!(text.contains("invalid x-api-key"), "{text}");
    assert!(!text.contains("0123456789abcdef"), "{text}");
    assert!(
        matches!(
            err.provider_error(),
            Some(ProviderError::Status { status: 401, .. })
        ),
        "{text}"
    );
    server.push(Reply::json(
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 250000 tokens > 200000 maximum"}}),
    ));
    let err = client(&server)
        .extract::<Person>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err.provider_error(), Some(ProviderError::InputTooLong(_))),
        "{err:#}"
    );
    // Anthropic's answer shape only: a body that is not a message is named as such.
    server.push(Reply::json(200, json!({"id": "x"})));
    let err = client(&server)
        .extract::<Person>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    let provider = err
        .provider_error()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(provider.contains("no `content` list"), "{provider}");
}

/// The exact body sent in each mode, after a re-ask (so the turn shapes of a failed answer
/// are in it too), against golden files: what Anthropic is asked is reviewed when it changes.
#[tokio::test]
async fn each_modes_requests_match_the_golden_files() {
    let mut shown = String::new();
    for mode in [Mode::Tools, Mode::JsonSchema, Mode::Json, Mode::MdJson] {
        let server = ScriptedServer::start().await;
        let (bad, good) = (
            r#"{"name": "Ada", "age": 360}"#,
            r#"{"name": "Ada", "age": 36}"#,
        );
        let reply = |text: &str| match mode {
            Mode::Tools => Reply::tool_call("Person", text),
            Mode::MdJson => Reply::content(format!("```json\n{text}\n```")),
            _ => Reply::content(text),
        };
        server.push(reply(bad)).push(reply(good));
        let out = client(&server)
            .extract::<Person>()
            .system("Extract the person.")
            .user("Ada is 36")
            .mode(mode)
            .temperature(0.0)
            .max_tokens(512)
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

/// Deployments that take structured outputs only as the beta get `output_format` and the
/// beta header; the answer is read and validated the same way.
#[tokio::test]
async fn the_beta_output_format_is_sent_with_its_header_when_asked() {
    let server = ScriptedServer::start().await;
    server.push(Reply::content(r#"{"name": "Ada", "age": 36}"#));
    let provider = Anthropic::new(
        AnthropicConfig::new(server.anthropic_base_url())
            .api_key(KEY)
            .beta_output_format(true),
    )
    .unwrap();
    let out = Client::new(provider)
        .extract::<Person>()
        .mode(Mode::JsonSchema)
        .user("Ada is 36")
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.age, 36);
    let sent = &server.requests()[0];
    assert_eq!(
        sent.headers["anthropic-beta"],
        sift_anthropic::STRUCTURED_OUTPUTS_BETA
    );
    assert!(sent.body.get("output_config").is_none(), "{}", sent.body);
    assert_eq!(sent.body["output_format"]["type"], "json_schema");
    assert!(sent.body["output_format"]["schema"]["properties"]["age"].is_object());
}
