//! The attempt loop, once for every kind of extraction: typed or against a schema given as
//! data, answered whole or streamed (list elements as they close, or partial snapshots).
//!
//! Each attempt asks the model, reads its answer, validates it against the whole schema and
//! then decodes it (deserialisation and the caller's rules for a typed extraction, nothing
//! more for a dynamic one). A failed attempt is recorded and its errors fed back for the next
//! one, until `max_retries` re-asks are spent. Usage is summed over the attempts.

use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use serde_json::Value;
use tracing::Instrument;

use crate::extract::{Attempt, AttemptOutcome, ExtractError};
use crate::message::{ChatDelta, ChatRequest, ChatResponse, Usage};
use crate::mode::{Mode, ReadError, parse_json};
use crate::provider::{Provider, ProviderError};
use crate::reader::{AnswerReader, Purpose};
use crate::schema::Schema;
use crate::stream::{StreamError, StreamStats};
use crate::trace;
use crate::validate::FieldError;

/// Turns a value that passed the schema into the caller's type, or says what is wrong.
pub(crate) type Decode<T> = Arc<dyn Fn(&Value) -> Result<T, Vec<FieldError>> + Send + Sync>;

/// How the answer is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// One value, from a plain (non-streamed) call.
    Whole,
    /// One value, streamed: snapshots as it grows.
    Partial,
    /// A list, streamed: each element as it closes.
    Elements,
}

/// Everything one extraction needs.
pub(crate) struct Job<T> {
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) request: ChatRequest,
    pub(crate) mode: Mode,
    pub(crate) max_retries: u32,
    /// What the model is asked for (for [`Delivery::Elements`], the list).
    pub(crate) schema: Schema,
    /// Whether the provider constrains decoding (it is shown the schema as it is: see
    /// `ResponseSchema::unwrap_value`).
    pub(crate) constrained: bool,
    /// For [`Delivery::Elements`]: the schema of one element.
    pub(crate) element: Option<Schema>,
    /// Applied to the whole value, or to each element.
    pub(crate) decode: Decode<T>,
    /// The name on the extraction span (`UserDetail`, `Iterable[UserDetail]`).
    pub(crate) span_name: String,
    /// The extractor's name, for telemetry.
    pub(crate) extractor: Option<String>,
}

/// What the loop yields.
#[derive(Debug)]
pub(crate) enum Event<T> {
    /// A list element (valid and decoded, or reported as [`StreamError::Item`]).
    Element(Result<T, StreamError>),
    /// The value so far (partial delivery).
    Snapshot(Value),
    /// The attempt failed and another starts (partial delivery).
    Retry {
        attempt: u32,
        errors: Vec<FieldError>,
    },
    /// The validated value (whole or partial delivery) and the last response.
    Done { value: T, response: ChatResponse },
}

