//! Provider-neutral chat types: what sift sends to a model and what comes back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The caller's turn.
    User,
    /// The model's turn.
    Assistant,
    /// The answer to a tool call.
    Tool,
}

/// One tool call made by the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, echoed by the tool message that answers it.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments as the model wrote them (a JSON text, perhaps malformed).
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// Its text, if any (an assistant turn that only calls tools has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool calls made in an assistant turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a tool message: whether it reports the call as failed (a re-ask's errors), for
    /// providers whose tool results say so (Anthropic's `is_error`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

impl Message {
    fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::text(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::text(Role::User, content)
    }

    /// An assistant message with text only.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::text(Role::Assistant, content)
    }

    /// A tool message answering the call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: Role::Tool,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(tool_call_id.into()),
            is_error: false,
        }
    }

    /// A tool message reporting the call `tool_call_id` as failed, with why (a re-ask).
    pub fn tool_error(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            is_error: true,
            ..Self::tool(tool_call_id, content)
        }
    }
}

/// How the model is asked to shape its answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum OutputFormat {
    /// Free text.
    Text,
    /// A forced call of the one function described.
    Tool {
        /// Function name.
        name: String,
        /// Function description.
        description: String,
        /// JSON Schema of the parameters.
        parameters: Value,
        /// Whether the schema is strict-mode compatible.
        strict: bool,
    },
    /// Native structured output against a JSON Schema.
    JsonSchema {
        /// Schema name.
        name: String,
        /// The schema.
        schema: Value,
        /// Whether to ask for strict adherence.
        strict: bool,
    },
    /// Any JSON object (the schema travels in the prompt).
    JsonObject,
}

/// A request to a chat model, independent of any provider's wire format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest {
    /// Model name, as the provider knows it.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The shape asked of the answer.
    pub output: OutputFormat,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Limit on generated tokens.
    pub max_tokens: Option<u32>,
    /// Sampling seed, for providers that can repeat a sampled answer (OpenAI's `seed`; the
    /// embedded model's sampler when the temperature is above 0).
    pub seed: Option<u64>,
    /// The structured answer asked for, as data, for providers that enforce a schema
    /// themselves ([`Capabilities::constrained`](crate::Capabilities::constrained)); `None`
    /// for free text, and for other providers (they go by [`output`](Self::output) alone).
    pub structured: Option<Structured>,
}

/// The least token limit [`ChatRequest::derived_max_tokens`] gives.
pub const MIN_DERIVED_MAX_TOKENS: u32 = 1024;

impl ChatRequest {
    /// A token limit for a call that sets none, derived from what it asks: the size of the
    /// schema and of the conversation in tokens (an answer rarely outgrows the text it comes
    /// from plus the keys its schema names), at least [`MIN_DERIVED_MAX_TOKENS`], at most
    /// `ceiling`. A remote provider sends it so a model that loops is cut off by its own
    /// server, not left generating after sift gave up.
    pub fn derived_max_tokens(&self, ceiling: u32) -> u32 {
        let estimate = u32::try_from(self.input_tokens()).unwrap_or(u32::MAX);
        estimate.clamp(MIN_DERIVED_MAX_TOKENS, ceiling.max(MIN_DERIVED_MAX_TOKENS))
    }

    /// A rough count of the tokens this call will use, before it is made (for rate limits
    /// counted in tokens): a token per four bytes of the messages and of the schema sent, plus
    /// the output limit when one is set (else a nominal 256). Providers report the true count
    /// after the call.
    pub fn estimated_tokens(&self) -> u64 {
        self.input_tokens() + u64::from(self.max_tokens.unwrap_or(256))
    }

    /// A token per four bytes of the messages and of the schema sent.
    fn input_tokens(&self) -> u64 {
        let text: usize = self
            .messages
            .iter()
            .map(|m| {
                m.content.as_deref().map_or(0, str::len)
                    + m.tool_calls
                        .iter()
                        .map(|c| c.arguments.len() + c.name.len())
                        .sum::<usize>()
            })
            .sum();
        let schema = match &self.output {
            OutputFormat::Tool { parameters, .. } => parameters.to_string().len(),
            OutputFormat::JsonSchema { schema, .. } => schema.to_string().len(),
            OutputFormat::Text | OutputFormat::JsonObject => 0,
        };
        ((text + schema) as u64).div_ceil(4)
    }
}

/// A structured request as data: the mode and the schema the answer must fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Structured {
    /// How the answer is asked for: a tool call (`tools`), content (`json_schema`, `json`),
    /// or content in a fenced block (`md_json`). In `json` and `md_json` modes the schema is
    /// also in the system prompt.
    pub mode: crate::Mode,
    /// The schema to enforce: as given (neither wrapped nor rewritten for strict mode), with
    /// objects that list their properties closed (see `ResponseSchema::closed_schema`).
    pub schema: Value,
    /// The tool's or schema's name.
    pub name: String,
    /// What the answer must be grounded in, when it must: a provider that decodes under a
    /// grammar may hold each grounded value to what the inputs say (see
    /// [`grounding`](crate::grounding)) while it decodes.
    #[serde(skip)]
    pub grounding: Option<std::sync::Arc<crate::grounding::Sources>>,
}

