//! The provider trait: one chat call to one model backend.

use std::time::Duration;

use async_trait::async_trait;

use crate::message::{ChatRequest, ChatResponse, ChatStream};

/// What a provider can do, so the extraction loop can pick a fitting request shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Forced tool calls.
    pub tools: bool,
    /// Native JSON-schema output.
    pub json_schema: bool,
    /// Token streaming (used by streaming extraction).
    pub streaming: bool,
    /// Output constrained to any JSON Schema by the provider itself (constrained decoding),
    /// read from [`ChatRequest::structured`](crate::ChatRequest::structured): such a provider
    /// is given the schema as it is and answers the bare value, so nothing is wrapped.
    pub constrained: bool,
    /// What one request may hold, when the provider knows its model's window (the embedded
    /// model): long documents are split to fit it.
    pub window: Option<Window>,
    /// The model runs in this process (the embedded model): its calls cost nothing but the
    /// machine's time, so they are priced at zero where no price is configured.
    pub in_process: bool,
}

/// A model's window: the tokens one request may hold, and how many run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Prompt and answer together, in tokens.
    pub context_tokens: u32,
    /// The answer's default limit, in tokens (part of the context).
    pub answer_tokens: u32,
    /// Generations run at once.
    pub parallel: usize,
}

impl Capabilities {
    /// With streaming support set to `on`.
    #[must_use]
    pub fn with_streaming(mut self, on: bool) -> Self {
        self.streaming = on;
        self
    }

    /// With constrained decoding set to `on`.
    #[must_use]
    pub fn with_constrained(mut self, on: bool) -> Self {
        self.constrained = on;
        self
    }

    /// With the model's window known.
    #[must_use]
    pub fn with_window(mut self, window: Window) -> Self {
        self.window = Some(window);
        self
    }

    /// With the model running in this process or not.
    #[must_use]
    pub fn with_in_process(mut self, on: bool) -> Self {
        self.in_process = on;
        self
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            tools: true,
            json_schema: true,
            streaming: false,
            constrained: false,
            window: None,
            in_process: false,
        }
    }
}

/// A model backend. Remote (OpenAI-compatible) and in-process providers both implement it.
///
/// Providers handle their own transport retries; the extraction loop handles re-asks.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The provider's name as the OpenTelemetry GenAI conventions spell it (`openai`, ...).
    fn name(&self) -> &str;

    /// The model used when a request names none.
    fn default_model(&self) -> &str;

    /// One chat completion.
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError>;

    /// One chat completion, streamed. Providers that cannot stream keep this default, which
    /// fails with [`ProviderError::Unsupported`].
    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let _ = request;
        Err(ProviderError::Unsupported("streaming"))
    }

    /// What this provider supports.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// The token limit to send with `request` when it sets none (`None`, the default: send
    /// none, the provider's own limit applies). Remote providers give
    /// [`ChatRequest::derived_max_tokens`](crate::ChatRequest::derived_max_tokens), so a
    /// model that loops is stopped by its server.
    fn default_max_tokens(&self, request: &crate::ChatRequest) -> Option<u32> {
        let _ = request;
        None
    }

    /// Whether this provider can enforce `schema` (as given, not wrapped). A provider that
    /// constrains decoding refuses, naming the keyword and where it is, a schema its grammar
    /// compiler does not take; the others take any schema (sift validates the answers).
    fn check_schema(&self, schema: &serde_json::Value) -> Result<(), crate::SchemaError> {
        let _ = schema;
        Ok(())
    }
}

/// Paces a provider's HTTP calls, for callers that share an upstream's rate limits across
/// many calls (`sift batch`): a provider given one asks it before every call it sends,
/// transport retries included, reports what each call really used, and reports the waits a
/// rate-limited upstream asks for, so that one `429` holds back every caller, not only the
/// one that got it.
#[async_trait]
pub trait Admission: Send + Sync + std::fmt::Debug {
    /// Waits until a call estimated at `tokens` (see
    /// [`ChatRequest::estimated_tokens`](crate::ChatRequest::estimated_tokens)) may be sent.
    async fn admit(&self, tokens: u64);

    /// An admitted call is over: it used `used` tokens where `estimated` were counted (0 when
    /// it failed, or when the count is not known yet).
    fn settle(&self, estimated: u64, used: u64);

    /// The upstream refused a call for its rate limit and asked for `wait` (or the provider
    /// chose that backoff): hold every call back that long.
    fn back_off(&self, wait: Duration);
}

