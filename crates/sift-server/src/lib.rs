//! sift's HTTP service as a library: [`router`] builds the axum `Router` that `sift serve` runs.
//!
//! Endpoints: the seed's `POST /user`, `POST /many-users` and `POST /extract`, plus
//! `GET /openapi.json`, `GET /docs` (Swagger UI, served from the binary) and `GET /healthz`.
//! Request errors are FastAPI-shaped `422`s; extraction failures answer `502` (`504` for an
//! upstream timeout) with a `detail` saying which attempt failed and why.
//!
//! ```no_run
//! # async fn run(client: sift_core::Client) -> std::io::Result<()> {
//! let app = sift_server::router(client, sift_server::ServerConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

mod adhoc;
mod answer;
mod auth;
mod batch;
mod chat;
mod deadline;
mod documents;
pub mod error;
pub mod extractors;
mod gate;
mod handlers;
mod http_trace;
mod listen;
pub mod models;
mod openapi;
mod pages;
pub mod request;
mod schema_cache;
mod traces;
mod v1;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::routing::{get, post};
use sift_core::Client;
use utoipa_swagger_ui::SwaggerUi;

pub use answer::{PricedAttempt, StreamDone};
pub use chat::ModelRoute;
pub use extractors::{Extractor, Registry};
pub use handlers::{Health, ItemError, user_prompt};
pub use listen::{Listen, serve};
pub use openapi::{document, openapi};

/// Limits and settings of the service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Model calls in flight per `/many-users` request (default 16).
    pub max_concurrency: usize,
    /// Most queries accepted by `/many-users` (default 1000).
    pub max_queries: usize,
    /// Largest request body in bytes (default 1 MiB).
    pub body_limit: usize,
    /// The memory all request bodies still arriving may hold at once, in bytes (default
    /// 128 MiB); a body that would go past it answers `503` with `Retry-After`.
    pub body_memory: usize,
    /// What `GET /metrics` answers (Prometheus text); without it, `/metrics` answers 404.
    pub metrics: Option<MetricsRenderer>,
    /// Called with each request's span and headers before the request is handled.
    pub request_hook: Option<RequestHook>,
    /// The extractors served under `/v1/extractors` (the built-in `user` is added).
    pub extractors: Vec<Extractor>,
    /// Whether `POST /v1/extract` takes inline schemas (default true).
    pub adhoc: bool,
    /// Compiled ad-hoc schemas kept (default 256).
    pub adhoc_cache: usize,
    /// The memory compiled ad-hoc schemas may hold, estimated from their size, in bytes
    /// (default 256 MiB); the least recently used go first.
    pub adhoc_cache_bytes: usize,
    /// Ad-hoc schemas compiled at once, off the async workers (default 1); more wait.
    pub schema_compiles: usize,
    /// Service keys; with any, every endpoint but `/healthz` needs one.
    pub api_keys: Vec<String>,
    /// Model calls in flight across every request (default 64); more wait in a queue.
    pub max_model_calls: usize,
    /// Model calls waiting for a place (default 1024); past it a call is refused as busy
    /// (`503` with `Retry-After`).
    pub model_queue: usize,
    /// The time a request is given in all (default 300 s): past it a plain request answers
    /// `504`, a batch its results so far and what was cut off, a stream an `error` event.
    /// `None`: no deadline.
    pub request_deadline: Option<std::time::Duration>,
    /// The time a client has to send a request's whole body (default 30 s); past it the
    /// request answers `408`.
    pub body_timeout: std::time::Duration,
    /// The models `/v1/chat/completions` answers with, the first the default; none: the
    /// service's client alone, listed by its model's name.
    pub models: Vec<ModelRoute>,
    /// The recent traces `GET /v1/traces` shows (`sift-telemetry` keeps them); without it,
    /// those endpoints answer 404.
    pub traces: Option<Arc<dyn sift_core::traces::TraceSource>>,
    /// Whether `GET /` serves the playground (default true).
    pub playground: bool,
    /// The largest document and the most PDF pages `/document` reads (default 50 MiB and
    /// 500 pages; `413` beyond).
    pub document_limits: sift_documents::Limits,
    /// What `GET /evals` shows (an evaluation report as HTML, made anew for each request);
    /// without it, `/evals` answers 404.
    pub evals: Option<EvalsPage>,
    /// Prices by model (the config's `[models."NAME"]`): what `?attempts=true` and a
    /// stream's `done` event say each call cost.
    pub prices: sift_config::Pricing,
}

