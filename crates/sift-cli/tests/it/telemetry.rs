//! Telemetry of the `sift` process: OTLP export configured by the standard variables, flushed
//! on SIGTERM, an unreachable backend warned about once, and no secret on the console or the
//! wire.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sift_test_support::otlp::OtlpReceiver;
use sift_test_support::{Reply, ScriptedServer};

use crate::{Running, sift};

const KEY: &str = "sk-cli-secret-4f9e1d";

/// Runs `sift serve` with stderr in a file, returning the process and the file's path.
fn serve_logged(mut cmd: Command, name: &str) -> (Running, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("sift-{name}-{}.log", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    cmd.stderr(Stdio::from(file));
    (crate::serve_with(cmd), path)
}

fn stop(running: Running) {
    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut running = running;
    let exit = running.child.wait().unwrap();
    assert!(exit.success(), "clean exit: {exit:?}");
}

/// Sends `/user` with `query` and expects a 200.
async fn post_user(running: &Running, query: impl std::fmt::Display) {
    let response = sift_test_support::http_client()
        .post(format!("{}/user", running.url))
        .json(&json!({ "query": query.to_string() }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// [`stop`] off the runtime (the receivers the process flushes to run on it).
async fn stop_async(running: Running) {
    tokio::task::spawn_blocking(move || stop(running))
        .await
        .unwrap();
}

/// A receiver, an upstream with one answer (57 and 12 tokens), and `sift` set to use both.
async fn exporting_sift() -> (OtlpReceiver, ScriptedServer, Command) {
    let receiver = OtlpReceiver::start().await;
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call("UserDetail", r#"{"name":"Daniel","age":24}"#).usage(57, 12));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", KEY)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint());
    (receiver, upstream, cmd)
}

#[tokio::test]
async fn spans_go_to_the_otlp_endpoint_and_are_flushed_on_sigterm() {
    let (receiver, upstream, mut cmd) = exporting_sift().await;
    cmd.env("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=team-a")
        .env("OTEL_SERVICE_NAME", "sift-under-test")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        .env("SIFT_CONSOLE", "verbose");
    let (running, log) = serve_logged(cmd, "otlp");
    let http = sift_test_support::http_client();
    post_user(
        &running,
        format!("Daniel is 24, password hunter2, key {KEY}"),
    )
    .await;
    let metrics = http
        .get(format!("{}/metrics", running.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gen_ai_client_token_usage"), "{metrics}");
    assert!(
        metrics.contains("http_server_request_duration_seconds"),
        "{metrics}"
    );
    // Stop at once: the batch is still waiting, so the spans arrive only if shutdown flushes.
    stop_async(running).await;
    let spans = receiver.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "POST /user",
        "extract UserDetail",
        "chat gpt-4o-mini",
        "validate UserDetail succeeded",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let chat = spans.iter().find(|s| s.name == "chat gpt-4o-mini").unwrap();
    assert_eq!(chat.resource["service.name"], "sift-under-test");
    assert_eq!(chat.resource["deployment.environment"], "test");
    assert_eq!(
        chat.attr("gen_ai.usage.input_tokens").as_deref(),
        Some("57")
    );
    // The model server was told to continue the trace under the chat span.
    let sent = upstream.requests()[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(sent, format!("00-{}-{}-01", chat.trace_id, chat.span_id));
    assert!(
        receiver
            .headers()
            .iter()
            .all(|h| h.get("x-tenant").is_some_and(|v| v == "team-a"))
    );
    assert!(receiver.metric_posts() >= 1, "metrics flushed on shutdown");
    let raw = String::from_utf8_lossy(&receiver.raw()).into_owned();
    assert!(!raw.contains(KEY), "API key on the wire");
    assert!(!raw.contains("hunter2"), "password on the wire");
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(console.contains("POST /user"), "{console}");
    assert!(
        console.contains("gen_ai.usage.input_tokens=57"),
        "verbose console: {console}"
    );
    assert!(!console.contains(KEY), "API key on the console: {console}");
    assert!(
        !console.contains("hunter2"),
        "password on the console: {console}"
    );
    let _ = std::fs::remove_file(log);
}

/// Calls to Anthropic and Gemini carry the `chat` span's `traceparent` as OpenAI-compatible
/// ones do, so a traced gateway in front of them joins sift's trace.
#[tokio::test]
async fn native_providers_calls_carry_the_chat_spans_traceparent() {
    for provider in ["anthropic", "gemini"] {
        let receiver = OtlpReceiver::start().await;
        let upstream = ScriptedServer::start().await;
        upstream.fallback(|_| Reply::tool_call("UserDetail", r#"{"name":"Daniel","age":24}"#));
        let mut cmd = sift();
        let (base, var) = match provider {
            "anthropic" => (upstream.anthropic_base_url(), "ANTHROPIC"),
            _ => (upstream.gemini_base_url(), "GEMINI"),
        };
        cmd.env(format!("{var}_BASE_URL"), base)
            .env(format!("{var}_API_KEY"), KEY)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint());
        let running = crate::serve(cmd);
        post_user(&running, "Daniel is 24").await;
        stop_async(running).await;
        let spans = receiver.spans();
        let chat = spans
            .iter()
            .find(|s| s.name.starts_with("chat "))
            .unwrap_or_else(|| panic!("{provider}: no chat span in {spans:?}"));
        let sent = upstream.requests()[0]
            .headers
            .get("traceparent")
            .unwrap_or_else(|| panic!("{provider}: the call carries no traceparent"))
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            sent,
            format!("00-{}-{}-01", chat.trace_id, chat.span_id),
            "{provider}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_backend_is_reported_once_and_requests_do_not_wait() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::tool_call("UserDetail", r#"{"name":"Daniel","age":24}"#));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", KEY)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    let (running, log) = serve_logged(cmd, "unreachable");
    let mut slowest = Duration::ZERO;
    // Requests spread over several export batches (one every 500 ms).
    for _ in 0..4 {
        let started = Instant::now();
        post_user(&running, "Daniel is 24").await;
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    stop_async(running).await;
    let console = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        console.matches("could not export spans").count(),
        1,
        "one warning, not one per batch: {console}"
    );
    assert!(
        console.contains(&endpoint),
        "the warning names the backend: {console}"
    );
    eprintln!("slowest request with the backend down: {slowest:?}");
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn content_recording_can_be_switched_off() {
    let (receiver, _upstream, mut cmd) = exporting_sift().await;
    cmd.env(
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        "false",
    );
    let (running, log) = serve_logged(cmd, "no-content");
    post_user(&running, "Daniel is 24 and likes marmalade").await;
    stop_async(running).await;
    let spans = receiver.spans();
    let chat = spans
        .iter()
        .find(|s| s.name == "chat gpt-4o-mini")
        .expect("chat span");
    assert_eq!(
        chat.attr("gen_ai.usage.input_tokens").as_deref(),
        Some("57")
    );
    assert!(chat.attr("gen_ai.input.messages").is_none());
    assert!(chat.attr("gen_ai.output.messages").is_none());
    let validate = spans
        .iter()
        .find(|s| s.name == "validate UserDetail succeeded")
        .unwrap();
    assert!(validate.attr("input_data").is_none());
    assert_eq!(validate.attr("success").as_deref(), Some("true"));
    let raw = String::from_utf8_lossy(&receiver.raw()).into_owned();
    // No prompt, no answer, and not the request's own arguments either.
    assert!(!raw.contains("Extract: `Daniel"), "the prompt went out");
    assert!(!raw.contains("marmalade"), "the request body went out");
    assert!(
        !raw.contains(r#""name":"Daniel""#),
        "the extracted value went out"
    );
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn export_is_gzipped_when_asked() {
    let (receiver, _upstream, mut cmd) = exporting_sift().await;
    cmd.env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip");
    let (running, log) = serve_logged(cmd, "gzip");
    post_user(&running, "Daniel is 24").await;
    stop_async(running).await;
    let headers = receiver.headers();
    assert!(headers.len() >= 2, "a trace and a metrics export");
    for h in &headers {
        assert_eq!(
            h.get("content-encoding").map(|v| v.as_bytes()),
            Some(&b"gzip"[..]),
            "{h:?}"
        );
    }
    // The receiver unzips: the spans decode.
    assert!(
        receiver
            .spans()
            .iter()
            .any(|s| s.name == "chat gpt-4o-mini")
    );
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn the_console_shows_local_time() {
    let utc_hour = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 3600
            % 24
    };
    let mut cmd = sift();
    // A POSIX TZ string (no time zone database needed): three hours east of UTC.
    cmd.env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .env("OPENAI_API_KEY", KEY)
        .env("TZ", "XYZ-3");
    let before = utc_hour();
    let (running, log) = serve_logged(cmd, "tz");
    stop_async(running).await;
    let after = utc_hour();
    let console = std::fs::read_to_string(&log).unwrap();
    let hour: u64 = console
        .get(..2)
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no time first: {console}"));
    assert!(
        [(before + 3) % 24, (after + 3) % 24].contains(&hour),
        "UTC hour {before}, console: {console}"
    );
    let _ = std::fs::remove_file(log);
}

#[test]
fn unusable_telemetry_settings_are_refused_at_start_with_the_reason() {
    for (var, value, expect) in [
        (
            "SIFT_LOG",
            "info,=bogus[",
            "SIFT_LOG `info,=bogus[` is not a valid filter",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "grpc",
            "OTEL_EXPORTER_OTLP_PROTOCOL `grpc` is not supported; sift exports http/protobuf",
        ),
        ("SIFT_SCRUB_PATTERNS", "(unclosed", "SIFT_SCRUB_PATTERNS"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "zstd",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION `zstd` is not supported",
        ),
    ] {
        let out = sift()
            .args(["serve", "--port", "0"])
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{var}={value}: {err}");
        assert!(
            out.stdout.is_empty(),
            "it must not start listening: {var}={value}"
        );
    }
}

#[tokio::test]
async fn logfire_gets_its_own_token_and_not_the_other_backends_headers() {
    let logfire = OtlpReceiver::start().await;
    let (collector, _upstream, mut cmd) = exporting_sift().await;
    let token = "pylf_v1_us_TESTtoken0123456789";
    cmd.env(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "x-collector-secret=s3cr3t,authorization=Bearer collector",
    )
    .env("LOGFIRE_TOKEN", token)
    .env("LOGFIRE_BASE_URL", logfire.endpoint());
    let (running, log) = serve_logged(cmd, "two-backends");
    post_user(&running, "Daniel is 24").await;
    stop_async(running).await;
    for (name, receiver) in [("collector", &collector), ("logfire", &logfire)] {
        assert!(
            receiver.spans().iter().any(|s| s.name == "POST /user"),
            "{name} got no request span"
        );
    }
    for h in logfire.headers() {
        assert_eq!(h.get("authorization").unwrap(), token);
        assert!(
            h.get("x-collector-secret").is_none(),
            "the collector's header went to Logfire"
        );
    }
    for h in collector.headers() {
        assert_eq!(h.get("x-collector-secret").unwrap(), "s3cr3t");
        assert_eq!(h.get("authorization").unwrap(), "Bearer collector");
    }
    let raw = String::from_utf8_lossy(&logfire.raw()).into_owned();
    assert!(!raw.contains(token));
    let _ = std::fs::remove_file(log);
}
