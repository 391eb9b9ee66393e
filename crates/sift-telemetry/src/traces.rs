//! The recent traces kept in process ([`TraceStore`]): a span exporter placed after sift's
//! processing, so it keeps exactly what OTLP sends (Logfire's attributes, logs as spans,
//! scrubbed; content only when content recording is on). Bounded three ways: the number of
//! traces (the oldest go first), the spans of one trace (the rest are counted, not kept), and
//! the bytes of everything kept (estimated from names and attribute sizes; the oldest traces go
//! until it fits), one attribute's text cut past a limit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opentelemetry::Value as OtelValue;
use opentelemetry::trace::Status;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Map, Value};
use sift_core::traces::{SpanRecord, TraceRecord, TraceSource, TraceSummary};

/// How much a [`TraceStore`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceLimits {
    /// Traces kept (the newest).
    pub traces: usize,
    /// Spans kept of one trace.
    pub spans_per_trace: usize,
    /// Bytes kept in all (estimated).
    pub bytes: usize,
    /// The longest attribute text kept, in bytes; longer ones are cut.
    pub attribute_bytes: usize,
}

impl Default for TraceLimits {
    /// 100 traces, 1,000 spans each, 64 MiB in all, 64 KiB an attribute.
    fn default() -> Self {
        Self {
            traces: 100,
            spans_per_trace: 1000,
            bytes: 64 << 20,
            attribute_bytes: 64 << 10,
        }
    }
}

#[derive(Debug)]
struct Kept {
    id: String,
    spans: Vec<SpanRecord>,
    bytes: usize,
    dropped: usize,
}

#[derive(Debug)]
struct Store {
    limits: TraceLimits,
    /// Oldest first.
    traces: VecDeque<Kept>,
    bytes: usize,
}

/// The recent traces; cheap to clone (one store shared).
#[derive(Debug, Clone)]
pub struct TraceStore {
    store: Arc<Mutex<Store>>,
}

