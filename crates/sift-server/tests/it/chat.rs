//! The OpenAI-compatible gateway (`/v1/chat/completions`, `/v1/models`) against the scripted
//! upstream: answers in OpenAI's wire format, re-asks through sift's loop, streams, and every
//! error in OpenAI's shape.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sift_server::{ModelRoute, ServerConfig};
use sift_test_support::{Reply, ScriptedServer, split_chars};
use tower::ServiceExt;

use crate::{app, json};

const PATH: &str = "/v1/chat/completions";

fn user_schema() -> Value {
    json!({
        "type": "object",
        "title": "UserDetail",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "maximum": 150}},
        "required": ["name", "age"],
        "additionalProperties": false
    })
}

fn with_schema(extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Extract: Jason is 25 years old"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "UserDetail", "strict": true, "schema": user_schema()}}
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// Status, headers and body of one request through the router.
async fn send(app: &Router, body: &Value) -> (StatusCode, axum::http::HeaderMap, String) {
    send_raw(app, "POST", PATH, body.to_string(), None).await
}

async fn send_raw(
    app: &Router,
    method: &str,
    path: &str,
    body: String,
    auth: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(key) = auth {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// The error object of an OpenAI-shaped error body.
fn error_of(text: &str) -> Value {
    let body = json(text);
    let error = body["error"].clone();
    assert!(error.is_object(), "not OpenAI's error shape: {text}");
    for key in ["message", "type", "param", "code"] {
        assert!(error.get(key).is_some(), "no `{key}` in {text}");
    }
    error
}

/// The `data:` payloads of an event stream, `[DONE]` included.
fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_json_schema_request_answers_the_validated_value_as_content() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call("UserDetail", r#"{"name":"Jason","age":25}"#).usage(30, 9));
    let app = app(&upstream, ServerConfig::default());
    let (status, headers, text) = send(&app, &with_schema(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body = json(&text);
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "gpt-4o-mini");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    let content: Value =
        serde_json::from_str(choice["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"name": "Jason", "age": 25}));
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39, "prompt_tokens_details": {"cached_tokens": 0}})
    );
    assert_eq!(headers["sift-attempts"], "1");
    // sift asked the upstream in its own mode (a forced call), the client's messages kept.
    let sent = &upstream.requests()[0].body;
    assert_eq!(sent["tool_choice"]["function"]["name"], "UserDetail");
    assert_eq!(
        sent["messages"].as_array().unwrap().last().unwrap()["content"],
        "Extract: Jason is 25 years old"
    );
}

#[tokio::test]
async fn an_invalid_answer_is_reasked_and_the_client_sees_only_the_valid_one() {
    let upstream = ScriptedServer::start().await;
    upstream
        .push(Reply::tool_call("UserDetail", r#"{"name":"Jason","age":250}"#).usage(30, 9))
        .push(Reply::tool_call("UserDetail", r#"{"name":"Jason","age":25}"#).usage(50, 9));
    let app = app(&upstream, ServerConfig::default());
    let (status, headers, text) = send(&app, &with_schema(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body = json(&text);
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(json(content), json!({"name": "Jason", "age": 25}));
    assert_eq!(body["usage"]["prompt_tokens"], 80);
    assert_eq!(body["usage"]["completion_tokens"], 18);
    assert_eq!(body["usage"]["total_tokens"], 98);
    assert_eq!(headers["sift-attempts"], "2");
    // The re-ask told the model what was wrong.
    let second = upstream.requests()[1].body.to_string();
    assert!(second.contains("age"), "{second}");
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn answers_that_stay_invalid_are_a_422_in_openai_shape() {
    let upstream = ScriptedServer::start().await;
    for _ in 0..3 {
        upstream.push(Reply::tool_call(
            "UserDetail",
            r#"{"name":"Jason","age":250}"#,
        ));
    }
    let app = app(&upstream, ServerConfig::default());
    let (status, _, text) = send(&app, &with_schema(json!({}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    let error = error_of(&text);
    assert_eq!(error["code"], "retries_exhausted");
    assert!(
        error["message"].as_str().unwrap().contains("3 attempts"),
        "{text}"
    );
}

#[tokio::test]
async fn a_forced_tool_answers_one_call_of_that_function() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call(
        "UserDetail",
        r#"{"name":"Jason","age":25}"#,
    ));
    let app = app(&upstream, ServerConfig::default());
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": [{"type": "text", "text": "Extract:"}, {"type": "text", "text": "Jason is 25"}]}],
        "tools": [{"type": "function", "function": {"name": "UserDetail", "description": "A user", "parameters": user_schema()}}],
        "tool_choice": {"type": "function", "function": {"name": "UserDetail"}}
    });
    let (status, _, text) = send(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body = json(&text);
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "UserDetail");
    assert_eq!(
        json(call["function"]["arguments"].as_str().unwrap()),
        json!({"name": "Jason", "age": 25})
    );
    // Text parts joined; the system message kept.
    let sent = upstream.requests()[0].body.clone();
    let messages = sent["messages"].as_array().unwrap();
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("Be exact.")
    );
    assert_eq!(messages.last().unwrap()["content"], "Extract:\nJason is 25");
}

#[tokio::test]
async fn required_with_one_tool_forces_it_and_json_object_takes_any_object() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call("f", r#"{"x":1}"#));
    upstream.push(Reply::tool_call("json_object", r#"{"anything":[1,2]}"#));
    let app = app(&upstream, ServerConfig::default());
    let (status, _, text) = send(
        &app,
        &json!({"messages": [{"role": "user", "content": "go"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}],
                "tool_choice": "required"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        json(&text)["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "f"
    );
    let (status, _, text) = send(
        &app,
        &json!({"messages": [{"role": "user", "content": "go"}], "response_format": {"type": "json_object"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let content = json(&text)["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(json(&content), json!({"anything": [1, 2]}));
}

#[tokio::test]
async fn a_streamed_structured_answer_comes_in_openai_chunks_with_usage_last() {
    let upstream = ScriptedServer::start().await;
    upstream
        .push(Reply::tool_call("UserDetail", r#"{"name":"Jason","age":250}"#).usage(30, 9))
        .push(
            Reply::tool_call(
                "UserDetail",
                r#"{"name":"Jason Zoë Ñúñez the Very Long Named","age":25}"#,
            )
            .usage(40, 20),
        );
    let app = app(&upstream, ServerConfig::default());
    let (status, headers, text) = send(
        &app,
        &with_schema(json!({"stream": true, "stream_options": {"include_usage": true}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| json(e)).collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        json(&content),
        json!({"name": "Jason Zoë Ñúñez the Very Long Named", "age": 25})
    );
    assert!(chunks.len() > 4, "the answer came in one piece: {text}");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 99);
    // Only the valid attempt was shown.
    assert!(!text.contains("250"), "{text}");
}

#[tokio::test]
async fn a_streamed_tool_call_is_assembled_from_argument_deltas() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call(
        "UserDetail",
        r#"{"name":"Jason","age":25}"#,
    ));
    let app = app(&upstream, ServerConfig::default());
    let body = json!({
        "messages": [{"role": "user", "content": "Jason is 25"}],
        "stream": true,
        "tools": [{"type": "function", "function": {"name": "UserDetail", "parameters": user_schema()}}],
        "tool_choice": {"type": "function", "function": {"name": "UserDetail"}}
    });
    let (status, _, text) = send(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events = events(&text);
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| json(e)).collect();
    let first = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["function"]["name"], "UserDetail");
    assert_eq!(first["index"], 0);
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(json(&arguments), json!({"name": "Jason", "age": 25}));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    // No usage chunk was asked for.
    assert!(chunks.iter().all(|c| c.get("usage").is_none()), "{text}");
}

#[tokio::test]
async fn without_a_schema_the_conversation_is_plain_chat_streamed_as_generated() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::content("Hello there.").usage(12, 3));
    upstream.push(Reply::stream_content(split_chars("Hello, streamed.", 3)).usage(12, 5));
    let app = app(&upstream, ServerConfig::default());
    let body = json!({"messages": [{"role": "user", "content": "Say hello"}], "temperature": 0.5, "seed": 7, "max_completion_tokens": 20, "top_p": 0.9, "user": "u1"});
    let (status, headers, text) = send(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let reply = json(&text);
    assert_eq!(reply["choices"][0]["message"]["content"], "Hello there.");
    assert_eq!(reply["usage"]["total_tokens"], 15);
    // Parameters that change nothing sift does are named, not dropped unsaid.
    assert_eq!(headers["sift-ignored-params"], "top_p, user");
    let sent = &upstream.requests()[0].body;
    assert!(
        sent.get("tools").is_none() && sent.get("response_format").is_none(),
        "{sent}"
    );
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["max_tokens"], 20);
    assert_eq!(sent["temperature"], 0.5);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, _, text) = send(&app, &streamed).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events = events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| json(e)).collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"]
                .get(0)
                .and_then(|c| c["delta"]["content"].as_str())
        })
        .collect();
    assert_eq!(content, "Hello, streamed.");
    // One chunk per upstream delta: streamed as generated, not gathered first.
    assert!(chunks.len() >= 6, "{text}");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn models_are_listed_and_picked_by_id_or_provider_slash_model() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::content("ok"));
    let provider = sift_openai::OpenAi::new(
        sift_openai::OpenAiConfig::new(upstream.base_url()).api_key("sk-test"),
    )
    .unwrap();
    let client = sift_core::Client::new(provider);
    let routes = vec![
        ModelRoute::new("small", "default", client.clone().with_model("small")),
        ModelRoute::new("big/large-1", "big", client.clone().with_model("large-1")).any_model(true),
    ];
    let app = sift_server::router(client, ServerConfig::default().models(routes));
    let (status, _, text) = send_raw(&app, "GET", "/v1/models", String::new(), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let list = json(&text);
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["small", "big/large-1"]);
    assert_eq!(list["data"][1]["object"], "model");
    assert_eq!(list["data"][1]["owned_by"], "big");
    let (status, _, text) =
        send_raw(&app, "GET", "/v1/models/big/large-1", String::new(), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json(&text)["id"], "big/large-1");

    let ask =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    for (asked, sent) in [
        ("small", "small"),
        ("big/large-1", "large-1"),
        ("big/other-2", "other-2"),
    ] {
        let (status, _, text) = send(&app, &ask(asked)).await;
        assert_eq!(status, StatusCode::OK, "{asked}: {text}");
        assert_eq!(json(&text)["model"], asked);
        assert_eq!(
            upstream.requests().last().unwrap().body["model"],
            sent,
            "{asked}"
        );
    }
    // `default` names no model but its own; unknown names are OpenAI's 404.
    for asked in ["gpt-5", "default/other", "nobody/x"] {
        let (status, _, text) = send(&app, &ask(asked)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{asked}: {text}");
        let error = error_of(&text);
        assert_eq!(error["code"], "model_not_found");
        assert_eq!(error["param"], "model");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("small, big/large-1"),
            "{text}"
        );
    }
    let (status, _, text) = send_raw(&app, "GET", "/v1/models/nope", String::new(), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&text)["code"], "model_not_found");
}

#[tokio::test]
async fn bad_requests_are_400s_naming_the_parameter() {
    let upstream = ScriptedServer::start().await;
    let app = app(&upstream, ServerConfig::default());
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({}), "messages"),
        (json!({"messages": []}), "messages"),
        (json!({"messages": user, "n": 2}), "n"),
        (json!({"messages": user, "stop": ["\n"]}), "stop"),
        (json!({"messages": user, "logprobs": true}), "logprobs"),
        (json!({"messages": user, "temperature": 3}), "temperature"),
        (json!({"messages": user, "max_tokens": 0}), "max_tokens"),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
        ),
        (
            json!({"messages": user, "response_format": {"type": "xml"}}),
            "response_format.type",
        ),
        (
            json!({"messages": user, "response_format": {"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}}),
            "response_format.json_schema.name",
        ),
        (
            json!({"messages": user, "tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tool_choice",
        ),
        (
            json!({"messages": user, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "tool_choice",
        ),
        (
            json!({"messages": user, "tools": [{"type": "code_interpreter"}], "tool_choice": "required"}),
            "tools[0].type",
        ),
        (
            json!({"messages": user, "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object", "properties": {"c": {"type": "string", "pattern": "(unclosed"}}}}}}),
            "response_format.json_schema.schema",
        ),
    ];
    for (body, param) in cases {
        let (status, _, text) = send(&app, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        let error = error_of(&text);
        assert_eq!(error["type"], "invalid_request_error", "{text}");
        assert_eq!(error["param"], param, "{body}: {text}");
    }
    // The invalid pattern is named with where it is.
    let (_, _, text) = send(&app, &json!({"messages": user, "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object", "properties": {"c": {"type": "string", "pattern": "(unclosed"}}}}}})).await;
    let error = error_of(&text);
    assert_eq!(error["code"], "invalid_schema");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("/properties/c/pattern"),
        "{text}"
    );
    assert!(
        upstream.requests().is_empty(),
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn errors_made_outside_the_handler_are_in_openai_shape_too() {
    let upstream = ScriptedServer::start().await;
    let app = app(
        &upstream,
        ServerConfig::default()
            .api_keys(vec!["sk-service".into()])
            .body_limit(2048),
    );
    let body = with_schema(json!({})).to_string();
    // No key, a wrong key: 401.
    for key in [None, Some("sk-wrong")] {
        let (status, headers, text) = send_raw(&app, "POST", PATH, body.clone(), key).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
        assert_eq!(error_of(&text)["type"], "authentication_error");
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert!(!text.contains("sk-service"));
    }
    let (status, _, text) = send_raw(&app, "GET", "/v1/models", String::new(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    error_of(&text);
    // Malformed JSON: a 400, not FastAPI's 422.
    let (status, _, text) = send_raw(
        &app,
        "POST",
        PATH,
        "{\"messages\": [".into(),
        Some("sk-service"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        error_of(&text)["message"]
            .as_str()
            .unwrap()
            .contains("JSON"),
        "{text}"
    );
    // Over the body limit: 413.
    let big = json!({"messages": [{"role": "user", "content": "x".repeat(4096)}]}).to_string();
    let (status, _, text) = send_raw(&app, "POST", PATH, big, Some("sk-service")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    error_of(&text);
    // The wrong method.
    let (status, _, text) = send_raw(&app, "GET", PATH, String::new(), Some("sk-service")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{text}");
    error_of(&text);
    // Other endpoints keep FastAPI's shape.
    let (status, _, text) = send_raw(&app, "POST", "/user", "{}".into(), Some("sk-service")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json(&text)["detail"].is_array(), "{text}");
}

#[tokio::test]
async fn an_upstream_failure_keeps_its_status() {
    let upstream = ScriptedServer::start().await;
    for _ in 0..4 {
        upstream.push(Reply::error(503, "overloaded"));
    }
    let app = app(&upstream, ServerConfig::default());
    let (status, _, text) = send(&app, &with_schema(json!({}))).await;
    assert!(status.is_server_error(), "{status}: {text}");
    let error = error_of(&text);
    assert_eq!(error["type"], "server_error");
    assert_eq!(error["code"], "provider_error");
}

#[tokio::test]
async fn the_deadline_and_a_stream_broken_midway_are_reported_in_openai_shape() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::hang());
    let timed = app(
        &upstream,
        ServerConfig::default().request_deadline(Some(std::time::Duration::from_millis(300))),
    );
    let (status, _, text) = send(&timed, &with_schema(json!({}))).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    let error = error_of(&text);
    assert_eq!(error["type"], "server_error");
    assert!(
        error["message"].as_str().unwrap().contains("deadline"),
        "{text}"
    );

    let upstream = ScriptedServer::start().await;
    upstream.push(
        Reply::stream_content(split_chars("Hello, streamed.", 3)).stream_error_after(2, "boom"),
    );
    let app = app(&upstream, ServerConfig::default());
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true});
    let (status, _, text) = send(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events = events(&text);
    // What came before the break, then the error the SDKs raise; no `[DONE]`.
    assert!(
        events.iter().any(|e| e.contains("\"content\":\"Hel\"")),
        "{text}"
    );
    let last = json(events.last().unwrap());
    assert!(last["error"]["message"].is_string(), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}
