//! The service against the scripted upstream, over real HTTP.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod answers;
mod chat;
mod clients;
mod documents;
mod endpoints;
mod examples;
mod extract_stream;
mod limits;
mod many_users;
mod openapi;
mod v1;
mod validation;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util_shim::collect;
use serde_json::Value;
use sift_core::Client;
use sift_openai::{OpenAi, OpenAiConfig};
use sift_server::{ServerConfig, router};
use sift_test_support::ScriptedServer;
use tower::ServiceExt;

pub fn app(server: &ScriptedServer, config: ServerConfig) -> Router {
    let provider = OpenAi::new(
        OpenAiConfig::new(server.base_url())
            .api_key("sk-test")
            .backoff(Duration::from_millis(5), Duration::from_millis(20))
            .timeout(Duration::from_secs(5)),
    )
    .unwrap();
    router(Client::new(provider), config)
}

/// Sends one request through the router; returns status, content type and body text.
pub async fn call(
    app: &Router,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, String, String) {
    call_with(app, method, path, body, None).await
}

pub async fn call_with(
    app: &Router,
    method: &str,
    path: &str,
    body: &str,
    accept: Option<&str>,
) -> (StatusCode, String, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = collect(response.into_body()).await;
    (status, ct, text)
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

mod http_body_util_shim {
    pub async fn collect(body: axum::body::Body) -> String {
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

/// An SSE body as (event name, data) pairs.
pub fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("message");
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name.to_owned(), json(data))
        })
        .collect()
}
