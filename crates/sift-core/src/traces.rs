//! Recent traces kept in process: the local view of what the telemetry exports (the same
//! spans, after scrubbing), for `GET /v1/traces` and the trace pages. The telemetry keeps
//! them ([`TraceSource`]); the server shows them, knowing nothing of how they are kept.

use serde::Serialize;
use serde_json::{Map, Value};

/// One span of a kept trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanRecord {
    /// Its id (16 hex digits).
    pub span_id: String,
    /// Its parent's id, `None` for the trace's root.
    pub parent_id: Option<String>,
    /// Its name (`POST /user`, `extract UserDetail`, `chat gpt-4o-mini`, ...).
    pub name: String,
    /// When it started, Unix time in nanoseconds.
    pub start_unix_nano: u64,
    /// When it ended, Unix time in nanoseconds.
    pub end_unix_nano: u64,
    /// `ok`, `error` or `unset`.
    pub status: String,
    /// The status's description, for an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Its attributes, as exported (scrubbed; content only when content recording is on).
    pub attributes: Map<String, Value>,
}

/// A kept trace in short, for the list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSummary {
    /// Its id (32 hex digits).
    pub trace_id: String,
    /// The root span's name (`POST /user`), or the first span's while the root is running.
    pub name: String,
    /// When its first span started, Unix time in nanoseconds.
    pub start_unix_nano: u64,
    /// From its first start to its last end, in milliseconds.
    pub duration_ms: f64,
    /// The request's route (`http.route`), when it is a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The extractor (`sift.extractor`, else the response model) of its first extraction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extractor: Option<String>,
    /// The request's response status (`http.response.status_code`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u64>,
    /// Whether any span failed.
    pub error: bool,
    /// Prompt tokens of its model calls.
    pub input_tokens: u64,
    /// Completion tokens of its model calls.
    pub output_tokens: u64,
    /// Spans kept.
    pub spans: usize,
    /// Its root span has ended.
    pub complete: bool,
}

/// A kept trace whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceRecord {
    /// The trace in short.
    #[serde(flatten)]
    pub summary: TraceSummary,
    /// Its spans, by start.
    pub spans: Vec<SpanRecord>,
    /// Spans not kept past the per-trace limit.
    pub dropped_spans: usize,
}

/// Where the recent traces are kept.
pub trait TraceSource: Send + Sync + std::fmt::Debug {
    /// The traces kept, newest first.
    fn list(&self) -> Vec<TraceSummary>;

    /// The trace `id`, if it is kept.
    fn trace(&self, id: &str) -> Option<TraceRecord>;
}
