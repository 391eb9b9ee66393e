//! The spans and records sift's extraction emits, as plain `tracing` (no OpenTelemetry here;
//! `sift-telemetry` turns them into OTel spans with Logfire's attributes). Every name and
//! attribute is listed in `docs/telemetry.md`.
//!
//! - `extract {Type}`: one per extraction, around all its attempts;
//! - `chat {model}` (kind CLIENT): one per model call, with the OpenTelemetry GenAI
//!   attributes; for a stream it lasts the whole generation;
//! - `validate {Type} succeeded|failed`: a log per validation, with the input and the result
//!   or the errors (Logfire's Pydantic `record="all"`).
//!
//! Message content (`gen_ai.input.messages`, `gen_ai.output.messages`) is recorded as the
//! client's [`Recording`] says.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use tracing::{Span, field};

use crate::message::{ChatRequest, ChatResponse, Message, Role, ToolCall};
use crate::report::Scrub;
use crate::validate::FieldError;
use crate::{Mode, ProviderError, Usage};

/// Counts are recorded as `i64`: OpenTelemetry has no unsigned integers, and a `u64` field
/// would reach it as text.
fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// What extractions show of their content (prompts, answers, extracted values, request
/// bodies), and how what clients are shown is scrubbed: a setting of a
/// [`Client`](crate::Client) and of the service's state, not of the process, so two clients in
/// one process can differ.
#[derive(Clone)]
pub struct Recording {
    spans: bool,
    logs: bool,
    scrub: Option<Arc<Scrub>>,
}

impl Default for Recording {
    /// Content on spans and in logs, nothing scrubbed.
    fn default() -> Self {
        Self {
            spans: true,
            logs: true,
            scrub: None,
        }
    }
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("spans", &self.spans)
            .field("logs", &self.logs)
            .field("scrub", &self.scrub.is_some())
            .finish()
    }
}

impl Recording {
    /// Whether message content goes on chat spans and validation records (on by default;
    /// `sift` turns it on only where something shows it: an exporter or the verbose console).
    #[must_use]
    pub fn with_span_content(mut self, on: bool) -> Self {
        self.spans = on;
        self
    }

    /// Whether content may appear in logs at all (on by default; `--record-content false`
    /// forbids it, on spans too). Where it is allowed, logs whose message shows a value
    /// (`/User returning {value}`) carry it.
    #[must_use]
    pub fn with_log_content(mut self, on: bool) -> Self {
        self.logs = on;
        self
    }

    /// The scrubbing every failure report applies to its messages and its attempts' errors
    /// (the service's error bodies, the command line's output): `sift` gives telemetry's, so
    /// a client sees no more than the logs do. Without one, reports are left as they are
    /// (providers mask their own keys in what upstreams echo).
    #[must_use]
    pub fn with_scrubber(mut self, scrub: Arc<Scrub>) -> Self {
        self.scrub = Some(scrub);
        self
    }

    /// Whether message content is recorded on spans.
    pub fn span_content(&self) -> bool {
        self.spans && self.logs
    }

    /// Whether content may appear in logs.
    pub fn log_content(&self) -> bool {
        self.logs
    }

    /// `text` scrubbed, if a scrubber is set and it finds something.
    pub fn scrub(&self, text: String) -> String {
        match self.scrub.as_ref().and_then(|f| f(&text)) {
            Some(clean) => clean,
            None => text,
        }
    }
}

/// The span around one extraction.
pub(crate) fn extract_span(
    response_model: &str,
    extractor: Option<&str>,
    mode: Mode,
    max_retries: u32,
    stream: bool,
) -> Span {
    tracing::info_span!(
        "extract",
        otel.name = format!("extract {response_model}"),
        otel.status_code = field::Empty,
        logfire.msg_template = "extract {response_model}",
        response_model = response_model,
        sift.extractor = extractor,
        mode = %mode,
        max_retries = int(max_retries),
        sift.stream = stream,
        attempts = field::Empty,
        outcome = field::Empty,
        gen_ai.usage.input_tokens = field::Empty,
        gen_ai.usage.output_tokens = field::Empty,
        sift.elements = field::Empty,
        sift.time_to_first_element_ms = field::Empty,
    )
}

/// Records how an extraction ended on its span.
pub(crate) fn record_extract_end(span: &Span, attempts: usize, outcome: &str, usage: Usage) {
    let Some(meta) = span.metadata() else { return };
    let fields = meta.fields();
    let (Some(f_attempts), Some(f_outcome), Some(f_input), Some(f_output), Some(f_status)) = (
        fields.field("attempts"),
        fields.field("outcome"),
        fields.field("gen_ai.usage.input_tokens"),
        fields.field("gen_ai.usage.output_tokens"),
        fields.field("otel.status_code"),
    ) else {
        return;
    };
    let (attempts, input, output) = (
        int(attempts),
        int(usage.input_tokens),
        int(usage.output_tokens),
    );
    let error = (outcome != "success").then_some("ERROR");
    // One record for all of them: each `record` call goes through every layer.
    let values: [(&field::Field, Option<&dyn tracing::Value>); 5] = [
        (&f_attempts, Some(&attempts as &dyn tracing::Value)),
        (&f_outcome, Some(&outcome as &dyn tracing::Value)),
        (&f_input, Some(&input as &dyn tracing::Value)),
        (&f_output, Some(&output as &dyn tracing::Value)),
        (&f_status, error.as_ref().map(|v| v as &dyn tracing::Value)),
    ];
    span.record_all(&fields.value_set(&values));
}

