//! An OpenAI-compatible chat provider for sift.
//!
//! Any server that speaks `POST {base_url}/chat/completions` works. Base URLs (each includes
//! `/v1`, as `OPENAI_BASE_URL` does for the OpenAI SDKs):
//!
//! | server | base URL | notes |
//! |---|---|---|
//! | OpenAI | `https://api.openai.com/v1` | the default |
//! | Ollama | `http://localhost:11434/v1` | any API key |
//! | vLLM | `http://localhost:8000/v1` | `--api-key` if the server sets one |
//! | llama.cpp server | `http://localhost:8080/v1` | forced calls asked for in the form it honours (see [`Dialect`]) |
//! | OpenRouter | `https://openrouter.ai/api/v1` | |
//! | Groq | `https://api.groq.com/openai/v1` | |
//!
//! Transport failures (connect errors, timeouts, 408, 409, 429, 5xx) are retried with
//! exponential backoff and jitter, waiting what `Retry-After` asks when it is sent; any other
//! error status is returned at once with the upstream's own message.
//!
//! ```no_run
//! use sift_openai::{OpenAi, OpenAiConfig};
//! let provider = OpenAi::new(
//!     OpenAiConfig::new("http://localhost:11434/v1").default_model("llama3.2"),
//! ).expect("valid configuration");
//! let client = sift_core::Client::new(provider);
//! ```

pub mod batch;
mod dialect;
mod stream;
mod wire;

pub use dialect::{Dialect, Forcing};
#[doc(hidden)]
pub use stream::read_chunks;

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use sift_core::{
    Admission, Capabilities, ChatRequest, ChatResponse, ChatStream, Provider, ProviderError,
    async_trait,
};

/// The default base URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// The default model.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// The largest upstream answer read by default (a whole body, or one SSE line or event): 16 MiB.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// Settings for [`OpenAi`]. The API key is never printed by `Debug`.
#[derive(Clone)]
#[must_use]
pub struct OpenAiConfig {
    base_url: String,
    api_key: Option<String>,
    organization: Option<String>,
    headers: Vec<(String, String)>,
    default_model: String,
    connect_timeout: Duration,
    timeout: Duration,
    max_transport_retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    max_retry_after: Duration,
    max_body: usize,
    max_answer_tokens: u32,
    header_hook: Option<std::sync::Arc<HeaderHook>>,
    admission: Option<std::sync::Arc<dyn Admission>>,
    dialect: Dialect,
}

pub use sift_http::HeaderHook;

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("organization", &self.organization)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("default_model", &self.default_model)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_transport_retries", &self.max_transport_retries)
            .field("header_hook", &self.header_hook.is_some())
            .field("admission", &self.admission)
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl OpenAiConfig {
    /// Settings for the server at `base_url` (including `/v1`), with no key.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key: None,
            organization: None,
            headers: Vec::new(),
            default_model: DEFAULT_MODEL.into(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            max_transport_retries: 2,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            max_body: DEFAULT_MAX_BODY,
            max_answer_tokens: DEFAULT_MAX_ANSWER_TOKENS,
            header_hook: None,
            admission: None,
            dialect: Dialect::Auto,
        }
    }

    /// Settings from `OPENAI_BASE_URL`, `OPENAI_API_KEY`, `OPENAI_ORG_ID` (or
    /// `OPENAI_ORGANIZATION`), as the OpenAI SDKs read them.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut config =
            Self::new(var("OPENAI_BASE_URL").unwrap_or_else(|| OPENAI_BASE_URL.into()));
        config.api_key = var("OPENAI_API_KEY");
        config.organization = var("OPENAI_ORG_ID").or_else(|| var("OPENAI_ORGANIZATION"));
        config
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bearer token sent as `Authorization`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The `OpenAI-Organization` header.
    pub fn organization(mut self, org: impl Into<String>) -> Self {
        self.organization = Some(org.into());
        self
    }

    /// An extra header sent with every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds headers to each request as it is sent (see [`HeaderHook`]).
    pub fn header_hook(mut self, hook: std::sync::Arc<HeaderHook>) -> Self {
        self.header_hook = Some(hook);
        self
    }

    /// Paces every call (transport retries included) through `admission`, and tells it of
    /// every rate-limit wait (a `429`, or a `503` saying busy), so that all callers sharing it
    /// hold back together (see [`Admission`]).
    pub fn admission(mut self, admission: std::sync::Arc<dyn Admission>) -> Self {
        self.admission = Some(admission);
        self
    }

    /// The model used when a request names none.
    pub fn default_model(mut self, model: impl Into<String>) -> Self {
        self.default_model = model.into();
        self
    }

    /// Time allowed to open a connection (default 10 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Time allowed for one HTTP attempt, answer body included (default 120 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Transport retries after the first try (default 2).
    pub fn max_transport_retries(mut self, n: u32) -> Self {
        self.max_transport_retries = n;
        self
    }

    /// First backoff and the cap on any backoff (defaults 500 ms and 8 s). Each wait is
    /// `base * 2^retry`, capped, times a random factor in 0.5..1.0.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// The longest `Retry-After` honoured (default 60 s); a longer one fails the call at once.
    pub fn max_retry_after(mut self, t: Duration) -> Self {
        self.max_retry_after = t;
        self
    }

    /// The largest answer read from the upstream, in bytes (default [`DEFAULT_MAX_BODY`]): a
    /// whole body, or one line or event of a stream. A bigger one is refused with
    /// `invalid_response`, and what was read of it is released.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes.max(1024);
        self
    }

    /// The kind of server (default [`Dialect::Auto`]): how a function call is forced first,
    /// and whether a request without a temperature is sent `temperature: 0` (see
    /// [`Dialect`]).
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The ceiling of the token limit sent with a call that sets none (default
    /// [`DEFAULT_MAX_ANSWER_TOKENS`]): such a call gets
    /// [`ChatRequest::derived_max_tokens`], so a model that loops is cut off.
    pub fn max_answer_tokens(mut self, tokens: u32) -> Self {
        self.max_answer_tokens = tokens.max(sift_core::MIN_DERIVED_MAX_TOKENS);
        self
    }
}

