//! Anthropic's Messages API as a sift provider.
//!
//! `POST {base_url}/v1/messages` with the key in `x-api-key` and `anthropic-version`. sift's
//! modes map onto forced tool use (`tools`, the default) and native structured outputs
//! (`json_schema`); see [`wire`](crate) for the mapping and the schema subset. Streams are
//! read from Anthropic's events. Transport failures (connect errors, timeouts, `429`,
//! `529` overloaded, other `5xx`) are retried with backoff as for every HTTP provider
//! (`sift-http`), `Retry-After` honoured; an upstream's error message reaches the caller
//! with the key masked.
//!
//! ```no_run
//! use sift_anthropic::{Anthropic, AnthropicConfig};
//! let provider = Anthropic::new(AnthropicConfig::new("https://api.anthropic.com").api_key("sk-ant-..."))
//!     .expect("valid configuration");
//! let client = sift_core::Client::new(provider);
//! ```

pub mod batch;
mod stream;
mod wire;

pub use wire::subset;

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use sift_core::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, Provider, ProviderError, async_trait,
};

/// The default base URL.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The default model.
pub const DEFAULT_MODEL: &str = "claude-haiku-4-5";
/// The API version sent in `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";
/// The beta that carries structured outputs as `output_format`, for deployments without the
/// generally available `output_config.format`.
pub const STRUCTURED_OUTPUTS_BETA: &str = "structured-outputs-2025-11-13";
/// The token limit sent when a request sets none (Anthropic requires one): at least
/// sift's least derived limit, at most this.
pub const DEFAULT_MAX_ANSWER_TOKENS: u32 = 8192;

/// Settings for [`Anthropic`]. The key is never printed by `Debug`.
#[derive(Clone)]
#[must_use]
pub struct AnthropicConfig {
    base_url: String,
    api_key: Option<String>,
    default_model: String,
    version: String,
    beta_output_format: bool,
    connect_timeout: Duration,
    max_answer_tokens: u32,
    /// Timeouts, retries, body limit and admission, as every HTTP provider has them (its
    /// endpoint set when the provider is built).
    transport: sift_http::Settings,
}

impl fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("default_model", &self.default_model)
            .field("version", &self.version)
            .field("timeout", &self.transport.timeout)
            .finish_non_exhaustive()
    }
}

