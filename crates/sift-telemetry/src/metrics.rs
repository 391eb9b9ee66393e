//! Metrics read off the spans as they close: `gen_ai.client.operation.duration` and
//! `gen_ai.client.token.usage` from every `chat` span, `http.server.request.duration` from
//! every HTTP server span. They go to OTLP when export is configured and to `GET /metrics`
//! in Prometheus' text format.

use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` name of the model-call span (target `sift_core::…`).
pub const CHAT_SPAN: &str = "chat";
/// The `tracing` name of the HTTP server span (target `sift_server::…`).
pub const HTTP_SPAN: &str = "http.server";

const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const TOKEN_BUCKETS: &[f64] = &[
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Whether the metrics layer needs this callsite: the chat and HTTP spans only.
pub fn wanted(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && kind(meta).is_some()
}

/// Which metrics a span's callsite feeds.
fn kind(meta: &tracing::Metadata<'_>) -> Option<Kind> {
    match (meta.name(), meta.target()) {
        (CHAT_SPAN, t) if t.starts_with("sift_core") => Some(Kind::Chat),
        (HTTP_SPAN, t) if t.starts_with("sift_server") => Some(Kind::Http),
        _ => None,
    }
}

/// The layer that records the metrics.
pub struct MetricsLayer {
    operation_duration: Histogram<f64>,
    token_usage: Histogram<u64>,
    http_duration: Histogram<f64>,
}

impl MetricsLayer {
    /// Instruments from `meter`.
    pub fn new(meter: &Meter) -> Self {
        Self {
            operation_duration: meter
                .f64_histogram("gen_ai.client.operation.duration")
                .with_unit("s")
                .with_description("GenAI operation duration")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            token_usage: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Measures number of input and output tokens used")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            http_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests")
                .with_boundaries(HTTP_BUCKETS.to_vec())
                .build(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Http,
}

/// The fields a metric needs, kept while the span is open.
struct Tracked {
    kind: Kind,
    started: Instant,
    attributes: Vec<KeyValue>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// Attribute keys carried from span to metric.
const CHAT_KEYS: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "error.type",
    // The extractor's name (`adhoc` for inline schemas), so labels stay bounded.
    "sift.extractor",
];
const HTTP_KEYS: &[&str] = &[
    "http.request.method",
    "http.route",
    "http.response.status_code",
    "url.scheme",
    "error.type",
];

impl Visit for Tracked {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), Some(value), None);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), None, Some(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), None, u64::try_from(value).ok());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let keys = if self.kind == Kind::Chat {
            CHAT_KEYS
        } else {
            HTTP_KEYS
        };
        if keys.contains(&field.name()) {
            let text = format!("{value:?}");
            self.put(field.name(), Some(text.trim_matches('"')), None);
        }
    }
}

impl Tracked {
    fn put(&mut self, name: &str, text: Option<&str>, number: Option<u64>) {
        match (self.kind, name) {
            (Kind::Chat, "gen_ai.usage.input_tokens") => self.input_tokens = number,
            (Kind::Chat, "gen_ai.usage.output_tokens") => self.output_tokens = number,
            (kind, name) => {
                let keys = if kind == Kind::Chat {
                    CHAT_KEYS
                } else {
                    HTTP_KEYS
                };
                let Some(key) = keys.iter().find(|k| **k == name) else {
                    return;
                };
                let value: opentelemetry::Value = match (text, number) {
                    (Some(t), _) => t.to_owned().into(),
                    (None, Some(n)) => i64::try_from(n).unwrap_or(i64::MAX).into(),
                    (None, None) => return,
                };
                self.attributes.retain(|kv| kv.key.as_str() != *key);
                self.attributes.push(KeyValue::new(*key, value));
            }
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for MetricsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(kind) = kind(attrs.metadata()) else {
            return;
        };
        let mut tracked = Tracked {
            kind,
            started: Instant::now(),
            attributes: Vec::with_capacity(5),
            input_tokens: None,
            output_tokens: None,
        };
        attrs.record(&mut tracked);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(tracked);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(tracked) = span.extensions_mut().get_mut::<Tracked>()
        {
            values.record(tracked);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(tracked) = span.extensions_mut().remove::<Tracked>() else {
            return;
        };
        let seconds = tracked.started.elapsed().as_secs_f64();
        match tracked.kind {
            Kind::Chat => {
                self.operation_duration.record(seconds, &tracked.attributes);
                let mut attributes = tracked.attributes;
                attributes.retain(|kv| kv.key.as_str() != "error.type");
                for (kind, tokens) in [
                    ("input", tracked.input_tokens),
                    ("output", tracked.output_tokens),
                ] {
                    if let Some(tokens) = tokens {
                        attributes.push(KeyValue::new("gen_ai.token.type", kind));
                        self.token_usage.record(tokens, &attributes);
                        attributes.pop();
                    }
                }
            }
            Kind::Http => self.http_duration.record(seconds, &tracked.attributes),
        }
    }
}
