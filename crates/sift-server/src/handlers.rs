//! The endpoints.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AppState;
use crate::batch::{Batch, failure_message, run_batch};
use crate::deadline::Deadline;
use crate::error::{
    ApiError, HttpValidationError, ManyUsersError, ManyUsersFailureDetail, QueryFailure,
};
use crate::extractors::Extractor;
use crate::models::{MultipleUserData, UserData, UserDetail};
use crate::request::{Body, ErrorDetail};
use crate::v1;

/// The seed's prompt for one query.
pub fn user_prompt(query: &str) -> String {
    format!("Extract: `{query}`")
}

/// How the seed's endpoints ask: for one query (`/user`, `/many-users`), or for the list of
/// everyone in it (`/extract`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seed {
    One,
    List,
}

/// The seed's endpoints are adapters over the registry's `user` extractor (the built-in
/// one, or a configured extractor of that name): the seed's body becomes the extractor's
/// input `{"query": ...}`, checked against its input schema, and the conversation is the
/// extractor's prompt over it. The built-in one's prompt is the seed's (see
/// [`user_prompt`], the text its template renders), and its `/extract` sends the query as it
/// is, as the seed does.
async fn seed_request(state: &AppState, query: &str, seed: Seed) -> Result<Seeded, ApiError> {
    let extractor = v1::find(state, "user")?;
    let input = json!({ "query": query });
    if extractor.builtin {
        let text = match seed {
            Seed::One => user_prompt(query),
            Seed::List => query.to_owned(),
        };
        return Ok((extractor, input, vec![sift_core::Message::user(text)]));
    }
    let errors = v1::check_input(&extractor.spec.input, &input, &v1::body_loc());
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let messages = v1::messages(&extractor, &input).await?;
    Ok((extractor, input, messages))
}

/// A seed request ready to run: the `user` extractor, its input `{"query": ...}` (what the
/// answer is grounded in) and the conversation.
type Seeded = (Arc<Extractor>, Value, Vec<sift_core::Message>);

async fn extract_user(
    extractor: &Extractor,
    input: &Value,
    messages: Vec<sift_core::Message>,
) -> Result<Value, ApiError> {
    let out = v1::run_messages(extractor, input, messages).await?;
    let value = response_model(&extractor.spec.output, out.value);
    // The value is content: logged only where content is allowed.
    if extractor.client.recording().log_content() {
        tracing::info!(value = %value, "/User returning {{value}}");
    } else {
        tracing::info!("/User returning a value (content not recorded)");
    }
    Ok(value)
}

/// `value` as FastAPI's `response_model` writes it: an object's declared properties in the
/// schema's order, keys the schema does not declare left out.
fn response_model(schema: &sift_core::Schema, value: Value) -> Value {
    let (Some(properties), Value::Object(mut map)) = (
        schema.value().get("properties").and_then(Value::as_object),
        value,
    ) else {
        return Value::Null;
    };
    let ordered = properties
        .keys()
        .filter_map(|k| map.remove(k).map(|v| (k.clone(), v)))
        .collect();
    Value::Object(ordered)
}

/// Extracts one person from a text.
#[utoipa::path(
    post,
    path = "/user",
    request_body = UserData,
    responses(
        (status = 200, description = "The person", body = UserDetail),
        (status = 413, description = "The request body is larger than the limit"),
        (status = 415, description = "The body is declared as something other than JSON", body = crate::error::Message),
        (status = 422, description = "The request body does not fit", body = HttpValidationError),
        (status = 502, description = "The model failed (upstream error or no valid answer after the retries)", body = crate::error::ExtractionError),
        (status = 504, description = "The model did not answer in time", body = crate::error::ExtractionError),
    ),
    tag = "extraction"
)]
pub(crate) async fn user(
    State(state): State<Arc<AppState>>,
    Body(data): Body<UserData>,
) -> Result<Json<Value>, ApiError> {
    let (extractor, input, messages) = seed_request(&state, &data.query, Seed::One).await?;
    extract_user(&extractor, &input, messages).await.map(Json)
}

