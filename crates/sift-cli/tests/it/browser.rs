//! The trace viewer (`GET /traces`) in a real browser: headless Chromium driven by Selenium
//! (`tests/browser/*.py`, in the `browser` virtualenv scripts/setup.sh makes, with Debian's
//! chromium and chromium-driver) against a running `sift serve` on the scripted upstream.
//! Screenshots of each step are saved under the target dir's `browser-screenshots/`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer};

use crate::{serve, sift};

/// Runs `script` with `args` in the browser virtualenv; the JSON line it prints.
async fn drive(script: &str, args: Vec<String>) -> Value {
    let root = std::env::var_os("SIFT_CLIENTS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/sift/clients"),
        PathBuf::from,
    );
    let python = root.join("browser/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs chromium and the browser virtualenv)",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/browser")
            .join(script),
    )
    .args(args);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        cmd.env_remove(var);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

fn screenshots(name: &str) -> String {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("browser-screenshots")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

async fn a_user_request(url: &str, key: Option<&str>) {
    let http = sift_test_support::http_client();
    let mut request = http
        .post(format!("{url}/user"))
        .json(&json!({"query": "Daniel is a 24 year man living in New York City"}));
    if let Some(k) = key {
        request = request.bearer_auth(k);
    }
    let user: Value = request.send().await.unwrap().json().await.unwrap();
    assert_eq!(user, json!({"name": "Daniel", "age": 24}));
}

#[tokio::test]
async fn the_trace_viewer_shows_a_request_with_its_failed_and_fixed_attempts() {
    let upstream = ScriptedServer::start().await;
    upstream
        .push(Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 240}"#).usage(50, 10))
        .push(Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#).usage(70, 10));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", "sk-browser-secret")
        .env("SIFT_TRACES", "20");
    let running = serve(cmd);
    a_user_request(&running.url, None).await;
    let seen = drive(
        "traces.py",
        vec![running.url.clone(), screenshots("traces")],
    )
    .await;
    let rows = seen["rows"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r.as_str().unwrap().contains("/user")),
        "{seen}"
    );
    let spans: Vec<&str> = seen["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(spans[0], "POST /user", "{spans:?}");
    assert!(spans.contains(&"extract UserDetail"), "{spans:?}");
    assert_eq!(
        spans.iter().filter(|s| s.starts_with("chat ")).count(),
        2,
        "both attempts: {spans:?}"
    );
    // The first chat span's attributes, shown on a click: the messages sift sent.
    let details = seen["details"].as_str().unwrap();
    assert!(details.contains("gen_ai.input.messages"), "{details}");
    assert_eq!(seen["external"], json!([]), "nothing leaves the server");
    eprintln!(
        "trace viewer: {} bytes, first row after {} ms",
        seen["page_bytes"], seen["first_row_ms"]
    );
}

#[tokio::test]
async fn with_service_keys_the_page_asks_for_one_and_uses_it() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("SIFT_API_KEYS", "browser-key-7")
        .env("SIFT_TRACES", "20");
    let running = serve(cmd);
    a_user_request(&running.url, Some("browser-key-7")).await;
    let seen = drive(
        "traces.py",
        vec![
            running.url.clone(),
            screenshots("traces-keyed"),
            "browser-key-7".into(),
        ],
    )
    .await;
    assert!(
        seen["asked_for_key"]
            .as_str()
            .unwrap_or_default()
            .contains("service key"),
        "{seen}"
    );
    assert!(!seen["spans"].as_array().unwrap().is_empty(), "{seen}");
    // Without the key the JSON behind the page is refused.
    let refused = sift_test_support::http_client()
        .get(format!("{}/v1/traces", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
