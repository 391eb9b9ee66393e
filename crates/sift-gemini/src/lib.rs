//! Google's Gemini API (the Generative Language API) as a sift provider.
//!
//! `POST {base_url}/v1beta/models/{model}:generateContent` (streamed:
//! `:streamGenerateContent?alt=sse`) with the key in `x-goog-api-key`, never in the URL.
//! sift's modes map onto forced function calling (`tools`, the default) and native JSON
//! output (`json_schema`, `json`); see [`wire`](crate) for the mapping. Transport failures
//! (connect errors, timeouts, `429`, `503` overloaded, other `5xx`) are retried with backoff
//! as for every HTTP provider (`sift-http`), the wait Gemini asks for honoured; an
//! upstream's error message reaches the caller with the key masked.
//!
//! ```no_run
//! use sift_gemini::{Gemini, GeminiConfig};
//! let provider = Gemini::new(GeminiConfig::new("https://generativelanguage.googleapis.com").api_key("AIza..."))
//!     .expect("valid configuration");
//! let client = sift_core::Client::new(provider);
//! ```

pub mod batch;
pub mod openapi;
mod stream;
mod wire;

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use sift_core::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, Provider, ProviderError, SchemaError,
    async_trait,
};

/// The default base URL.
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// The default model.
pub const DEFAULT_MODEL: &str = "gemini-2.5-flash";
/// The API version in the path.
pub const API_VERSION: &str = "v1beta";

/// The form a schema is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaDialect {
    /// JSON Schema as it is: `responseJsonSchema`, a function's `parametersJsonSchema`
    /// (Gemini 2.5 and later).
    JsonSchema,
    /// The OpenAPI 3.0 subset ([`openapi::convert`]): `responseSchema`, a function's
    /// `parameters` (the models before 2.5).
    OpenApi,
}

impl SchemaDialect {
    /// The form `model` takes: the OpenAPI subset for Gemini 1.x and 2.0, JSON Schema for
    /// the rest.
    pub fn for_model(model: &str) -> Self {
        let name = model.strip_prefix("models/").unwrap_or(model);
        if name.starts_with("gemini-1.") || name.starts_with("gemini-2.0") {
            SchemaDialect::OpenApi
        } else {
            SchemaDialect::JsonSchema
        }
    }
}

/// Settings for [`Gemini`]. The key is never printed by `Debug`.
#[derive(Clone)]
#[must_use]
pub struct GeminiConfig {
    base_url: String,
    api_key: Option<String>,
    default_model: String,
    version: String,
    schema_dialect: Option<SchemaDialect>,
    connect_timeout: Duration,
    max_answer_tokens: u32,
    /// Timeouts, retries, body limit and admission, as every HTTP provider has them.
    transport: sift_http::Settings,
}

impl fmt::Debug for GeminiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("default_model", &self.default_model)
            .field("version", &self.version)
            .field("timeout", &self.transport.timeout)
            .finish_non_exhaustive()
    }
}

