//! Request bodies read the way FastAPI reads them: any problem becomes a `422` whose `detail`
//! lists every error with its `type`, `loc`, `msg` and `input`.

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

/// The time a client has to send a request's whole body (a request extension set by the
/// router); past it the request answers `408`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(
    pub(crate) std::time::Duration,
    /// Whether the arguments may be logged (the client's recording allows content).
    pub(crate) bool,
);

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
        let rules = req.extensions().get::<BodyTimeout>().copied();
        let limit = rules.map(|t| t.0);
        let log_content = rules.is_none_or(|t| t.1);
        let read = Bytes::from_request(req, state);
        let bytes = match limit {
            Some(limit) => tokio::time::timeout(limit, read)
                .await
                .map_err(|_| ApiError::BodyTimeout(limit))?,
            None => read.await,
        }
        .map_err(|rejection| ApiError::from_body_rejection(&rejection))?;
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
        let parsed = T::from_body(&value).map_err(ApiError::Validation)?;
        // Logfire's FastAPI integration records the validated arguments at debug level; they
        // are the caller's content, logged only where content is allowed.
        if log_content {
            tracing::debug!(fastapi.arguments.values = %value, "request arguments");
        }
        Ok(Body(parsed))
    }
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

    #[test]
    fn offsets_count_characters_across_lines() {
        let text = "{\n  \"q\": é,\n}";
        assert_eq!(char_offset(text.as_bytes(), 2, 8), 9);
        assert_eq!(char_offset(b"{", 1, 1), 0);
    }
}
