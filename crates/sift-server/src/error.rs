//! Error answers. Every one is JSON with a `detail`; none is a bare 500.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use sift_core::{ExtractError, ProviderError};
use utoipa::ToSchema;

use crate::models::UserDetail;
use crate::request::ErrorDetail;

/// `422`: FastAPI's validation error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct HttpValidationError {
    /// Every problem found in the request.
    pub detail: Vec<ErrorDetail>,
}

/// A plain error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    /// What went wrong.
    pub detail: String,
}

pub use sift_core::report::{AnswerError, AttemptReport, ExtractionFailure, UsageReport};

/// Body of a failed `/user` or `/extract`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtractionError {
    /// What failed.
    pub detail: ExtractionFailure,
}

/// One failed query of `/many-users`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueryFailure {
    /// Its position in `queries`.
    pub index: usize,
    /// The query.
    pub query: String,
    /// Why it failed.
    pub error: ExtractionFailure,
}

/// What went wrong in `/many-users`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManyUsersFailureDetail {
    /// A summary (`2 of 20 queries failed`).
    pub message: String,
    /// The failed queries.
    pub failed: Vec<QueryFailure>,
    /// Every query's result in order, `null` where it failed.
    #[schema(value_type = Vec<Option<UserDetail>>)]
    pub results: Vec<Option<serde_json::Value>>,
}

/// Body of a failed `/many-users`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManyUsersError {
    /// What failed.
    pub detail: ManyUsersFailureDetail,
}

/// One failed input of `/v1/extractors/{name}/many`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InputFailure {
    /// Its position in `inputs`.
    pub index: usize,
    /// The input.
    pub input: serde_json::Value,
    /// Why it failed.
    pub error: ExtractionFailure,
}

/// What went wrong in `/v1/extractors/{name}/many`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManyFailureDetail {
    /// A summary (`2 of 20 inputs failed`).
    pub message: String,
    /// The failed inputs.
    pub failed: Vec<InputFailure>,
    /// Every input's result in order, `null` where it failed.
    pub results: Vec<Option<serde_json::Value>>,
}

/// The status of a batch whose items failed with `statuses`: theirs when they agree (all
/// timeouts: `504`; all busy: `503`), else `502`.
pub fn batch_status(statuses: &[StatusCode]) -> StatusCode {
    match statuses.first() {
        Some(first) if statuses.iter().all(|s| s == first) => *first,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// Every way a request can fail.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// `422`: the request body does not fit.
    Validation(Vec<ErrorDetail>),
    /// `413`: the body is over the limit.
    PayloadTooLarge,
    /// `400`: the body could not be read.
    BadBody(String),
    /// `400`: the query string says something that cannot be done (what, in words).
    BadQuery(String),
    /// The extraction failed; the status depends on how. Its report is scrubbed as the
    /// recording says.
    Extraction(Box<ExtractError>, sift_core::trace::Recording),
    /// Some `/many-users` queries failed.
    ManyUsers(ManyUsersFailureDetail, StatusCode),
    /// Some inputs of a `/v1/extractors/{name}/many` failed.
    Many(ManyFailureDetail, StatusCode),
    /// `404`: no such extractor (or ad-hoc extraction switched off).
    NotFound(String),
    /// `401`: a service key is required and none (or a wrong one) was given.
    Unauthorized,
    /// `415`: the body is declared as something other than JSON (the declared type).
    UnsupportedMediaType(String),
    /// `504`: the request's deadline passed.
    Deadline(Box<ExtractionFailure>),
    /// `408`: the client did not send its whole body in time.
    BodyTimeout(std::time::Duration),
    /// `503`: the bodies still arriving hold all the memory set aside for them.
    BodyMemory,
    /// A document that could not be read: `413` over the limits, `415` of a type not read,
    /// `422` encrypted, scanned (no text), malformed or empty.
    Document(sift_documents::ReadError),
    /// A document's extraction failed (see [`crate::documents::failure_status`]).
    DocumentFailed(
        Box<sift_documents::extract::DocumentError>,
        sift_core::trace::Recording,
    ),
}

impl ApiError {
    /// The extraction failed with `e`, reported as `client`'s recording says.
    pub(crate) fn extraction(e: ExtractError, client: &sift_core::Client) -> Self {
        ApiError::Extraction(Box::new(e), client.recording().clone())
    }

    pub(crate) fn from_body_rejection(rejection: &BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadBody(rejection.body_text())
        }
    }
}