/// Runs `job`. Ends after `Done`, after the last element, or after an error.
pub(crate) fn run<T: Send + 'static>(
    job: Job<T>,
    delivery: Delivery,
    stats: StreamStats,
    parent: tracing::Span,
) -> impl Stream<Item = Result<Event<T>, ExtractError>> + Send {
    async_stream::stream! {
        let Job { provider, mut request, mode, max_retries, schema, constrained, element, decode, span_name, extractor } = job;
        let mut ending = Ending::new(&parent, &span_name, extractor.as_deref(), mode, max_retries, delivery, stats.clone());
        ending.constrained = constrained;
        // A schema the provider cannot enforce is refused before any call, never answered
        // unconstrained.
        if let Err(e) = provider.check_schema(schema.response().shown(constrained)) {
            ending.outcome = "schema";
            yield Err(ExtractError::Schema(e));
            return;
        }
        let span = ending.span.clone();
        let element = element.unwrap_or_else(|| schema.clone());
        let mut index = 0usize;
        for number in 1..=max_retries + 1 {
            let started = Instant::now();
            let chat_span = trace::chat_span(&span, provider.name(), &request, mode, number, delivery != Delivery::Whole, extractor.as_deref());
            let mut answer = Answer { usage: Usage::default(), finish: None, failure: None, output: None, value: None };

            let response = if delivery == Delivery::Whole {
                let response = match provider.chat(&request).instrument(chat_span.clone()).await {
                    Ok(r) => r,
                    Err(e) => {
                        yield Err(ending.provider_failure(&chat_span, number, started, e));
                        return;
                    }
                };
                trace::record_response(&chat_span, &response);
                drop(chat_span);
                answer = Answer::whole(mode, &schema, &response);
                response
            } else {
                let mut chat = match provider.chat_stream(&request).instrument(chat_span.clone()).await {
                    Ok(c) => c,
                    Err(e) => {
                        yield Err(ending.provider_failure(&chat_span, number, started, e));
                        return;
                    }
                };
                let purpose = if delivery == Delivery::Elements { Purpose::Elements } else { Purpose::Whole };
                let mut reader = AnswerReader::new(mode, purpose, element.name());
                let mut snapshots = Snapshots::default();
                let mut done = Vec::new();
                let mut seen_token = false;
                while let Some(delta) = chat.next().await {
                    match delta {
                        Err(e) => {
                            drop(chat);
                            yield Err(ending.provider_failure(&chat_span, number, started, e));
                            return;
                        }
                        Ok(ChatDelta::Usage(u)) => answer.usage = u,
                        Ok(ChatDelta::Finish(r)) => answer.finish = Some(r),
                        // After a failure the rest is still read (the reader only records it),
                        // for the usage it reports and the full text to echo back.
                        Ok(d) => {
                            if !seen_token && !matches!(d, ChatDelta::Meta { .. }) {
                                seen_token = true;
                                trace::record_ms(&chat_span, "sift.time_to_first_token_ms", started);
                            }
                            snapshots.fed += match &d {
                                ChatDelta::Content(t) => t.len(),
                                ChatDelta::ToolCall { arguments, .. } => arguments.len(),
                                _ => 0,
                            };
                            if let Err(e) = reader.push(d, &mut done) {
                                answer.fail_reading(e);
                                continue;
                            }
                            if delivery == Delivery::Partial
                                && reader.progressed
                                && snapshots.due()
                                && let Some(v) = reader.partial()
                            {
                                yield Ok(Event::Snapshot(schema.response().unwrap_value(v, constrained)));
                            }
                        }
                    }
                    for value in done.drain(..) {
                        yield Ok(Event::Element(ending.element(&chat_span, started, &element, &decode, value, index)));
                        index += 1;
                    }
                }
                drop(chat);
                if answer.failure.is_none()
                    && let Err(e) = reader.finish(&mut done)
                {
                    answer.fail_reading(e);
                }
                for value in done.drain(..) {
                    yield Ok(Event::Element(ending.element(&chat_span, started, &element, &decode, value, index)));
                    index += 1;
                }
                if delivery == Delivery::Partial && answer.failure.is_none() {
                    match reader.take_value() {
                        Some(v) => answer.value = Some(v),
                        None => answer.failure = Some((AttemptOutcome::NoOutput, "no JSON found in the answer".into())),
                    }
                }
                let response = reader.to_response(answer.usage, answer.finish.clone());
                trace::record_response(&chat_span, &response);
                if delivery == Delivery::Elements {
                    trace::record_count(&chat_span, "sift.elements", ending.elements_in_attempt);
                    ending.elements_in_attempt = 0;
                }
                trace::end(chat_span);
                response
            };

            // A streamed list may end with no answer left over: its elements were the answer.
            if delivery == Delivery::Elements && answer.failure.is_none() && answer.value.is_none() {
                stats.push(record(number, started.elapsed(), &answer, AttemptOutcome::Success, Vec::new()));
                ending.outcome = "success";
                return;
            }
            let (outcome, errors) = match span.in_scope(|| judge(&mut answer, &schema, &decode, constrained, &response)) {
                Ok(value) => {
                    stats.push(record(number, started.elapsed(), &answer, AttemptOutcome::Success, Vec::new()));
                    ending.outcome = "success";
                    yield Ok(Event::Done { value, response });
                    return;
                }
                Err(failed) => failed,
            };
            let next = after_failure(&answer, number, max_retries);
            let outcome = if next == Next::TokenLimit { AttemptOutcome::Truncated } else { outcome };
            let attempts = stats.push(record(number, started.elapsed(), &answer, outcome, errors.clone()));
            let usage = attempts.iter().map(|a| a.usage).sum();
            if index > 0 {
                ending.outcome = "incomplete";
                yield Err(ExtractError::Incomplete { emitted: index, attempts, usage });
                return;
            }
            match next {
                Next::TokenLimit => {
                    ending.outcome = "token_limit";
                    yield Err(ExtractError::TokenLimit { limit: request.max_tokens, attempts, usage });
                    return;
                }
                Next::Exhausted => {
                    ending.outcome = "retries_exhausted";
                    yield Err(ExtractError::RetriesExhausted { attempts, usage, last_response: Some(Box::new(response)) });
                    return;
                }
                Next::Reask => {}
            }
            if delivery == Delivery::Partial {
                yield Ok(Event::Retry { attempt: number, errors: errors.clone() });
            }
            request.messages.extend(mode.reask(schema.response(), &response, &errors));
        }
    }
}