impl TraceStore {
    /// An empty store keeping within `limits`.
    pub fn new(limits: TraceLimits) -> Self {
        Self {
            store: Arc::new(Mutex::new(Store {
                limits,
                traces: VecDeque::new(),
                bytes: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        match self.store.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Keeps `spans` (as the exporter is given them).
    pub fn keep(&self, spans: Vec<SpanData>) {
        let mut store = self.lock();
        let limits = store.limits;
        if limits.traces == 0 {
            return;
        }
        for span in spans {
            let record = record(&span, limits.attribute_bytes);
            let size = estimate(&record);
            let trace_id = span.span_context.trace_id().to_string();
            let position = store.traces.iter().rposition(|t| t.id == trace_id);
            let index = match position {
                Some(i) => i,
                None => {
                    if store.traces.len() >= limits.traces
                        && let Some(old) = store.traces.pop_front()
                    {
                        store.bytes -= old.bytes;
                    }
                    store.traces.push_back(Kept {
                        id: trace_id,
                        spans: Vec::new(),
                        bytes: 0,
                        dropped: 0,
                    });
                    store.traces.len() - 1
                }
            };
            let kept = &mut store.traces[index];
            if kept.spans.len() >= limits.spans_per_trace || size > limits.bytes {
                kept.dropped += 1;
                continue;
            }
            kept.spans.push(record);
            kept.bytes += size;
            store.bytes += size;
            // Over the byte budget: the oldest traces go (never the one just added to).
            while store.bytes > limits.bytes && store.traces.len() > 1 {
                if let Some(old) = store.traces.pop_front() {
                    store.bytes -= old.bytes;
                }
            }
        }
    }

    /// Bytes kept now (estimated).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl TraceSource for TraceStore {
    fn list(&self) -> Vec<TraceSummary> {
        let store = self.lock();
        store.traces.iter().rev().map(summary).collect()
    }

    fn trace(&self, id: &str) -> Option<TraceRecord> {
        let store = self.lock();
        let kept = store.traces.iter().find(|t| t.id == id)?;
        let mut spans = kept.spans.clone();
        spans.sort_by_key(|s| s.start_unix_nano);
        Some(TraceRecord {
            summary: summary(kept),
            spans,
            dropped_spans: kept.dropped,
        })
    }
}

impl SpanExporter for TraceStore {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.keep(batch);
        Ok(())
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn json(value: &OtelValue, limit: usize) -> Value {
    let text = |s: &str| {
        if s.len() <= limit {
            return Value::String(s.to_owned());
        }
        let mut cut = limit;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        Value::String(format!("{}… ({} bytes more)", &s[..cut], s.len() - cut))
    };
    match value {
        OtelValue::Bool(b) => Value::Bool(*b),
        OtelValue::I64(n) => Value::from(*n),
        OtelValue::F64(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        OtelValue::String(s) => text(s.as_str()),
        OtelValue::Array(a) => {
            let shown = format!("{a}");
            text(&shown)
        }
        other => text(&other.to_string()),
    }
}

fn record(span: &SpanData, attribute_bytes: usize) -> SpanRecord {
    let parent = span.parent_span_id;
    let mut attributes = Map::new();
    for kv in &span.attributes {
        attributes.insert(kv.key.to_string(), json(&kv.value, attribute_bytes));
    }
    let (status, status_message) = match &span.status {
        Status::Ok => ("ok", None),
        Status::Error { description } => ("error", Some(description.to_string())),
        _ => ("unset", None),
    };
    SpanRecord {
        span_id: span.span_context.span_id().to_string(),
        parent_id: (parent != opentelemetry::trace::SpanId::INVALID).then(|| parent.to_string()),
        name: span.name.to_string(),
        start_unix_nano: nanos(span.start_time),
        end_unix_nano: nanos(span.end_time),
        status: status.into(),
        status_message,
        attributes,
    }
}

/// A span's size in memory, roughly: its texts and a fixed part.
fn estimate(span: &SpanRecord) -> usize {
    let attributes: usize = span
        .attributes
        .iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    Value::String(s) => s.len(),
                    _ => 16,
                }
                + 32
        })
        .sum();
    160 + span.name.len() + attributes + span.status_message.as_ref().map_or(0, String::len)
}

fn summary(kept: &Kept) -> TraceSummary {
    let ids: std::collections::HashSet<&str> =
        kept.spans.iter().map(|s| s.span_id.as_str()).collect();
    // The root: no parent, or a parent from elsewhere (a continued trace).
    let root = kept
        .spans
        .iter()
        .find(|s| s.parent_id.as_deref().is_none_or(|p| !ids.contains(p)));
    let start = kept
        .spans
        .iter()
        .map(|s| s.start_unix_nano)
        .min()
        .unwrap_or(0);
    let end = kept
        .spans
        .iter()
        .map(|s| s.end_unix_nano)
        .max()
        .unwrap_or(start);
    let attr =
        |name: &str| -> Option<&Value> { kept.spans.iter().find_map(|s| s.attributes.get(name)) };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let sum = |name: &str| -> u64 {
        // Model calls only: the extraction span repeats their sum.
        kept.spans
            .iter()
            .filter(|s| s.attributes.get("gen_ai.operation.name").is_some())
            .filter_map(|s| s.attributes.get(name).and_then(Value::as_u64))
            .sum()
    };
    TraceSummary {
        trace_id: kept.id.clone(),
        name: root
            .or(kept.spans.first())
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        start_unix_nano: start,
        duration_ms: end.saturating_sub(start) as f64 / 1e6,
        endpoint: text(attr("http.route")),
        extractor: text(attr("sift.extractor")).or_else(|| text(attr("response_model"))),
        status: attr("http.response.status_code").and_then(Value::as_u64),
        error: kept.spans.iter().any(|s| s.status == "error"),
        input_tokens: sum("gen_ai.usage.input_tokens"),
        output_tokens: sum("gen_ai.usage.output_tokens"),
        spans: kept.spans.len(),
        complete: root.is_some_and(|r| r.parent_id.is_none()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    fn span(trace: u128, id: u64, parent: u64, name: &str, attrs: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.to_owned().into(),
            start_time: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(id),
            end_time: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(id + 10),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn traces_are_summed_up_and_kept_within_their_bounds() {
        let store = TraceStore::new(TraceLimits {
            traces: 2,
            spans_per_trace: 3,
            bytes: 1 << 20,
            attribute_bytes: 12,
        });
        store.keep(vec![
            span(
                1,
                3,
                2,
                "chat m",
                vec![
                    KeyValue::new("gen_ai.operation.name", "chat"),
                    KeyValue::new("gen_ai.usage.input_tokens", 50),
                    KeyValue::new("gen_ai.usage.output_tokens", 7),
                    KeyValue::new("gen_ai.input.messages", "a long prompt text"),
                ],
            ),
            span(
                1,
                2,
                1,
                "extract UserDetail",
                vec![
                    KeyValue::new("response_model", "UserDetail"),
                    KeyValue::new("gen_ai.usage.input_tokens", 50),
                ],
            ),
            span(
                1,
                1,
                0,
                "POST /user",
                vec![
                    KeyValue::new("http.route", "/user"),
                    KeyValue::new("http.response.status_code", 200),
                ],
            ),
            span(1, 4, 1, "one too many", vec![]),
        ]);
        let list = store.list();
        assert_eq!(list.len(), 1);
        let t = &list[0];
        assert_eq!(t.name, "POST /user");
        assert_eq!(t.endpoint.as_deref(), Some("/user"));
        assert_eq!(t.extractor.as_deref(), Some("UserDetail"));
        assert_eq!(
            (t.status, t.input_tokens, t.output_tokens),
            (Some(200), 50, 7)
        );
        assert!(t.complete);
        let whole = store.trace(&t.trace_id).unwrap();
        assert_eq!(whole.dropped_spans, 1);
        assert_eq!(whole.spans[0].name, "POST /user", "by start");
        let prompt = whole.spans[2].attributes["gen_ai.input.messages"]
            .as_str()
            .unwrap();
        assert!(prompt.starts_with("a long promp…"), "{prompt}");
        // A third trace pushes the first out.
        store.keep(vec![span(2, 10, 0, "GET /a", vec![])]);
        store.keep(vec![span(3, 11, 0, "GET /b", vec![])]);
        let names: Vec<String> = store.list().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["GET /b", "GET /a"]);
        assert!(store.trace(&TraceId::from(1u128).to_string()).is_none());
    }

    #[test]
    fn the_byte_budget_drops_the_oldest_traces() {
        let store = TraceStore::new(TraceLimits {
            traces: 100,
            spans_per_trace: 100,
            bytes: 4096,
            attribute_bytes: 1 << 20,
        });
        for t in 1..=20u128 {
            store.keep(vec![span(
                t,
                t as u64,
                0,
                "POST /user",
                vec![KeyValue::new("value", "x".repeat(1000))],
            )]);
        }
        assert!(store.bytes() <= 4096, "{}", store.bytes());
        let list = store.list();
        assert!(list.len() < 20 && !list.is_empty());
        assert_eq!(list[0].trace_id, TraceId::from(20u128).to_string());
    }
}