/// The earlier tries of a [`ProviderError::Retried`], for its message: `; before: 1. ...;
/// 2. ...` (nothing when none were recorded).
fn earlier_tries(earlier: &[String]) -> String {
    if earlier.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = earlier
        .iter()
        .enumerate()
        .map(|(i, why)| format!("{}. {why}", i + 1))
        .collect();
    format!("; before that: {}", listed.join("; "))
}

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The server could not be reached.
    #[error("could not connect to {url}")]
    Connect {
        /// The address tried.
        url: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No complete answer arrived in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with an error status.
    #[error("upstream answered {status}: {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The upstream's own error message.
        message: String,
        /// Seconds the upstream asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The answer could not be understood.
    #[error("invalid answer from upstream: {0}")]
    InvalidResponse(String),
    /// Any other transport failure.
    #[error("transport error")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The provider cannot do what was asked.
    #[error("this provider does not support {0}")]
    Unsupported(&'static str),
    /// The stream broke off or carried an error.
    #[error("stream failed: {0}")]
    Stream(String),
    /// The upstream refused the input as too long for the model (`context_length_exceeded`):
    /// the caller's text, not the upstream, is at fault.
    #[error("the input is too long for the model: {0}")]
    InputTooLong(String),
    /// A provider's batch job did not answer this request: refused it, expired, or was
    /// cancelled before it ran.
    #[error("the batch did not answer this request: {0}")]
    Batch(String),
    /// The call failed every time it was tried (the first try and the provider's transport
    /// retries); `last` is the last failure, `earlier` how each try before it failed.
    #[error("{last} (tried {tries} times{})", earlier_tries(.earlier))]
    Retried {
        /// Tries made.
        tries: u32,
        /// How the last one failed.
        last: Box<ProviderError>,
        /// How each earlier try failed, in order (status and reason, bounded).
        earlier: Vec<String>,
    },
    /// The provider cannot enforce the schema it was asked for (its grammar compiler refused
    /// it): the request, not the upstream, is at fault.
    #[error("the provider cannot enforce the schema")]
    Schema(#[source] Box<crate::SchemaError>),
    /// The provider is busy and refused the call.
    #[error("provider is busy")]
    Busy {
        /// When to try again.
        retry_after: Option<Duration>,
    },
}

impl ProviderError {
    /// Whether trying the same call again may succeed: connect errors, timeouts,
    /// 408, 409, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Connect { .. } | ProviderError::Timeout(_) => true,
            ProviderError::Status { status, .. } => {
                matches!(status, 408 | 409 | 429) || (500..=599).contains(status)
            }
            ProviderError::Busy { .. } => true,
            // Already retried as often as the provider does.
            ProviderError::Retried { .. } => false,
            ProviderError::InvalidResponse(_)
            | ProviderError::Transport(_)
            | ProviderError::Unsupported(_)
            | ProviderError::InputTooLong(_)
            | ProviderError::Batch(_)
            | ProviderError::Schema(_)
            | ProviderError::Stream(_) => false,
        }
    }

    /// The failure itself: the last one of a [`Retried`](ProviderError::Retried) call.
    pub fn cause(&self) -> &ProviderError {
        match self {
            ProviderError::Retried { last, .. } => last.cause(),
            other => other,
        }
    }

    /// The wait the upstream asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Retried { last, .. } => last.retry_after(),
            ProviderError::Status { retry_after, .. } | ProviderError::Busy { retry_after } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// A short machine-readable name for the error class (`timeout`, `429`, ...): an
    /// upstream's status by its code (`4xx` or `5xx` for codes without a name of their own).
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Connect { .. } => "connect",
            ProviderError::Timeout(_) => "timeout",
            ProviderError::Status { status, .. } => status_kind(*status),
            ProviderError::InvalidResponse(_) => "invalid_response",
            ProviderError::Transport(_) => "transport",
            ProviderError::Busy { .. } => "busy",
            ProviderError::Unsupported(_) => "unsupported",
            ProviderError::Stream(_) => "stream",
            ProviderError::InputTooLong(_) => "input_too_long",
            ProviderError::Batch(_) => "batch",
            ProviderError::Schema(_) => "schema",
            ProviderError::Retried { last, .. } => last.kind(),
        }
    }
}

/// The kind of an upstream status: its code for the ones clients act on, else its class.
fn status_kind(status: u16) -> &'static str {
    const NAMED: &[(u16, &str)] = &[
        (400, "400"),
        (401, "401"),
        (402, "402"),
        (403, "403"),
        (404, "404"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (529, "529"),
    ];
    if let Some((_, kind)) = NAMED.iter().find(|(code, _)| *code == status) {
        return kind;
    }
    match status / 100 {
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "status",
    }
}
