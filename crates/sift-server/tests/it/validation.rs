use axum::http::StatusCode;
use serde_json::json;
use sift_server::ServerConfig;
use sift_test_support::ScriptedServer;

use crate::{app, call, json};

async fn expect_422(path: &str, body: &str) -> serde_json::Value {
    let server = ScriptedServer::start().await;
    let app = app(&server, ServerConfig::default());
    let (status, ct, text) = call(&app, "POST", path, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert_eq!(ct, "application/json");
    assert!(server.requests().is_empty(), "nothing sent upstream");
    json(&text)
}

#[tokio::test]
async fn missing_field() {
    assert_eq!(
        expect_422("/user", r#"{"q": "x"}"#).await,
        json!({"detail": [{"type": "missing", "loc": ["body", "query"], "msg": "Field required", "input": {"q": "x"}}]})
    );
}

#[tokio::test]
async fn wrong_type() {
    assert_eq!(
        expect_422("/user", r#"{"query": 42}"#).await,
        json!({"detail": [{"type": "string_type", "loc": ["body", "query"], "msg": "Input should be a valid string", "input": 42}]})
    );
}

#[tokio::test]
async fn wrong_items_are_each_reported() {
    assert_eq!(
        expect_422("/many-users", r#"{"queries": ["ok", 1, null]}"#).await,
        json!({"detail": [
            {"type": "string_type", "loc": ["body", "queries", 1], "msg": "Input should be a valid string", "input": 1},
            {"type": "string_type", "loc": ["body", "queries", 2], "msg": "Input should be a valid string", "input": null}
        ]})
    );
    assert_eq!(
        expect_422("/many-users", r#"{"queries": "one"}"#).await["detail"][0]["type"],
        "list_type"
    );
}

#[tokio::test]
async fn malformed_json() {
    let body = expect_422("/user", "{\"query\": \"x\",}").await;
    let detail = &body["detail"][0];
    assert_eq!(detail["type"], "json_invalid");
    assert_eq!(detail["loc"], json!(["body", 14]));
    assert_eq!(detail["msg"], "JSON decode error");
    assert!(
        detail["ctx"]["error"]
            .as_str()
            .unwrap()
            .contains("trailing comma"),
        "{detail}"
    );
}

#[tokio::test]
async fn empty_body_and_non_object() {
    assert_eq!(
        expect_422("/user", "").await,
        json!({"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": null}]})
    );
    assert_eq!(
        expect_422("/extract", "[1]").await["detail"][0]["type"],
        "model_attributes_type"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = ScriptedServer::start().await;
    let app = app(&server, ServerConfig::default().body_limit(64));
    let big = json!({"query": "x".repeat(100)}).to_string();
    let (status, _, text) = call(&app, "POST", "/user", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(json(&text)["detail"].as_str().unwrap().contains("limit"));
}

#[tokio::test]
async fn a_body_declared_as_something_else_than_json_gets_415() {
    use tower::ServiceExt;
    let server = ScriptedServer::start().await;
    server.fallback(|_| {
        sift_test_support::Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#)
    });
    let app = app(&server, ServerConfig::default());
    let send = |content_type: Option<&'static str>, path: &'static str| {
        let app = app.clone();
        async move {
            let mut req = axum::http::Request::builder().method("POST").uri(path);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let body = r#"{"query": "Daniel is 24"}"#;
            let response = app
                .oneshot(req.body(axum::body::Body::from(body)).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    for path in ["/user", "/v1/extractors/user"] {
        let (status, text) = send(Some("text/plain"), path).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}: {text}");
        assert!(
            json(&text)["detail"]
                .as_str()
                .unwrap()
                .contains("declared as `text/plain`"),
            "{text}"
        );
        let (status, _) = send(Some("application/x-www-form-urlencoded"), path).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
    }
    assert!(server.requests().is_empty(), "nothing sent upstream");
    for ct in [
        None,
        Some("application/json"),
        Some("Application/JSON; charset=utf-8"),
        Some("application/vnd.api+json"),
    ] {
        let (status, text) = send(ct, "/user").await;
        assert_eq!(status, StatusCode::OK, "{ct:?}: {text}");
    }
}
