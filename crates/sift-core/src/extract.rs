//! The extraction loop: ask, read, validate, re-ask with the errors, sum the usage.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::attempts::{self, Decode, Delivery, Event, Job};
use crate::message::{ChatRequest, ChatResponse, Message, Role, Structured, Usage};
use crate::mode::Mode;
use crate::provider::{Provider, ProviderError};
use crate::schema::{ResponseSchema, Schema, SchemaError};
use crate::stream::StreamStats;
use crate::turns::Turns;
use crate::validate::{FieldError, Validate, deserialize};

/// Re-asks after the first attempt when none is configured: 2, so at most 3 calls.
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// A handle on a provider plus defaults for every extraction. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    provider: Arc<dyn Provider>,
    model: Option<String>,
    mode: Mode,
    max_retries: u32,
}

impl Client {
    /// A client over `provider`, with mode [`Mode::Tools`] and [`DEFAULT_MAX_RETRIES`].
    pub fn new(provider: impl Provider + 'static) -> Self {
        Self::from_arc(Arc::new(provider))
    }

    /// A client over a shared provider.
    pub fn from_arc(provider: Arc<dyn Provider>) -> Self {
        Self {
            provider,
            model: None,
            mode: Mode::default(),
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }

    /// The model used when an extraction names none (else the provider's default).
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The default mode.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The default number of re-asks.
    #[must_use]
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// The same client over another provider (a wrapper of this one, say), its model, mode
    /// and re-asks kept.
    #[must_use]
    pub fn with_provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.provider = provider;
        self
    }

    /// The provider behind this client.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// The model extractions use unless told otherwise.
    pub fn model(&self) -> &str {
        self.model
            .as_deref()
            .unwrap_or_else(|| self.provider.default_model())
    }

    /// Starts an extraction of a `T`.
    ///
    /// ```no_run
    /// # async fn run(client: sift_core::Client) -> Result<(), sift_core::ExtractError> {
    /// #[derive(serde::Deserialize, schemars::JsonSchema, Debug)]
    /// struct UserDetail { name: String, age: u8 }
    ///
    /// let out = client
    ///     .extract::<UserDetail>()
    ///     .user("Extract: `Daniel is a 24 year man living in New York City`")
    ///     .max_retries(2)
    ///     .send()
    ///     .await?;
    /// println!("{:?} in {} attempts, {} tokens", out.value, out.attempts.len(), out.usage.total_tokens());
    /// # Ok(()) }
    /// ```
    pub fn extract<T>(&self) -> ExtractBuilder<T>
    where
        T: DeserializeOwned + JsonSchema + 'static,
    {
        self.builder()
    }

    /// Starts a streamed extraction of a list of `T`s: each element is validated and handed
    /// over as soon as its closing bracket arrives. See [`ExtractBuilder::stream`].
    pub fn extract_iter<T>(&self) -> ExtractBuilder<T, Iterable>
    where
        T: DeserializeOwned + JsonSchema + Send + 'static,
    {
        self.builder()
    }

    /// Starts a streamed extraction of one `T`, seen as it fills in. See
    /// [`ExtractBuilder::stream`].
    pub fn extract_partial<T>(&self) -> ExtractBuilder<T, PartialStream>
    where
        T: DeserializeOwned + JsonSchema + crate::Partial + Send + 'static,
    {
        self.builder()
    }

    /// Starts an extraction against a JSON Schema known only at run time; the answer is the
    /// validated JSON value.
    ///
    /// ```no_run
    /// # async fn run(client: sift_core::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let schema = sift_core::Schema::compile("Contact", serde_json::json!({
    ///     "type": "object",
    ///     "properties": {"email": {"type": "string"}},
    ///     "required": ["email"]
    /// }))?;
    /// let out = client.extract_value(&schema).user("Mail me at a@b.example").send().await?;
    /// println!("{}", out.value["email"]);
    /// # Ok(()) }
    /// ```
    pub fn extract_value(&self, schema: &Schema) -> ExtractBuilder<Value> {
        self.builder_for(Some(schema.clone()))
    }

    /// Starts a streamed extraction against an array schema given as data: each element is
    /// validated against the `items` schema and handed over as soon as it closes.
    pub fn extract_value_iter(&self, schema: &Schema) -> ExtractBuilder<Value, Iterable> {
        self.builder_for(Some(schema.clone()))
    }

    /// Starts a streamed extraction against a schema given as data, seen as it fills in:
    /// snapshots of the JSON value so far, then the validated value.
    pub fn extract_value_partial(&self, schema: &Schema) -> ExtractBuilder<Value, PartialStream> {
        self.builder_for(Some(schema.clone()))
    }

