//! The seed's three endpoints on the real model.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sift_server::{ServerConfig, router};
use tower::ServiceExt;

use sift_core::Provider;

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
    let _serial = crate::serial().await;
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
    let _serial = crate::serial().await;
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
    let _serial = crate::serial().await;
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
    let _serial = crate::serial().await;
    // A provider of its own running one generation, with room for one waiting request.
    let small = sift_local::LocalProvider::load(
        sift_local::LocalConfig::default()
            .parallel(1)
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

fn examples() -> axum::Router {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let config = sift_config::Config::load(&dir.join("sift.toml")).unwrap();
    let extractors = config
        .extractors
        .into_iter()
        .map(|spec| sift_server::Extractor::new(spec, client()))
        .collect();
    router(client(), ServerConfig::default().extractors(extractors))
}

fn example_text(name: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/texts");
    std::fs::read_to_string(dir.join(format!("{name}.txt"))).unwrap()
}

#[tokio::test]
async fn every_example_extractor_answers_schema_valid_output() {
    let _serial = crate::serial().await;
    let app = examples();
    let config = sift_config::Config::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sift.toml"),
    )
    .unwrap();
    for spec in &config.extractors {
        provider()
            .check_schema(spec.output.constrained_schema())
            .unwrap();
        let mut input = json!({"text": example_text(&spec.name)});
        // The events text writes no year: answers are grounded, so the year comes as input.
        if spec.input.value()["properties"].get("year").is_some() {
            input["year"] = json!(2027);
        }
        let (status, body, headers) =
            post(&app, &format!("/v1/extractors/{}", spec.name), input).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", spec.name);
        let value: Value = serde_json::from_str(&body).unwrap();
        assert!(
            spec.output.errors(&value).is_empty(),
            "{}: {value} fails its schema: {:?}",
            spec.name,
            spec.output.errors(&value)
        );
        assert!(headers.contains_key("sift-attempts"), "{}", spec.name);
    }
    // The list extractor streams its elements as they close, each valid on its own.
    let (status, body, _) = post(
        &app,
        "/v1/extractors/events/stream",
        json!({"text": example_text("events"), "year": 2026}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let item = config.extractor("events").unwrap().output.items().unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(item.errors(line).is_empty(), "{line}");
    }
}

#[tokio::test]
async fn an_adhoc_schema_the_grammar_cannot_take_is_a_422_naming_the_feature() {
    let _serial = crate::serial().await;
    let schema = json!({
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string", "pattern": "^(?=a)"}}}
    });
    let (status, body, _) = post(
        &app(),
        "/v1/extract",
        json!({"schema": schema, "text": "tags: a, b"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let detail = &body["detail"][0];
    assert_eq!(detail["type"], "schema_unsupported");
    assert_eq!(
        detail["loc"],
        json!(["body", "schema", "properties", "tags", "items", "pattern"])
    );
    assert!(
        detail["msg"].as_str().unwrap().contains("`pattern`"),
        "{detail}"
    );
}
