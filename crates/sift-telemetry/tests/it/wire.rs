//! Spans leave over OTLP/HTTP (protobuf), decoded on the other side with opentelemetry-proto.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sift_core::Client;
use sift_openai::{OpenAi, OpenAiConfig};
use sift_server::{ServerConfig, router};
use sift_telemetry::{TelemetryBuilder, TelemetryConfig};
use sift_test_support::otlp::OtlpReceiver;
use sift_test_support::{Reply, ScriptedServer};
use tower::ServiceExt;

async fn user_request(telemetry: &sift_telemetry::Telemetry, upstream: &ScriptedServer) {
    let _guard = tracing::dispatcher::set_default(telemetry.dispatch());
    let provider =
        OpenAi::new(OpenAiConfig::new(upstream.base_url()).api_key("sk-wire-test-key")).unwrap();
    let app = router(Client::new(provider), ServerConfig::default());
    let request = axum::http::Request::post("/user")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"query": "Daniel is 24"}"#))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
}

/// Flushes and shuts down off the runtime: the receiver answering the last export runs on
/// this test's runtime thread.
async fn shutdown(telemetry: Arc<sift_telemetry::Telemetry>) {
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap();
}

fn quiet() -> TelemetryConfig {
    TelemetryConfig {
        console: None,
        ..TelemetryConfig::default()
    }
}

#[tokio::test]
async fn spans_and_metrics_leave_over_otlp_http() {
    let receiver = OtlpReceiver::start().await;
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call("UserDetail", r#"{"name":"Daniel","age":24}"#).usage(57, 12));
    let telemetry = Arc::new(
        TelemetryBuilder::new(quiet())
            .otlp(
                Some(&receiver.endpoint()),
                HashMap::from([("x-tenant".to_owned(), "t1".to_owned())]),
                "test receiver",
            )
            .unwrap()
            .build()
            .unwrap(),
    );
    user_request(&telemetry, &upstream).await;
    shutdown(telemetry.clone()).await;
    assert!(
        receiver
            .wait_for(Duration::from_secs(5), |s| s.name == "POST /user")
            .await,
        "no request span arrived; errors: {:?}",
        receiver.errors()
    );
    let spans = receiver.spans();
    let chat = spans.iter().find(|s| s.name == "chat gpt-4o-mini").unwrap();
    assert_eq!(chat.kind, 3, "CLIENT");
    assert_eq!(
        chat.attr("gen_ai.usage.input_tokens").as_deref(),
        Some("57")
    );
    assert_eq!(
        chat.attr("gen_ai.usage.output_tokens").as_deref(),
        Some("12")
    );
    assert_eq!(chat.attr("gen_ai.provider.name").as_deref(), Some("openai"));
    assert_eq!(
        chat.attributes["gen_ai.response.finish_reasons"],
        serde_json::json!(["tool_calls"])
    );
    assert_eq!(chat.resource["service.name"], "sift");
    let extract = spans
        .iter()
        .find(|s| s.name == "extract UserDetail")
        .unwrap();
    let http = spans.iter().find(|s| s.name == "POST /user").unwrap();
    assert_eq!(http.kind, 2, "SERVER");
    assert_eq!(
        http.attributes["http.response.status_code"],
        serde_json::json!(200)
    );
    assert_eq!(chat.parent_span_id, extract.span_id);
    assert_eq!(extract.parent_span_id, http.span_id);
    assert!(http.parent_span_id.is_empty());
    let log = spans
        .iter()
        .find(|s| s.name == "validate UserDetail succeeded")
        .unwrap();
    assert_eq!(log.start, log.end, "logs are zero-duration spans");
    assert_eq!(log.attr("logfire.span_type").as_deref(), Some("log"));
    let headers = receiver.headers();
    assert!(
        headers
            .iter()
            .all(|h| h.get("x-tenant").is_some_and(|v| v == "t1"))
    );
    assert!(headers.iter().all(|h| {
        h.get("content-type")
            .is_some_and(|v| v == "application/x-protobuf")
    }));
    assert!(receiver.metric_posts() >= 1, "metrics were flushed too");
    let raw = String::from_utf8_lossy(&receiver.raw()).into_owned();
    assert!(
        raw.contains("gen_ai.client.token.usage"),
        "the metric by name"
    );
    assert!(!raw.contains("sk-wire-test-key"));
}

#[tokio::test]
async fn logfire_gets_the_token_as_authorization_and_nowhere_else() {
    let receiver = OtlpReceiver::start().await;
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call(
        "UserDetail",
        r#"{"name":"Daniel","age":24}"#,
    ));
    let token = "pylf_v1_eu_0123456789abcdefTOKEN";
    let mut config = quiet();
    config.logfire_token = Some(token.into());
    config.logfire_base_url = Some(receiver.endpoint());
    config.scrub.secrets.push(token.into());
    let telemetry = Arc::new(
        TelemetryBuilder::new(config)
            .otlp_from_config()
            .unwrap()
            .build()
            .unwrap(),
    );
    assert_eq!(telemetry.exporting().len(), 1);
    assert!(telemetry.exporting()[0].starts_with("Logfire"));
    user_request(&telemetry, &upstream).await;
    shutdown(telemetry.clone()).await;
    assert!(
        receiver
            .wait_for(Duration::from_secs(5), |s| s.name == "POST /user")
            .await
    );
    for h in receiver.headers() {
        assert_eq!(h.get("authorization").unwrap(), token);
    }
    let raw = String::from_utf8_lossy(&receiver.raw()).into_owned();
    assert!(!raw.contains(token), "the token went out in a span");
    let spans = receiver.spans();
    let http = spans.iter().find(|s| s.name == "POST /user").unwrap();
    assert_eq!(http.attr("logfire.span_type").as_deref(), Some("span"));
    assert_eq!(http.attr("logfire.level_num").as_deref(), Some("9"));
}

#[test]
fn logfire_region_comes_from_the_token() {
    assert_eq!(
        sift_telemetry::logfire_base_url("pylf_v1_eu_abc"),
        "https://logfire-eu.pydantic.dev"
    );
    assert_eq!(
        sift_telemetry::logfire_base_url("pylf_v1_us_abc"),
        "https://logfire-us.pydantic.dev"
    );
    assert_eq!(
        sift_telemetry::logfire_base_url("legacy-token"),
        "https://logfire-us.pydantic.dev"
    );
}
