//! Request bodies read the way FastAPI reads them: any problem becomes a `422` whose `detail`
//! lists every error with its `type`, `loc`, `msg` and `input`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::error::ApiError;

/// One element of an error's location: a key or an index.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LocItem {
    /// An object key (or `body`).
    Key(String),
    /// An array index, or a character offset for malformed JSON.
    Index(usize),
}

impl From<sift_core::json_stream::PathSegment> for LocItem {
    fn from(segment: sift_core::json_stream::PathSegment) -> Self {
        match segment {
            sift_core::json_stream::PathSegment::Key(k) => LocItem::Key(k),
            sift_core::json_stream::PathSegment::Index(i) => LocItem::Index(i),
        }
    }
}

/// One request error, in FastAPI's (pydantic's) shape.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Error kind: `missing`, `string_type`, `list_type`, `json_invalid`, `too_long`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Where: `["body", "queries", 2]`.
    pub loc: Vec<LocItem>,
    /// What is wrong, for people.
    pub msg: String,
    /// The offending input.
    pub input: Value,
    /// Extra facts about the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

impl ErrorDetail {
    pub(crate) fn new(kind: &str, loc: Vec<LocItem>, msg: impl Into<String>, input: Value) -> Self {
        Self {
            kind: kind.into(),
            loc,
            msg: msg.into(),
            input,
            ctx: None,
        }
    }

    /// A `too_long` error for a list over `max` items.
    pub fn too_long(field: &str, input: &[String], max: usize) -> Self {
        let mut e = Self::new(
            "too_long",
            vec![body(), key(field)],
            format!(
                "List should have at most {max} items after validation, not {}",
                input.len()
            ),
            json!(input),
        );
        e.ctx =
            Some(json!({"field_type": "List", "max_length": max, "actual_length": input.len()}));
        e
    }
}

impl ErrorDetail {
    /// A `too_long` error for a list of `len` items over `max`, without repeating the list.
    pub fn too_many(field: &str, len: usize, max: usize) -> Self {
        let mut e = Self::new(
            "too_long",
            vec![body(), key(field)],
            format!("List should have at most {max} items after validation, not {len}"),
            Value::Null,
        );
        e.ctx = Some(json!({"field_type": "List", "max_length": max, "actual_length": len}));
        e
    }
}

fn body() -> LocItem {
    LocItem::Key("body".into())
}

fn key(k: &str) -> LocItem {
    LocItem::Key(k.into())
}

/// How request bodies are read (a request extension set by the router).
#[derive(Debug, Clone)]
pub(crate) struct BodyRules {
    /// The time a client has to send a request's whole body; past it the request answers
    /// `408`.
    pub(crate) timeout: std::time::Duration,
    /// Whether the arguments may be logged (the client's recording allows content).
    pub(crate) log_content: bool,
    /// The largest body, in bytes; a larger one answers `413`.
    pub(crate) limit: usize,
    /// The memory all bodies being read may hold at once.
    pub(crate) budget: Arc<BodyBudget>,
}

/// The bytes held by request bodies still arriving, across every connection, and the most
/// they may hold. A body that would go past it answers `503` with `Retry-After`, so slow
/// senders cannot take the server's memory however many connections they open.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    held: AtomicUsize,
    max: usize,
}

impl BodyBudget {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            max,
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more from the budget, or says there is not room.
    fn take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&total| total <= self.max)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A body's share of the [`BodyBudget`], given back when dropped.
struct Share<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
}

impl Share<'_> {
    /// Grows the share to `bytes` (the buffer's capacity), or says there is not room.
    fn grow_to(&mut self, bytes: usize) -> bool {
        if bytes <= self.bytes {
            return true;
        }
        let more = bytes - self.bytes;
        if self.budget.take(more) {
            self.bytes = bytes;
            true
        } else {
            false
        }
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// Reads a whole body into one buffer, copying each frame as it arrives. Written by hand
/// rather than with axum's `Bytes` extractor: that one keeps every frame as hyper produced
/// it, and each frame of a body sent a byte at a time pins a block of hyper's read buffer
/// (about 6.6 KB per byte held). Here a body holds what arrived, never more than `limit`,
/// and all bodies together never more than the budget.
async fn read_body(body: axum::body::Body, rules: &BodyRules) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let mut share = Share {
        budget: &rules.budget,
        bytes: 0,
    };
    let mut buffer: Vec<u8> = Vec::new();
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| ApiError::BadBody(e.to_string()))?;
        let len = buffer.len().saturating_add(frame.len());
        if len > rules.limit {
            return Err(ApiError::PayloadTooLarge);
        }
        if len > buffer.capacity() {
            // Grows as a Vec would, but never past the limit, and only within the budget.
            let capacity = buffer
                .capacity()
                .saturating_mul(2)
                .max(256)
                .min(rules.limit)
                .max(len);
            if !share.grow_to(capacity) {
                return Err(ApiError::BodyMemory);
            }
            buffer.reserve_exact(capacity - buffer.len());
        }
        buffer.extend_from_slice(&frame);
    }
    // The share is given back here: the caller parses the buffer at once and drops it.
    Ok(buffer)
}

