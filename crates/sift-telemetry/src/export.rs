//! The last step before any span exporter: Logfire's attributes, logs as spans, scrubbing,
//! and one warning (not one per batch) when the backend cannot be reached.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanExporter,
};

use crate::console::interpolate;
use crate::scrub::{KeyVerdict, Scrubber};

/// Logfire's level numbers.
pub(crate) fn level_num(level: &str) -> i64 {
    match level {
        "TRACE" | "trace" => 1,
        "DEBUG" | "debug" => 5,
        "WARN" | "warn" => 13,
        "ERROR" | "error" => 17,
        _ => 9,
    }
}

/// Wraps an exporter with sift's processing.
pub(crate) struct Processed<E> {
    inner: E,
    scrubber: Arc<Scrubber>,
    ids: RandomIdGenerator,
    target: String,
    failing: AtomicBool,
    keys: std::sync::Mutex<KeyCache>,
}

impl<E: fmt::Debug> fmt::Debug for Processed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processed")
            .field("inner", &self.inner)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl<E> Processed<E> {
    pub(crate) fn new(inner: E, scrubber: Arc<Scrubber>, target: impl Into<String>) -> Self {
        Self {
            inner,
            scrubber,
            ids: RandomIdGenerator::default(),
            target: target.into(),
            failing: AtomicBool::new(false),
            keys: std::sync::Mutex::new(KeyCache::new()),
        }
    }
}

impl<E: SpanExporter> SpanExporter for Processed<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut out = Vec::with_capacity(batch.len() * 2);
        {
            let mut keys = match self.keys.lock() {
                Ok(k) => k,
                Err(p) => p.into_inner(),
            };
            for span in batch {
                process(span, &self.scrubber, &self.ids, &mut keys, &mut out);
            }
        }
        let result = self.inner.export(out).await;
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                // One warning until the backend answers again; spans are dropped meanwhile, and
                // requests never wait for the backend (export runs on its own thread).
                tracing::warn!(
                    target: "sift_telemetry::export",
                    "could not export spans to {}: {e}; spans are dropped until it answers (warned once)",
                    self.target
                );
            }
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(target: "sift_telemetry::export", "exporting spans to {} again", self.target);
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

