//! The fault matrix against the release of `sift serve` as a process: every fault of the
//! scripted upstream, on `/user`, `/many-users`, and `/extract` in both framings, at once. Each
//! gets a clear status and a message naming the cause within the deadline, nothing secret in
//! the body, and the process stays alive with its memory bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sift_test_support::faults::{FAULT_KEY, Fault};
use sift_test_support::{Reply, ScriptedServer};

use crate::{serve, sift};

const DANIEL: &str = r#"{"name": "Daniel", "age": 24}"#;
const PEOPLE: &str = r#"{"value": [{"name": "Daniel", "age": 24}, {"name": "Ann", "age": 31}]}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    User,
    Many,
    Ndjson,
    Sse,
}

/// What a fault must lead to: values, or a failure whose messages say one of these.
fn expected(fault: Fault, endpoint: Endpoint) -> Option<&'static [&'static str]> {
    let stream = matches!(endpoint, Endpoint::Ndjson | Endpoint::Sse);
    match fault {
        Fault::RateLimitedOnce | Fault::ServerErrorOnce => None,
        Fault::SseWithoutDone | Fault::HugeIndex if !stream => None,
        Fault::RateLimitedForever | Fault::HugeRetryAfter => Some(&["429"]),
        Fault::ServerErrorForever => Some(&["500", "the upstream is broken"]),
        Fault::Hang | Fault::HangAfterHeaders => Some(&["no answer within 1s"]),
        Fault::ResetBeforeBody | Fault::ResetMidBody => Some(&[
            "transport error",
            "stream failed",
            "error decoding",
            "connection",
        ]),
        Fault::SseWithoutDone => Some(&["invalid JSON", "EOF", "end of", "incomplete", "ended"]),
        Fault::TruncatedArguments => Some(&["invalid JSON", "EOF", "end of"]),
        Fault::MalformedJson => Some(&["not JSON"]),
        // A stream reports an invalid element in place (`item_error`) and goes on.
        Fault::WrongTypes => Some(&["is not of type"]),
        Fault::Length => Some(&["did not fit in the"]),
        Fault::Refusal => Some(&["refused to answer: I will not do that."]),
        Fault::EmptyChoices => Some(&["no choices"]),
        Fault::Html => Some(&[
            "HTML page (\"Bad Gateway\")",
            "`text/html` where an event stream",
        ]),
        Fault::HugeBody => Some(&["larger than the limit"]),
        Fault::HugeIndex => Some(&["names tool call 100000000"]),
        // The upstream's text is scrubbed whole (it names an API key); its status stays.
        Fault::EchoedKey => Some(&["\"upstream_status\":401"]),
    }
}

/// The answer to one request: status, body, time taken.
struct Outcome {
    fault: Fault,
    endpoint: Endpoint,
    status: u16,
    body: String,
    took: Duration,
}

async fn ask(base: String, fault: Fault, endpoint: Endpoint) -> Outcome {
    let http = sift_test_support::http_client();
    let tag = |what: &str| format!("fault:{} {what}: Daniel is 24, Ann is 31", fault.name());
    let started = Instant::now();
    let request = match endpoint {
        Endpoint::User => http
            .post(format!("{base}/user"))
            .json(&json!({"query": tag("user")})),
        Endpoint::Many => http
            .post(format!("{base}/many-users"))
            .json(&json!({"queries": [tag("many 1"), tag("many 2")]})),
        Endpoint::Ndjson => http
            .post(format!("{base}/extract"))
            .json(&json!({"query": tag("ndjson")})),
        Endpoint::Sse => http
            .post(format!("{base}/extract"))
            .header("accept", "text/event-stream")
            .json(&json!({"query": tag("sse")})),
    };
    let response = request
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{fault:?} {endpoint:?}: no answer: {e}"));
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("{fault:?} {endpoint:?}: the body broke: {e}"));
    Outcome {
        fault,
        endpoint,
        status,
        body,
        took: started.elapsed(),
    }
}