/// Renders the evaluation page, or says why it cannot (`sift serve --eval-report` gives one).
#[derive(Clone)]
pub struct EvalsPage(pub Arc<dyn Fn() -> Result<String, String> + Send + Sync>);

impl std::fmt::Debug for EvalsPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvalsPage")
    }
}

/// A function of each request's span and headers (`sift-telemetry` gives one that continues
/// an incoming W3C `traceparent`), so the service itself stays free of OpenTelemetry.
#[derive(Clone)]
pub struct RequestHook(pub Arc<RequestHookFn>);

/// The function a [`RequestHook`] holds.
pub type RequestHookFn = dyn Fn(&tracing::Span, &http::HeaderMap) + Send + Sync;

impl std::fmt::Debug for RequestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestHook")
    }
}

/// Renders the metrics in Prometheus' text format (`sift-telemetry` gives one).
#[derive(Clone)]
pub struct MetricsRenderer(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for MetricsRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRenderer")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 16,
            max_queries: 1000,
            body_limit: 1024 * 1024,
            body_memory: 128 * 1024 * 1024,
            metrics: None,
            request_hook: None,
            extractors: Vec::new(),
            adhoc: true,
            adhoc_cache: 256,
            adhoc_cache_bytes: 256 * 1024 * 1024,
            schema_compiles: 1,
            api_keys: Vec::new(),
            max_model_calls: 64,
            model_queue: 1024,
            request_deadline: Some(std::time::Duration::from_secs(300)),
            body_timeout: std::time::Duration::from_secs(30),
            traces: None,
            playground: true,
            evals: None,
            document_limits: sift_documents::Limits::default(),
            models: Vec::new(),
            prices: sift_config::Pricing::default(),
        }
    }
}

impl ServerConfig {
    /// Sets the `/many-users` concurrency bound.
    #[must_use]
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// Sets the `/many-users` query limit.
    #[must_use]
    pub fn max_queries(mut self, n: usize) -> Self {
        self.max_queries = n;
        self
    }

    /// Sets the body size limit.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Bounds the memory all request bodies still arriving may hold at once.
    #[must_use]
    pub fn body_memory(mut self, bytes: usize) -> Self {
        self.body_memory = bytes;
        self
    }

    /// Calls `hook` with each request's span and headers.
    #[must_use]
    pub fn request_hook(mut self, hook: Arc<RequestHookFn>) -> Self {
        self.request_hook = Some(RequestHook(hook));
        self
    }

    /// The largest document and the most PDF pages `/document` reads.
    #[must_use]
    pub fn document_limits(mut self, limits: sift_documents::Limits) -> Self {
        self.document_limits = limits;
        self
    }

    /// Serves `extractors` under `/v1/extractors`.
    #[must_use]
    pub fn extractors(mut self, extractors: Vec<Extractor>) -> Self {
        self.extractors = extractors;
        self
    }

    /// Switches `POST /v1/extract` (inline schemas) on or off.
    #[must_use]
    pub fn adhoc(mut self, on: bool) -> Self {
        self.adhoc = on;
        self
    }

    /// Bounds the compiled ad-hoc schemas kept to `bytes` (estimated) and the compiles that
    /// run at once to `at_once`.
    #[must_use]
    pub fn adhoc_cache(mut self, bytes: usize, at_once: usize) -> Self {
        self.adhoc_cache_bytes = bytes;
        self.schema_compiles = at_once.max(1);
        self
    }