    fn builder<T, K>(&self) -> ExtractBuilder<T, K> {
        self.builder_for(None)
    }

    fn builder_for<T, K>(&self, schema: Option<Schema>) -> ExtractBuilder<T, K> {
        ExtractBuilder {
            client: self.clone(),
            messages: Vec::new(),
            model: None,
            mode: self.mode,
            max_retries: self.max_retries,
            temperature: None,
            max_tokens: None,
            validators: Vec::new(),
            schema,
            extractor: None,
            _type: PhantomData,
        }
    }
}

/// Builder kind of [`Client::extract`]: one value, answered whole.
#[derive(Debug)]
pub struct Single;

/// Builder kind of [`Client::extract_iter`]: a stream of list elements.
#[derive(Debug)]
pub struct Iterable;

/// Builder kind of [`Client::extract_partial`]: a stream of partial snapshots, then the value.
#[derive(Debug)]
pub struct PartialStream;

type Check<T> = dyn Fn(&T) -> Result<(), Vec<FieldError>> + Send + Sync;
type ValidatorFn<T> = Arc<Check<T>>;

/// One extraction being set up. Finish with [`ExtractBuilder::send`] (for [`Client::extract`])
/// or [`ExtractBuilder::stream`] (for [`Client::extract_iter`] and [`Client::extract_partial`]).
#[must_use = "an extraction does nothing until it is sent"]
pub struct ExtractBuilder<T, K = Single> {
    pub(crate) client: Client,
    pub(crate) messages: Vec<Message>,
    pub(crate) model: Option<String>,
    pub(crate) mode: Mode,
    pub(crate) max_retries: u32,
    pub(crate) temperature: Option<f32>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) validators: Vec<ValidatorFn<T>>,
    /// The schema given as data; `T`'s own when `None`.
    pub(crate) schema: Option<Schema>,
    pub(crate) extractor: Option<String>,
    _type: PhantomData<fn() -> (T, K)>,
}

impl<T: 'static, K> ExtractBuilder<T, K> {
    /// Adds a system message.
    pub fn system(self, content: impl Into<String>) -> Self {
        self.message(Message::system(content))
    }

    /// Adds a user message.
    pub fn user(self, content: impl Into<String>) -> Self {
        self.message(Message::user(content))
    }

    /// Adds any message.
    pub fn message(mut self, message: Message) -> Self {
        self.messages.push(message);
        self
    }

    /// Adds messages.
    pub fn messages(mut self, messages: impl IntoIterator<Item = Message>) -> Self {
        self.messages.extend(messages);
        self
    }

    /// The model to ask.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// How to ask for structured output.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// How many times to re-ask after a failed attempt: `0` means a single call, the default
    /// [`DEFAULT_MAX_RETRIES`] means at most three calls. Transport retries (429, 5xx, ...) are
    /// the provider's and are not counted here.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Limit on generated tokens per attempt.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Adds a rule checked after the answer deserialises; its errors are fed back like schema
    /// errors. Rules add up: every one runs, and all their errors are reported together.
    pub fn validate_with<F>(mut self, check: F) -> Self
    where
        F: Fn(&T) -> Result<(), Vec<FieldError>> + Send + Sync + 'static,
    {
        self.validators.push(Arc::new(check));
        self
    }

    /// Names the extraction for telemetry: the extraction span's `sift.extractor` attribute
    /// (keep the set of names small: it labels metrics).
    pub fn extractor(mut self, name: impl Into<String>) -> Self {
        self.extractor = Some(name.into());
        self
    }

    /// Checks answers with `T`'s [`Validate`] implementation.
    pub fn validated(self) -> Self
    where
        T: Validate,
    {
        self.validate_with(T::validate)
    }

    /// The model to use.
    pub(crate) fn model_name(&self) -> String {
        self.model
            .clone()
            .unwrap_or_else(|| self.client.model().to_owned())
    }

    /// The first request: the caller's messages with the mode's instructions, asking for
    /// `schema`.
    pub(crate) fn first_request(&self, schema: &ResponseSchema) -> ChatRequest {
        let constrained = self.client.provider.capabilities().constrained;
        let (output, instructions) = self.mode.output(schema, constrained);
        let mut messages = self.messages.clone();
        if let Some(text) = instructions {
            match messages.iter_mut().find(|m| m.role == Role::System) {
                Some(system) => {
                    let content = system.content.get_or_insert_with(String::new);
                    content.push_str("\n\n");
                    content.push_str(&text);
                }
                None => messages.insert(0, Message::system(text)),
            }
        }
        ChatRequest {
            model: self.model_name(),
            messages,
            output,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            // Only a provider that enforces the schema itself reads it (and the copy is then
            // worth its cost).
            structured: constrained.then(|| {
                Structured::new(self.mode, schema.name.clone(), schema.closed_schema.clone())
            }),
        }
    }
}

