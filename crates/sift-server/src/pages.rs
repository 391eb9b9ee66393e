//! The pages `sift serve` shows in a browser (`web/`, see its README): the playground at
//! `GET /` and the trace viewer at `GET /traces`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// One of the pages in `web/`: it holds no data, so it is served without a key; the JSON it
/// reads needs one like every endpoint. Everything it loads is its own (the policy says so).
fn html(page: &'static str) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        page,
    )
        .into_response()
}

/// `GET /assets/common.js`: what the pages share (`web/common.js`): the keyed fetch, building
/// elements, reading an event stream. Code, no data: served without a key.
pub(crate) async fn common_js() -> Response {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../web/common.js"),
    )
        .into_response()
}

/// `GET /traces`: the page that shows them (`web/traces.html`).
pub(crate) async fn traces() -> Response {
    html(include_str!("../web/traces.html"))
}

/// `GET /`: the playground (`web/playground.html`), unless it is turned off.
pub(crate) async fn playground(State(state): State<Arc<AppState>>) -> Response {
    if !state.config.playground {
        return ApiError::NotFound("the playground is off (sift serve --playground false)".into())
            .into_response();
    }
    html(include_str!("../web/playground.html"))
}

/// `GET /evals`: the configured evaluation report as a page. It holds data, so it needs the
/// service key like the JSON endpoints.
pub(crate) async fn evals(State(state): State<Arc<AppState>>) -> Response {
    let Some(page) = &state.config.evals else {
        return ApiError::NotFound(
            "no evaluation report is served (sift serve --eval-report FILE)".into(),
        )
        .into_response();
    };
    match (page.0)() {
        Ok(text) => html_owned(text),
        Err(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"detail": why})),
        )
            .into_response(),
    }
}

fn html_owned(page: String) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        page,
    )
        .into_response()
}
