//! Gemini as a provider of the `sift` binary: picked from the environment when only its key
//! is set, and declared in the config (`kind = "gemini"`), against the scripted server
//! speaking Gemini's format.

use std::process::Stdio;

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer};

use crate::{serve, sift};

#[tokio::test]
async fn serve_picks_gemini_when_only_its_key_is_set() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#));
    let mut cmd = sift();
    cmd.env("GEMINI_BASE_URL", upstream.gemini_base_url())
        .env("GEMINI_API_KEY", "AIza-serve-secret-0123456789");
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
    assert_eq!(health["provider"], "gcp.gemini", "{health}");
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
    assert_eq!(
        sent.headers["x-goog-api-key"],
        "AIza-serve-secret-0123456789"
    );
    assert_eq!(sent.body["model"], sift_gemini::DEFAULT_MODEL);
    assert_eq!(
        sent.body["toolConfig"]["functionCallingConfig"]["mode"],
        "ANY"
    );
    // The OpenAI-compatible gateway lists it by its model's name.
    let models: Value = http
        .get(format!("{}/v1/models", running.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        models["data"][0]["id"],
        sift_gemini::DEFAULT_MODEL,
        "{models}"
    );
}

#[tokio::test]
async fn a_configured_gemini_provider_answers_its_extractor_with_the_openapi_subset() {
    let gemini = ScriptedServer::start().await;
    gemini.fallback(|_| Reply::content(r#"{"name": "Ada", "age": 36}"#));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sift.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[providers.g]
kind = "gemini"
base_url = "{}"
api_key_env = "SIFT_TEST_GEMINI_KEY"
model = "gemini-2.0-flash"

[extractors.person]
provider = "g"
mode = "json_schema"
schema = {{ type = "object", title = "Person", properties = {{ name = {{ type = "string" }}, age = {{ type = ["integer", "null"] }} }}, required = ["name", "age"] }}
"#,
            gemini.gemini_base_url()
        ),
    )
    .unwrap();
    let check = sift()
        .args(["check", "--config", config.to_str().unwrap()])
        .env("SIFT_TEST_GEMINI_KEY", "AIza-config-secret")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{shown}");
    assert!(shown.contains("g (gemini"), "{shown}");
    let mut cmd = sift();
    cmd.args([
        "extract",
        "--config",
        config.to_str().unwrap(),
        "person",
        "Ada is 36",
    ])
    .env("SIFT_TEST_GEMINI_KEY", "AIza-config-secret")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value, json!({"name": "Ada", "age": 36}));
    let sent = &gemini.requests()[0];
    assert_eq!(sent.body["model"], "gemini-2.0-flash");
    let schema = &sent.body["generationConfig"]["responseSchema"];
    assert_eq!(
        schema["properties"]["age"],
        json!({"type": "INTEGER", "nullable": true}),
        "{schema}"
    );
    // A misspelt setting is refused at its place in the file.
    std::fs::write(
        &config,
        "[providers.g]\nkind = \"gemini\"\nschema_dialect = \"openapi3\"\n",
    )
    .unwrap();
    let check = sift()
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!check.status.success(), "{said}");
    assert!(
        said.contains("schema_dialect") && said.contains(":3:"),
        "{said}"
    );
}
