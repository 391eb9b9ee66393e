//! An OTLP/HTTP receiver for tests: accepts `POST /v1/traces` and `POST /v1/metrics`
//! (protobuf), decodes spans with `opentelemetry-proto`, and keeps the raw bodies and headers
//! so a test can check what left the process over the wire.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use serde_json::Value;

/// One span as received.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// Its name.
    pub name: String,
    /// OTLP's span kind number (1 internal, 2 server, 3 client).
    pub kind: i32,
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id, empty for a root.
    pub parent_span_id: String,
    /// Start and end, in nanoseconds since the epoch.
    pub start: u64,
    /// End time.
    pub end: u64,
    /// Attributes as JSON values.
    pub attributes: BTreeMap<String, Value>,
    /// The resource's attributes.
    pub resource: BTreeMap<String, Value>,
    /// Status code (0 unset, 1 ok, 2 error).
    pub status: i32,
}

impl ReceivedSpan {
    /// An attribute as a string (numbers and booleans in their JSON form).
    pub fn attr(&self, key: &str) -> Option<String> {
        self.attributes.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

#[derive(Default)]
struct Received {
    /// Count bodies only (for load tests: decoding would compete with what is measured).
    discard: bool,
    bytes: usize,
    posts: usize,
    spans: Vec<ReceivedSpan>,
    bodies: Vec<Vec<u8>>,
    headers: Vec<HeaderMap>,
    metric_posts: usize,
    errors: Vec<String>,
}

/// The receiver.
pub struct OtlpReceiver {
    addr: SocketAddr,
    shared: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn any(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| any(Some(v))).collect())
        }
        Some(any_value::Value::KvlistValue(l)) => Value::Object(
            l.values
                .iter()
                .map(|kv| (kv.key.clone(), any(kv.value.as_ref())))
                .collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
        _ => Value::Null,
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, Value> {
    list.iter()
        .map(|kv| (kv.key.clone(), any(kv.value.as_ref())))
        .collect()
}

fn lock(shared: &Mutex<Received>) -> std::sync::MutexGuard<'_, Received> {
    match shared.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

async fn traces(
    State(shared): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut received = lock(&shared);
    received.bytes += body.len();
    received.posts += 1;
    if received.discard {
        return StatusCode::OK;
    }
    let Some(body) = keep(&mut received, headers, body) else {
        return StatusCode::BAD_REQUEST;
    };
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            for rs in request.resource_spans {
                let resource = rs
                    .resource
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        received.spans.push(ReceivedSpan {
                            name: s.name,
                            kind: s.kind,
                            trace_id: hex(&s.trace_id),
                            span_id: hex(&s.span_id),
                            parent_span_id: hex(&s.parent_span_id),
                            start: s.start_time_unix_nano,
                            end: s.end_time_unix_nano,
                            attributes: attributes(&s.attributes),
                            resource: resource.clone(),
                            status: s.status.map_or(0, |st| st.code),
                        });
                    }
                }
            }
            StatusCode::OK
        }
        Err(e) => {
            received.errors.push(e.to_string());
            StatusCode::BAD_REQUEST
        }
    }
}

/// Keeps a post's headers and its body as the exporter wrote it (unzipped); `None`, with the
/// error kept, when the body does not unzip.
fn keep(received: &mut Received, headers: HeaderMap, body: Bytes) -> Option<Bytes> {
    let body = match gunzip(&headers, body) {
        Ok(b) => b,
        Err(e) => {
            received.errors.push(e);
            return None;
        }
    };
    received.bodies.push(body.to_vec());
    received.headers.push(headers);
    Some(body)
}

/// The body as sent before compression (`Content-Encoding: gzip`).
fn gunzip(headers: &HeaderMap, body: Bytes) -> Result<Bytes, String> {
    if headers
        .get("content-encoding")
        .is_none_or(|v| v.as_bytes() != b"gzip")
    {
        return Ok(body);
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
        .map_err(|e| format!("gzip body: {e}"))?;
    Ok(Bytes::from(out))
}

async fn metrics(
    State(shared): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut received = lock(&shared);
    if keep(&mut received, headers, body).is_none() {
        return StatusCode::BAD_REQUEST;
    }
    received.metric_posts += 1;
    StatusCode::OK
}

impl OtlpReceiver {
    /// Starts on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// If no port can be bound (test support only).
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// A receiver that only counts what it gets (for load tests).
    ///
    /// # Panics
    /// If no port can be bound (test support only).
    pub async fn start_counting() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(discard: bool) -> Self {
        let shared = Arc::new(Mutex::new(Received {
            discard,
            ..Received::default()
        }));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(shared.clone());
        let (addr, task) = crate::serve_locally(app).await;
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT` (what `OTEL_EXPORTER_OTLP_ENDPOINT` takes).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.shared).spans.clone()
    }

    /// Every request body received, concatenated (to search for what must not be there).
    pub fn raw(&self) -> Vec<u8> {
        lock(&self.shared).bodies.concat()
    }

    /// The headers of every request.
    pub fn headers(&self) -> Vec<HeaderMap> {
        lock(&self.shared).headers.clone()
    }

    /// Trace exports received and their total size in bytes.
    pub fn trace_posts(&self) -> (usize, usize) {
        let r = lock(&self.shared);
        (r.posts, r.bytes)
    }

    /// How many metric exports arrived.
    pub fn metric_posts(&self) -> usize {
        lock(&self.shared).metric_posts
    }

    /// Bodies that did not decode.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.shared).errors.clone()
    }

    /// Waits until a span satisfies `f`, or `timeout` passes.
    pub async fn wait_for(&self, timeout: Duration, f: impl Fn(&ReceivedSpan) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.spans().iter().any(&f) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