/// The status an extraction failure answers with: `504` for an upstream timeout, `503` when
/// the model is busy, `422` for an input too long for the model, an answer longer than the
/// token limit allows or a schema the provider cannot enforce, `500` for a response type
/// whose schema does not compile, else `502` (an answer whose values the text does not hold
/// after the re-asks too: like any answer that stayed invalid, the model's failure).
pub fn extraction_status(e: &ExtractError) -> StatusCode {
    match (e, e.provider_error()) {
        (_, Some(ProviderError::Timeout(_))) => StatusCode::GATEWAY_TIMEOUT,
        (_, Some(ProviderError::Busy { .. })) => StatusCode::SERVICE_UNAVAILABLE,
        // The caller's text is too long for the model: theirs to fix, not an upstream fault.
        (_, Some(ProviderError::InputTooLong(_))) => StatusCode::UNPROCESSABLE_ENTITY,
        (_, Some(_)) => StatusCode::BAD_GATEWAY,
        (ExtractError::TokenLimit { .. }, _)
        | (ExtractError::Schema(sift_core::SchemaError::Unsupported { .. }), _) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        (ExtractError::Schema(_), _) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(detail) => {
                // Logfire's FastAPI integration records the error list at warn level.
                tracing::warn!(
                    fastapi.arguments.errors = %serde_json::to_string(&detail).unwrap_or_default(),
                    "request validation failed"
                );
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(HttpValidationError { detail }),
                )
                    .into_response()
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({"detail": "request body is larger than the limit"})),
            )
                .into_response(),
            ApiError::BadBody(text) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"detail": format!("could not read the request body: {text}")})),
            )
                .into_response(),
            ApiError::BadQuery(text) => {
                (StatusCode::BAD_REQUEST, Json(json!({"detail": text}))).into_response()
            }
            ApiError::Extraction(e, recording) => {
                let status = extraction_status(&e);
                let detail = ExtractionFailure::from_error(&e, &recording);
                tracing::error!(status = status.as_u16(), error = %detail.message, "extraction failed");
                let mut response = (status, Json(ExtractionError { detail })).into_response();
                if let Some(wait) = e.provider_error().and_then(ProviderError::retry_after)
                    && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
                {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
                response
            }
            ApiError::NotFound(detail) => {
                (StatusCode::NOT_FOUND, Json(Message { detail })).into_response()
            }
            ApiError::BodyTimeout(limit) => (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONNECTION, "close")],
                Json(Message {
                    detail: format!(
                        "the request body did not arrive within {} s",
                        limit.as_secs_f64()
                    ),
                }),
            )
                .into_response(),
            ApiError::BodyMemory => {
                tracing::warn!(
                    "request refused: incomplete request bodies hold all the memory set aside for them"
                );
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1"), (header::CONNECTION, "close")],
                    Json(Message {
                        detail: "the server is busy reading other request bodies (they hold all \
                                 the memory set aside for bodies); send this one again shortly"
                            .into(),
                    }),
                )
                    .into_response()
            }
            ApiError::Deadline(detail) => {
                tracing::error!(error = %detail.message, "request deadline passed");
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    Json(ExtractionError { detail: *detail }),
                )
                    .into_response()
            }
            ApiError::UnsupportedMediaType(declared) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Json(Message {
                    detail: format!(
                        "the body must be JSON: send `Content-Type: application/json` (it was \
                         declared as `{declared}`)"
                    ),
                }),
            )
                .into_response(),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(Message {
                    detail: "a valid service key is required: send `Authorization: Bearer KEY`"
                        .into(),
                }),
            )
                .into_response(),
            ApiError::Document(e) => {
                let status = if e.is_too_large() {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else if e.kind() == "unsupported" {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                tracing::warn!(status = status.as_u16(), kind = e.kind(), error = %e, "document refused");
                (
                    status,
                    Json(json!({"detail": e.to_string(), "type": e.kind()})),
                )
                    .into_response()
            }
            ApiError::DocumentFailed(e, recording) => {
                let status = crate::documents::failure_status(&e);
                let detail = crate::documents::failure_detail(&e, &recording);
                tracing::error!(
                    status = status.as_u16(),
                    kind = e.kind(),
                    "document extraction failed"
                );
                (status, Json(json!({"detail": detail}))).into_response()
            }
            ApiError::Many(detail, status) => {
                tracing::error!(status = status.as_u16(), error = %detail.message, "many failed");
                let mut response = (status, Json(json!({"detail": detail}))).into_response();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
            ApiError::ManyUsers(detail, status) => {
                tracing::error!(status = status.as_u16(), error = %detail.message, "many-users failed");
                let mut response = (status, Json(ManyUsersError { detail })).into_response();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    // Every failure was a busy model: worth trying again shortly.
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
        }
    }
}
