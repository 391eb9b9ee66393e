//! The Chat Completions wire format sift answers in: completions, stream chunks, the model
//! list, and errors in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use sift_core::{ExtractError, ProviderError, Usage};

use crate::error::{ExtractionFailure, extraction_status};

/// Marks a response already in OpenAI's error shape, so the layer that reshapes the others
/// leaves it be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenAiShaped;

/// Why a chat request failed.
#[derive(Debug)]
pub(crate) enum ChatError {
    /// `400`: the request is wrong; `param` names where.
    Invalid {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// `404`: no model of that name is served.
    ModelNotFound { model: String, known: Vec<String> },
    /// The extraction (or a plain chat's one call) failed; reported scrubbed as the
    /// recording says.
    Failed(Box<ExtractError>, sift_core::trace::Recording),
}

impl ChatError {
    /// A plain chat call that failed, reported as an extraction's first call would be.
    pub(crate) fn call(e: ProviderError, recording: &sift_core::trace::Recording) -> Self {
        ChatError::Failed(
            Box::new(ExtractError::Provider {
                attempt: 1,
                source: e,
                attempts: Vec::new(),
                usage: Usage::default(),
            }),
            recording.clone(),
        )
    }
}

/// OpenAI's error body.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorObject,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorObject {
    pub(crate) message: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<String>,
}

/// OpenAI's error `type` for a status.
pub(crate) fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// An error response in OpenAI's shape, marked as such.
pub(crate) fn error_response(
    status: StatusCode,
    message: String,
    param: Option<String>,
    code: Option<String>,
) -> Response {
    let kind = error_type(status);
    let mut response = (
        status,
        Json(ErrorBody {
            error: ErrorObject {
                message,
                kind,
                param,
                code,
            },
        }),
    )
        .into_response();
    response.extensions_mut().insert(OpenAiShaped);
    response
}

/// The status and code of an extraction failure, for OpenAI's clients: the request's own
/// faults are `400`s; answers that stayed invalid through the re-asks are `422` (not a
/// `5xx`, which the SDKs retry whole); upstream faults keep their `502`/`503`/`504`.
fn failure_status(e: &ExtractError) -> (StatusCode, &'static str) {
    match (extraction_status(e), e.provider_error()) {
        (_, Some(ProviderError::InputTooLong(_))) => {
            (StatusCode::BAD_REQUEST, "context_length_exceeded")
        }
        (StatusCode::UNPROCESSABLE_ENTITY, _) => (StatusCode::BAD_REQUEST, e.kind()),
        (StatusCode::BAD_GATEWAY, None) => (StatusCode::UNPROCESSABLE_ENTITY, e.kind()),
        (status, _) => (status, e.kind()),
    }
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        match self {
            ChatError::Invalid {
                message,
                param,
                code,
            } => {
                tracing::warn!(param = param.as_deref(), error = %message, "chat request refused");
                error_response(
                    StatusCode::BAD_REQUEST,
                    message,
                    param,
                    code.map(str::to_owned),
                )
            }
            ChatError::ModelNotFound { model, known } => error_response(
                StatusCode::NOT_FOUND,
                format!(
                    "The model `{}` does not exist here. Models served: {} (see GET /v1/models).",
                    model.chars().take(200).collect::<String>(),
                    known.join(", ")
                ),
                Some("model".into()),
                Some("model_not_found".into()),
            ),
            ChatError::Failed(e, recording) => {
                let (status, code) = failure_status(&e);
                let detail = ExtractionFailure::from_error(&e, &recording);
                tracing::error!(status = status.as_u16(), error = %detail.message, "chat extraction failed");
                let mut response =
                    error_response(status, detail.message, None, Some(code.to_owned()));
                retry_after(&mut response, e.provider_error());
                response
            }
        }
    }
}

fn retry_after(response: &mut Response, e: Option<&ProviderError>) {
    if let Some(wait) = e.and_then(ProviderError::retry_after)
        && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// The usage object of a completion.
pub(crate) fn usage(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
    })
}

/// What the answer is, as the message carries it.
#[derive(Debug, Clone)]
pub(crate) enum Said {
    /// Text (free text, or the JSON of a value).
    Content(String),
    /// One call of `name` with `arguments` (a JSON text).
    Call {
        id: String,
        name: String,
        arguments: String,
    },
}

impl Said {
    pub(crate) fn finish_reason(&self) -> &'static str {
        match self {
            Said::Content(_) => "stop",
            Said::Call { .. } => "tool_calls",
        }
    }
}

/// Identifies one completion: `chatcmpl-` and 24 hex digits, and when it was made.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
}

impl Completion {
    pub(crate) fn new(model: &str) -> Self {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Unique per process (the counter) and across processes (the random keys); not a
        // secret, only an id.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(now.as_nanos());
        let high = hasher.finish();
        hasher.write_u8(1);
        let low = hasher.finish() as u32;
        Self {
            id: format!("chatcmpl-{high:016x}{low:08x}"),
            created: now.as_secs(),
            model: model.to_owned(),
        }
    }

    /// The whole completion.
    pub(crate) fn body(&self, said: &Said, usage_: Usage) -> Value {
        let message = match said {
            Said::Content(text) => json!({"role": "assistant", "content": text, "refusal": null}),
            Said::Call {
                id,
                name,
                arguments,
            } => json!({
                "role": "assistant",
                "content": null,
                "refusal": null,
                "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]
            }),
        };
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": said.finish_reason()}],
            "usage": usage(usage_),
        })
    }

    /// One chunk with `delta` (and `finish_reason`, for the last), as an SSE event.
    pub(crate) fn chunk(&self, delta: Value, finish: Option<&str>, with_usage: bool) -> String {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if with_usage {
            chunk["usage"] = Value::Null;
        }
        event(&chunk)
    }

    /// The last chunk of a stream that asked for usage: no choices, the usage.
    pub(crate) fn usage_chunk(&self, usage_: Usage) -> String {
        event(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage(usage_),
        }))
    }
}

/// `data: JSON` and a blank line.
pub(crate) fn event(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// The stream's end.
pub(crate) const DONE: &str = "data: [DONE]\n\n";

/// An error in a stream already under way, as OpenAI sends one (the SDKs raise it).
pub(crate) fn stream_error(message: String, code: &str) -> String {
    event(
        &json!({"error": {"message": message, "type": "server_error", "param": null, "code": code}}),
    )
}

/// The pieces a text is streamed in: about `size` bytes each, cut at character boundaries.
pub(crate) fn pieces(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = size.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_at_character_boundaries_and_join_back() {
        let text = "{\"name\":\"Zoë Ñúñez 日本\",\"age\":24}";
        for size in 1..8 {
            let cut = pieces(text, size);
            assert_eq!(cut.concat(), text);
            assert!(cut.iter().all(|p| !p.is_empty()));
        }
        assert!(pieces("", 4).is_empty());
    }

    #[test]
    fn ids_differ() {
        let a = Completion::new("m");
        let b = Completion::new("m");
        assert_ne!(a.id, b.id);
        assert!(
            a.id.starts_with("chatcmpl-") && a.id.len() == 9 + 24,
            "{}",
            a.id
        );
    }
}