fn get<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// Turns one span from tracing-opentelemetry into what leaves the process: the span with
/// Logfire's attributes, then each log recorded in it as a zero-duration child span.
fn process(
    mut span: SpanData,
    scrubber: &Scrubber,
    ids: &RandomIdGenerator,
    keys: &mut KeyCache,
    out: &mut Vec<SpanData>,
) {
    let events = std::mem::take(&mut span.events);
    // One pass: the level and the kind come out, whether a template is there is noted.
    let (mut level, mut log, mut has_template) = (9, false, false);
    span.attributes.retain(|kv| match kv.key.as_str() {
        "level" => {
            level = level_num(&kv.value.as_str());
            false
        }
        "logfire.span_type" => {
            log = kv.value.as_str() == "log";
            false
        }
        "logfire.msg_template" => {
            has_template = true;
            true
        }
        _ => true,
    });
    if matches!(span.status, Status::Error { .. }) {
        level = level.max(17);
    }
    if log {
        // A log built outside any span: zero duration.
        span.end_time = span.start_time;
    }
    let template = (!has_template).then(|| span.name.to_string());
    scrub_all(&mut span.attributes, scrubber, keys);
    to_arrays(&mut span.attributes);
    let message = scrubber.scrub_message(&span.name).into_owned();
    if message != span.name {
        span.name = Cow::Owned(message.clone());
    }
    push_logfire(
        &mut span.attributes,
        if log { "log" } else { "span" },
        template,
        message,
        level,
    );

    let parent = span.span_context.clone();
    let scope = span.instrumentation_scope.clone();
    let mut logs = Vec::new();
    for event in events.events {
        if event.name == "exception" {
            span.events.events.push(event);
            continue;
        }
        let mut attributes = event.attributes;
        let level = take_level(&mut attributes);
        attributes.retain(|kv| kv.key.as_str() != "target");
        scrub_all(&mut attributes, scrubber, keys);
        let template = event.name.to_string();
        let message = interpolate(&template, |name| {
            get(&attributes, name).map(|v| v.as_str().into_owned())
        });
        let message = scrubber.scrub_message(&message).into_owned();
        push_logfire(
            &mut attributes,
            "log",
            Some(template),
            message.clone(),
            level,
        );
        logs.push(SpanData {
            span_context: SpanContext::new(
                parent.trace_id(),
                ids.new_span_id(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: parent.span_id(),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(message),
            start_time: event.timestamp,
            end_time: event.timestamp,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: Default::default(),
            status: if level >= 17 {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: scope.clone(),
        });
    }
    out.push(span);
    out.extend(logs);
}

/// Attributes the conventions define as string arrays, which `tracing` can only record as
/// JSON text.
const ARRAYS: &[&str] = &["gen_ai.response.finish_reasons"];

fn to_arrays(attributes: &mut [KeyValue]) {
    for kv in attributes
        .iter_mut()
        .filter(|kv| ARRAYS.contains(&kv.key.as_str()))
    {
        if let Value::String(s) = &kv.value
            && let Ok(items) = serde_json::from_str::<Vec<String>>(s.as_str())
        {
            kv.value = Value::Array(Array::String(
                items.into_iter().map(StringValue::from).collect(),
            ));
        }
    }
}

fn take_level(attributes: &mut Vec<KeyValue>) -> i64 {
    match attributes.iter().position(|kv| kv.key.as_str() == "level") {
        Some(i) => level_num(&attributes.swap_remove(i).value.as_str()),
        None => 9,
    }
}

fn push_logfire(
    attributes: &mut Vec<KeyValue>,
    kind: &'static str,
    template: Option<String>,
    message: String,
    level: i64,
) {
    attributes.reserve(5);
    attributes.push(KeyValue::new("logfire.span_type", kind));
    if let Some(t) = template {
        attributes.push(KeyValue::new("logfire.msg_template", t));
    }
    attributes.push(KeyValue::new("logfire.msg", message));
    attributes.push(KeyValue::new("logfire.level_num", level));
    // Logfire shows an attribute as an object when its JSON schema says so. Written by hand:
    // this runs for every span, and keys need no escaping beyond what `escape_debug` gives.
    let mut schema = String::new();
    for kv in attributes.iter() {
        if let Value::String(s) = &kv.value
            && looks_like_json(s.as_str())
            && !kv.key.as_str().starts_with("logfire.")
        {
            schema.push_str(if schema.is_empty() {
                r#"{"type":"object","properties":{"#
            } else {
                ","
            });
            schema.push('"');
            schema.extend(kv.key.as_str().escape_debug());
            schema.push_str(r#"":{"type":"object"}"#);
        }
    }
    if !schema.is_empty() {
        schema.push_str("}}");
        attributes.push(KeyValue::new("logfire.json_schema", schema));
    }
}

fn looks_like_json(s: &str) -> bool {
    let s = s.trim();
    (s.starts_with('{') && s.ends_with('}')) || (s.starts_with('[') && s.ends_with(']'))
}

/// Keys seen before and what they mean for their values.
pub(crate) type KeyCache = HashMap<String, KeyVerdict>;

fn scrub_all(attributes: &mut [KeyValue], scrubber: &Scrubber, keys: &mut KeyCache) {
    for kv in attributes.iter_mut() {
        let key = kv.key.as_str();
        let verdict = match keys.get(key) {
            Some(v) => v,
            None => keys
                .entry(key.to_owned())
                .or_insert_with(|| scrubber.key_verdict(key)),
        };
        match &kv.value {
            Value::String(s) => {
                if let Some(new) = scrubber.scrub_value(verdict, s.as_str()) {
                    kv.value = Value::String(new.into());
                }
            }
            Value::Array(Array::String(items)) => {
                let new: Vec<StringValue> = items
                    .iter()
                    .map(|s| {
                        scrubber
                            .scrub_value(verdict, s.as_str())
                            .map_or_else(|| s.clone(), StringValue::from)
                    })
                    .collect();
                kv.value = Value::Array(Array::String(new));
            }
            _ => {
                if let KeyVerdict::Sensitive(r) = verdict {
                    kv.value = Value::String(r.clone().into());
                }
            }
        }
    }
}