/// What a model call is, for its span.
pub(crate) struct Call<'a> {
    pub(crate) provider: &'a str,
    /// How the answer is asked for; `None` for a plain chat call (free text).
    pub(crate) mode: Option<Mode>,
    pub(crate) attempt: u32,
    pub(crate) stream: bool,
    pub(crate) extractor: Option<&'a str>,
}

/// The span around one model call.
pub(crate) fn chat_span(
    parent: &Span,
    call: Call<'_>,
    request: &ChatRequest,
    recording: &Recording,
) -> Span {
    let Call {
        provider,
        mode,
        attempt,
        stream,
        extractor,
    } = call;
    let span = tracing::info_span!(
        parent: parent,
        "chat",
        otel.name = format!("chat {}", request.model),
        otel.kind = "client",
        otel.status_code = field::Empty,
        otel.status_description = field::Empty,
        logfire.msg_template = "chat {gen_ai.request.model}",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = provider,
        gen_ai.request.model = %request.model,
        // Values given at creation (evaluated only when the span is enabled; `None` is not
        // recorded) rather than recorded after: each `record` goes through every layer.
        gen_ai.request.temperature = request.temperature.map(f64::from),
        gen_ai.request.max_tokens = request.max_tokens.map(int),
        gen_ai.output.type = if mode.is_some() { "json" } else { "text" },
        sift.mode = mode.map(Mode::as_str),
        sift.attempt = int(attempt),
        sift.stream = stream,
        // On the call too, so the GenAI metrics read off this span are labelled with it.
        sift.extractor = extractor,
        gen_ai.input.messages = recording.span_content().then(|| input_messages(&request.messages)),
        gen_ai.output.messages = field::Empty,
        gen_ai.response.model = field::Empty,
        gen_ai.response.id = field::Empty,
        gen_ai.response.finish_reasons = field::Empty,
        gen_ai.usage.input_tokens = field::Empty,
        gen_ai.usage.output_tokens = field::Empty,
        gen_ai.usage.cache_read.input_tokens = field::Empty,
        error.r#type = field::Empty,
        sift.time_to_first_token_ms = field::Empty,
        sift.time_to_first_element_ms = field::Empty,
        sift.elements = field::Empty,
    );
    span
}

/// Records a model call that failed.
pub(crate) fn record_chat_error(span: &Span, error: &ProviderError) {
    span.record("error.type", error.kind());
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", error.to_string().as_str());
}

/// Records an answer on its chat span.
pub(crate) fn record_response(span: &Span, response: &ChatResponse, recording: &Recording) {
    let Some(meta) = span.metadata() else { return };
    let fields = meta.fields();
    let (
        Some(model),
        Some(id),
        Some(finish),
        Some(input),
        Some(output),
        Some(cached),
        Some(messages),
    ) = (
        fields.field("gen_ai.response.model"),
        fields.field("gen_ai.response.id"),
        fields.field("gen_ai.response.finish_reasons"),
        fields.field("gen_ai.usage.input_tokens"),
        fields.field("gen_ai.usage.output_tokens"),
        fields.field("gen_ai.usage.cache_read.input_tokens"),
        fields.field("gen_ai.output.messages"),
    )
    else {
        return;
    };
    let finish_reasons = response
        .finish_reason
        .as_ref()
        .map(|f| json!([f]).to_string());
    let content = recording.span_content().then(|| output_messages(response));
    let (input_tokens, output_tokens) = (
        int(response.usage.input_tokens),
        int(response.usage.output_tokens),
    );
    // Recorded only when the provider read some of the prompt from its cache.
    let cached_tokens =
        (response.usage.cached_input_tokens > 0).then(|| int(response.usage.cached_input_tokens));
    // One record for all of them: each `record` call goes through every layer.
    let values: [(&field::Field, Option<&dyn tracing::Value>); 7] = [
        (
            &model,
            response.model.as_ref().map(|v| v as &dyn tracing::Value),
        ),
        (&id, response.id.as_ref().map(|v| v as &dyn tracing::Value)),
        (
            &finish,
            finish_reasons.as_ref().map(|v| v as &dyn tracing::Value),
        ),
        (&input, Some(&input_tokens as &dyn tracing::Value)),
        (&output, Some(&output_tokens as &dyn tracing::Value)),
        (
            &cached,
            cached_tokens.as_ref().map(|v| v as &dyn tracing::Value),
        ),
        (
            &messages,
            content.as_ref().map(|v| v as &dyn tracing::Value),
        ),
    ];
    span.record_all(&fields.value_set(&values));
}