/// The raw body of `req`, at most `limit` bytes (a larger one is `PayloadTooLarge`), read
/// under the router's timeout and memory budget as JSON bodies are.
pub(crate) async fn read_raw(req: Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    if declared_length(req.headers()).is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    match req.extensions().get::<BodyRules>().cloned() {
        Some(mut rules) => {
            rules.limit = limit;
            tokio::time::timeout(rules.timeout, read_body(req.into_body(), &rules))
                .await
                .map_err(|_| ApiError::BodyTimeout(rules.timeout))?
        }
        None => axum::body::to_bytes(req.into_body(), limit)
            .await
            .map(|b| b.to_vec())
            .map_err(|_| ApiError::PayloadTooLarge),
    }
}

/// Whether a `Content-Type` declares JSON: `application/json` or `application/*+json`, any
/// parameters (`charset`) and case. A body sent without one is read as JSON too, as FastAPI
/// does.
fn is_json(content_type: &[u8]) -> bool {
    let text = String::from_utf8_lossy(content_type).to_ascii_lowercase();
    let essence = text.split(';').next().unwrap_or_default().trim();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// A type read from a JSON request body with FastAPI-style errors.
pub trait FromBody: Sized {
    /// Reads the parsed body.
    fn from_body(body: &Value) -> Result<Self, Vec<ErrorDetail>>;

    /// Reads the parsed body, given whole: a type that keeps the body as it is takes it
    /// without a copy.
    fn from_value(body: Value) -> Result<Self, Vec<ErrorDetail>> {
        Self::from_body(&body)
    }
}

/// An extractor for a [`FromBody`] type. Malformed JSON, a missing body, wrong types and
/// missing fields all answer `422`; a body over the size limit answers `413`.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: FromBody> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(declared) = req.headers().get(http::header::CONTENT_TYPE)
            && !is_json(declared.as_bytes())
        {
            let declared = String::from_utf8_lossy(declared.as_bytes());
            let declared: String = declared.chars().take(100).collect();
            return Err(ApiError::UnsupportedMediaType(declared));
        }
        let rules = req.extensions().get::<BodyRules>().cloned();
        let log_content = rules.as_ref().is_none_or(|r| r.log_content);
        let bytes = match &rules {
            Some(rules) => {
                if declared_length(req.headers()).is_some_and(|n| n > rules.limit as u64) {
                    return Err(ApiError::PayloadTooLarge);
                }
                tokio::time::timeout(rules.timeout, read_body(req.into_body(), rules))
                    .await
                    .map_err(|_| ApiError::BodyTimeout(rules.timeout))??
            }
            // Outside the router (a handler called on its own): axum's own reading.
            None => Bytes::from_request(req, state)
                .await
                .map_err(|rejection| ApiError::from_body_rejection(&rejection))?
                .to_vec(),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::Validation(vec![ErrorDetail::new(
                "missing",
                vec![body()],
                "Field required",
                Value::Null,
            )]));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            let offset = char_offset(&bytes, e.line(), e.column());
            let mut detail = ErrorDetail::new(
                "json_invalid",
                vec![body(), LocItem::Index(offset)],
                "JSON decode error",
                json!({}),
            );
            detail.ctx = Some(json!({"error": e.to_string()}));
            ApiError::Validation(vec![detail])
        })?;
        // Logfire's FastAPI integration records the validated arguments at debug level; they
        // are the caller's content, logged only where content is allowed. Otherwise the body
        // is handed over whole, not copied.
        if log_content && tracing::enabled!(tracing::Level::DEBUG) {
            let parsed = T::from_body(&value).map_err(ApiError::Validation)?;
            tracing::debug!(fastapi.arguments.values = %value, "request arguments");
            return Ok(Body(parsed));
        }
        T::from_value(value).map(Body).map_err(ApiError::Validation)
    }
}

