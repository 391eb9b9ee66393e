//! The `sift` binary, run as a process.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer};

mod anthropic;
mod batch;
mod browser;
mod config;
mod documents;
mod eval;
mod extract;
mod faults;
mod gateway;
mod gemini;
mod openai_batch;
mod schemathesis;
mod telemetry;
mod traces;
mod vendor_batch;

pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn sift() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sift"));
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "GEMINI_API_KEY",
        "GEMINI_BASE_URL",
        "SIFT_PROVIDER",
        "SIFT_PORT",
        "SIFT_HOST",
        "SIFT_LOG",
        "RUST_LOG",
        "SIFT_CONSOLE",
        "LOGFIRE_TOKEN",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "TZ",
        "SIFT_CONFIG",
        "SIFT_API_KEYS",
        "SIFT_MAX_UPSTREAM_BODY",
        "SIFT_SHUTDOWN_GRACE",
        "SIFT_TRACES",
        "SIFT_PLAYGROUND",
        "SIFT_MAX_DOCUMENT_BYTES",
        "SIFT_MAX_DOCUMENT_PAGES",
        "SIFT_EVAL_REPORT",
        "SIFT_EVAL_BASELINE",
        "SIFT_RECORD_CONTENT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `sift serve --port 0` and waits for its `listening on` line.
pub(crate) fn serve(mut cmd: Command) -> Running {
    cmd.stderr(Stdio::null());
    serve_with(cmd)
}

/// As [`serve`], with stderr where `cmd` already sends it.
pub(crate) fn serve_with(mut cmd: Command) -> Running {
    let mut child = cmd
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    Running { child, url }
}

fn start(base_url: &str) -> Running {
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", base_url)
        .env("OPENAI_API_KEY", "sk-cli-test");
    serve(cmd)
}

#[tokio::test]
async fn serve_answers_and_stops_gracefully_on_sigterm() {
    let server = ScriptedServer::start().await;
    server.push(
        Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#)
            .delay(Duration::from_millis(500)),
    );
    let mut running = start(&server.base_url());
    let http = sift_test_support::http_client();
    let url = format!("{}/user", running.url);
    let request = tokio::spawn(async move {
        http.post(url)
            .json(&json!({"query": "Daniel is a 24 year man living in New York City"}))
            .send()
            .await
    });
    // Let the request reach the upstream, then ask the server to stop.
    for _ in 0..100 {
        if !server.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200, "the in-flight request finishes");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"name": "Daniel", "age": 24}));
    let exit = tokio::task::spawn_blocking(move || {
        let code = running.child.wait().unwrap();
        drop(running);
        code
    })
    .await
    .unwrap();
    assert!(exit.success(), "clean exit: {exit:?}");
}

#[tokio::test]
async fn a_stream_that_never_ends_does_not_outlive_the_shutdown_grace() {
    let server = ScriptedServer::start().await;
    server.push(Reply::hang());
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", server.base_url())
        .env("OPENAI_API_KEY", "sk-cli-test")
        .env("SIFT_SHUTDOWN_GRACE", "1");
    let mut running = serve(cmd);
    let url = format!("{}/extract", running.url);
    let request = tokio::spawn(async move {
        sift_test_support::http_client()
            .post(url)
            .json(&json!({"query": "Alice is 32"}))
            .send()
            .await
    });
    for _ in 0..200 {
        if !server.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !server.requests().is_empty(),
        "the stream reached the upstream"
    );
    let started = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &running.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    // Polled, so that a process that never exits fails the test instead of hanging it.
    let exit = loop {
        if let Some(code) = running.child.try_wait().unwrap() {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still running: the open stream kept the process alive past the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(running);
    assert!(exit.success(), "clean exit: {exit:?}");
    request.abort();
}

#[test]
fn a_missing_model_file_is_named() {
    let out = sift()
        .args([
            "serve",
            "--port",
            "0",
            "--model-path",
            "/nonexistent/model.gguf",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no model file at /nonexistent/model.gguf"),
        "{err}"
    );
}

#[tokio::test]
async fn with_no_api_settings_it_serves_the_embedded_model() {
    let running = serve(sift());
    let http = sift_test_support::http_client();
    let health: Value = http
        .get(format!("{}/healthz", running.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["provider"], "local", "{health}");
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
}

#[test]
fn bad_flags_are_rejected_with_the_reason() {
    let out = sift().args(["serve", "--mode", "xml"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown mode `xml`"), "{err}");
}