/// Ends a span now. OpenTelemetry takes a span's end from its last exit, so a span that was
/// last entered a while ago (a generation whose last element came before the usage) is
/// entered once more.
pub(crate) fn end(span: tracing::Span) {
    span.in_scope(|| {});
}

/// Records a count.
pub(crate) fn record_count(span: &Span, key: &'static str, n: usize) {
    span.record(key, int(n));
}

/// Records the time since `started` under `key` (milliseconds).
pub(crate) fn record_ms(span: &Span, key: &'static str, started: Instant) {
    span.record(key, started.elapsed().as_secs_f64() * 1000.0);
}

/// A message in the GenAI conventions' JSON shape, serialised straight from sift's types.
#[derive(Serialize)]
struct GenAiMessage<'a> {
    role: Role,
    parts: Vec<GenAiPart<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum GenAiPart<'a> {
    Text {
        content: &'a str,
    },
    ToolCall {
        id: &'a str,
        name: &'a str,
        arguments: Arguments<'a>,
    },
    ToolCallResponse {
        id: Option<&'a str>,
        response: &'a str,
    },
}

/// Tool-call arguments: as JSON when they are JSON, else as the text the model wrote.
struct Arguments<'a>(&'a str);

impl Serialize for Arguments<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&serde_json::value::RawValue>(self.0) {
            Ok(raw) => raw.serialize(s),
            Err(_) => s.serialize_str(self.0),
        }
    }
}

fn genai<'a>(
    role: Role,
    content: Option<&'a str>,
    calls: &'a [ToolCall],
    call_id: Option<&'a str>,
) -> GenAiMessage<'a> {
    let mut parts = Vec::with_capacity(1 + calls.len());
    if let Some(text) = content {
        parts.push(if role == Role::Tool {
            GenAiPart::ToolCallResponse {
                id: call_id,
                response: text,
            }
        } else {
            GenAiPart::Text { content: text }
        });
    }
    parts.extend(calls.iter().map(|c| GenAiPart::ToolCall {
        id: &c.id,
        name: &c.name,
        arguments: Arguments(&c.arguments),
    }));
    GenAiMessage {
        role,
        parts,
        finish_reason: None,
    }
}

/// The request's messages in the GenAI conventions' JSON shape.
pub fn input_messages(messages: &[Message]) -> String {
    let list: Vec<GenAiMessage<'_>> = messages
        .iter()
        .map(|m| {
            genai(
                m.role,
                m.content.as_deref(),
                &m.tool_calls,
                m.tool_call_id.as_deref(),
            )
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_default()
}

/// The answer in the GenAI conventions' JSON shape.
pub fn output_messages(response: &ChatResponse) -> String {
    let mut message = genai(
        Role::Assistant,
        response.content.as_deref(),
        &response.tool_calls,
        None,
    );
    message.finish_reason = Some(response.finish_reason.as_deref().unwrap_or("stop"));
    serde_json::to_string(&[message]).unwrap_or_default()
}

/// Records one validation, as Logfire's Pydantic plugin does with `record="all"`.
pub(crate) fn validation(
    schema_name: &str,
    input: &Value,
    result: Result<(), &[FieldError]>,
    recording: &Recording,
) {
    // The value is content (the model's answer): written out only where content is recorded,
    // and once for both `input_data` and `result` (the validated value is the input).
    let text = |enabled: bool| (enabled && recording.span_content()).then(|| input.to_string());
    match result {
        Ok(()) => {
            let text = text(tracing::enabled!(tracing::Level::INFO));
            tracing::info!(
                schema_name,
                validation_method = "validate_json",
                success = true,
                input_data = text.as_deref(),
                result = text.as_deref(),
                "validate {{schema_name}} succeeded"
            );
        }
        Err(errors) => {
            let text = text(tracing::enabled!(tracing::Level::WARN));
            tracing::warn!(
                schema_name,
                validation_method = "validate_json",
                success = false,
                input_data = text.as_deref(),
                error_count = int(errors.len()),
                errors = %serde_json::to_string(errors).unwrap_or_default(),
                "validate {{schema_name}} failed"
            );
        }
    }
}

/// Records an answer that failed before validation (no JSON, no tool call).
pub(crate) fn unreadable(
    schema_name: &str,
    text: Option<&str>,
    errors: &[FieldError],
    recording: &Recording,
) {
    tracing::warn!(
        schema_name,
        validation_method = "validate_json",
        success = false,
        input_data = text.filter(|_| recording.span_content()),
        error_count = int(errors.len()),
        errors = %serde_json::to_string(errors).unwrap_or_default(),
        "validate {{schema_name}} failed"
    );
}
