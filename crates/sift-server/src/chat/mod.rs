//! The OpenAI-compatible gateway: `POST /v1/chat/completions` and `GET /v1/models`, so
//! clients written for OpenAI's API (its SDKs, instructor, pydantic-ai, LangChain) can point
//! at sift.
//!
//! A request with a schema (`response_format` `json_schema`, `json_object`, or a forced
//! function call) runs sift's extraction loop on the model it names: the answer is validated
//! against the whole schema and re-asked when it does not fit, usage summed over the
//! attempts (`sift-attempts` header). sift asks each upstream in the form it honours best
//! (its configured mode and dialect); the client's form only decides how the answer comes
//! back (content, or one tool call). A schema the model cannot be held to is refused
//! (`400`, naming the keyword and where), never answered unconstrained. Without a schema the
//! conversation is passed on as plain chat, streamed as it is generated. A structured
//! answer is streamed once validated: sift never shows an attempt it may re-ask.

mod request;
mod wire;

use std::sync::Arc;

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use sift_core::{ChatDelta, ChatRequest, Client, OutputFormat, Usage};

use crate::AppState;
use crate::answer::usage_headers;
use crate::deadline::{Deadline, next_before};
use crate::request::Body;
use crate::v1::RawJson;
use request::{Answer, ChatCall};
pub(crate) use request::{MAX_MESSAGES, MAX_TOOLS};
pub(crate) use wire::OpenAiShaped;
use wire::{ChatError, Completion, Said};

/// A model the gateway answers with: what `GET /v1/models` lists and a request's `model`
/// picks.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    /// The id clients send as `model`.
    pub id: String,
    /// The provider's name in the config (`default` for the one the flags set); a request
    /// for `PROVIDER/MODEL` goes to it.
    pub provider: String,
    /// Who answers (its model is the route's).
    pub client: Client,
    /// Whether `PROVIDER/MODEL` may name any model (a remote server's), or only the
    /// client's own (the embedded model).
    pub any_model: bool,
}

impl ModelRoute {
    /// The route of `client` under the provider name `provider`, listed as `id`.
    pub fn new(id: impl Into<String>, provider: impl Into<String>, client: Client) -> Self {
        Self {
            id: id.into(),
            provider: provider.into(),
            client,
            any_model: false,
        }
    }

    /// Lets `PROVIDER/MODEL` name any model of this route's provider.
    #[must_use]
    pub fn any_model(mut self, any: bool) -> Self {
        self.any_model = any;
        self
    }
}

/// The routes served, the first the default (a request without `model`).
#[derive(Debug, Default)]
pub(crate) struct Models(pub(crate) Vec<ModelRoute>);

impl Models {
    /// The client that answers `asked`, and the model id the answer names: the route listed
    /// as `asked`; else, for `PROVIDER/MODEL`, that provider asked for `MODEL`; without a
    /// model, the first route.
    fn resolve(&self, asked: Option<&str>) -> Result<(Client, String), ChatError> {
        let Some(asked) = asked else {
            return self
                .0
                .first()
                .map(|r| (r.client.clone(), r.id.clone()))
                .ok_or_else(|| self.not_found("(none)"));
        };
        if let Some(route) = self.0.iter().find(|r| r.id == asked) {
            return Ok((route.client.clone(), route.id.clone()));
        }
        if let Some((provider, model)) = asked.split_once('/')
            && let Some(route) = self
                .0
                .iter()
                .find(|r| r.provider == provider && (r.any_model || r.client.model() == model))
            && !model.is_empty()
        {
            return Ok((route.client.clone().with_model(model), asked.to_owned()));
        }
        Err(self.not_found(asked))
    }

    fn not_found(&self, asked: &str) -> ChatError {
        ChatError::ModelNotFound {
            model: asked.to_owned(),
            known: self.0.iter().map(|r| r.id.clone()).collect(),
        }
    }
}

/// OpenAI's model object.
fn model_object(route: &ModelRoute) -> Value {
    json!({"id": route.id, "object": "model", "created": 0, "owned_by": route.provider})
}

