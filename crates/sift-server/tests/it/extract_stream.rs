//! `/extract` streaming over a real socket.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sift_server::ServerConfig;
use sift_test_support::{Reply, ScriptedServer, http_client, split_chars};

use crate::app;

const PEOPLE: &str = r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}]}"#;
const QUERY: &str = "Alice and Bob are best friends. They are currently 32 and 43 respectively.";

/// Serves the router on 127.0.0.1:0; returns its base URL.
async fn serve(upstream: &ScriptedServer) -> String {
    let router = app(upstream, ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

async fn post(base: &str, accept: Option<&str>) -> reqwest::Response {
    let mut req = http_client()
        .post(format!("{base}/extract"))
        .json(&json!({ "query": QUERY }));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_first_object_reaches_the_client_before_the_upstream_finishes() {
    let upstream = ScriptedServer::start().await;
    upstream.push(
        Reply::stream_tool_call("Array_of_UserDetail", split_chars(PEOPLE, 4))
            .chunk_delay(Duration::from_millis(25))
            .usage(40, 20),
    );
    let base = serve(&upstream).await;
    let response = post(&base, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains('\n') {
        text.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    assert_eq!(text, "{\"name\":\"Alice\",\"age\":32}\n");
    assert_eq!(
        upstream.finished(),
        0,
        "upstream still streaming when Alice arrived"
    );
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert_eq!(
        text,
        "{\"name\":\"Alice\",\"age\":32}\n{\"name\":\"Bob\",\"age\":43}\n"
    );
    let sent = &upstream.requests()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sift_test_support::last_user_text(sent), QUERY);
}

#[tokio::test]
async fn sse_frames_objects_item_errors_and_done_with_usage() {
    let upstream = ScriptedServer::start().await;
    let text = r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Old", "age": 999}, {"name": "Bob", "age": 43}]}"#;
    upstream
        .push(Reply::stream_tool_call("Array_of_UserDetail", split_chars(text, 7)).usage(40, 20));
    let base = serve(&upstream).await;
    let response = post(&base, Some("text/event-stream")).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.text().await.unwrap();
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 4, "{body}");
    assert_eq!(events[0], "data: {\"name\":\"Alice\",\"age\":32}");
    assert!(events[1].starts_with("event: item_error\ndata: "), "{body}");
    let item: Value = serde_json::from_str(events[1].split_once("data: ").unwrap().1).unwrap();
    assert_eq!(item["index"], 1);
    assert_eq!(item["errors"][0]["path"], "age");
    assert_eq!(events[2], "data: {\"name\":\"Bob\",\"age\":43}");
    assert_eq!(
        events[3],
        "event: done\ndata: {\"usage\":{\"input_tokens\":40,\"output_tokens\":20}}"
    );
}

#[tokio::test]
async fn a_failure_mid_stream_is_an_error_event() {
    let upstream = ScriptedServer::start().await;
    upstream.push(
        Reply::stream_tool_call("Array_of_UserDetail", split_chars(PEOPLE, 10))
            .stream_error_after(5, "overloaded"),
    );
    let base = serve(&upstream).await;
    let body = post(&base, None).await.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "{\"name\":\"Alice\",\"age\":32}", "{body}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded"),
        "{body}"
    );
}

#[tokio::test]
async fn a_failure_before_the_first_object_gets_an_error_status() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::error(400, "bad request upstream"));
    let base = serve(&upstream).await;
    let response = post(&base, None).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"]["upstream_status"], 400);
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_call() {
    let upstream = ScriptedServer::start().await;
    upstream.push(
        Reply::stream_tool_call("Array_of_UserDetail", split_chars(PEOPLE, 2))
            .chunk_delay(Duration::from_millis(30)),
    );
    let base = serve(&upstream).await;
    let response = post(&base, None).await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(std::str::from_utf8(&first).unwrap().contains("Alice"));
    drop(body);
    let mut waited = 0;
    while upstream.disconnects() == 0 && waited < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(
        upstream.disconnects(),
        1,
        "upstream stream dropped after the client left"
    );
    assert_eq!(upstream.finished(), 0);
}

#[tokio::test]
async fn the_seeds_python_client_prints_one_object_per_line() {
    let upstream = ScriptedServer::start().await;
    upstream.push(
        Reply::stream_tool_call("Array_of_UserDetail", split_chars(PEOPLE, 4))
            .chunk_delay(Duration::from_millis(5)),
    );
    let base = serve(&upstream).await;
    // The seed's client, verbatim but for the address.
    let script = format!(
        r#"
import requests

response = requests.post(
    "{base}/extract",
    json={{
        "query": "{QUERY} "
    }},
    stream=True,
)

for chunk in response.iter_content(chunk_size=1024):
    if chunk:
        print(str(chunk, encoding="utf-8"), end="\n")
"#
    );
    let output = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .await
        .expect("python3 (scripts/setup.sh installs requests)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let objects: Vec<Value> = printed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        objects,
        [
            json!({"name": "Alice", "age": 32}),
            json!({"name": "Bob", "age": 43})
        ]
    );
}
