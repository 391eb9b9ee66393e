//! The seed's three endpoints on the real model.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sift_server::{ServerConfig, router};
use tower::ServiceExt;

use crate::{client, provider};

async fn post(
    app: &axum::Router,
    path: &str,
    body: Value,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let response = app
        .clone()
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap(), headers)
}

fn app() -> axum::Router {
    router(client(), ServerConfig::default())
}

#[tokio::test]
async fn user_daniel_24() {
    let (status, body, _) = post(
        &app(),
        "/user",
        json!({"query": "Daniel is a 24 year man living in New York City"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"name": "Daniel", "age": 24})
    );
}

#[tokio::test]
async fn many_users_sarah_20_jeffrey_55() {
    let (status, body, _) = post(
        &app(),
        "/many-users",
        json!({"queries": ["Sarah is a 20 year old living in Tokyo", "Jeffrey is 55 and lives down in Leeds"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!([{"name": "Sarah", "age": 20}, {"name": "Jeffrey", "age": 55}])
    );
}

#[tokio::test]
async fn extract_alice_32_bob_43() {
    let (status, body, headers) = post(
        &app(),
        "/extract",
        json!({"query": "Alice and Bob are best friends. They are currently 32 and 43 respectively."}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let people: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        people,
        [
            json!({"name": "Alice", "age": 32}),
            json!({"name": "Bob", "age": 43})
        ],
        "{body}"
    );
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    // A provider of its own with room for one waiting request.
    let small = sift_local::LocalProvider::load(
        sift_local::LocalConfig::default()
            .queue(1)
            .model_path(provider().model_path().to_path_buf()),
    )
    .unwrap();
    let app = router(sift_core::Client::new(small), ServerConfig::default());
    let query = json!({"query": "Daniel is a 24 year man living in New York City"});
    let calls = (0..4).map(|_| post(&app, "/user", query.clone()));
    let results = futures::future::join_all(calls).await;
    let statuses: Vec<StatusCode> = results.iter().map(|r| r.0).collect();
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    let busy = results
        .iter()
        .find(|r| r.0 == StatusCode::SERVICE_UNAVAILABLE)
        .unwrap_or_else(|| panic!("one request is refused: {statuses:?}"));
    assert_eq!(busy.2["retry-after"], "1");
    assert!(busy.1.contains("busy"), "{}", busy.1);

    // /many-users on the same provider: the queries the queue cannot take fail as busy, the
    // others are answered, and the answer says to retry.
    let queries: Vec<&str> = vec!["Daniel is a 24 year man living in New York City"; 4];
    let (status, body, headers) = post(&app, "/many-users", json!({ "queries": queries })).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "1");
    let detail: Value = serde_json::from_str(&body).unwrap();
    let answered = detail["detail"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r.is_null())
        .count();
    assert!(answered >= 1, "{body}");
    assert_eq!(
        detail["detail"]["failed"][0]["error"]["kind"], "provider_error",
        "{body}"
    );
}