impl AnthropicConfig {
    /// Settings for the API at `base_url` (without `/v1`, as Anthropic's SDKs take it).
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key: None,
            default_model: DEFAULT_MODEL.into(),
            version: API_VERSION.into(),
            beta_output_format: false,
            connect_timeout: Duration::from_secs(10),
            max_answer_tokens: DEFAULT_MAX_ANSWER_TOKENS,
            transport: sift_http::Settings::new(""),
        }
    }

    /// Settings from the environment: `ANTHROPIC_BASE_URL` (default Anthropic's) and
    /// `ANTHROPIC_API_KEY`.
    pub fn from_env() -> Self {
        let base = std::env::var("ANTHROPIC_BASE_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| ANTHROPIC_BASE_URL.into());
        let config = Self::new(base);
        match std::env::var("ANTHROPIC_API_KEY") {
            Ok(key) if !key.is_empty() => config.api_key(key),
            _ => config,
        }
    }

    /// The key, sent as `x-api-key`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The model asked when a request names none.
    pub fn default_model(mut self, model: impl Into<String>) -> Self {
        self.default_model = model.into();
        self
    }

    /// The `anthropic-version` sent.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Native structured outputs as the beta asks them (`output_format`, with the
    /// `anthropic-beta: structured-outputs-2025-11-13` header) rather than the generally
    /// available `output_config.format`: for models and deployments that take only the beta.
    pub fn beta_output_format(mut self, on: bool) -> Self {
        self.beta_output_format = on;
        self
    }

    sift_http::transport_setters!();

    /// The most tokens asked for when a request sets no limit.
    pub fn max_answer_tokens(mut self, n: u32) -> Self {
        self.max_answer_tokens = n;
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// Why the provider could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// A key or header that cannot be sent as a header value.
    InvalidHeader(&'static str),
    /// The HTTP client could not be built.
    Http(reqwest::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidHeader(name) => write!(f, "`{name}` is not a valid header value"),
            BuildError::Http(e) => write!(f, "the HTTP client could not be built: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Anthropic's Messages API.
#[derive(Debug, Clone)]
pub struct Anthropic {
    http: reqwest::Client,
    config: AnthropicConfig,
    endpoint: String,
    transport: sift_http::Transport,
}

impl Anthropic {
    /// Builds the provider and its connection pool.
    pub fn new(config: AnthropicConfig) -> Result<Self, BuildError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value =
                HeaderValue::from_str(key).map_err(|_| BuildError::InvalidHeader("x-api-key"))?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        headers.insert(
            "anthropic-version",
            HeaderValue::from_str(&config.version)
                .map_err(|_| BuildError::InvalidHeader("anthropic-version"))?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            // A model call is never sent elsewhere than the base URL.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("sift/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::Http)?;
        let endpoint = format!("{}/v1/messages", config.base_url);
        let mut settings = config.transport.clone();
        settings.endpoint = endpoint.clone();
        Ok(Self {
            http,
            config,
            endpoint,
            transport: sift_http::Transport::new(settings),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &AnthropicConfig {
        &self.config
    }

    /// The JSON body `request` is sent as (for batch jobs, which send it inline).
    pub fn request_body(&self, request: &ChatRequest) -> serde_json::Value {
        let limit = request.derived_max_tokens(self.config.max_answer_tokens);
        let mut body = wire::request_body(request, limit);
        if self.config.beta_output_format
            && let Some(format) = body
                .as_object_mut()
                .and_then(|b| b.remove("output_config"))
                .and_then(|mut c| c.get_mut("format").map(serde_json::Value::take))
        {
            body["output_format"] = format;
        }
        body
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Result<Vec<u8>, ProviderError> {
        let mut body = self.request_body(request);
        if stream {
            body["stream"] = serde_json::Value::Bool(true);
        }
        serde_json::to_vec(&body).map_err(|e| ProviderError::InvalidResponse(e.to_string()))
    }

    /// Posts `body`; the response's body unread (see `Transport::open`).
    async fn send(&self, body: &[u8], stream: bool) -> Result<reqwest::Response, ProviderError> {
        let mut request = self
            .http
            .post(&self.endpoint)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if stream {
            request = request.header(http::header::ACCEPT, "text/event-stream");
        }
        if self.config.beta_output_format {
            request = request.header("anthropic-beta", STRUCTURED_OUTPUTS_BETA);
        }
        self.transport
            .open(request, self.config.api_key.iter())
            .await
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &str {
        // As the OpenTelemetry GenAI conventions spell it.
        "anthropic"
    }

    fn default_model(&self) -> &str {
        &self.config.default_model
    }

    fn default_max_tokens(&self, request: &ChatRequest) -> Option<u32> {
        Some(request.derived_max_tokens(self.config.max_answer_tokens))
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let estimate = request.estimated_tokens();
        let body = self.body(request, false)?;
        let response = self
            .transport
            .with_retries(estimate, || async {
                let response = self.send(&body, false).await?;
                let bytes = self.transport.read_body(response).await?;
                wire::parse_message(&bytes)
            })
            .await?;
        if let Some(a) = &self.transport.settings().admission {
            a.settle(estimate, response.usage.total_tokens());
        }
        Ok(response)
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let estimate = request.estimated_tokens();
        let body = self.body(request, true)?;
        let response = self
            .transport
            .with_retries(estimate, || self.send(&body, true))
            .await?;
        if let Some(a) = &self.transport.settings().admission {
            a.settle(estimate, estimate);
        }
        Ok(stream::deltas(
            response,
            self.transport.settings().timeout,
            self.transport.settings().max_body,
        ))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().with_streaming(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let c = AnthropicConfig::new("http://x").api_key("sk-ant-very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
