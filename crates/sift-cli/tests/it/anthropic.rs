//! Anthropic as a provider of the `sift` binary: picked from the environment when only its
//! key is set, declared in the config (`kind = "anthropic"`), and in a fallback chain with an
//! OpenAI-compatible server, each against the scripted server speaking its wire format.

use std::process::Stdio;

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer};

use crate::{serve, sift};

#[tokio::test]
async fn serve_picks_anthropic_when_only_its_key_is_set() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#));
    let mut cmd = sift();
    cmd.env("ANTHROPIC_BASE_URL", upstream.anthropic_base_url())
        .env("ANTHROPIC_API_KEY", "sk-ant-serve-secret");
    let running = serve(cmd);
    let http = sift_test_support::http_client();
    let health: Value = http
        .get(format!("{}/healthz", running.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["provider"], "anthropic", "{health}");
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
    let sent = &upstream.requests()[0];
    assert_eq!(sent.headers["x-api-key"], "sk-ant-serve-secret");
    assert_eq!(sent.body["tool_choice"]["type"], "tool");
}

#[tokio::test]
async fn a_configured_anthropic_provider_backs_up_an_openai_one() {
    let openai = ScriptedServer::start().await;
    openai.fallback(|_| Reply::error(503, "down"));
    let anthropic = ScriptedServer::start().await;
    anthropic.fallback(|_| Reply::tool_call("Person", r#"{"name": "Ada", "age": 36}"#));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sift.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[providers.main]
kind = "openai"
base_url = "{}"

[providers.claude]
kind = "anthropic"
base_url = "{}"
api_key_env = "SIFT_TEST_CLAUDE_KEY"
model = "claude-test"

[extractors.person]
provider = ["main", "claude"]
schema = {{ type = "object", title = "Person", properties = {{ name = {{ type = "string" }}, age = {{ type = "integer" }} }}, required = ["name", "age"] }}
"#,
            openai.base_url(),
            anthropic.anthropic_base_url()
        ),
    )
    .unwrap();
    let check = sift()
        .args(["check", "--config", config.to_str().unwrap()])
        .env("SIFT_TEST_CLAUDE_KEY", "sk-ant-config-secret")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{shown}");
    assert!(
        shown.contains("then, when it fails in a way its retries cannot fix: claude"),
        "{shown}"
    );
    let mut cmd = sift();
    cmd.args([
        "extract",
        "--config",
        config.to_str().unwrap(),
        "person",
        "Ada is 36",
        "--verbose",
    ])
    .env("OPENAI_API_KEY", "sk-openai-secret")
    .env("SIFT_TEST_CLAUDE_KEY", "sk-ant-config-secret")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // Off the test's runtime: the scripted servers answer on it meanwhile.
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value, json!({"name": "Ada", "age": 36}));
    assert!(stderr.contains("success by claude-test"), "{stderr}");
    assert!(!stderr.contains("sk-ant-config-secret"), "{stderr}");
    let sent = &anthropic.requests()[0];
    assert_eq!(sent.headers["x-api-key"], "sk-ant-config-secret");
    assert_eq!(sent.body["model"], "claude-test");
}
