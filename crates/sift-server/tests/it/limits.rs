//! The service's limits across requests: one bound on model calls in flight (a queue, then
//! `503` with `Retry-After`), and a deadline over each whole request.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use sift_server::ServerConfig;
use sift_test_support::{Reply, ScriptedServer, split_chars};

use crate::{app, call, call_with, json};

const DANIEL: &str = r#"{"name": "Daniel", "age": 24}"#;

#[tokio::test]
async fn calls_past_the_bound_and_the_queue_are_refused_as_busy() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::tool_call("UserDetail", DANIEL).delay(Duration::from_millis(400)));
    // One call in flight, one waiting: a third concurrent request is refused.
    let app = app(&upstream, ServerConfig::default().model_calls(1, 1));
    let body = json!({"query": "Daniel is 24"}).to_string();
    let calls = (0..3).map(|_| {
        let app = app.clone();
        let body = body.clone();
        tokio::spawn(async move { call(&app, "POST", "/user", &body).await })
    });
    let mut statuses = Vec::new();
    for c in calls.collect::<Vec<_>>() {
        let (status, _, text) = c.await.unwrap();
        statuses.push((status, text));
    }
    let ok = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .count();
    let busy: Vec<&String> = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .map(|(_, t)| t)
        .collect();
    assert_eq!((ok, busy.len()), (2, 1), "{statuses:?}");
    assert!(busy[0].contains("busy"), "{}", busy[0]);
    assert_eq!(
        upstream.max_in_flight(),
        1,
        "never two calls upstream at once"
    );

    // /many-users is held to the same bound, across requests.
    let queries: Vec<String> = (0..4).map(|i| format!("{i}: Daniel is 24")).collect();
    let body = json!({"queries": queries}).to_string();
    let app = crate::app(&upstream, ServerConfig::default().model_calls(2, 100));
    let (a, b) = tokio::join!(
        call(&app, "POST", "/many-users", &body),
        call(&app, "POST", "/many-users", &body)
    );
    assert_eq!(a.0, StatusCode::OK, "{}", a.2);
    assert_eq!(b.0, StatusCode::OK, "{}", b.2);
    assert!(
        upstream.max_in_flight() <= 2,
        "{}",
        upstream.max_in_flight()
    );
}

#[tokio::test]
async fn a_busy_refusal_carries_retry_after() {
    use tower::ServiceExt;
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::tool_call("UserDetail", DANIEL).delay(Duration::from_millis(300)));
    let app = app(&upstream, ServerConfig::default().model_calls(1, 0));
    let slow = {
        let app = app.clone();
        tokio::spawn(
            async move { call(&app, "POST", "/user", r#"{"query": "Daniel is 24"}"#).await },
        )
    };
    while upstream.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = app
        .oneshot(
            axum::http::Request::post("/user")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(r#"{"query": "Daniel is 24 too"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(slow.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_request_past_its_deadline_answers_504_naming_it() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::hang());
    let app = app(
        &upstream,
        ServerConfig::default().request_deadline(Some(Duration::from_millis(800))),
    );
    let started = Instant::now();
    let (status, _, text) = call(&app, "POST", "/user", r#"{"query": "Daniel is 24"}"#).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let detail = &json(&text)["detail"];
    assert_eq!(detail["kind"], "deadline");
    assert!(
        detail["message"].as_str().unwrap().contains(
            "the extraction did not finish within the request's deadline of 0.8 s: 1 model \
                 call was made, 0 answered, 1 still running when it passed"
        ),
        "{detail}"
    );
}

#[tokio::test]
async fn a_deadline_report_names_the_calls_made_and_their_tokens() {
    let upstream = ScriptedServer::start().await;
    // An invalid answer, then a re-ask that never answers.
    upstream.push(Reply::tool_call("UserDetail", r#"{"name": "D", "age": 999}"#).usage(40, 7));
    upstream.fallback(|_| Reply::hang());
    let app = app(
        &upstream,
        ServerConfig::default().request_deadline(Some(Duration::from_millis(800))),
    );
    let (status, _, text) = call(&app, "POST", "/user", r#"{"query": "Daniel is 24"}"#).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    let detail = &json(&text)["detail"];
    assert!(
        detail["message"]
            .as_str()
            .unwrap()
            .ends_with("2 model calls were made, 1 answered, 1 still running when it passed"),
        "{detail}"
    );
    assert_eq!(detail["usage"]["input_tokens"], 40, "{detail}");
    assert_eq!(detail["usage"]["output_tokens"], 7, "{detail}");
}

#[tokio::test]
async fn a_batch_past_its_deadline_reports_what_was_done_and_what_was_not() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|body| {
        let text = sift_test_support::last_user_text(body);
        if text.contains("quick") {
            Reply::tool_call("UserDetail", DANIEL)
        } else {
            Reply::hang()
        }
    });
    let app = app(
        &upstream,
        ServerConfig::default().request_deadline(Some(Duration::from_secs(1))),
    );
    // The quick ones hold the answer they get (answers are grounded).
    let queries = [
        "quick 1: Daniel is 24",
        "slow 2",
        "quick 3: Daniel is 24",
        "slow 4",
        "slow 5",
    ];
    let started = Instant::now();
    let (status, _, text) = call(
        &app,
        "POST",
        "/many-users",
        &json!({ "queries": queries }).to_string(),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let detail = &json(&text)["detail"];
    assert_eq!(
        detail["message"],
        "3 of 5 queries not finished within the request's deadline of 1s"
    );
    let results = detail["results"].as_array().unwrap();
    assert_eq!(results[0]["name"], "Daniel");
    assert_eq!(results[1], Value::Null);
    assert_eq!(results[2]["name"], "Daniel");
    let failed: Vec<u64> = detail["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["index"].as_u64().unwrap())
        .collect();
    assert_eq!(failed, [1, 3, 4]);
    assert_eq!(detail["failed"][0]["error"]["kind"], "deadline");
}

#[tokio::test]
async fn a_stream_past_its_deadline_ends_with_an_error_event() {
    let upstream = ScriptedServer::start().await;
    let answer = r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}]}"#;
    // The first element arrives quickly, then each chunk takes 300 ms.
    let mut pieces = vec![answer[..40].to_owned()];
    pieces.extend(split_chars(&answer[40..], 2));
    upstream.push(
        Reply::stream_tool_call("Array_of_UserDetail", pieces)
            .chunk_delay(Duration::from_millis(300)),
    );
    let app = app(
        &upstream,
        ServerConfig::default().request_deadline(Some(Duration::from_secs(1))),
    );
    let started = Instant::now();
    let (status, _, text) = call_with(
        &app,
        "POST",
        "/extract",
        r#"{"query": "Alice and Bob"}"#,
        Some("text/event-stream"),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains(r#""name":"Alice""#), "{text}");
    assert!(!text.contains("Bob"), "{text}");
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains(r#""kind":"deadline""#), "{text}");
}
