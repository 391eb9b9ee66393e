//! `sift check` and `sift serve --config`, as processes.

use std::path::PathBuf;

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer};

use crate::{serve, sift};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn check_reports_what_a_good_config_serves() {
    let out = sift()
        .args(["check", "--config"])
        .arg(repo("examples/sift.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok, 3 extractor(s)"), "{text}");
    assert!(
        text.contains("POST /v1/extractors/events/stream  (elements as they close)"),
        "{text}"
    );
    assert!(text.contains("POST /v1/extractors/invoice/many"), "{text}");
}

#[test]
fn check_and_serve_refuse_a_bad_config_with_every_problem() {
    let broken = repo("crates/sift-config/tests/it/broken/sift.toml");
    for args in [
        vec!["check", "--config"],
        vec!["serve", "--port", "0", "--config"],
    ] {
        let out = sift()
            .args(&args)
            .arg(&broken)
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("13 problems in the config"), "{args:?}: {err}");
        assert!(
            err.contains("sift.toml:26:1: unknown key `extractors.remote_ref.promt`"),
            "{err}"
        );
    }
    let out = sift()
        .args(["check", "--config", "/nonexistent/sift.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config"));
}

#[tokio::test]
async fn serve_with_a_config_answers_its_extractors() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call(
        "Contact",
        r#"{"name": "Maria Keller", "kind": "person", "email": "maria.keller@alpenlicht.ch"}"#,
    ));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", "sk-cli-test")
        .env("SIFT_API_KEYS", "service-key-1")
        .env("SIFT_CONFIG", repo("examples/sift.toml"));
    let running = serve(cmd);
    let http = sift_test_support::http_client();
    let url = format!("{}/v1/extractors/contact", running.url);
    let refused = http
        .post(&url)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let response = http
        .post(&url)
        .bearer_auth("service-key-1")
        .json(&json!({"text": "Maria Keller, maria.keller@alpenlicht.ch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["sift-attempts"], "1");
    let value: Value = response.json().await.unwrap();
    assert_eq!(value["email"], "maria.keller@alpenlicht.ch");
    let health = http
        .get(format!("{}/healthz", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "healthz needs no key");
}