/// Every message a failure carries: the detail's, its attempts', each failed query's, each
/// stream error event's.
fn messages(body: &str) -> String {
    let mut out = Vec::new();
    let mut collect = |v: &Value| {
        let mut stack = vec![v.clone()];
        while let Some(v) = stack.pop() {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        if k == "message" {
                            out.push(v.as_str().unwrap_or_default().to_owned());
                        } else {
                            stack.push(v);
                        }
                    }
                }
                Value::Array(a) => stack.extend(a),
                _ => {}
            }
        }
    };
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        collect(&v);
    }
    for line in body.lines() {
        let data = line.strip_prefix("data: ").unwrap_or(line);
        if let Ok(v) = serde_json::from_str::<Value>(data) {
            collect(&v);
        }
    }
    out.join(" | ")
}

/// The request's first user message (re-asks add others after it).
fn first_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn every_fault_gets_a_clear_answer_within_the_deadline() {
    let upstream = ScriptedServer::start().await;
    let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    upstream.fallback(move |body| {
        let n = {
            let mut calls = calls.lock().unwrap();
            let count = calls.entry(first_user_text(body)).or_default();
            *count += 1;
            *count
        };
        let name = body["tools"][0]["function"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let good = if name.starts_with("Array") {
            PEOPLE
        } else {
            DANIEL
        };
        match Fault::named_in(body) {
            Some(fault) => fault.reply(body, n, good),
            None => Reply::tool_call(&name, good),
        }
    });
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", FAULT_KEY)
        .env("SIFT_TIMEOUT", "1")
        .env("SIFT_REQUEST_DEADLINE", "10")
        .env("SIFT_MAX_MODEL_CALLS", "512");
    let running = serve(cmd);
    let pid = running.child.id();
    let before = rss_kib(pid);

    let mut jobs = Vec::new();
    for fault in Fault::ALL {
        for endpoint in [
            Endpoint::User,
            Endpoint::Many,
            Endpoint::Ndjson,
            Endpoint::Sse,
        ] {
            jobs.push(tokio::spawn(ask(running.url.clone(), fault, endpoint)));
        }
    }
    let mut problems = Vec::new();
    for job in jobs {
        let o = job.await.unwrap();
        let what = format!("{:?} on {:?}", o.fault, o.endpoint);
        let said = messages(&o.body);
        if o.took > Duration::from_secs(15) {
            problems.push(format!("{what}: took {:?}", o.took));
        }
        if o.body.contains(FAULT_KEY) || said.contains("sk-fault") {
            problems.push(format!("{what}: the key reached the client: {}", o.body));
        }
        if o.status == 500 || !(200..600).contains(&o.status) {
            problems.push(format!("{what}: status {}", o.status));
        }
        match expected(o.fault, o.endpoint) {
            None => {
                let ok = o.status == 200 && o.body.contains("Daniel") && said.is_empty();
                if !ok {
                    problems.push(format!(
                        "{what}: expected values, got {} {}",
                        o.status, o.body
                    ));
                }
            }
            Some(keywords) => {
                // An error status, or (streams) an `error` event, whose messages name the cause.
                let failed = o.status != 200
                    || o.body.contains("event: error")
                    || o.body.contains("{\"error\":")
                    || o.body.contains("item_error");
                if !failed {
                    problems.push(format!(
                        "{what}: expected a failure, got {} {}",
                        o.status, o.body
                    ));
                } else if !keywords
                    .iter()
                    .any(|k| said.contains(k) || o.body.contains(k))
                {
                    problems.push(format!(
                        "{what}: {} with messages not naming the cause ({keywords:?}): {said}",
                        o.status
                    ));
                }
            }
        }
    }
    // Alive, and its memory back within bounds (20 MB bodies were refused, not kept).
    let health = sift_test_support::http_client()
        .get(format!("{}/healthz", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let after = rss_kib(pid);
    assert!(
        after < before + 200 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
