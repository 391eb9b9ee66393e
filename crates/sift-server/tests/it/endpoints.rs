use axum::http::StatusCode;
use serde_json::json;
use sift_server::ServerConfig;
use sift_test_support::{Reply, ScriptedServer, last_user_text};

use crate::{app, call, call_with, json};

#[tokio::test]
async fn user_extracts_with_the_seed_prompt() {
    let server = ScriptedServer::start().await;
    server.push(Reply::tool_call(
        "UserDetail",
        r#"{"name": "Daniel", "age": 24}"#,
    ));
    let app = app(&server, ServerConfig::default());
    let (status, ct, body) = call(
        &app,
        "POST",
        "/user",
        r#"{"query": "Daniel is a 24 year man living in New York City"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ct, "application/json");
    assert_eq!(json(&body), json!({"name": "Daniel", "age": 24}));
    let sent = &server.requests()[0].body;
    assert_eq!(
        last_user_text(sent),
        "Extract: `Daniel is a 24 year man living in New York City`"
    );
    assert_eq!(sent["tool_choice"]["function"]["name"], "UserDetail");
}

#[tokio::test]
async fn user_reports_an_upstream_400_as_502_with_its_message() {
    let server = ScriptedServer::start().await;
    server.push(Reply::error(400, "model `nope` does not exist"));
    let app = app(&server, ServerConfig::default());
    let (status, _, body) = call(&app, "POST", "/user", r#"{"query": "x"}"#).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let detail = &json(&body)["detail"];
    assert_eq!(detail["kind"], "provider_error");
    assert_eq!(detail["upstream_status"], 400);
    assert_eq!(
        detail["message"],
        "model call failed on attempt 1: upstream answered 400: model `nope` does not exist"
    );
    assert_eq!(detail["attempts"][0]["outcome"], "provider_error");
}

#[tokio::test]
async fn user_reports_exhausted_retries_with_every_attempt() {
    let server = ScriptedServer::start().await;
    for _ in 0..3 {
        server.push(Reply::tool_call("UserDetail", r#"{"name": "D", "age": 999}"#).usage(10, 2));
    }
    let app = app(&server, ServerConfig::default());
    let (status, _, body) = call(&app, "POST", "/user", r#"{"query": "x"}"#).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let detail = &json(&body)["detail"];
    assert_eq!(detail["kind"], "retries_exhausted");
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(detail["attempts"][2]["errors"][0]["path"], "age");
    assert_eq!(
        detail["usage"],
        json!({"input_tokens": 30, "output_tokens": 6})
    );
}

#[tokio::test]
async fn extract_writes_ndjson_by_default_and_sse_on_request() {
    let server = ScriptedServer::start().await;
    let people = r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}]}"#;
    server.push(Reply::tool_call("Array_of_UserDetail", people).usage(40, 20));
    server.push(Reply::tool_call("Array_of_UserDetail", people).usage(40, 20));
    let app = app(&server, ServerConfig::default());
    let query = r#"{"query": "Alice and Bob are best friends. They are currently 32 and 43 respectively."}"#;

    let (status, ct, body) = call(&app, "POST", "/extract", query).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/x-ndjson");
    assert_eq!(
        body,
        "{\"name\":\"Alice\",\"age\":32}\n{\"name\":\"Bob\",\"age\":43}\n"
    );

    let (status, ct, body) =
        call_with(&app, "POST", "/extract", query, Some("text/event-stream")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "text/event-stream");
    assert_eq!(
        body,
        "data: {\"name\":\"Alice\",\"age\":32}\n\ndata: {\"name\":\"Bob\",\"age\":43}\n\n\
         event: done\ndata: {\"usage\":{\"input_tokens\":40,\"output_tokens\":20}}\n\n"
    );
}

#[tokio::test]
async fn healthz_and_docs_answer() {
    let server = ScriptedServer::start().await;
    let app = app(&server, ServerConfig::default());
    let (status, _, body) = call(&app, "GET", "/healthz", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["status"], "ok");
    assert_eq!(json(&body)["provider"], "openai");
    let (status, ct, body) = call(&app, "GET", "/docs/", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(body.contains("swagger"), "{body}");
    // The UI's assets come from the binary, not a CDN.
    assert!(
        !body.contains("unpkg.com") && !body.contains("cdn"),
        "{body}"
    );
    let (status, _, body) = call(&app, "GET", "/docs/swagger-ui-bundle.js", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.len() > 100_000, "bundle served: {} bytes", body.len());
    let (status, _, body) = call(&app, "GET", "/docs/swagger-initializer.js", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("/openapi.json"), "{body}");
}
