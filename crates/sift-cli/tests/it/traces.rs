//! `GET /v1/traces` of a running `sift serve`: the recent requests' spans, as the OTLP export
//! sends them, kept in process within their bounds, behind the service keys, without content
//! when content recording is off.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer};

use crate::{serve, sift};

async fn get(http: &sift_test_support::reqwest::Client, url: &str, key: Option<&str>) -> Value {
    let request = http.get(url);
    let request = match key {
        Some(k) => request.bearer_auth(k),
        None => request,
    };
    request.send().await.unwrap().json().await.unwrap()
}

/// The kept trace of the first request to `endpoint`, once its root span has ended.
async fn trace_of(url: &str, endpoint: &str, key: Option<&str>) -> Value {
    let http = sift_test_support::http_client();
    let started = Instant::now();
    loop {
        let list = get(&http, &format!("{url}/v1/traces"), key).await;
        let found = list["traces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["endpoint"] == endpoint && t["complete"] == true)
            .cloned();
        if let Some(summary) = found {
            let id = summary["trace_id"].as_str().unwrap();
            let mut whole = get(&http, &format!("{url}/v1/traces/{id}"), key).await;
            whole["listed"] = summary;
            return whole;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no trace of {endpoint}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names(trace: &Value) -> Vec<String> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_request_with_a_failed_attempt_is_kept_with_its_spans() {
    let upstream = ScriptedServer::start().await;
    upstream
        .push(Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 240}"#).usage(50, 10))
        .push(Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#).usage(70, 10));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", "sk-traces-secret-0123456789")
        .env("SIFT_TRACES", "100");
    let running = serve(cmd);
    let http = sift_test_support::http_client();
    let user: Value = http
        .post(format!("{}/user", running.url))
        .json(&json!({"query": "Daniel is a 24 year man living in New York City"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user, json!({"name": "Daniel", "age": 24}));
    let trace = trace_of(&running.url, "/user", None).await;
    let listed = &trace["listed"];
    assert_eq!(listed["name"], "POST /user", "{listed}");
    assert_eq!(listed["status"], 200);
    assert_eq!(listed["extractor"], "user", "the built-in extractor");
    assert_eq!(
        (
            listed["input_tokens"].as_u64(),
            listed["output_tokens"].as_u64()
        ),
        (Some(120), Some(20))
    );
    let names = names(&trace);
    assert_eq!(names[0], "POST /user", "{names:?}");
    assert!(names.iter().any(|n| n == "extract UserDetail"), "{names:?}");
    let chats: Vec<&Value> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("chat "))
        .collect();
    assert_eq!(chats.len(), 2, "{names:?}");
    // The first call's answer failed validation: its errors are on the trace.
    let text = trace.to_string();
    assert!(
        text.contains("less than or equal to 150") || text.contains("maximum"),
        "{names:?}"
    );
    // Content is recorded (on by default), the upstream key never.
    assert!(
        chats[0]["attributes"]["gen_ai.input.messages"]
            .as_str()
            .unwrap()
            .contains("Daniel")
    );
    assert!(!text.contains("0123456789"), "the key leaked");
    // Each span has its parent in the trace, but the root.
    let ids: Vec<&str> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_id"].as_str().unwrap())
        .collect();
    for s in trace["spans"].as_array().unwrap().iter().skip(1) {
        assert!(
            ids.contains(&s["parent_id"].as_str().unwrap_or("none")),
            "{s}"
        );
    }
    // An unknown id is a 404 saying why.
    let missing = http
        .get(format!("{}/v1/traces/0123", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn traces_need_the_key_and_hold_no_content_when_recording_is_off() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("SIFT_API_KEYS", "service-key-1")
        .env("SIFT_TRACES", "5")
        .env("SIFT_RECORD_CONTENT", "false");
    let running = serve(cmd);
    let http = sift_test_support::http_client();
    let refused = http
        .get(format!("{}/v1/traces", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let ok = http
        .post(format!("{}/user", running.url))
        .bearer_auth("service-key-1")
        .json(&json!({"query": "Daniel is a 24 year man living in New York City"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let trace = trace_of(&running.url, "/user", Some("service-key-1")).await;
    let text = trace.to_string();
    assert!(
        names(&trace).iter().any(|n| n.starts_with("chat ")),
        "{text}"
    );
    assert!(!text.contains("New York"), "content kept: {text}");
    assert!(!text.contains("gen_ai.input.messages"), "{text}");
    assert!(!text.contains("service-key-1"), "{text}");
}

#[tokio::test]
async fn traces_are_kept_by_default_and_turned_off_with_zero() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#));
    let http = sift_test_support::http_client();
    let query = json!({"query": "Daniel is a 24 year man living in New York City"});
    // The defaults: the trace viewer has the request with nothing set.
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url());
    let running = serve(cmd);
    let sent = http
        .post(format!("{}/user", running.url))
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let trace = trace_of(&running.url, "/user", None).await;
    assert!(
        names(&trace).contains(&"extract UserDetail".to_owned()),
        "{trace}"
    );
    // Any count is a limit, however large; anything else is refused, saying why.
    let list = |limit: &'static str| {
        let url = format!("{}/v1/traces?limit={limit}", running.url);
        let http = http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let all = list("22422463555098656305577984").await;
    assert_eq!(all.status(), 200);
    let all: Value = all.json().await.unwrap();
    assert_eq!(all["traces"].as_array().map(Vec::len), Some(1), "{all}");
    let none: Value = list("0").await.json().await.unwrap();
    assert_eq!(none["traces"], json!([]));
    let refused = list("-1").await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["detail"].to_string().contains("limit must be a count"),
        "{body}"
    );
    drop(running);

    // `--traces 0`: none kept, and the answer says how to keep them.
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("SIFT_TRACES", "0");
    let running = serve(cmd);
    let sent = http
        .post(format!("{}/user", running.url))
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let answer = http
        .get(format!("{}/v1/traces", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let body: Value = answer.json().await.unwrap();
    assert!(body["detail"].to_string().contains("--traces N"), "{body}");
}