impl Structured {
    /// A structured request in `mode` for `schema`, named `name`.
    pub fn new(mode: crate::Mode, name: impl Into<String>, schema: Value) -> Self {
        Self {
            mode,
            schema,
            name: name.into(),
            grounding: None,
        }
    }

    /// The same, its answer grounded in `sources`.
    #[must_use]
    pub fn with_grounding(
        mut self,
        sources: Option<std::sync::Arc<crate::grounding::Sources>>,
    ) -> Self {
        self.grounding = sources;
        self
    }
}

/// Token counts of one call or, summed, of several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Of the prompt tokens, those read from the provider's prompt cache (billed at a lower
    /// price by most providers).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, rhs: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens + rhs.input_tokens,
            output_tokens: self.output_tokens + rhs.output_tokens,
            cached_input_tokens: self.cached_input_tokens + rhs.cached_input_tokens,
        }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        *self = *self + rhs;
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Usage>>(iter: I) -> Usage {
        iter.fold(Usage::default(), |a, b| a + b)
    }
}

/// A model's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatResponse {
    /// The provider's id for this completion.
    pub id: Option<String>,
    /// The model that answered.
    pub model: Option<String>,
    /// Text content.
    pub content: Option<String>,
    /// Tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped (`stop`, `length`, `tool_calls`, ...).
    pub finish_reason: Option<String>,
    /// Tokens used.
    pub usage: Usage,
    /// The provider's raw answer, for inspection.
    pub raw: Value,
}

/// What a refusal says when the provider gave no words of its own, only the finish reason
/// `content_filter`.
pub const FILTERED: &str = "the provider withheld the answer (finish reason `content_filter`: a safety filter, or the model declined)";

/// Why a model stopped, as the providers' `finish_reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinishReason {
    /// The answer is complete (`stop`, `end_turn`).
    Stop,
    /// The token limit cut the answer off (`length`, `max_tokens`): every provider's
    /// truncation, the embedded model's too.
    Length,
    /// The model called tools (`tool_calls`, `tool_use`).
    ToolCalls,
    /// A filter stopped the answer (`content_filter`).
    ContentFilter,
    /// Anything else.
    Other,
}

impl FinishReason {
    /// Reads a provider's `finish_reason`.
    pub fn parse(reason: &str) -> Self {
        match reason {
            "stop" | "end_turn" | "stop_sequence" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "tool_calls" | "tool_use" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            _ => FinishReason::Other,
        }
    }
}

impl ChatResponse {
    /// Why generation stopped, if the provider said.
    pub fn finish(&self) -> Option<FinishReason> {
        self.finish_reason.as_deref().map(FinishReason::parse)
    }

    /// Whether the token limit cut the answer off.
    pub fn truncated(&self) -> bool {
        self.finish() == Some(FinishReason::Length)
    }

    /// The model's refusal to answer, when it gave one: OpenAI's `message.refusal`, or
    /// [`FILTERED`] when the answer stopped for `content_filter` (Anthropic's `refusal`,
    /// Gemini's safety stops).
    pub fn refusal(&self) -> Option<&str> {
        self.raw
            .pointer("/choices/0/message/refusal")
            .and_then(Value::as_str)
            .filter(|r| !r.trim().is_empty())
            .or_else(|| (self.finish() == Some(FinishReason::ContentFilter)).then_some(FILTERED))
    }

    /// The assistant turn to echo back in a re-ask.
    pub fn to_message(&self) -> Message {
        Message {
            role: Role::Assistant,
            content: self.content.clone(),
            tool_calls: self.tool_calls.clone(),
            tool_call_id: None,
            is_error: false,
        }
    }
}

/// A piece of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChatDelta {
    /// The completion's id and model, when the provider says.
    Meta {
        /// The provider's id for the completion.
        id: Option<String>,
        /// The model answering.
        model: Option<String>,
    },
    /// More message text.
    Content(String),
    /// More of the model's refusal to answer (OpenAI's `refusal`).
    Refusal(String),
    /// More of a tool call; calls are told apart by `index`.
    ToolCall {
        /// Which call this delta extends.
        index: usize,
        /// The call's id (usually only in its first delta).
        id: Option<String>,
        /// The function's name (usually only in its first delta).
        name: Option<String>,
        /// More of the arguments' JSON text.
        arguments: String,
    },
    /// Why generation stopped.
    Finish(String),
    /// Tokens used by the whole call (usually last).
    Usage(Usage),
}

/// A streamed answer. Dropping it closes the upstream connection.
pub type ChatStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<ChatDelta, crate::ProviderError>> + Send + 'static>,
>;
