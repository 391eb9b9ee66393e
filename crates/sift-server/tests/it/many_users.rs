use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use sift_server::ServerConfig;
use sift_test_support::{Reply, ScriptedServer, last_user_text};

use crate::{app, call, json};

/// Answers "Extract: `Person N is N`" with {"name": "Person N", "age": N} after `delay`.
fn echo_people(server: &ScriptedServer, delay: Duration) {
    server.fallback(move |req| {
        let text = last_user_text(req);
        let n: u32 = text
            .trim_end_matches('`')
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(999);
        Reply::tool_call(
            "UserDetail",
            format!(r#"{{"name": "Person {n}", "age": {n}}}"#),
        )
        .usage(10, 5)
        .delay(delay)
    });
}

#[tokio::test]
async fn twenty_queries_run_concurrently_in_order_under_the_bound() {
    let server = ScriptedServer::start().await;
    echo_people(&server, Duration::from_millis(200));
    let app = app(&server, ServerConfig::default().max_concurrency(8));
    let queries: Vec<String> = (0..20).map(|i| format!("Person {i} is {i}")).collect();
    let body = json!({ "queries": queries }).to_string();
    let started = Instant::now();
    let (status, _, text) = call(&app, "POST", "/many-users", &body).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{text}");
    let expected: Vec<_> = (0..20)
        .map(|i| json!({"name": format!("Person {i}"), "age": i}))
        .collect();
    assert_eq!(json(&text), json!(expected), "order kept");
    // 20 x 200 ms serially is 4 s; 8 at a time needs 3 waves, about 600 ms.
    assert!(took < Duration::from_millis(2000), "took {took:?}");
    assert_eq!(
        server.max_in_flight(),
        8,
        "the bound is reached and never exceeded"
    );
}

#[tokio::test]
async fn the_default_bound_is_sixteen() {
    let server = ScriptedServer::start().await;
    echo_people(&server, Duration::from_millis(100));
    let app = app(&server, ServerConfig::default());
    let queries: Vec<String> = (0..40).map(|i| format!("Person {i} is {i}")).collect();
    let (status, _, _) = call(
        &app,
        "POST",
        "/many-users",
        &json!({ "queries": queries }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.max_in_flight(), 16);
}

#[tokio::test]
async fn failures_name_the_query_and_keep_the_other_results() {
    let server = ScriptedServer::start().await;
    server.fallback(|req| {
        let text = last_user_text(req);
        if text.contains("Jeffrey") {
            Reply::error(400, "content policy")
        } else {
            Reply::tool_call("UserDetail", r#"{"name": "Sarah", "age": 20}"#)
        }
    });
    let app = app(&server, ServerConfig::default());
    let body = json!({"queries": [
        "Sarah is a 20 year old living in Tokyo",
        "Jeffrey is 55 and lives down in Leeds",
    ]})
    .to_string();
    let (status, _, text) = call(&app, "POST", "/many-users", &body).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{text}");
    let detail = &json(&text)["detail"];
    assert_eq!(detail["message"], "1 of 2 queries failed");
    assert_eq!(detail["failed"][0]["index"], 1);
    assert_eq!(
        detail["failed"][0]["query"],
        "Jeffrey is 55 and lives down in Leeds"
    );
    assert_eq!(detail["failed"][0]["error"]["upstream_status"], 400);
    assert!(
        detail["failed"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content policy")
    );
    assert_eq!(
        detail["results"],
        json!([{"name": "Sarah", "age": 20}, null])
    );
}

#[tokio::test]
async fn too_many_queries_is_a_422() {
    let server = ScriptedServer::start().await;
    let app = app(&server, ServerConfig::default().max_queries(3));
    let body = json!({"queries": ["a", "b", "c", "d"]}).to_string();
    let (status, _, text) = call(&app, "POST", "/many-users", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        json(&text),
        json!({"detail": [{
            "type": "too_long",
            "loc": ["body", "queries"],
            "msg": "List should have at most 3 items after validation, not 4",
            "input": ["a", "b", "c", "d"],
            "ctx": {"field_type": "List", "max_length": 3, "actual_length": 4}
        }]})
    );
    assert!(server.requests().is_empty(), "nothing sent upstream");
}
