//! CPU per `POST /user` through the real router, in process, with an instant in-process model
//! (no network on the model side), for each telemetry setup. CPU time of the whole process
//! (every thread: the batch exporter's too) is what is measured, per request.
//!
//! The `floor` row is the OpenTelemetry stack sift is built on (tracing-opentelemetry and the
//! SDK) with nothing of sift's: no console, no content, no Logfire attributes, no scrubbing,
//! spans batched and dropped instead of encoded and sent. No exporter on that stack costs less.
//! Its baseline is the row with no subscriber at all (`off` has sift's metrics layer).
//!
//! ```text
//! cargo bench -p sift-telemetry --bench request
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use cpu_time::ProcessTime;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;
use sift_core::{ChatRequest, ChatResponse, Client, Provider, ProviderError, ToolCall, Usage};
use sift_server::{ServerConfig, router};
use sift_telemetry::console::ConsoleOptions;
use sift_telemetry::{Telemetry, TelemetryBuilder, TelemetryConfig};
use sift_test_support::otlp::OtlpReceiver;
use tower::ServiceExt;

// As in the `sift` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Answers every call at once with Daniel.
#[derive(Debug)]
struct Instant;

#[sift_core::async_trait]
impl Provider for Instant {
    fn name(&self) -> &str {
        "openai"
    }
    fn default_model(&self) -> &str {
        "gpt-4o-mini"
    }
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        Ok(ChatResponse {
            id: Some("chatcmpl-1".into()),
            model: Some(request.model.clone()),
            content: None,
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "UserDetail".into(),
                arguments: r#"{"name": "Daniel", "age": 24}"#.into(),
            }],
            finish_reason: Some("tool_calls".into()),
            usage: Usage {
                input_tokens: 60,
                output_tokens: 12,
                ..Usage::default()
            },
            raw: Value::Null,
        })
    }
}

fn request() -> Request<Body> {
    Request::post("/user")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"query": "Daniel is a 24 year man living in New York City"}"#,
        ))
        .unwrap()
}

/// Takes spans and drops them: the cost of recording without encoding or sending.
#[derive(Debug)]
struct Discard;

impl opentelemetry_sdk::trace::SpanExporter for Discard {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        drop(batch);
        Ok(())
    }
}

/// tracing-opentelemetry and the SDK alone, with nothing of sift's: spans built, batched and
/// dropped. The floor of any exporter built on that stack.
fn floor() -> (
    tracing::Dispatch,
    opentelemetry_sdk::trace::SdkTracerProvider,
) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("floor"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::EnvFilter::new(
            "info,sift_core=debug,sift_server=debug",
        ));
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    (dispatch, provider)
}

fn telemetry(console: bool, otlp: Option<&str>) -> Telemetry {
    if otlp == Some("discard") {
        return TelemetryBuilder::new(TelemetryConfig {
            console: None,
            ..TelemetryConfig::default()
        })
        .with_exporter(Discard, "discard", true)
        .unwrap()
        .build()
        .unwrap();
    }
    let config = TelemetryConfig {
        console: console.then(|| ConsoleOptions {
            flush_every: Some(sift_telemetry::CONSOLE_FLUSH),
            ..ConsoleOptions::default()
        }),
        ..TelemetryConfig::default()
    };
    let mut builder = TelemetryBuilder::new(config).console_writer(Box::new(std::io::sink()));
    if let Some(endpoint) = otlp {
        builder = builder
            .otlp(Some(endpoint), HashMap::new(), "bench")
            .unwrap();
    }
    builder.build().unwrap()
}

fn bench(c: &mut Criterion) {
    // The receiver runs on a runtime of its own thread; it only counts what it gets.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let receiver = OtlpReceiver::start_counting().await;
            tx.send(receiver.endpoint()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let endpoint = rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Content is recorded or not as each client's recording says.
    let app = |content: bool| -> Router {
        let recording = sift_core::trace::Recording::default().with_span_content(content);
        router(
            Client::new(Instant).with_recording(recording),
            ServerConfig::default(),
        )
    };
    let mut group = c.benchmark_group("POST /user, CPU per request");
    group.measurement_time(Duration::from_secs(8));
    // Each setup is installed only while its own requests run.
    let mut measure = |name: &str, dispatch: &tracing::Dispatch, content: bool| {
        let _guard = tracing::dispatcher::set_default(dispatch);
        let app = app(content);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = ProcessTime::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        let response = app.clone().oneshot(request()).await.unwrap();
                        let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
                    }
                });
                start.elapsed()
            });
        });
    };
    measure(
        "no subscriber (the floor's baseline)",
        &tracing::Dispatch::none(),
        false,
    );
    let (dispatch, provider) = floor();
    measure(
        "floor: tracing-opentelemetry alone, content off",
        &dispatch,
        false,
    );
    let _ = provider.shutdown();
    for (name, console, otlp) in [
        ("off", false, None),
        ("console", true, None),
        ("spans, discarded", false, Some("discard")),
        ("otlp", false, Some(endpoint.as_str())),
        ("on", true, Some(endpoint.as_str())),
    ] {
        let t = telemetry(console, otlp);
        measure(name, t.dispatch(), otlp.is_some());
        std::thread::spawn(move || t.shutdown()).join().unwrap();
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