impl GeminiConfig {
    /// Settings for the API at `base_url` (without the version, as Google's SDKs take it).
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key: None,
            default_model: DEFAULT_MODEL.into(),
            version: API_VERSION.into(),
            schema_dialect: None,
            connect_timeout: Duration::from_secs(10),
            max_answer_tokens: 8192,
            transport: sift_http::Settings::new(""),
        }
    }

    /// Settings from the environment: `GEMINI_BASE_URL` (default Google's) and
    /// `GEMINI_API_KEY`.
    pub fn from_env() -> Self {
        let base = std::env::var("GEMINI_BASE_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| GEMINI_BASE_URL.into());
        let config = Self::new(base);
        match std::env::var("GEMINI_API_KEY") {
            Ok(key) if !key.is_empty() => config.api_key(key),
            _ => config,
        }
    }

    /// The key, sent as `x-goog-api-key`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The model asked when a request names none.
    pub fn default_model(mut self, model: impl Into<String>) -> Self {
        self.default_model = model.into();
        self
    }

    /// The API version in the path (`v1beta`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The form schemas are sent in, whatever the model (by default, chosen by model:
    /// [`SchemaDialect::for_model`]).
    pub fn schema_dialect(mut self, dialect: SchemaDialect) -> Self {
        self.schema_dialect = Some(dialect);
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

    /// The form schemas are sent in for `model`.
    pub fn dialect_for(&self, model: &str) -> SchemaDialect {
        self.schema_dialect
            .unwrap_or_else(|| SchemaDialect::for_model(model))
    }
}

/// Why the provider could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// A key that cannot be sent as a header value.
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

/// Google's Gemini API.
#[derive(Debug, Clone)]
pub struct Gemini {
    http: reqwest::Client,
    config: GeminiConfig,
    transport: sift_http::Transport,
}

/// `model` as one path segment: `models/` dropped, every byte outside the unreserved set
/// percent-encoded (a model name from a client can never reach another path).
fn model_segment(model: &str) -> String {
    let name = model.strip_prefix("models/").unwrap_or(model);
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Gemini {
    /// Builds the provider and its connection pool.
    pub fn new(config: GeminiConfig) -> Result<Self, BuildError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value = HeaderValue::from_str(key)
                .map_err(|_| BuildError::InvalidHeader("x-goog-api-key"))?;
            value.set_sensitive(true);
            headers.insert("x-goog-api-key", value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            // A model call is never sent elsewhere than the base URL.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("sift/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::Http)?;
        let mut settings = config.transport.clone();
        settings.endpoint = format!("{}/{}", config.base_url, config.version);
        Ok(Self {
            http,
            config,
            transport: sift_http::Transport::new(settings),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &GeminiConfig {
        &self.config
    }

    /// The URL of `model`'s `method` (`generateContent`, `streamGenerateContent`).
    pub fn url(&self, model: &str, method: &str) -> String {
        format!(
            "{}/{}/models/{}:{method}",
            self.config.base_url,
            self.config.version,
            model_segment(model)
        )
    }

    /// The JSON body `request` is sent as (for batch jobs, which send it inline).
    pub fn request_body(&self, request: &ChatRequest) -> Result<serde_json::Value, ProviderError> {
        let limit = request.derived_max_tokens(self.config.max_answer_tokens);
        wire::request_body(
            request,
            Some(limit),
            self.config.dialect_for(&request.model),
        )
    }

    /// Posts `body` to `url`; the response's body unread (see `Transport::open`).
    async fn send(
        &self,
        url: &str,
        body: &[u8],
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut request = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if stream {
            request = request.header(http::header::ACCEPT, "text/event-stream");
        }
        self.transport
            .open(request, self.config.api_key.iter())
            .await
    }

    fn encode(&self, request: &ChatRequest) -> Result<Vec<u8>, ProviderError> {
        serde_json::to_vec(&self.request_body(request)?)
            .map_err(|e| ProviderError::InvalidResponse(e.to_string()))
    }
}

/// Reads a whole `generateContent` answer (for batch results, which hold them inline).
pub fn parse_response(bytes: &[u8]) -> Result<ChatResponse, ProviderError> {
    wire::parse_response(bytes)
}

#[async_trait]
impl Provider for Gemini {
    fn name(&self) -> &str {
        // As the OpenTelemetry GenAI conventions spell it.
        "gcp.gemini"
    }

    fn default_model(&self) -> &str {
        &self.config.default_model
    }

    fn default_max_tokens(&self, request: &ChatRequest) -> Option<u32> {
        Some(request.derived_max_tokens(self.config.max_answer_tokens))
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let estimate = request.estimated_tokens();
        let body = self.encode(request)?;
        let url = self.url(&request.model, "generateContent");
        let response = self
            .transport
            .with_retries(estimate, || async {
                let response = self.send(&url, &body, false).await?;
                let bytes = self.transport.read_body(response).await?;
                wire::parse_response(&bytes)
            })
            .await?;
        if let Some(a) = &self.transport.settings().admission {
            a.settle(estimate, response.usage.total_tokens());
        }
        Ok(response)
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let estimate = request.estimated_tokens();
        let body = self.encode(request)?;
        let url = format!(
            "{}?alt=sse",
            self.url(&request.model, "streamGenerateContent")
        );
        let response = self
            .transport
            .with_retries(estimate, || self.send(&url, &body, true))
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

    fn check_schema(&self, schema: &serde_json::Value) -> Result<(), SchemaError> {
        match self.config.dialect_for(&self.config.default_model) {
            SchemaDialect::JsonSchema => Ok(()),
            SchemaDialect::OpenApi => openapi::convert(schema).map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key_and_models_stay_in_their_segment() {
        let c = GeminiConfig::new("http://x").api_key("AIzaVerySecretKey");
        assert!(!format!("{c:?}").contains("VerySecret"));
        assert_eq!(model_segment("models/gemini-2.5-flash"), "gemini-2.5-flash");
        assert_eq!(model_segment("../../files?x=1"), "..%2F..%2Ffiles%3Fx%3D1");
        assert_eq!(
            SchemaDialect::for_model("gemini-2.0-flash"),
            SchemaDialect::OpenApi
        );
        assert_eq!(
            SchemaDialect::for_model("gemini-3-pro-preview"),
            SchemaDialect::JsonSchema
        );
    }
}