/// The `Content-Length` a request declares, when it declares one that reads as a number.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The character offset of serde_json's 1-based line and column.
fn char_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let text = String::from_utf8_lossy(bytes);
    let mut offset = 0;
    for (i, l) in text.split('\n').enumerate() {
        if i + 1 == line {
            return offset + column.saturating_sub(1).min(l.chars().count());
        }
        offset += l.chars().count() + 1;
    }
    offset
}

/// The body as an object, or a `model_attributes_type` error.
pub(crate) fn object(body: &Value) -> Result<&Map<String, Value>, Vec<ErrorDetail>> {
    body.as_object().ok_or_else(|| {
        vec![ErrorDetail::new(
            "model_attributes_type",
            vec![LocItem::Key("body".into())],
            "Input should be a valid dictionary or object to extract fields from",
            body.clone(),
        )]
    })
}

fn missing(name: &str, whole: &Value) -> ErrorDetail {
    ErrorDetail::new(
        "missing",
        vec![body(), key(name)],
        "Field required",
        whole.clone(),
    )
}

/// A required string field.
pub(crate) fn string_field(
    obj: &Map<String, Value>,
    whole: &Value,
    name: &str,
    errors: &mut Vec<ErrorDetail>,
) -> Option<String> {
    match obj.get(name) {
        None => {
            errors.push(missing(name, whole));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(ErrorDetail::new(
                "string_type",
                vec![body(), key(name)],
                "Input should be a valid string",
                other.clone(),
            ));
            None
        }
    }
}

/// A required list-of-strings field; every bad item is reported with its index.
pub(crate) fn string_list_field(
    obj: &Map<String, Value>,
    whole: &Value,
    name: &str,
    errors: &mut Vec<ErrorDetail>,
) -> Option<Vec<String>> {
    match obj.get(name) {
        None => {
            errors.push(missing(name, whole));
            None
        }
        Some(Value::Array(items)) => {
            let before = errors.len();
            let strings: Vec<String> = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        errors.push(ErrorDetail::new(
                            "string_type",
                            vec![body(), key(name), LocItem::Index(i)],
                            "Input should be a valid string",
                            other.clone(),
                        ));
                        None
                    }
                })
                .collect();
            (errors.len() == before).then_some(strings)
        }
        Some(other) => {
            errors.push(ErrorDetail::new(
                "list_type",
                vec![body(), key(name)],
                "Input should be a valid list",
                other.clone(),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(limit: usize, budget: usize) -> BodyRules {
        BodyRules {
            timeout: std::time::Duration::from_secs(5),
            log_content: false,
            limit,
            budget: Arc::new(BodyBudget::new(budget)),
        }
    }

    /// A body of `n` frames of one byte each.
    fn dribble(n: usize) -> axum::body::Body {
        let frames = (0..n).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"x")));
        axum::body::Body::from_stream(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_of_one_byte_frames_holds_what_arrived() {
        let rules = rules(1 << 20, 1 << 20);
        let body = read_body(dribble(10_000), &rules).await.unwrap();
        assert_eq!(body.len(), 10_000);
        // Grown as a Vec grows, not a block per frame.
        assert!(body.capacity() < 2 * 10_000 + 256, "{}", body.capacity());
        // Given back once read.
        assert_eq!(rules.budget.held(), 0);
    }

    #[tokio::test]
    async fn a_body_past_the_limit_or_the_budget_is_refused() {
        let small = rules(1000, 1 << 20);
        assert!(matches!(
            read_body(dribble(1001), &small).await,
            Err(ApiError::PayloadTooLarge)
        ));
        let busy = rules(1 << 20, 4096);
        // Another body holds most of the budget.
        assert!(busy.budget.take(4000));
        assert!(matches!(
            read_body(dribble(500), &busy).await,
            Err(ApiError::BodyMemory)
        ));
        busy.budget.give_back(4000);
        assert_eq!(read_body(dribble(500), &busy).await.unwrap().len(), 500);
        assert_eq!(busy.budget.held(), 0);
    }

    #[test]
    fn offsets_count_characters_across_lines() {
        let text = "{\n  \"q\": é,\n}";
        assert_eq!(char_offset(text.as_bytes(), 2, 8), 9);
        assert_eq!(char_offset(b"{", 1, 1), 0);
    }
}