/// `GET /v1/models`.
pub(crate) async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let data: Vec<Value> = state.models.0.iter().map(model_object).collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`.
pub(crate) async fn model(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.models.0.iter().find(|r| r.id == id) {
        Some(route) => Json(model_object(route)).into_response(),
        None => state.models.not_found(&id).into_response(),
    }
}

/// `POST /v1/chat/completions`.
pub(crate) async fn completions(
    State(state): State<Arc<AppState>>,
    deadline: Option<Extension<Deadline>>,
    Body(RawJson(body)): Body<RawJson>,
) -> Response {
    let deadline = deadline.map(|Extension(d)| d);
    match complete(&state, body, deadline).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn complete(
    state: &AppState,
    body: Value,
    deadline: Option<Deadline>,
) -> Result<Response, ChatError> {
    let mut call = request::read(body)?;
    let (client, model) = state.models.resolve(call.model.as_deref())?;
    let completion = Completion::new(&model);
    let Some((name, schema, param)) = call.answer.schema() else {
        return plain(&client, call, completion, deadline).await;
    };
    let schema = compile(state, &client, name, &schema, param).await?;
    let mut extraction = client
        .extract_value(&schema)
        .messages(std::mem::take(&mut call.messages))
        .extractor("chat");
    if let Some(t) = call.temperature {
        extraction = extraction.temperature(t);
    }
    if let Some(n) = call.max_tokens {
        extraction = extraction.max_tokens(n);
    }
    if let Some(seed) = call.seed {
        extraction = extraction.seed(seed);
    }
    let out = extraction
        .send()
        .await
        .map_err(|e| ChatError::Failed(Box::new(e), client.recording().clone()))?;
    let text = out.value.to_string();
    let said = match &call.answer {
        Answer::Tool { name, .. } => Said::Call {
            id: format!("call_{}", &completion.id["chatcmpl-".len()..]),
            name: name.clone(),
            arguments: text,
        },
        _ => Said::Content(text),
    };
    let mut response = if call.stream {
        streamed(&completion, &said, out.usage, call.include_usage)
    } else {
        Json(completion.body(&said, out.usage)).into_response()
    };
    usage_headers(response.headers_mut(), out.attempts.len(), out.usage);
    ignored_header(&mut response, &call.ignored);
    Ok(response)
}

/// The schema compiled (and cached) once the route's provider has taken it; a refusal names
/// the keyword, where it is, and the parameter that carried the schema.
async fn compile(
    state: &AppState,
    client: &Client,
    name: &str,
    schema: &Value,
    param: &str,
) -> Result<sift_core::Schema, ChatError> {
    let provider = client.provider().clone();
    let checker = provider.name().to_owned();
    state
        .schema_cache
        .get(name, &checker, schema, move |s| {
            provider.check_schema(s.constrained_schema())
        })
        .await
        .map_err(|e| ChatError::Invalid {
            param: Some(param.to_owned()),
            code: Some(match e.kind() {
                "unsupported" => "unsupported_schema",
                _ => "invalid_schema",
            }),
            message: format!("{e}"),
        })
}

/// The `sift-ignored-params` header: the parameters given that sift did not act on.
fn ignored_header(response: &mut Response, ignored: &[String]) {
    if ignored.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&ignored.join(", ")) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("sift-ignored-params"), v);
    }
}

/// Bytes of the answer per streamed chunk.
const CHUNK_BYTES: usize = 48;

/// A validated answer as an event stream: the role, the answer in pieces, the finish, the
/// usage when asked, `[DONE]`.
fn streamed(completion: &Completion, said: &Said, usage: Usage, include_usage: bool) -> Response {
    let mut events = Vec::new();
    match said {
        Said::Content(text) => {
            events.push(completion.chunk(
                json!({"role": "assistant", "content": ""}),
                None,
                include_usage,
            ));
            for piece in wire::pieces(text, CHUNK_BYTES) {
                events.push(completion.chunk(json!({"content": piece}), None, include_usage));
            }
        }
        Said::Call {
            id,
            name,
            arguments,
        } => {
            events.push(completion.chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}
                ]}),
                None,
                include_usage,
            ));
            for piece in wire::pieces(arguments, CHUNK_BYTES) {
                events.push(completion.chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                    include_usage,
                ));
            }
        }
    }
    events.push(completion.chunk(json!({}), Some(said.finish_reason()), include_usage));
    if include_usage {
        events.push(completion.usage_chunk(usage));
    }
    events.push(wire::DONE.to_owned());
    event_stream(HttpBody::from(events.concat()))
}

fn event_stream(body: HttpBody) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A request without a schema: the conversation passed on as plain chat.
async fn plain(
    client: &Client,
    call: ChatCall,
    completion: Completion,
    deadline: Option<Deadline>,
) -> Result<Response, ChatError> {
    let request = ChatRequest {
        model: client.model().to_owned(),
        messages: call.messages,
        output: OutputFormat::Text,
        temperature: call.temperature,
        max_tokens: call.max_tokens,
        seed: call.seed,
        structured: None,
    };
    let recording = client.recording().clone();
    if !call.stream {
        let answer = client
            .chat(&request, Some("chat"))
            .await
            .map_err(|e| ChatError::call(e, &recording))?;
        let said = Said::Content(answer.content.unwrap_or_default());
        let mut body = completion.body(&said, answer.usage);
        if answer.finish_reason.as_deref() == Some("length") {
            body["choices"][0]["finish_reason"] = json!("length");
        }
        let mut response = Json(body).into_response();
        usage_headers(response.headers_mut(), 1, answer.usage);
        ignored_header(&mut response, &call.ignored);
        return Ok(response);
    }
    let mut deltas = client
        .chat_stream(&request, Some("chat"))
        .await
        .map_err(|e| ChatError::call(e, &recording))?;
    // A failure before anything was generated answers with its status.
    let first = match deltas.next().await {
        Some(Err(e)) => return Err(ChatError::call(e, &recording)),
        other => other,
    };
    let include_usage = call.include_usage;
    let body = async_stream::stream! {
        yield Ok::<_, std::convert::Infallible>(completion.chunk(json!({"role": "assistant", "content": ""}), None, include_usage));
        let (mut finish, mut usage) = (None, Usage::default());
        let mut pending = first;
        loop {
            let delta = match pending.take() {
                Some(delta) => delta,
                None => match next_before(&mut deltas, deadline).await {
                    Ok(Some(delta)) => delta,
                    Ok(None) => break,
                    Err(d) => {
                        let message = d.failure("the stream").message;
                        tracing::error!(error = %message, "request deadline passed mid-stream");
                        yield Ok(wire::stream_error(message, "deadline"));
                        return;
                    }
                },
            };
            match delta {
                Ok(ChatDelta::Content(text)) => yield Ok(completion.chunk(json!({"content": text}), None, include_usage)),
                Ok(ChatDelta::Refusal(text)) => yield Ok(completion.chunk(json!({"refusal": text}), None, include_usage)),
                Ok(ChatDelta::Finish(reason)) => finish = Some(reason),
                Ok(ChatDelta::Usage(u)) => usage = u,
                Ok(_) => {}
                Err(e) => {
                    let message = recording.scrub(e.to_string());
                    tracing::error!(error = %message, "chat failed mid-stream");
                    yield Ok(wire::stream_error(message, e.kind()));
                    return;
                }
            }
        }
        let finish = match finish.as_deref() {
            Some("length") => "length",
            _ => "stop",
        };
        yield Ok(completion.chunk(json!({}), Some(finish), include_usage));
        if include_usage {
            yield Ok(completion.usage_chunk(usage));
        }
        yield Ok(wire::DONE.to_owned());
    };
    let mut response = event_stream(HttpBody::from_stream(body));
    ignored_header(&mut response, &call.ignored);
    Ok(response)
}

/// The most bytes of an error body read to reshape it.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Puts every error of the gateway's paths in OpenAI's shape, whoever made it (the key check,
/// the body reader, the deadline, the router's 404 and 405): `{"error": {"message", "type",
/// "param", "code"}}`, a `422` of the body reader as a `400` (what OpenAI's clients expect
/// of a request they got wrong).
pub(crate) async fn openai_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let gateway =
        path.starts_with("/v1/chat/") || path == "/v1/models" || path.starts_with("/v1/models/");
    let response = next.run(req).await;
    let status = response.status();
    if !gateway
        || !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<OpenAiShaped>().is_some()
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let detail = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("detail").cloned());
    let (message, param) = match detail {
        Some(Value::String(s)) => (s, None),
        // FastAPI's list: each problem with its place.
        Some(Value::Array(items)) => {
            let param = items.first().and_then(param_of);
            let lines: Vec<String> = items
                .iter()
                .map(|i| {
                    let msg = i.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                    match param_of(i) {
                        Some(p) => format!("{p}: {msg}"),
                        None => msg.to_owned(),
                    }
                })
                .collect();
            (lines.join("; "), param)
        }
        Some(Value::Object(o)) => (
            o.get("message")
                .and_then(Value::as_str)
                .unwrap_or("the request failed")
                .to_owned(),
            None,
        ),
        _ => (
            status
                .canonical_reason()
                .unwrap_or("the request failed")
                .to_owned(),
            None,
        ),
    };
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let mut reshaped = wire::error_response(status, message, param, None);
    // Keep what the headers said (`Retry-After`, `WWW-Authenticate`, `Allow`), not the old
    // body's length or type.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            reshaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    reshaped
}

/// A FastAPI error's `loc` as a parameter path (`messages[0].content`), `body` left out.
fn param_of(item: &Value) -> Option<String> {
    let loc = item.get("loc")?.as_array()?;
    let mut out = String::new();
    for part in loc.iter().skip_while(|p| p.as_str() == Some("body")) {
        match part {
            Value::String(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Value::Number(n) => out.push_str(&format!("[{n}]")),
            _ => {}
        }
    }
    // A place in the body's text (malformed JSON) names no parameter.
    (!out.is_empty() && !out.starts_with('[')).then_some(out)
}