impl<T> ExtractBuilder<T, Single>
where
    T: DeserializeOwned + JsonSchema + Send + 'static,
{
    /// Runs the extraction.
    pub async fn send(self) -> Result<Extraction<T>, ExtractError> {
        let schema = self.schema_or_type()?;
        let name = schema.name().to_owned();
        let stats = StreamStats::default();
        let job = self.job(schema, None, name);
        let mut events = std::pin::pin!(attempts::run(
            job,
            Delivery::Whole,
            stats.clone(),
            tracing::Span::current(),
        ));
        while let Some(event) = events.next().await {
            match event? {
                Event::Done { value, response } => {
                    let attempts = stats.attempts();
                    return Ok(Extraction {
                        value,
                        usage: attempts.iter().map(|a| a.usage).sum(),
                        attempts,
                        response,
                    });
                }
                Event::Element(_) | Event::Snapshot(_) | Event::Retry { .. } => {}
            }
        }
        // The loop always ends with a value or an error; this is only reachable if it did not.
        let attempts = stats.attempts();
        Err(ExtractError::RetriesExhausted {
            usage: attempts.iter().map(|a| a.usage).sum(),
            attempts,
            last_response: None,
        })
    }
}

impl<T> ExtractBuilder<T, Single>
where
    T: DeserializeOwned + JsonSchema + Send + 'static,
{
    /// The extraction as [`Turns`]: its calls made by the caller (a provider's batch API),
    /// its answers judged by the same rules as [`send`](Self::send). Fails when the schema
    /// does not compile or the provider cannot enforce it.
    pub fn turns(self) -> Result<Turns<T>, ExtractError> {
        let schema = self.schema_or_type()?;
        let constrained = self.client.provider.capabilities().constrained;
        self.client
            .provider
            .check_schema(schema.response().shown(constrained))?;
        let name = schema.name().to_owned();
        Ok(Turns::new(self.job(schema, None, name)))
    }
}

impl<T, K> ExtractBuilder<T, K>
where
    T: DeserializeOwned + JsonSchema + Send + 'static,
{
    /// The schema given as data, else `T`'s.
    pub(crate) fn schema_or_type(&self) -> Result<Schema, ExtractError> {
        match &self.schema {
            Some(s) => Ok(s.clone()),
            None => Ok(Schema::of::<T>()?),
        }
    }

    /// Deserialisation, then the caller's rules.
    fn decoder(&self) -> Decode<T> {
        let rules = self.validators.clone();
        Arc::new(move |value: &serde_json::Value| {
            let decoded: T = deserialize(value).map_err(|e| vec![e])?;
            let mut errors = Vec::new();
            for rule in &rules {
                if let Err(e) = rule(&decoded) {
                    errors.extend(e);
                }
            }
            if errors.is_empty() {
                Ok(decoded)
            } else {
                Err(errors)
            }
        })
    }

    /// The attempt loop's job: ask for `schema`, decode each element of `element` when set.
    pub(crate) fn job(self, schema: Schema, element: Option<Schema>, span_name: String) -> Job<T> {
        let request = self.first_request(schema.response());
        Job {
            constrained: self.client.provider.capabilities().constrained,
            provider: self.client.provider.clone(),
            request,
            mode: self.mode,
            max_retries: self.max_retries,
            decode: self.decoder(),
            schema,
            element,
            span_name,
            extractor: self.extractor,
        }
    }
}

/// A successful extraction.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Extraction<T> {
    /// The validated value.
    pub value: T,
    /// Tokens used by every attempt together.
    pub usage: Usage,
    /// Every attempt, the last one successful.
    pub attempts: Vec<Attempt>,
    /// The final raw completion.
    pub response: ChatResponse,
}

impl<T> Extraction<T> {
    /// The value, dropping the rest.
    pub fn into_value(self) -> T {
        self.value
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// Parsed and validated.
    Success,
    /// No tool call or no content.
    NoOutput,
    /// Not valid JSON.
    InvalidJson,
    /// Cut off at the token limit.
    Truncated,
    /// Valid JSON that failed the schema, deserialisation or a custom rule.
    ValidationFailed,
    /// The provider call itself failed.
    ProviderError,
}

impl AttemptOutcome {
    /// The outcome's name (`success`, `validation_failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::NoOutput => "no_output",
            AttemptOutcome::InvalidJson => "invalid_json",
            AttemptOutcome::Truncated => "truncated",
            AttemptOutcome::ValidationFailed => "validation_failed",
            AttemptOutcome::ProviderError => "provider_error",
        }
    }
}

