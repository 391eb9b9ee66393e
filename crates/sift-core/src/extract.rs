//! The client and the one extraction builder: typed or against a schema given as data, with
//! three endings (the value, a stream of elements, a stream of partial snapshots).

use std::marker::PhantomData;
use std::sync::Arc;

use futures::StreamExt;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::attempts;
use crate::example::Example;
use crate::grounding::Sources;
use crate::machine::{Decode, Delivery, Job};
use crate::message::{ChatRequest, Message, Role, Structured};
use crate::mode::Mode;
use crate::outcome::{Event, ExtractError, Extraction, StreamStats};
use crate::provider::Provider;
use crate::schema::{ResponseSchema, Schema};
use crate::trace::Recording;
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
    recording: Recording,
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
            recording: Recording::default(),
        }
    }

    /// What its extractions show of their content and how failure reports are scrubbed
    /// (see [`Recording`]).
    #[must_use]
    pub fn with_recording(mut self, recording: Recording) -> Self {
        self.recording = recording;
        self
    }

    /// What its extractions show of their content.
    pub fn recording(&self) -> &Recording {
        &self.recording
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

    fn builder<T>(&self) -> ExtractBuilder<T> {
        self.builder_for(None)
    }

    fn builder_for<T>(&self, schema: Option<Schema>) -> ExtractBuilder<T> {
        ExtractBuilder {
            client: self.clone(),
            messages: Vec::new(),
            model: None,
            mode: self.mode,
            max_retries: self.max_retries,
            temperature: None,
            max_tokens: None,
            seed: None,
            validators: Vec::new(),
            schema,
            extractor: None,
            sources: None,
            examples: Vec::new(),
            _type: PhantomData,
        }
    }
}

type Check<T> = dyn Fn(&T) -> Result<(), Vec<FieldError>> + Send + Sync;
type ValidatorFn<T> = Arc<Check<T>>;

/// One extraction being set up, typed ([`Client::extract`]) or against a schema given as data
/// ([`Client::extract_value`]). It ends one of three ways: [`send`](Self::send) (the value),
/// [`elements`](Self::elements) (a stream of list elements as they close) or
/// [`partials`](Self::partials) (a stream of snapshots as the value fills in); for a schema
/// given as data, [`stream`](Self::stream) picks by the schema.
#[must_use = "an extraction does nothing until it is sent"]
pub struct ExtractBuilder<T> {
    pub(crate) client: Client,
    pub(crate) messages: Vec<Message>,
    pub(crate) model: Option<String>,
    pub(crate) mode: Mode,
    pub(crate) max_retries: u32,
    pub(crate) temperature: Option<f32>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) seed: Option<u64>,
    pub(crate) validators: Vec<ValidatorFn<T>>,
    /// The schema given as data; `T`'s own when `None`.
    pub(crate) schema: Option<Schema>,
    pub(crate) extractor: Option<String>,
    /// What answers are grounded in, when they are.
    pub(crate) sources: Option<Sources>,
    /// Worked examples shown before the conversation.
    pub(crate) examples: Vec<Example>,
    _type: PhantomData<fn() -> T>,
}

impl<T: 'static> ExtractBuilder<T> {
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

    /// Sampling seed, for providers that can repeat a sampled answer.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
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

    /// Grounds answers in `sources`: once an answer fits the schema, every value whose
    /// policy is `verbatim` or `normalized` (see [`grounding`](crate::grounding)) must be
    /// found in the inputs, or it is an error re-asked like any other; when the re-asks run
    /// out, [`ExtractError::Ungrounded`]. The result carries the values' spans.
    pub fn grounding(mut self, sources: Sources) -> Self {
        self.sources = Some(sources);
        self
    }

    /// Grounds answers in one more input text, named `field` in spans (see
    /// [`grounding`](Self::grounding)).
    pub fn grounded_in(mut self, field: impl Into<String>, text: impl Into<String>) -> Self {
        let sources = self.sources.take().unwrap_or_default();
        self.sources = Some(sources.with_input(field, text));
        self
    }

    /// Shows the model a worked example before the conversation: `example.prompt` as a user
    /// turn and `example.output` answered the way the mode gives answers (see [`Example`]).
    /// Examples come after the system prompt, in the order given. The output is a value of
    /// the schema asked for (for [`elements`](Self::elements), the whole list); it is not
    /// checked here (the config and the server check theirs when they read them).
    pub fn example(mut self, example: Example) -> Self {
        self.examples.push(example);
        self
    }

    /// Shows several worked examples (see [`example`](Self::example)).
    pub fn examples(mut self, examples: impl IntoIterator<Item = Example>) -> Self {
        self.examples.extend(examples);
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
    pub(crate) fn first_request(
        &self,
        schema: &ResponseSchema,
        sources: Option<&Arc<Sources>>,
    ) -> ChatRequest {
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
        if !self.examples.is_empty() {
            // After the system prompt, before the conversation: a prefix every request of
            // the same extractor shares.
            let at = messages
                .iter()
                .take_while(|m| m.role == Role::System)
                .count();
            let shown: Vec<Message> = self
                .examples
                .iter()
                .enumerate()
                .flat_map(|(i, e)| self.mode.example_turns(schema, constrained, i + 1, e))
                .collect();
            messages.splice(at..at, shown);
        }
        let mut request = ChatRequest {
            model: self.model_name(),
            messages,
            output,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            seed: self.seed,
            // Only a provider that enforces the schema itself reads it (and the copy is then
            // worth its cost).
            structured: constrained.then(|| {
                Structured::new(self.mode, schema.name.clone(), schema.closed_schema.clone())
                    .with_grounding(sources.cloned())
            }),
        };
        if request.max_tokens.is_none() {
            request.max_tokens = self.client.provider.default_max_tokens(&request);
        }
        request
    }
}

impl<T> ExtractBuilder<T>
where
    T: DeserializeOwned + JsonSchema + Send + 'static,
{
    /// Runs the extraction: the validated value, with every attempt and the usage summed.
    pub async fn send(self) -> Result<Extraction<T>, ExtractError> {
        let schema = self.schema_or_type()?;
        let name = schema.name().to_owned();
        let stats = StreamStats::default();
        let job = self.job(schema, None, name);
        let events = attempts::run(
            job,
            Delivery::Whole,
            stats.clone(),
            tracing::Span::current(),
        );
        let mut events = std::pin::pin!(events);
        let mut value = None;
        while let Some(event) = events.next().await {
            match event? {
                Event::Value(v) => value = Some(v),
                Event::Done {
                    usage,
                    attempts,
                    spans,
                } => {
                    if let (Some(value), Some(response)) = (value.take(), stats.take_response()) {
                        return Ok(Extraction {
                            value,
                            usage,
                            attempts,
                            response,
                            spans,
                        });
                    }
                }
                _ => {}
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
    pub(crate) fn job(
        mut self,
        schema: Schema,
        element: Option<Schema>,
        span_name: String,
    ) -> Job<T> {
        let sources = self.sources.take().map(Arc::new);
        let request = self.first_request(schema.response(), sources.as_ref());
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
            recording: self.client.recording.clone(),
            sources,
        }
    }
}