    /// Requires one of `keys` on every endpoint but `/healthz` (none: no keys needed).
    #[must_use]
    pub fn api_keys(mut self, keys: Vec<String>) -> Self {
        self.api_keys = keys;
        self
    }

    /// Bounds model calls in flight across every request to `in_flight`, with at most
    /// `queue` more waiting.
    #[must_use]
    pub fn model_calls(mut self, in_flight: usize, queue: usize) -> Self {
        self.max_model_calls = in_flight.max(1);
        self.model_queue = queue;
        self
    }

    /// Gives clients `timeout` to send a request's whole body.
    #[must_use]
    pub fn body_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Gives each request `deadline` in all (`None`: no deadline).
    #[must_use]
    pub fn request_deadline(mut self, deadline: Option<std::time::Duration>) -> Self {
        self.request_deadline = deadline;
        self
    }

    /// Answers `/v1/chat/completions` with `models` (the first is the default).
    #[must_use]
    pub fn models(mut self, models: Vec<ModelRoute>) -> Self {
        self.models = models;
        self
    }

    /// Serves `GET /metrics` from `render`.
    #[must_use]
    pub fn metrics(mut self, render: Arc<dyn Fn() -> String + Send + Sync>) -> Self {
        self.metrics = Some(MetricsRenderer(render));
        self
    }
}

pub(crate) struct AppState {
    pub(crate) client: Client,
    /// The bound on model calls every client here goes through.
    gate: Arc<gate::Gate>,
    pub(crate) config: ServerConfig,
    /// What is served now; replaced whole by [`Reload::replace`].
    served: RwLock<Arc<Served>>,
    pub(crate) adhoc_enabled: bool,
    pub(crate) schema_cache: schema_cache::SchemaCache,
    /// The models of the OpenAI-compatible gateway.
    pub(crate) models: chat::Models,
}

/// The extractors served and the OpenAPI document describing them, swapped together.
pub(crate) struct Served {
    pub(crate) extractors: Registry,
    pub(crate) openapi: axum::body::Bytes,
}

impl AppState {
    /// What is served now. A request keeps what it got for its whole life, so a reload never
    /// changes an extraction in flight.
    pub(crate) fn served(&self) -> Arc<Served> {
        match self.served.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn serve(&self, extractors: Vec<Extractor>) {
        // Every extractor's calls count against the one bound.
        let extractors = extractors.into_iter().map(|mut e| {
            e.client = gate::gated(&e.client, &self.gate);
            e
        });
        let mut list = Vec::new();
        match Extractor::user(self.client.clone()) {
            Ok(user) => list.push(user),
            Err(e) => {
                tracing::error!(error = %e, "the built-in `user` extractor could not be built");
            }
        }
        // A configured extractor named `user` replaces the built-in one under /v1.
        list.extend(extractors);
        let extractors = Registry::new(list);
        let openapi = serde_json::to_vec(&document(&extractors, self.adhoc_enabled))
            .unwrap_or_default()
            .into();
        let next = Arc::new(Served {
            extractors,
            openapi,
        });
        match self.served.write() {
            Ok(mut s) => *s = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}

/// Replaces the extractors a running service serves (what `SIGHUP` does in `sift serve`):
/// atomically, the list and the OpenAPI document together; requests in flight finish on
/// what they started with.
#[derive(Clone)]
pub struct Reload(Arc<AppState>);

impl std::fmt::Debug for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reload")
    }
}

impl Reload {
    /// Serves `extractors` from now on (the built-in `user` is added, as at start).
    pub fn replace(&self, extractors: Vec<Extractor>) {
        self.0.serve(extractors);
    }