/// Extracts one person from each text, concurrently, keeping the order.
#[utoipa::path(
    post,
    path = "/many-users",
    request_body = MultipleUserData,
    responses(
        (status = 200, description = "One person per query, in order", body = Vec<UserDetail>),
        (status = 413, description = "The request body is larger than the limit"),
        (status = 415, description = "The body is declared as something other than JSON", body = crate::error::Message),
        (status = 422, description = "The request body does not fit (or has too many queries)", body = HttpValidationError),
        (status = 502, description = "Some queries failed: which, why, and the results of the others", body = ManyUsersError),
        (status = 504, description = "Every failed query timed out upstream", body = ManyUsersError),
    ),
    tag = "extraction"
)]
pub(crate) async fn many_users(
    State(state): State<Arc<AppState>>,
    deadline: Option<Extension<Deadline>>,
    Body(data): Body<MultipleUserData>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let deadline = deadline.map(|Extension(d)| d);
    if data.queries.len() > state.config.max_queries {
        return Err(ApiError::Validation(vec![ErrorDetail::too_long(
            "queries",
            &data.queries,
            state.config.max_queries,
        )]));
    }
    // Every query checked and its conversation rendered before any runs (a bad one fails
    // the request whole); each is then run with what was rendered here.
    let mut prepared = Vec::with_capacity(data.queries.len());
    for query in &data.queries {
        prepared.push(seed_request(&state, query, Seed::One).await?);
    }
    let indices: Vec<usize> = (0..prepared.len()).collect();
    let batch = run_batch(
        &indices,
        state.config.max_concurrency,
        deadline,
        |i| {
            let (extractor, input, messages) = prepared[i].clone();
            async move { extract_user(&extractor, &input, messages).await }
        },
        |index, _, error| QueryFailure {
            index,
            query: data.queries[index].clone(),
            error,
        },
    )
    .await?;
    match batch {
        Batch::All(values) => Ok(Json(values)),
        Batch::Failed {
            failed,
            results,
            status,
            cut_off,
        } => Err(ApiError::ManyUsers(
            ManyUsersFailureDetail {
                message: failure_message(
                    failed.len(),
                    cut_off,
                    data.queries.len(),
                    "queries",
                    deadline,
                ),
                failed,
                results,
            },
            status,
        )),
    }
}

/// An element the model produced that failed validation (`event: item_error`, or an NDJSON
/// line `{"item_error": ...}`); the stream goes on.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemError {
    /// The element's position in the list.
    pub index: usize,
    /// What is wrong with it.
    pub errors: Vec<crate::error::AnswerError>,
    /// The element as the model wrote it.
    pub value: serde_json::Value,
}

/// Whether `Accept` asks for an event stream: `text/event-stream` (any case) with a weight
/// above 0 and above NDJSON's, if that is named too. Otherwise NDJSON, the default.
pub(crate) fn wants_sse(headers: &HeaderMap) -> bool {
    let (mut sse, mut ndjson) = (None::<f32>, None::<f32>);
    for range in headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, v)| v.trim().parse::<f32>().ok())
            .filter(|q| q.is_finite())
            .unwrap_or(1.0);
        let slot = match media.as_str() {
            "text/event-stream" => &mut sse,
            "application/x-ndjson" => &mut ndjson,
            _ => continue,
        };
        *slot = Some(slot.map_or(q, |old| old.max(q)));
    }
    match sse {
        Some(q) if q > 0.0 => ndjson.is_none_or(|n| q > n),
        _ => false,
    }
}

/// Frames one stream item: an NDJSON line, or an SSE event (named unless it is plain data).
pub(crate) fn frame(
    sse: bool,
    event: Option<&str>,
    ndjson_key: Option<&str>,
    json: &str,
) -> String {
    match (sse, event) {
        (true, Some(name)) => format!("event: {name}\ndata: {json}\n\n"),
        (true, None) => format!("data: {json}\n\n"),
        (false, _) => match ndjson_key {
            Some(key) => format!("{{\"{key}\":{json}}}\n"),
            None => format!("{json}\n"),
        },
    }
}

