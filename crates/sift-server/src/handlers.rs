//! The endpoints.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{
    ApiError, ExtractionFailure, HttpValidationError, ManyUsersError, ManyUsersFailureDetail,
    QueryFailure, UsageReport, extraction_status,
};
use crate::models::{MultipleUserData, UserData, UserDetail};
use crate::request::{Body, ErrorDetail};

/// The seed's prompt for one query.
pub fn user_prompt(query: &str) -> String {
    format!("Extract: `{query}`")
}

async fn extract_user(state: &AppState, query: &str) -> Result<UserDetail, ApiError> {
    let out = state
        .client
        .extract::<UserDetail>()
        .user(user_prompt(query))
        .send()
        .await
        .map_err(|e| ApiError::Extraction(Box::new(e)))?;
    tracing::info!(value = ?out.value, "/User returning");
    Ok(out.value)
}

/// Extracts one person from a text.
#[utoipa::path(
    post,
    path = "/user",
    request_body = UserData,
    responses(
        (status = 200, description = "The person", body = UserDetail),
        (status = 413, description = "The request body is larger than the limit"),
        (status = 422, description = "The request body does not fit", body = HttpValidationError),
        (status = 502, description = "The model failed (upstream error or no valid answer after the retries)", body = crate::error::ExtractionError),
        (status = 504, description = "The model did not answer in time", body = crate::error::ExtractionError),
    ),
    tag = "extraction"
)]
pub(crate) async fn user(
    State(state): State<Arc<AppState>>,
    Body(data): Body<UserData>,
) -> Result<Json<UserDetail>, ApiError> {
    extract_user(&state, &data.query).await.map(Json)
}

/// Extracts one person from each text, concurrently, keeping the order.
#[utoipa::path(
    post,
    path = "/many-users",
    request_body = MultipleUserData,
    responses(
        (status = 200, description = "One person per query, in order", body = Vec<UserDetail>),
        (status = 413, description = "The request body is larger than the limit"),
        (status = 422, description = "The request body does not fit (or has too many queries)", body = HttpValidationError),
        (status = 502, description = "Some queries failed: which, why, and the results of the others", body = ManyUsersError),
        (status = 504, description = "Every failed query timed out upstream", body = ManyUsersError),
    ),
    tag = "extraction"
)]
pub(crate) async fn many_users(
    State(state): State<Arc<AppState>>,
    Body(data): Body<MultipleUserData>,
) -> Result<Json<Vec<UserDetail>>, ApiError> {
    if data.queries.len() > state.config.max_queries {
        return Err(ApiError::Validation(vec![ErrorDetail::too_long(
            "queries",
            &data.queries,
            state.config.max_queries,
        )]));
    }
    let results: Vec<Result<UserDetail, ApiError>> =
        futures::stream::iter(data.queries.iter().cloned())
            .map(|q| {
                let state = state.clone();
                async move { extract_user(&state, &q).await }
            })
            .buffered(state.config.max_concurrency.max(1))
            .collect()
            .await;
    let mut failed = Vec::new();
    let mut statuses = Vec::new();
    let mut values = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(v) => values.push(Some(v)),
            Err(ApiError::Extraction(e)) => {
                statuses.push(extraction_status(&e));
                failed.push(QueryFailure {
                    index,
                    query: data.queries[index].clone(),
                    error: ExtractionFailure::from_error(&e),
                });
                values.push(None);
            }
            Err(other) => return Err(other),
        }
    }
    if failed.is_empty() {
        return Ok(Json(values.into_iter().flatten().collect()));
    }
    let status = if statuses.iter().all(|s| *s == statuses[0]) {
        statuses[0]
    } else {
        StatusCode::BAD_GATEWAY
    };
    Err(ApiError::ManyUsers(
        ManyUsersFailureDetail {
            message: format!("{} of {} queries failed", failed.len(), data.queries.len()),
            failed,
            results: values,
        },
        status,
    ))
}

/// Sent last on an event stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamDone {
    /// Tokens spent over every attempt.
    pub usage: UsageReport,
}

/// Extracts every person in a text, as a stream of objects.
///
/// `application/x-ndjson` (one object per line) by default; `text/event-stream` when `Accept`
/// asks for it, with a `data:` event per object and a final `event: done` carrying the usage.
#[utoipa::path(
    post,
    path = "/extract",
    request_body = UserData,
    responses(
        (status = 200, description = "The people, one object per line (NDJSON) or per `data:` event (SSE)",
            content(
                (UserDetail = "application/x-ndjson"),
                (UserDetail = "text/event-stream"),
            )),
        (status = 413, description = "The request body is larger than the limit"),
        (status = 422, description = "The request body does not fit", body = HttpValidationError),
        (status = 502, description = "The model failed", body = crate::error::ExtractionError),
        (status = 504, description = "The model did not answer in time", body = crate::error::ExtractionError),
    ),
    tag = "extraction"
)]
pub(crate) async fn extract(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Body(data): Body<UserData>,
) -> Result<Response, ApiError> {
    let sse = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    let out = state
        .client
        .extract::<Vec<UserDetail>>()
        .user(data.query)
        .send()
        .await
        .map_err(|e| ApiError::Extraction(Box::new(e)))?;
    let mut body = String::new();
    for user in &out.value {
        let line = serde_json::to_string(user).unwrap_or_default();
        tracing::info!(value = %line, "Returning user object");
        if sse {
            body.push_str("data: ");
            body.push_str(&line);
            body.push_str("\n\n");
        } else {
            body.push_str(&line);
            body.push('\n');
        }
    }
    let content_type = if sse {
        let done = StreamDone {
            usage: out.usage.into(),
        };
        body.push_str("event: done\ndata: ");
        body.push_str(&serde_json::to_string(&done).unwrap_or_default());
        body.push_str("\n\n");
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The provider answering (`openai`, `local`).
    pub provider: String,
    /// The model used.
    pub model: String,
}

/// `200` when the service is ready.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Ready", body = Health)), tag = "service")]
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        provider: state.client.provider().name().into(),
        model: state.client.model().into(),
    })
}