/// The record of one call to the model.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// 1 for the first call.
    pub number: u32,
    /// Wall time of the call and the checks.
    #[serde(serialize_with = "serialize_millis", rename = "duration_ms")]
    pub duration: Duration,
    /// Tokens this call used.
    pub usage: Usage,
    /// What became of it.
    pub outcome: AttemptOutcome,
    /// What was wrong (empty on success).
    pub errors: Vec<FieldError>,
    /// The JSON text the model produced, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl Attempt {
    /// The record of an attempt whose provider call failed.
    pub(crate) fn provider_failure(number: u32, started: Instant, source: &ProviderError) -> Self {
        Self {
            number,
            duration: started.elapsed(),
            usage: Usage::default(),
            outcome: AttemptOutcome::ProviderError,
            errors: vec![FieldError::new("", source.to_string())],
            output: None,
        }
    }
}

fn serialize_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Why an extraction failed. Every variant keeps the attempts made and the tokens spent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// A call to the provider failed (after its own transport retries).
    #[error("model call failed on attempt {attempt}")]
    Provider {
        /// Which attempt failed.
        attempt: u32,
        /// The provider's error.
        #[source]
        source: ProviderError,
        /// Every attempt, the failed one last.
        attempts: Vec<Attempt>,
        /// Tokens spent before the failure.
        usage: Usage,
    },
    /// No attempt produced a valid answer.
    #[error("no valid answer after {} attempts", attempts.len())]
    RetriesExhausted {
        /// Every attempt with its errors.
        attempts: Vec<Attempt>,
        /// Tokens spent in all.
        usage: Usage,
        /// The last completion.
        last_response: Option<Box<ChatResponse>>,
    },
    /// A streamed answer broke off after some elements had been handed over.
    #[error("the answer broke off after {emitted} elements")]
    Incomplete {
        /// Elements handed over before the break.
        emitted: usize,
        /// Every attempt, the broken one last with its error.
        attempts: Vec<Attempt>,
        /// Tokens spent in all.
        usage: Usage,
    },
    /// The answer was cut off by the token limit (`finish_reason: length`, from any
    /// provider). Not re-asked: the same limit would cut the same answer again.
    #[error("{}", token_limit_message(*.limit))]
    TokenLimit {
        /// The limit the request set, when it set one.
        limit: Option<u32>,
        /// Every attempt, the cut one last.
        attempts: Vec<Attempt>,
        /// Tokens spent in all.
        usage: Usage,
    },
    /// The response schema could not be compiled, or the provider cannot enforce it.
    #[error("invalid response schema")]
    Schema(#[from] SchemaError),
}

fn token_limit_message(limit: Option<u32>) -> String {
    match limit {
        Some(n) => format!(
            "the answer did not fit in the limit of {n} tokens: raise max_tokens, or ask for less"
        ),
        None => "the answer did not fit in the provider's token limit: set a higher max_tokens, or ask for less".into(),
    }
}

impl ExtractError {
    /// A provider failure on attempt `number`, after `attempts` (the failed one last).
    pub(crate) fn provider(number: u32, source: ProviderError, attempts: Vec<Attempt>) -> Self {
        ExtractError::Provider {
            attempt: number,
            source,
            usage: attempts.iter().map(|a| a.usage).sum(),
            attempts,
        }
    }

    /// The attempts made.
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            ExtractError::Provider { attempts, .. }
            | ExtractError::RetriesExhausted { attempts, .. }
            | ExtractError::Incomplete { attempts, .. }
            | ExtractError::TokenLimit { attempts, .. } => attempts,
            ExtractError::Schema(_) => &[],
        }
    }

    /// Tokens spent in all.
    pub fn usage(&self) -> Usage {
        match self {
            ExtractError::Provider { usage, .. }
            | ExtractError::RetriesExhausted { usage, .. }
            | ExtractError::Incomplete { usage, .. }
            | ExtractError::TokenLimit { usage, .. } => *usage,
            ExtractError::Schema(_) => Usage::default(),
        }
    }

    /// A short name for the failure (`provider_error`, `retries_exhausted`, `incomplete`,
    /// `token_limit`, `schema`).
    pub fn kind(&self) -> &'static str {
        match self {
            ExtractError::Provider { .. } => "provider_error",
            ExtractError::RetriesExhausted { .. } => "retries_exhausted",
            ExtractError::Incomplete { .. } => "incomplete",
            ExtractError::TokenLimit { .. } => "token_limit",
            ExtractError::Schema(_) => "schema",
        }
    }

    /// The provider error, if that is what failed.
    pub fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            ExtractError::Provider { source, .. } => Some(source.cause()),
            _ => None,
        }
    }
}
