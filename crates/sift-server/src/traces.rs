//! `GET /v1/traces` and `GET /v1/traces/{id}`: the recent traces the telemetry keeps, as
//! JSON (the same spans the OTLP export sends). Behind the service keys like every endpoint;
//! what they show of content is what the spans hold (nothing when content recording is off).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::answer::RawQuery;
use crate::error::ApiError;

/// `?limit=N`: the newest N (default and at most every request kept). Any count is taken,
/// however large (more than are kept is all of them); anything else is a 400.
fn limit(pairs: &[(String, String)]) -> Result<usize, ApiError> {
    let Some((_, text)) = pairs.iter().rev().find(|(k, _)| k == "limit") else {
        return Ok(usize::MAX);
    };
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadQuery(format!(
            "limit must be a count (a whole number, 0 or more), not `{}`",
            text.chars().take(64).collect::<String>()
        )));
    }
    // Past usize's range: more than could ever be kept.
    Ok(text.parse::<usize>().unwrap_or(usize::MAX))
}

fn off() -> ApiError {
    ApiError::NotFound(
        "traces are not kept: sift serve --traces N (SIFT_TRACES=N) keeps the last N requests'"
            .into(),
    )
}

/// Whether a trace belongs in the list: a request (it has a route), not the pages' own (the
/// playground and trace viewer, their shared script, the viewer's JSON). Traces of no request
/// (a log at start-up) are left out.
fn listed(endpoint: Option<&str>) -> bool {
    endpoint.is_some_and(|e| {
        !e.starts_with("/v1/traces") && !e.starts_with("/assets/") && e != "/traces" && e != "/"
    })
}

pub(crate) async fn list(State(state): State<Arc<AppState>>, query: RawQuery) -> Response {
    let Some(source) = &state.config.traces else {
        return off().into_response();
    };
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(e) => return ApiError::BadQuery(e.body_text()).into_response(),
    };
    let limit = match limit(&pairs) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let traces: Vec<_> = source
        .list()
        .into_iter()
        .filter(|t| listed(t.endpoint.as_deref()))
        .take(limit)
        .collect();
    Json(json!({ "traces": traces })).into_response()
}

pub(crate) async fn show(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some(source) = &state.config.traces else {
        return off().into_response();
    };
    match source.trace(&id) {
        Some(trace) => Json(trace).into_response(),
        None => ApiError::NotFound(format!(
            "no trace `{}` is kept (only the most recent are)",
            id.chars().take(64).collect::<String>()
        ))
        .into_response(),
    }
}