/// When a partial stream shows the value so far. Each snapshot copies the whole value, so
/// one per chunk costs time quadratic in the answer's size (an 80 KB object in 4-byte chunks:
/// 20,000 copies); instead a snapshot is shown once the answer has grown by an eighth since
/// the last one, which shows a small answer at every chunk and keeps the copying of a large
/// one linear in its size.
#[derive(Debug, Default)]
struct Snapshots {
    /// Bytes of answer text read.
    fed: usize,
    /// `fed` at the last snapshot.
    shown_at: usize,
}

impl Snapshots {
    /// Whether a snapshot is due now (and, if so, counts it as shown).
    fn due(&mut self) -> bool {
        let due = self.fed - self.shown_at >= self.shown_at / 8;
        if due {
            self.shown_at = self.fed;
        }
        due
    }
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// The answer was cut off: the extraction ends with `TokenLimit`.
    TokenLimit,
    /// No re-ask is left: it ends with `RetriesExhausted`.
    Exhausted,
    /// The model is asked again, with the errors.
    Reask,
}

/// The one truncation rule, for every provider (remote ones and the embedded model all say
/// `finish_reason: length`), then the re-ask budget: a cut answer that failed is `Truncated`
/// and ends the extraction (re-asking under the same limit would be cut again); otherwise the
/// model is asked again while re-asks are left.
pub(crate) fn after_failure(answer: &Answer, number: u32, max_retries: u32) -> Next {
    if answer.finish.as_deref() == Some("length") {
        Next::TokenLimit
    } else if number > max_retries {
        Next::Exhausted
    } else {
        Next::Reask
    }
}

/// The verdict on an answer: its value, checked against the whole schema and decoded, or the
/// outcome and errors of the failed attempt (recorded on the current span).
pub(crate) fn judge<T>(
    answer: &mut Answer,
    schema: &Schema,
    decode: &Decode<T>,
    constrained: bool,
    response: &ChatResponse,
) -> Result<T, (AttemptOutcome, Vec<FieldError>)> {
    match (answer.failure.take(), answer.value.take()) {
        (Some((outcome, message)), _) => {
            let errors = vec![FieldError::new("", message)];
            let text = answer.output.as_deref().or(response.content.as_deref());
            trace::unreadable(schema.name(), text, &errors);
            Err((outcome, errors))
        }
        (None, None) => Err((
            AttemptOutcome::NoOutput,
            vec![FieldError::new("", "no JSON found in the answer")],
        )),
        (None, Some(value)) => {
            let value = schema.response().unwrap_value(value, constrained);
            check(schema, decode, &value)
                .map_err(|errors| (AttemptOutcome::ValidationFailed, errors))
        }
    }
}

/// What one attempt produced.
pub(crate) struct Answer {
    usage: Usage,
    finish: Option<String>,
    /// Why the answer could not be read.
    failure: Option<(AttemptOutcome, String)>,
    /// The JSON text, when read whole.
    output: Option<String>,
    value: Option<Value>,
}

impl Answer {
    /// A whole (not streamed) answer read in `mode`: its JSON text and value, or why there is
    /// none.
    pub(crate) fn whole(mode: Mode, schema: &Schema, response: &ChatResponse) -> Self {
        let mut answer = Answer {
            usage: response.usage,
            finish: response.finish_reason.clone(),
            failure: None,
            output: None,
            value: None,
        };
        match mode.read(schema.response(), response) {
            Err(ReadError::Missing(m)) => answer.failure = Some((AttemptOutcome::NoOutput, m)),
            Err(ReadError::InvalidJson(m)) => {
                answer.failure = Some((AttemptOutcome::InvalidJson, m));
            }
            Ok(text) => {
                answer.output = Some(text.to_owned());
                match parse_json(text) {
                    Ok(v) => answer.value = Some(v),
                    Err(ReadError::InvalidJson(m) | ReadError::Missing(m)) => {
                        answer.failure = Some((AttemptOutcome::InvalidJson, m));
                    }
                }
            }
        }
        answer
    }