/// Extracts every person in a text, streaming each as soon as the model finishes it.
///
/// `application/x-ndjson` (one object per line) by default; `text/event-stream` when `Accept`
/// asks for it: a `data:` event per object, `event: item_error` for an element that failed
/// validation, `event: error` if the extraction fails mid-stream, and a final `event: done`
/// carrying the usage. In NDJSON the same appear as lines `{"item_error": {...}}` and
/// `{"error": {...}}`. A failure before the first object answers with an error status instead.
/// A client that disconnects cancels the model call.
#[utoipa::path(
    post,
    path = "/extract",
    request_body = UserData,
    responses(
        (status = 200, description = "The people, one object per line (NDJSON) or per `data:` event (SSE), each sent as soon as it is complete",
            content(
                (UserDetail = "application/x-ndjson"),
                (UserDetail = "text/event-stream"),
            )),
        (status = 413, description = "The request body is larger than the limit"),
        (status = 415, description = "The body is declared as something other than JSON", body = crate::error::Message),
        (status = 422, description = "The request body does not fit", body = HttpValidationError),
        (status = 502, description = "The model failed before the first object", body = crate::error::ExtractionError),
        (status = 504, description = "The model did not answer in time", body = crate::error::ExtractionError),
    ),
    tag = "extraction"
)]
pub(crate) async fn extract(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    deadline: Option<Extension<Deadline>>,
    Body(data): Body<UserData>,
) -> Result<Response, ApiError> {
    let deadline = deadline.map(|Extension(d)| d);
    let (extractor, input, messages) = seed_request(&state, &data.query, Seed::List).await?;
    let list = extractor.list_schema().map_err(|e| {
        ApiError::extraction(
            sift_core::ExtractError::Schema(e.clone()),
            &extractor.client,
        )
    })?;
    let events = v1::Target::of(&extractor)
        .builder_as(list, &input, messages)
        .elements();
    let by = crate::answer::Answerer::of(&extractor.client, &state.config.prices);
    let query = crate::answer::AnswerQuery::default();
    crate::answer::stream_response(events, by, query, wants_sse(&headers), deadline).await
}

/// A streamed answer: SSE or NDJSON, never cached.
pub(crate) fn stream_body<S>(sse: bool, body: S) -> Response
where
    S: futures::Stream<Item = Result<String, std::convert::Infallible>> + Send + 'static,
{
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
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

/// The service's metrics in Prometheus' text format: `gen_ai.client.token.usage`,
/// `gen_ai.client.operation.duration` and `http.server.request.duration`.
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4", body = String),
        (status = 404, description = "Metrics are not enabled (the service runs without telemetry)", body = crate::error::Message),
    ),
    tag = "service"
)]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.config.metrics {
        Some(render) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            (render.0)(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(crate::error::Message {
                detail: "metrics are not enabled: the service runs without telemetry".into(),
            }),
        )
            .into_response(),
    }
}

/// `GET /openapi.json`: the document of what is served now (see [`crate::document`]).
pub(crate) async fn openapi_json(State(state): State<Arc<AppState>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        state.served().openapi.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT, v.parse().unwrap());
        }
        wants_sse(&h)
    }

    #[test]
    fn the_builtin_template_renders_the_seed_prompt() {
        let spec = Extractor::user_spec().unwrap();
        for query in ["Daniel is 24", "a `tick` and {{ braces }}", ""] {
            let messages = spec.messages(&json!({ "query": query })).unwrap();
            assert_eq!(messages.len(), 1);
            assert_eq!(
                messages[0].content.as_deref(),
                Some(user_prompt(query).as_str())
            );
        }
    }

    #[test]
    fn accept_is_read_with_case_and_weights() {
        assert!(accept(&["text/event-stream"]));
        assert!(accept(&["TEXT/EVENT-STREAM"]));
        assert!(accept(&["application/json, text/event-stream;q=0.5"]));
        assert!(!accept(&["text/event-stream;q=0"]));
        assert!(!accept(&["text/event-stream; q=0.0, application/x-ndjson"]));
        assert!(!accept(&[
            "text/event-stream;q=0.4",
            "application/x-ndjson;q=0.9"
        ]));
        assert!(accept(&["application/x-ndjson;q=0.1, text/event-stream"]));
        assert!(!accept(&["application/json"]));
        assert!(!accept(&[]));
        assert!(!accept(&["text/event-streamer"]));
    }
}
