//! Telemetry of the real service (router, OpenAI provider over HTTP to the scripted upstream),
//! read back from an in-memory exporter, an OTLP receiver and the console.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod console;
mod scrubbing;
mod spans;
mod wire;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use sift_core::Client;
use sift_openai::{OpenAi, OpenAiConfig};
use sift_server::{ServerConfig, router};
use sift_telemetry::console::ConsoleOptions;
use sift_telemetry::{Telemetry, TelemetryBuilder, TelemetryConfig};
use sift_test_support::ScriptedServer;
use tower::ServiceExt;

pub const API_KEY: &str = "sk-test-7f3a9c2e1b5d";

/// A console buffer shared with the test.
#[derive(Clone, Default)]
pub struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A clock that starts at 09:14:02.000 and moves one millisecond per reading.
pub fn test_clock() -> sift_telemetry::console::Clock {
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    Arc::new(move || {
        let n = ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        UNIX_EPOCH
            + Duration::from_secs(1_700_000_000 / 86_400 * 86_400 + 9 * 3600 + 14 * 60 + 2)
            + Duration::from_millis(n)
    })
}

pub struct Harness {
    pub telemetry: Arc<Telemetry>,
    pub spans: InMemorySpanExporter,
    pub console: Buffer,
    pub upstream: ScriptedServer,
    pub app: Router,
    _guard: tracing::dispatcher::DefaultGuard,
}

pub struct Options {
    pub verbose: bool,
    pub console_filter: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            verbose: false,
            console_filter: "info",
        }
    }
}

pub async fn harness(options: Options) -> Harness {
    let upstream = ScriptedServer::start().await;
    let console = Buffer::default();
    let spans = InMemorySpanExporter::default();
    let mut config = TelemetryConfig {
        console: Some(ConsoleOptions {
            verbose: options.verbose,
            colors: false,
            clock: test_clock(),
            flush_every: None,
            time_zone: sift_telemetry::console::TimeZone::UTC,
        }),
        console_filter: options.console_filter.into(),
        ..TelemetryConfig::default()
    };
    config.scrub.secrets.push(API_KEY.into());
    let telemetry = TelemetryBuilder::new(config)
        .console_writer(Box::new(console.clone()))
        .with_exporter(spans.clone(), "memory", false)
        .unwrap()
        .build()
        .unwrap();
    let guard = tracing::dispatcher::set_default(telemetry.dispatch());
    let mut openai = OpenAiConfig::new(upstream.base_url())
        .api_key(API_KEY)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .timeout(Duration::from_secs(5));
    if let Some(hook) = telemetry.trace_propagation() {
        openai = openai.header_hook(hook);
    }
    let provider = OpenAi::new(openai).unwrap();
    let mut server = ServerConfig::default().metrics(telemetry.metrics_renderer());
    if let Some(hook) = telemetry.trace_continuation() {
        server = server.request_hook(hook);
    }
    let app = router(Client::new(provider), server);
    Harness {
        telemetry: Arc::new(telemetry),
        spans,
        console,
        upstream,
        app,
        _guard: guard,
    }
}

impl Harness {
    pub async fn call(&self, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .header("user-agent", "sift-tests");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    pub fn finished(&self) -> Vec<SpanData> {
        self.spans.get_finished_spans().unwrap()
    }
}

pub fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

pub fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

pub fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found = named(spans, name);
    assert_eq!(
        found.len(),
        1,
        "expected one span `{name}`, got {}; spans: {:?}",
        found.len(),
        spans.iter().map(|s| s.name.as_ref()).collect::<Vec<_>>()
    );
    found[0]
}

pub fn children<'a>(spans: &'a [SpanData], parent: &SpanData) -> Vec<&'a SpanData> {
    let mut c: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_context.span_id())
        .collect();
    c.sort_by_key(|s| s.start_time);
    c
}

pub fn child_names<'a>(spans: &'a [SpanData], parent: &SpanData) -> Vec<&'a str> {
    children(spans, parent)
        .iter()
        .map(|s| s.name.as_ref())
        .collect()
}

pub fn is_child(child: &SpanData, parent: &SpanData) -> bool {
    child.parent_span_id == parent.span_context.span_id()
        && child.span_context.trace_id() == parent.span_context.trace_id()
}

pub fn is_log(span: &SpanData) -> bool {
    attr(span, "logfire.span_type").as_deref() == Some("log") && span.start_time == span.end_time
}

pub fn kind(span: &SpanData) -> SpanKind {
    span.span_kind.clone()
}

pub fn epoch(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos()
}