    /// The names served now, in order.
    pub fn names(&self) -> Vec<String> {
        self.0
            .served()
            .extractors
            .iter()
            .map(|e| e.spec.name.clone())
            .collect()
    }
}

/// The service's router.
pub fn router(client: Client, config: ServerConfig) -> Router {
    router_with_reload(client, config).0
}

/// The service's router, and the handle that replaces its extractors while it runs.
pub fn router_with_reload(client: Client, mut config: ServerConfig) -> (Router, Reload) {
    let body_limit = config.body_limit;
    let hook = config.request_hook.clone();
    let keys = auth::Keys::new(&config.api_keys);
    let extractors = std::mem::take(&mut config.extractors);
    let deadline = config.request_deadline;
    let body = request::BodyRules {
        timeout: config.body_timeout,
        log_content: client.recording().log_content(),
        limit: body_limit,
        budget: Arc::new(request::BodyBudget::new(config.body_memory)),
    };
    let gate = Arc::new(gate::Gate::new(config.max_model_calls, config.model_queue));
    let mut routes = std::mem::take(&mut config.models);
    if routes.is_empty() {
        routes.push(ModelRoute::new(client.model(), "default", client.clone()));
    }
    // Every route's calls count against the one bound too.
    let models = chat::Models(
        routes
            .into_iter()
            .map(|mut r| {
                r.client = gate::gated(&r.client, &gate);
                r
            })
            .collect(),
    );
    let state = Arc::new(AppState {
        client: gate::gated(&client, &gate),
        gate,
        served: RwLock::new(Arc::new(Served {
            extractors: Registry::default(),
            openapi: axum::body::Bytes::new(),
        })),
        adhoc_enabled: config.adhoc,
        schema_cache: schema_cache::SchemaCache::new(schema_cache::CacheLimits {
            entries: config.adhoc_cache,
            bytes: config.adhoc_cache_bytes,
            compiles: config.schema_compiles,
        }),
        config,
        models,
    });
    state.serve(extractors);
    let mut protected = Router::new()
        .route("/user", post(handlers::user))
        .route("/many-users", post(handlers::many_users))
        .route("/extract", post(handlers::extract))
        .route("/metrics", get(handlers::metrics))
        .route("/v1/extractors", get(v1::list))
        .route("/v1/extractors/{name}", get(v1::show).post(v1::run_one))
        .route("/v1/extractors/{name}/many", post(v1::run_many))
        .route("/v1/extractors/{name}/stream", post(v1::run_stream))
        .route(
            "/v1/extractors/{name}/document",
            post(documents::run_document),
        )
        .route(
            "/v1/extractors/{name}/document/stream",
            post(documents::stream_document),
        )
        .route("/v1/extract", post(adhoc::adhoc))
        .route("/v1/extract/stream", post(adhoc::adhoc_stream))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/models", get(chat::models))
        .route("/v1/models/{*id}", get(chat::model))
        .route("/openapi.json", get(handlers::openapi_json))
        .route("/v1/traces", get(traces::list))
        .route("/evals", get(pages::evals))
        .route("/v1/traces/{id}", get(traces::show))
        .with_state(state.clone())
        // The UI reads the document from `/openapi.json`, so it shows what is served now.
        .merge(SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::new(["/openapi.json"])));
    if !keys.is_empty() {
        protected = protected.route_layer(axum::middleware::from_fn_with_state(
            keys,
            auth::require_key,
        ));
    }
    let router = Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/traces", get(pages::traces))
        .route("/assets/common.js", get(pages::common_js))
        .route("/", get(pages::playground))
        .with_state(state.clone())
        .merge(protected)
        .route_layer(axum::middleware::from_fn_with_state(
            http_trace::Edge {
                hook,
                deadline,
                body,
            },
            http_trace::http_span,
        ))
        // Outermost: the gateway's errors in OpenAI's shape, whoever made them.
        .layer(axum::middleware::from_fn(chat::openai_errors));
    (router, Reload(state))
}

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
