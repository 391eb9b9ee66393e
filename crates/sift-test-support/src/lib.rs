//! A scripted OpenAI-compatible server for tests, over real HTTP on `127.0.0.1:0`.
//!
//! Each test queues the replies it wants ([`Reply`]): a tool call, content, an error status, a
//! malformed body, a delay, usage. Requests beyond the queue go to a fallback (a function of
//! the request) or get a 500 that names the missing script. Everything received is recorded
//! so tests can assert on what sift sent.
//!
//! ```no_run
//! # async fn t() {
//! use sift_test_support::{Reply, ScriptedServer};
//! let server = ScriptedServer::start().await;
//! server.push(Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#).usage(50, 10));
//! // point a provider at server.base_url() ...
//! assert_eq!(server.requests().len(), 0);
//! # }
//! ```

mod anthropic;
mod batch_api;
pub mod bench;
pub mod conformance;
pub mod faults;
mod gemini;
mod openai;
pub mod otlp;
pub mod pdf;
pub mod readers;

pub use batch_api::BatchEnd;
/// The HTTP client tests talk to servers with (see [`http_client`]).
pub use reqwest;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the server answers to one request.
#[derive(Debug, Clone)]
#[must_use]
pub struct Reply {
    status: u16,
    body: ReplyBody,
    delay: Duration,
    headers: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
enum ReplyBody {
    Completion {
        content: Option<String>,
        tool_calls: Vec<(String, String)>,
        finish_reason: String,
        usage: (u64, u64, u64),
    },
    Json(Value),
    Raw(String),
    Stream(StreamScript),
    /// Headers, then a body that never comes.
    Stalled,
    /// Headers and these bytes, then the connection breaks.
    Broken(String),
}

#[derive(Debug, Clone)]
struct StreamScript {
    /// Each piece becomes one SSE event: (tool call index or None for content, name, text).
    pieces: Vec<(Option<usize>, Option<String>, String)>,
    chunk_delay: Duration,
    usage: (u64, u64, u64),
    finish_reason: String,
    error_after: Option<(usize, String)>,
    /// Send every event in one write instead of one write each.
    burst: bool,
}

/// Splits `text` into pieces of `size` characters.
pub fn split_chars(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

impl Reply {
    fn completion(
        content: Option<String>,
        tool_calls: Vec<(String, String)>,
        finish: &str,
    ) -> Self {
        Self {
            status: 200,
            body: ReplyBody::Completion {
                content,
                tool_calls,
                finish_reason: finish.into(),
                usage: (0, 0, 0),
            },
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// A completion that calls the function `name` with `arguments` (JSON text, valid or not).
    pub fn tool_call(name: &str, arguments: impl Into<String>) -> Self {
        Self::completion(None, vec![(name.into(), arguments.into())], "tool_calls")
    }

    /// A completion with several tool calls.
    pub fn tool_calls<'a>(calls: impl IntoIterator<Item = (&'a str, String)>) -> Self {
        Self::completion(
            None,
            calls.into_iter().map(|(n, a)| (n.to_owned(), a)).collect(),
            "tool_calls",
        )
    }

    /// A completion whose message content is `text`.
    pub fn content(text: impl Into<String>) -> Self {
        Self::completion(Some(text.into()), Vec::new(), "stop")
    }

    /// An error status with an OpenAI-shaped error body carrying `message`.
    pub fn error(status: u16, message: &str) -> Self {
        Self {
            status,
            body: ReplyBody::Json(json!({"error": {"message": message, "type": "scripted"}})),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// Any JSON body with any status.
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: ReplyBody::Json(body),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// A raw body (for malformed JSON) with status 200.
    pub fn raw(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: ReplyBody::Raw(body.into()),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// A `200` whose headers arrive and whose body never does.
    pub fn stalled() -> Self {
        Self {
            status: 200,
            body: ReplyBody::Stalled,
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// A `200` whose body breaks off after `prefix` (empty: right after the headers).
    pub fn broken(prefix: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: ReplyBody::Broken(prefix.into()),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    fn stream(pieces: Vec<(Option<usize>, Option<String>, String)>, finish: &str) -> Self {
        Self {
            status: 200,
            body: ReplyBody::Stream(StreamScript {
                pieces,
                chunk_delay: Duration::ZERO,
                usage: (0, 0, 0),
                finish_reason: finish.into(),
                error_after: None,
                burst: false,
            }),
            delay: Duration::ZERO,
            headers: vec![("content-type".into(), "text/event-stream".into())],
        }
    }

    /// A streamed completion whose content arrives in `pieces`, one SSE event each.
    pub fn stream_content(pieces: Vec<String>) -> Self {
        Self::stream(
            pieces.into_iter().map(|p| (None, None, p)).collect(),
            "stop",
        )
    }

    /// A streamed call of `name` whose arguments arrive in `pieces`.
    pub fn stream_tool_call(name: &str, pieces: Vec<String>) -> Self {
        Self::stream_tool_calls(vec![(name, pieces)])
    }

    /// Several streamed tool calls, one after another (indices 0, 1, ...).
    pub fn stream_tool_calls(calls: Vec<(&str, Vec<String>)>) -> Self {
        let mut all = Vec::new();
        for (index, (name, pieces)) in calls.into_iter().enumerate() {
            all.push((Some(index), Some(name.to_owned()), String::new()));
            all.extend(pieces.into_iter().map(|p| (Some(index), None, p)));
        }
        Self::stream(all, "tool_calls")
    }

    /// For streams: waits this long before each event.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        if let ReplyBody::Stream(s) = &mut self.body {
            s.chunk_delay = delay;
        }
        self
    }

    /// For streams: writes all events at once (one body chunk) rather than one by one.
    pub fn burst(mut self) -> Self {
        if let ReplyBody::Stream(s) = &mut self.body {
            s.burst = true;
        }
        self
    }

    /// For streams: sends an error event after `pieces` pieces, then stops.
    pub fn stream_error_after(mut self, pieces: usize, message: &str) -> Self {
        if let ReplyBody::Stream(s) = &mut self.body {
            s.error_after = Some((pieces, message.to_owned()));
        }
        self
    }

    /// Token counts reported in `usage`.
    pub fn usage(mut self, prompt: u64, completion: u64) -> Self {
        match &mut self.body {
            ReplyBody::Completion { usage, .. } => (usage.0, usage.1) = (prompt, completion),
            ReplyBody::Stream(s) => (s.usage.0, s.usage.1) = (prompt, completion),
            _ => {}
        }
        self
    }

    /// Of the prompt tokens, those reported read from the prompt cache
    /// (`usage.prompt_tokens_details.cached_tokens`).
    pub fn cached(mut self, tokens: u64) -> Self {
        match &mut self.body {
            ReplyBody::Completion { usage, .. } => usage.2 = tokens,
            ReplyBody::Stream(s) => s.usage.2 = tokens,
            _ => {}
        }
        self
    }

    /// The `finish_reason` reported.
    pub fn finish_reason(mut self, reason: &str) -> Self {
        match &mut self.body {
            ReplyBody::Completion { finish_reason, .. } => *finish_reason = reason.into(),
            ReplyBody::Stream(s) => s.finish_reason = reason.into(),
            _ => {}
        }
        self
    }

    /// Waits before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Never answers (well, not for an hour).
    pub fn hang() -> Self {
        Self::content("too late").delay(Duration::from_secs(3600))
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn render(&self, n: usize, model: &str) -> String {
        openai::render(self, n, model)
    }
}

/// Counts a stream as disconnected if it is dropped before its last event.
struct StreamGuard {
    shared: Arc<Shared>,
    completed: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.completed {
            self.shared.disconnects.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The body, parsed (`Value::Null` if it was not JSON).
    pub body: Value,
    /// The headers.
    pub headers: HeaderMap,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Recorded {
    /// The messages sent.
    pub fn messages(&self) -> &[Value] {
        self.body["messages"].as_array().map_or(&[], Vec::as_slice)
    }
}

/// How a real OpenAI-compatible server other than OpenAI's treats a forced call, for
/// [`ScriptedServer::dialect`]: what each answers when sift asks for a call of the
/// function, by the form it asks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerDialect {
    /// llama.cpp's `llama-server`: `tool_choice` only as a string (`"required"` forces the
    /// call); an object falls back to `auto` and the model answers in prose; `strict` is
    /// ignored; `response_format` `json_schema` is honoured.
    LlamaCpp,
    /// Ollama: `tool_choice` is ignored whatever its form (prose), `response_format`
    /// `json_schema` is honoured.
    Ollama,
    /// A vLLM that refuses `"required"` with a 400 naming `tool_choice` (before 0.8.3) and
    /// honours the named form.
    VllmOld,
}

impl ServerDialect {
    /// The reply of this server to `body`, `answer` being the JSON the model would write.
    pub fn reply(self, body: &Value, answer: &str) -> Reply {
        let prose = || Reply::content(format!("Sure! Here is what I found: {answer}"));
        let name = body["tools"][0]["function"]["name"].as_str().unwrap_or("f");
        let choice = &body["tool_choice"];
        if body.get("tools").is_some() {
            return match (self, choice) {
                (ServerDialect::LlamaCpp, Value::String(s)) if s == "required" => {
                    Reply::tool_call(name, answer)
                }
                (ServerDialect::LlamaCpp | ServerDialect::Ollama, _) => prose(),
                (ServerDialect::VllmOld, Value::String(s)) if s == "required" => Reply::error(
                    400,
                    "\"auto\" or \"none\" or a named tool_choice is supported; \"required\" tool_choice is not",
                ),
                (ServerDialect::VllmOld, _) => Reply::tool_call(name, answer),
            };
        }
        match body["response_format"]["type"].as_str() {
            Some("json_schema" | "json_object") => Reply::content(answer),
            _ => prose(),
        }
    }
}

type Fallback = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Default)]
struct Inner {
    queue: VecDeque<Reply>,
    fallback: Option<Fallback>,
    received: Vec<Recorded>,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    finished: AtomicUsize,
    disconnects: AtomicUsize,
    batch: Mutex<batch_api::BatchState>,
}

/// A running scripted server; stops when dropped.
pub struct ScriptedServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Records a chat request and takes its reply: the next queued one, else the fallback's, else
/// a 500 naming the missing script. Also returns the request's number (1-based).
fn take_reply(shared: &Shared, parsed: &Value, headers: HeaderMap) -> (Reply, usize) {
    let mut inner = match shared.inner.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    inner.received.push(Recorded {
        body: parsed.clone(),
        headers,
        at: std::time::Instant::now(),
    });
    let n = inner.received.len();
    let reply = match inner.queue.pop_front() {
        Some(r) => r,
        None => match &inner.fallback {
            Some(f) => f(parsed),
            None => Reply::error(
                500,
                &format!("scripted server: no reply scripted for request {n}"),
            ),
        },
    };
    (reply, n)
}

/// The wire format a request came in (by its path), and its answer goes out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /v1/messages` (Anthropic's Messages API).
    Anthropic,
    /// `POST /v1beta/models/{model}:generateContent` (Gemini), streamed or not.
    Gemini,
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(shared, headers, body, Wire::OpenAi).await
}

async fn handle_anthropic(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(shared, headers, body, Wire::Anthropic).await
}

/// Gemini's `POST /v1beta/models/{model}:{method}`: the model is in the path; the recorded
/// body gets it as `model` (and the method as `method`) so tests read it as for the others.
async fn handle_gemini(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(target): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (model, method) = target.rsplit_once(':').unwrap_or((target.as_str(), ""));
    match method {
        "generateContent" | "streamGenerateContent" => {}
        "batchGenerateContent" => return batch_api::gemini_create(&shared, model, &body),
        other => {
            return (
                StatusCode::NOT_FOUND,
                format!("scripted server: no Gemini method `{other}`"),
            )
                .into_response();
        }
    }
    let mut parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut parsed {
        map.insert("model".into(), json!(model));
        map.insert("method".into(), json!(method));
    }
    let body = Bytes::from(parsed.to_string());
    answer(shared, headers, body, Wire::Gemini).await
}

async fn answer(shared: Arc<Shared>, headers: HeaderMap, body: Bytes, wire: Wire) -> Response {
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(shared.clone());
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (reply, n) = take_reply(&shared, &parsed, headers);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let model = parsed["model"]
        .as_str()
        .unwrap_or("scripted-model")
        .to_owned();
    if let ReplyBody::Stream(script) = &reply.body {
        let mut events = match wire {
            Wire::OpenAi => openai::stream_events(script, n, &model),
            Wire::Anthropic => anthropic::stream_events(script, n, &model),
            Wire::Gemini => gemini::stream_events(script, n, &model),
        };
        if script.burst {
            events = vec![events.concat()];
        }
        let delay = script.chunk_delay;
        let mut guard = StreamGuard {
            shared: shared.clone(),
            completed: false,
        };
        let in_flight = _guard;
        let body = async_stream::stream! {
            let _in_flight = in_flight;
            for event in events {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                yield Ok::<_, std::convert::Infallible>(event);
            }
            guard.completed = true;
            guard.shared.finished.fetch_add(1, Ordering::SeqCst);
        };
        let mut response = axum::body::Body::from_stream(body).into_response();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        return response;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match &reply.body {
        ReplyBody::Stalled => {
            let body = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            (status, axum::body::Body::from_stream(body)).into_response()
        }
        ReplyBody::Broken(prefix) => {
            let first = Bytes::from(prefix.clone());
            let body = futures::stream::iter([
                Ok(first),
                Err(std::io::Error::other("scripted: the connection breaks")),
            ]);
            (status, axum::body::Body::from_stream(body)).into_response()
        }
        _ => {
            let text = match wire {
                Wire::OpenAi => reply.render(n, &model),
                Wire::Anthropic => anthropic::render(&reply, n, &model),
                Wire::Gemini => gemini::render(&reply, n, &model),
            };
            (status, text).into_response()
        }
    };
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (k, v) in &reply.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            response.headers_mut().insert(k, v);
        }
    }
    shared.finished.fetch_add(1, Ordering::SeqCst);
    response
}

impl ScriptedServer {
    /// Starts a server on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// If no port can be bound (test support only).
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            // Anthropic's Messages API, at its base URL `http://127.0.0.1:PORT` (see
            // [`anthropic_base_url`](Self::anthropic_base_url)).
            .route("/v1/messages", post(handle_anthropic))
            // Gemini's API, at its base URL `http://127.0.0.1:PORT`.
            .route("/v1beta/models/{target}", post(handle_gemini))
            .route(
                "/v1beta/batches/{id}",
                axum::routing::get(batch_api::gemini_retrieve),
            )
            .route("/v1/messages/batches", post(batch_api::anthropic_create))
            .route(
                "/v1/messages/batches/{id}",
                axum::routing::get(batch_api::anthropic_retrieve),
            )
            .route(
                "/v1/messages/batches/{id}/results",
                axum::routing::get(batch_api::anthropic_results),
            )
            .route("/v1/files", post(batch_api::upload))
            .route(
                "/v1/files/{id}/content",
                axum::routing::get(batch_api::content),
            )
            .route("/v1/batches", post(batch_api::create))
            .route("/v1/batches/{id}", axum::routing::get(batch_api::retrieve))
            .with_state(shared.clone());
        let (addr, task) = serve_locally(app).await;
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`: the base URL Anthropic's clients take (they add
    /// `/v1/messages`). The same scripted replies answer in Anthropic's format there.
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT`: the base URL Google's Gemini clients take (they add
    /// `/v1beta/models/{model}:generateContent`). The same scripted replies answer in
    /// Gemini's format there.
    pub fn gemini_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.shared.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Queues a reply for the next unanswered request.
    pub fn push(&self, reply: Reply) -> &Self {
        self.inner().queue.push_back(reply);
        self
    }

    /// Answers requests beyond the queue with `f(request body)`.
    pub fn fallback(&self, f: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> &Self {
        self.inner().fallback = Some(Arc::new(f));
        self
    }

    /// Answers requests beyond the queue as `dialect`'s server would, the model writing
    /// `answer(request body)` (see [`ServerDialect`]).
    pub fn dialect(
        &self,
        dialect: ServerDialect,
        answer: impl Fn(&Value) -> String + Send + Sync + 'static,
    ) -> &Self {
        self.fallback(move |body| dialect.reply(body, &answer(body)))
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner().received.clone()
    }

    /// The most requests ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests answered in full.
    pub fn finished(&self) -> usize {
        self.shared.finished.load(Ordering::SeqCst)
    }

    /// Streams whose client went away before the last event.
    pub fn disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }
}

/// The text of the last user message in a recorded request body.
pub fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A reqwest client for talking to servers under test (installs rustls' ring provider, which
/// reqwest needs as sift builds it without a bundled one).
///
/// # Panics
/// If the client cannot be built (test support only).
#[allow(clippy::expect_used)]
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("reqwest client")
}

/// Serves `app` on a free port of 127.0.0.1 until the task is aborted.
///
/// # Panics
/// If no port can be bound (test support only).
#[allow(clippy::expect_used)]
pub async fn serve_locally(app: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}