    fn fail_reading(&mut self, message: String) {
        if self.failure.is_none() {
            let outcome = if message.starts_with("invalid JSON") {
                AttemptOutcome::InvalidJson
            } else {
                AttemptOutcome::NoOutput
            };
            self.failure = Some((outcome, message));
        }
    }
}

pub(crate) fn record(
    number: u32,
    duration: std::time::Duration,
    answer: &Answer,
    outcome: AttemptOutcome,
    errors: Vec<FieldError>,
) -> Attempt {
    Attempt {
        number,
        duration,
        usage: answer.usage,
        outcome,
        errors,
        output: answer.output.clone(),
    }
}

/// Checks `value` against the whole schema, then decodes it; records the validation.
pub(crate) fn check<T>(
    schema: &Schema,
    decode: &Decode<T>,
    value: &Value,
) -> Result<T, Vec<FieldError>> {
    let mut result = Err(schema.errors(value));
    if result.as_ref().is_err_and(Vec::is_empty) {
        result = decode(value);
    }
    trace::validation(
        schema.name(),
        value,
        result.as_ref().map(|_| ()).map_err(Vec::as_slice),
    );
    result
}

/// Records how an extraction ended on its span, also when it is dropped before it ends
/// (outcome `cancelled`).
struct Ending {
    span: tracing::Span,
    stats: StreamStats,
    outcome: &'static str,
    elements: Option<usize>,
    elements_in_attempt: usize,
    first_element: bool,
    /// Whether the provider constrains decoding (elements are then taken as they are).
    constrained: bool,
}

impl Ending {
    /// The extraction's span, a child of `parent` (the span current when the extraction was
    /// made, not when it is first polled).
    fn new(
        parent: &tracing::Span,
        name: &str,
        extractor: Option<&str>,
        mode: Mode,
        max_retries: u32,
        delivery: Delivery,
        stats: StreamStats,
    ) -> Self {
        let stream = delivery != Delivery::Whole;
        Self {
            span: parent
                .in_scope(|| trace::extract_span(name, extractor, mode, max_retries, stream)),
            stats,
            outcome: "cancelled",
            elements: (delivery == Delivery::Elements).then_some(0),
            elements_in_attempt: 0,
            first_element: false,
            constrained: false,
        }
    }

    /// A model call that failed: recorded on its span and in the attempts, and as the
    /// outcome.
    fn provider_failure(
        &mut self,
        chat_span: &tracing::Span,
        number: u32,
        started: Instant,
        source: ProviderError,
    ) -> ExtractError {
        trace::record_chat_error(chat_span, &source);
        let attempts = self
            .stats
            .push(Attempt::provider_failure(number, started, &source));
        let e = ExtractError::provider(number, source, attempts);
        self.outcome = e.kind();
        e
    }

    /// Validates one streamed element inside the generation's span.
    fn element<T>(
        &mut self,
        chat_span: &tracing::Span,
        started: Instant,
        schema: &Schema,
        decode: &Decode<T>,
        mut value: Value,
        index: usize,
    ) -> Result<T, StreamError> {
        schema
            .response()
            .drop_strict_nulls(&mut value, self.constrained);
        if !self.first_element {
            self.first_element = true;
            trace::record_ms(chat_span, "sift.time_to_first_element_ms", started);
            trace::record_ms(&self.span, "sift.time_to_first_element_ms", started);
        }
        if let Some(n) = self.elements.as_mut() {
            *n += 1;
        }
        self.elements_in_attempt += 1;
        chat_span.in_scope(|| {
            let text = trace::content_allowed().then(|| value.to_string());
            tracing::debug!(
                index = index as i64,
                value = text.as_deref(),
                "emitted {{index}}"
            );
            check(schema, decode, &value).map_err(|errors| StreamError::Item {
                index,
                errors,
                value,
            })
        })
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        if let Some(n) = self.elements {
            trace::record_count(&self.span, "sift.elements", n);
        }
        trace::record_extract_end(
            &self.span,
            self.stats.count(),
            self.outcome,
            self.stats.usage(),
        );
    }
}