/// The default ceiling of the token limit derived for calls that set none.
pub const DEFAULT_MAX_ANSWER_TOKENS: u32 = 8192;

/// Why a provider could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A header name or value is not valid HTTP.
    #[error("invalid header `{0}`")]
    InvalidHeader(String),
    /// The HTTP client could not be created.
    #[error("could not create the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// An OpenAI-compatible provider.
#[derive(Debug, Clone)]
pub struct OpenAi {
    http: reqwest::Client,
    config: OpenAiConfig,
    endpoint: String,
    /// Retries, bounded bodies and error kinds, as every HTTP provider has them.
    transport: sift_http::Transport,
    /// How this upstream is made to call the function, learned from its answers.
    learned: dialect::Learned,
}

impl OpenAi {
    /// Builds the provider and its connection pool.
    pub fn new(config: OpenAiConfig) -> Result<Self, BuildError> {
        // reqwest is built without a bundled crypto provider so that ring (quick to compile)
        // backs rustls; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| BuildError::InvalidHeader("Authorization".into()))?;
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
        if let Some(org) = &config.organization {
            headers.insert(
                "openai-organization",
                HeaderValue::from_str(org)
                    .map_err(|_| BuildError::InvalidHeader("OpenAI-Organization".into()))?,
            );
        }
        for (k, v) in &config.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| BuildError::InvalidHeader(k.clone()))?;
            let mut value =
                HeaderValue::from_str(v).map_err(|_| BuildError::InvalidHeader(k.clone()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            // A model call is never sent elsewhere than the base URL: a 3xx is an error naming
            // where it points (a redirect could lead to a link-local or internal address).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("sift/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::Http)?;
        let endpoint = format!("{}/chat/completions", config.base_url);
        let learned = dialect::Learned::new(config.dialect.resolve(&config.base_url));
        let mut settings = sift_http::Settings::new(endpoint.clone());
        settings.timeout = config.timeout;
        settings.max_body = config.max_body;
        settings.max_transport_retries = config.max_transport_retries;
        settings.backoff_base = config.backoff_base;
        settings.backoff_max = config.backoff_max;
        settings.max_retry_after = config.max_retry_after;
        settings.admission = config.admission.clone();
        settings.header_hook = config.header_hook.clone();
        Ok(Self {
            http,
            config,
            endpoint,
            transport: sift_http::Transport::new(settings),
            learned,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The dialect in use (`auto` decided by the base URL) and how a call is forced now.
    pub fn forcing(&self) -> (Dialect, Forcing) {
        (self.learned.dialect(), self.learned.current())
    }

    /// After a call asked with `forcing` failed with `error`: the next form to ask with when
    /// the upstream refused this one (a `400` naming its parameter), else the error.
    fn after_failure(
        &self,
        forcing: Forcing,
        error: ProviderError,
    ) -> Result<Forcing, ProviderError> {
        if !dialect::Learned::refused(forcing, &error) {
            return Err(error);
        }
        self.learned
            .give_up(forcing, &format!("it refused it: {error}"))
            .ok_or(error)
    }

    /// The body of `request` with the call forced as `forcing` and the dialect's default
    /// temperature.
    fn body(&self, request: &ChatRequest, forcing: Forcing) -> serde_json::Value {
        let mut body = wire::request_body(request);
        if let serde_json::Value::Object(map) = &mut body {
            dialect::apply(map, request, forcing);
            if request.temperature.is_none()
                && let Some(t) = self.learned.dialect().default_temperature()
            {
                map.insert("temperature".into(), serde_json::json!(t));
            }
        }
        body
    }

    /// A POST of `body` to the completions endpoint (the hook's headers are added as it is
    /// sent).
    fn post(&self, body: &[u8]) -> reqwest::RequestBuilder {
        self.http
            .post(&self.endpoint)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
    }

    async fn try_once(&self, body: &[u8]) -> Result<ChatResponse, ProviderError> {
        let response = self
            .transport
            .hooked(self.post(body))
            .timeout(self.config.timeout)
            .send()
            .await
            .map_err(|e| self.transport.transport_error(e))?;
        let status = response.status();
        let retry_after = sift_http::retry_after(response.headers());
        let location = sift_http::location(status, response.headers());
        let bytes = self.transport.bounded_body(response).await?;
        if !status.is_success() {
            return Err(self.status_error(status, retry_after, location, &bytes));
        }
        wire::parse_completion(&bytes)
    }

    /// The keys this provider sends, masked out of what an upstream says (an upstream 401
    /// often echoes the key it was given).
    fn secrets(&self) -> impl Iterator<Item = &String> + Clone {
        self.config
            .api_key
            .iter()
            .chain(self.config.headers.iter().map(|(_, v)| v))
    }

    /// An error status with the upstream's own message, the keys masked.
    fn status_error(
        &self,
        status: reqwest::StatusCode,
        retry_after: Option<Duration>,
        location: Option<String>,
        body: &[u8],
    ) -> ProviderError {
        sift_http::status_error(status, retry_after, location, body, self.secrets())
    }
}

#[async_trait]
impl Provider for OpenAi {
    fn name(&self) -> &str {
        "openai"
    }

    fn default_model(&self) -> &str {
        &self.config.default_model
    }

    fn default_max_tokens(&self, request: &ChatRequest) -> Option<u32> {
        Some(request.derived_max_tokens(self.config.max_answer_tokens))
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let estimate = request.estimated_tokens();
        let mut forcing = self.learned.current();
        // At most one try per form: a form the upstream ignores or refuses is left for the
        // next (see `dialect`).
        loop {
            let body = serde_json::to_vec(&self.body(request, forcing))
                .map_err(|e| ProviderError::InvalidResponse(e.to_string()))?;
            let response = match self
                .transport
                .with_retries(estimate, || self.try_once(&body))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    forcing = self.after_failure(forcing, e)?;
                    continue;
                }
            };
            if let Some(a) = &self.config.admission {
                a.settle(estimate, response.usage.total_tokens());
            }
            if dialect::ignored(request, forcing, &response)
                && let Some(next) = self
                    .learned
                    .give_up(forcing, "it answered a forced call in prose")
            {
                forcing = next;
                continue;
            }
            return Ok(dialect::as_call(request, forcing, response));
        }
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        // A stream's usage comes at its end: the estimate stands for it.
        let estimate = request.estimated_tokens();
        let mut forcing = self.learned.current();
        let response = loop {
            let mut body = self.body(request, forcing);
            body["stream"] = serde_json::Value::Bool(true);
            body["stream_options"] = serde_json::json!({"include_usage": true});
            let body = serde_json::to_vec(&body)
                .map_err(|e| ProviderError::InvalidResponse(e.to_string()))?;
            match self
                .transport
                .with_retries(estimate, || self.open_stream(&body))
                .await
            {
                Ok(r) => break r,
                Err(e) => forcing = self.after_failure(forcing, e)?,
            }
        };
        let learned = self.learned.clone();
        let as_call =
            move |stream: ChatStream| dialect::stream_as_call(request, forcing, learned, stream);
        if let Some(a) = &self.config.admission {
            a.settle(estimate, estimate);
        }
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| ct.trim().to_ascii_lowercase());
        match content_type.as_deref() {
            Some(ct) if ct.starts_with("application/json") => {
                // Some servers ignore `stream: true` and answer whole; read it as one delta
                // run.
                let bytes = self.transport.read_body(response).await?;
                let whole = wire::parse_completion(&bytes)?;
                return Ok(stream::from_whole(dialect::as_call(
                    request, forcing, whole,
                )));
            }
            // An event stream, or a server that does not say.
            None => {}
            Some(ct) if ct.starts_with("text/event-stream") => {}
            Some(ct) => {
                // An HTML error page from a proxy, plain text...: never an event stream.
                let ct = ct.chars().take(60).collect::<String>();
                let bytes = self.transport.read_body(response).await?;
                let ProviderError::InvalidResponse(why) = wire::not_json(&bytes, "") else {
                    return Err(ProviderError::InvalidResponse(format!(
                        "the upstream answered `{ct}` where an event stream was expected"
                    )));
                };
                return Err(ProviderError::InvalidResponse(format!(
                    "the upstream answered `{ct}` where an event stream was expected; {why}"
                )));
            }
        }
        Ok(as_call(stream::deltas(
            response,
            self.config.timeout,
            self.config.max_body,
        )))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().with_streaming(true)
    }
}

impl OpenAi {
    /// Opens a streamed completion: the status line and headers must arrive within the
    /// per-attempt timeout; the body is then read with the same limit between chunks.
    async fn open_stream(&self, body: &[u8]) -> Result<reqwest::Response, ProviderError> {
        let request = self
            .post(body)
            .header(http::header::ACCEPT, "text/event-stream");
        self.transport.open(request, self.secrets()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let c = OpenAiConfig::new("http://x/v1")
            .api_key("sk-very-secret")
            .header("x-api-key", "also-secret");
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(!shown.contains("also-secret"), "{shown}");
    }
}
