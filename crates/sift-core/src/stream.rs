//! Streamed extraction: list elements as they close ([`Client::extract_iter`]) and partial
//! values as they fill in ([`Client::extract_partial`]).
//!
//! # Failures and retries
//!
//! - **An element that fails validation** is reported in place as
//!   [`StreamError::Item`] (its index, its errors and the raw value) and the stream goes on
//!   with the next element: one bad element never hides the good ones, and is never dropped
//!   silently.
//! - **An answer that breaks** (malformed JSON, no tool call, cut off by the token limit)
//!   before any element was handed over is re-asked like a non-streamed extraction, up to
//!   `max_retries`; the consumer sees nothing of the failed attempt. Once elements have been
//!   handed over, a break ends the stream with [`ExtractError::Incomplete`], saying how many
//!   came through, rather than re-asking and delivering them twice.
//! - **Partial streams** re-ask when the completed value fails validation. The consumer then
//!   sees [`PartialUpdate::Retry`] (the attempt number and its errors): every snapshot before
//!   it is void, and snapshots start again from empty.
//!
//! Usage and attempts are summed over every attempt, as for [`ExtractBuilder::send`]; read
//! them from the stream once it ends.
//!
//! [`Client::extract_iter`]: crate::Client::extract_iter
//! [`Client::extract_partial`]: crate::Client::extract_partial

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::{Stream, StreamExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::extract::{
    Attempt, AttemptOutcome, Check, ExtractBuilder, ExtractError, Iterable, PartialStream,
    check_value, compiled_schema,
};
use crate::message::{ChatDelta, ChatRequest, Usage};
use crate::partial::PartialObject;
use crate::provider::Provider;
use crate::reader::{AnswerReader, Purpose};
use crate::trace;
use crate::validate::FieldError;

/// What a streamed extraction yields besides values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// One element failed validation; the stream goes on.
    #[error("element {index} is invalid")]
    Item {
        /// Its position in the list (counting every element, valid or not).
        index: usize,
        /// What is wrong with it.
        errors: Vec<FieldError>,
        /// The element as the model wrote it.
        value: Value,
    },
    /// The extraction failed; the stream ends.
    #[error(transparent)]
    Extract(#[from] ExtractError),
}

impl StreamError {
    /// Whether the stream ends after this error.
    pub fn is_terminal(&self) -> bool {
        matches!(self, StreamError::Extract(_))
    }
}

/// One step of a partial stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PartialUpdate<T: PartialObject> {
    /// The value so far: completed fields, and the string being written.
    Snapshot(T::Fields),
    /// The attempt's value failed validation and a new attempt starts: discard the snapshots
    /// seen so far; new ones start from empty.
    Retry {
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed.
        errors: Vec<FieldError>,
    },
    /// The complete, validated value. The last item.
    Done(T),
}

#[derive(Debug, Default)]
struct Progress {
    attempts: Vec<Attempt>,
}

/// Tokens and attempts of a stream, readable while and after it runs.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    progress: Arc<Mutex<Progress>>,
}

impl StreamStats {
    fn with<R>(&self, f: impl FnOnce(&mut Progress) -> R) -> R {
        match self.progress.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Tokens used by the attempts finished so far.
    pub fn usage(&self) -> Usage {
        self.with(|p| p.attempts.iter().map(|a| a.usage).sum())
    }

    /// The attempts finished so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.with(|p| p.attempts.clone())
    }

    fn count(&self) -> usize {
        self.with(|p| p.attempts.len())
    }

    fn push(&self, attempt: Attempt) -> Vec<Attempt> {
        self.with(|p| {
            p.attempts.push(attempt);
            p.attempts.clone()
        })
    }
}

/// A stream of extracted items that also tells its usage. Dropping it cancels the model call.
pub struct ExtractStream<I> {
    inner: Pin<Box<dyn Stream<Item = I> + Send>>,
    stats: StreamStats,
}

impl<I> std::fmt::Debug for ExtractStream<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractStream")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<I> ExtractStream<I> {
    /// Tokens used so far (all attempts, final once the stream has ended).
    pub fn usage(&self) -> Usage {
        self.stats.usage()
    }

    /// Attempts finished so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.stats.attempts()
    }

    /// A handle on the usage and attempts that outlives the stream.
    pub fn stats(&self) -> StreamStats {
        self.stats.clone()
    }
}

impl<I> Stream for ExtractStream<I> {
    type Item = I;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<I>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// What one streamed attempt produced.
struct AttemptEnd {
    usage: Usage,
    finish: Option<String>,
    failure: Option<String>,
}

fn outcome_of(failure: &str, finish: Option<&str>) -> AttemptOutcome {
    if finish == Some("length") {
        AttemptOutcome::Truncated
    } else if failure.starts_with("invalid JSON") {
        AttemptOutcome::InvalidJson
    } else {
        AttemptOutcome::NoOutput
    }
}

fn attempt_record(
    number: u32,
    started: Instant,
    end: &AttemptEnd,
    outcome: AttemptOutcome,
    errors: Vec<FieldError>,
    output: Option<String>,
) -> Attempt {
    Attempt {
        number,
        duration: started.elapsed(),
        usage: end.usage,
        outcome,
        errors,
        output,
    }
}

impl<T> ExtractBuilder<T, Iterable>
where
    T: DeserializeOwned + JsonSchema + Send + 'static,
{
    /// Runs the extraction, yielding each element as soon as it is complete and valid.
    ///
    /// The model is asked for `{"value": [T, ...]}` (a list wrapped in an object, which every
    /// mode accepts); a top-level array, one tool call per element, or a bare single object
    /// are read too. See the [module docs](crate::stream) for what failures look like.
    pub fn stream(self) -> ExtractStream<Result<T, StreamError>> {
        let stats = StreamStats::default();
        let inner = run_iter(self, stats.clone(), tracing::Span::current());
        ExtractStream {
            inner: Box::pin(inner),
            stats,
        }
    }
}

fn run_iter<T>(
    builder: ExtractBuilder<T, Iterable>,
    stats: StreamStats,
    parent: tracing::Span,
) -> impl Stream<Item = Result<T, StreamError>> + Send
where
    T: DeserializeOwned + JsonSchema + Send + 'static,
{
    async_stream::stream! {
        let (list, element) = match (compiled_schema::<Vec<T>>(), compiled_schema::<T>()) {
            (Ok(l), Ok(e)) => (l, e),
            (Err(e), _) | (_, Err(e)) => {
                yield Err(StreamError::Extract(e));
                return;
            }
        };
        let mut request = builder.first_request(&list.schema);
        let provider = builder.client.provider().clone();
        let validator = builder.validator.clone();
        let mode = builder.mode;
        let name = format!("Iterable[{}]", element.schema.name);
        let mut ending = Ending::new(&parent, &name, mode, builder.max_retries, stats.clone());
        let span = ending.span.clone();
        let mut index = 0usize;
        for number in 1..=builder.max_retries + 1 {
            let started = Instant::now();
            let chat_span = trace::chat_span(&span, provider.name(), &request, mode, number, true);
            let mut chat = match open(&*provider, &request, &chat_span).await {
                Ok(c) => c,
                Err(e) => {
                    let e = ending.provider_failure(&chat_span, number, started, e);
                    yield Err(StreamError::Extract(e));
                    return;
                }
            };
            let mut reader = AnswerReader::new(mode, Purpose::Elements, &element.schema.name);
            let mut end = AttemptEnd { usage: Usage::default(), finish: None, failure: None };
            let mut done = Vec::new();
            let mut seen_token = false;
            while let Some(delta) = chat.next().await {
                match delta {
                    Err(e) => {
                        drop(chat);
                        let e = ending.provider_failure(&chat_span, number, started, e);
                        yield Err(StreamError::Extract(e));
                        return;
                    }
                    Ok(ChatDelta::Usage(u)) => end.usage = u,
                    Ok(ChatDelta::Finish(r)) => end.finish = Some(r),
                    // After a failure the rest is still read (the reader only records it), for
                    // the usage it reports and the full text to echo back.
                    Ok(d) => {
                        first_token(&mut seen_token, &d, &chat_span, started);
                        if let Err(e) = reader.push(d, &mut done) {
                            end.failure = Some(e);
                        }
                    }
                }
                for value in done.drain(..) {
                    let item = emit(&chat_span, &mut ending, started, &element, value, validator.as_deref(), index);
                    yield item;
                    index += 1;
                }
            }
            drop(chat);
            if end.failure.is_none()
                && let Err(e) = reader.finish(&mut done)
            {
                end.failure = Some(e);
            }
            for value in done.drain(..) {
                let item = emit(&chat_span, &mut ending, started, &element, value, validator.as_deref(), index);
                yield item;
                index += 1;
            }
            let response = reader.to_response(end.usage, end.finish.clone());
            trace::record_response(&chat_span, &response);
            trace::record_count(&chat_span, "sift.elements", ending.elements_in_attempt);
            ending.elements_in_attempt = 0;
            trace::end(chat_span);
            let Some(failure) = end.failure.take() else {
                stats.push(attempt_record(number, started, &end, AttemptOutcome::Success, Vec::new(), None));
                ending.outcome = "success";
                return;
            };
            let outcome = outcome_of(&failure, end.finish.as_deref());
            let errors = vec![FieldError::new("", failure)];
            let attempts = stats.push(attempt_record(number, started, &end, outcome, errors.clone(), None));
            span.in_scope(|| trace::unreadable(&list.schema.name, response.content.as_deref(), &errors));
            let usage = attempts.iter().map(|a| a.usage).sum();
            if index > 0 {
                ending.outcome = "incomplete";
                yield Err(StreamError::Extract(ExtractError::Incomplete { emitted: index, attempts, usage }));
                return;
            }
            if number > builder.max_retries {
                ending.outcome = "retries_exhausted";
                yield Err(StreamError::Extract(ExtractError::RetriesExhausted {
                    attempts,
                    usage,
                    last_response: Some(Box::new(response)),
                }));
                return;
            }
            request.messages.extend(mode.reask(&list.schema, &response, &errors));
        }
    }
}

/// Records how a streamed extraction ended on its span, also when the stream is dropped
/// before it ends (outcome `cancelled`).
struct Ending {
    span: tracing::Span,
    stats: StreamStats,
    outcome: &'static str,
    elements: usize,
    elements_in_attempt: usize,
    first_element: bool,
}

impl Ending {
    /// The extraction's span, a child of `parent` (the span current when the stream was
    /// made, not when it is first polled).
    fn new(
        parent: &tracing::Span,
        response_model: &str,
        mode: crate::Mode,
        max_retries: u32,
        stats: StreamStats,
    ) -> Self {
        Self {
            span: parent.in_scope(|| trace::extract_span(response_model, mode, max_retries, true)),
            stats,
            outcome: "cancelled",
            elements: 0,
            elements_in_attempt: 0,
            first_element: false,
        }
    }

    /// A model call that failed: recorded on its span and in the attempts, and as the
    /// stream's outcome.
    fn provider_failure(
        &mut self,
        chat_span: &tracing::Span,
        number: u32,
        started: Instant,
        source: crate::ProviderError,
    ) -> ExtractError {
        trace::record_chat_error(chat_span, &source);
        let attempts = self
            .stats
            .push(Attempt::provider_failure(number, started, &source));
        let e = ExtractError::provider(number, source, attempts);
        self.outcome = e.kind();
        e
    }
}

/// Records the time to the first token of an attempt (the first delta with content).
fn first_token(seen: &mut bool, delta: &ChatDelta, chat_span: &tracing::Span, started: Instant) {
    if !*seen && !matches!(delta, ChatDelta::Meta { .. }) {
        *seen = true;
        trace::record_ms(chat_span, "sift.time_to_first_token_ms", started);
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        trace::record_count(&self.span, "sift.elements", self.elements);
        trace::record_extract_end(
            &self.span,
            self.stats.count(),
            self.outcome,
            self.stats.usage(),
        );
    }
}

/// Validates one streamed element inside the generation's span and logs it at debug level.
fn emit<T: DeserializeOwned>(
    chat_span: &tracing::Span,
    ending: &mut Ending,
    started: Instant,
    element: &crate::extract::Compiled,
    value: Value,
    validator: Option<&Check<T>>,
    index: usize,
) -> Result<T, StreamError> {
    if !ending.first_element {
        ending.first_element = true;
        trace::record_ms(chat_span, "sift.time_to_first_element_ms", started);
        trace::record_ms(&ending.span, "sift.time_to_first_element_ms", started);
    }
    ending.elements += 1;
    ending.elements_in_attempt += 1;
    chat_span.in_scope(|| {
        tracing::debug!(index = index as i64, value = %value, "emitted {{index}}");
        check_element(element, value, validator, index)
    })
}

async fn open(
    provider: &dyn Provider,
    request: &ChatRequest,
    chat_span: &tracing::Span,
) -> Result<crate::ChatStream, crate::ProviderError> {
    use tracing::Instrument;
    provider
        .chat_stream(request)
        .instrument(chat_span.clone())
        .await
}

fn check_element<T: DeserializeOwned>(
    compiled: &crate::extract::Compiled,
    value: Value,
    validator: Option<&Check<T>>,
    index: usize,
) -> Result<T, StreamError> {
    check_value(compiled, &value, validator).map_err(|errors| StreamError::Item {
        index,
        errors,
        value,
    })
}

impl<T> ExtractBuilder<T, PartialStream>
where
    T: DeserializeOwned + JsonSchema + PartialObject + Send + 'static,
{
    /// Runs the extraction, yielding a snapshot each time the value grows (a field or element
    /// completes, or a string gets longer), then the validated value. Validators run only on
    /// the complete value; see the [module docs](crate::stream) for retries.
    pub fn stream(self) -> ExtractStream<Result<PartialUpdate<T>, ExtractError>> {
        let stats = StreamStats::default();
        let inner = run_partial(self, stats.clone(), tracing::Span::current());
        ExtractStream {
            inner: Box::pin(inner),
            stats,
        }
    }
}

fn run_partial<T>(
    builder: ExtractBuilder<T, PartialStream>,
    stats: StreamStats,
    parent: tracing::Span,
) -> impl Stream<Item = Result<PartialUpdate<T>, ExtractError>> + Send
where
    T: DeserializeOwned + JsonSchema + PartialObject + Send + 'static,
{
    async_stream::stream! {
        let compiled = match compiled_schema::<T>() {
            Ok(c) => c,
            Err(e) => {
                yield Err(e);
                return;
            }
        };
        let mut request = builder.first_request(&compiled.schema);
        let provider = builder.client.provider().clone();
        let validator = builder.validator.clone();
        let mode = builder.mode;
        let mut ending = Ending::new(&parent, &compiled.schema.name, mode, builder.max_retries, stats.clone());
        let span = ending.span.clone();
        for number in 1..=builder.max_retries + 1 {
            let started = Instant::now();
            let chat_span = trace::chat_span(&span, provider.name(), &request, mode, number, true);
            let mut chat = match open(&*provider, &request, &chat_span).await {
                Ok(c) => c,
                Err(e) => {
                    let e = ending.provider_failure(&chat_span, number, started, e);
                    yield Err(e);
                    return;
                }
            };
            let mut reader = AnswerReader::new(mode, Purpose::Whole, "");
            let mut end = AttemptEnd { usage: Usage::default(), finish: None, failure: None };
            let mut ignored = Vec::new();
            let mut last: Option<T::Fields> = None;
            let mut seen_token = false;
            while let Some(delta) = chat.next().await {
                match delta {
                    Err(e) => {
                        drop(chat);
                        let e = ending.provider_failure(&chat_span, number, started, e);
                        yield Err(e);
                        return;
                    }
                    Ok(ChatDelta::Usage(u)) => end.usage = u,
                    Ok(ChatDelta::Finish(r)) => end.finish = Some(r),
                    Ok(d) => {
                        first_token(&mut seen_token, &d, &chat_span, started);
                        if let Err(e) = reader.push(d, &mut ignored) {
                            end.failure = Some(e);
                            continue;
                        }
                        if reader.progressed
                            && let Some(snapshot) = reader
                                .partial()
                                .map(|v| compiled.schema.unwrap_value(v))
                                .and_then(|v| serde_json::from_value::<T::Fields>(v).ok())
                            && last.as_ref() != Some(&snapshot)
                        {
                            last = Some(snapshot.clone());
                            yield Ok(PartialUpdate::Snapshot(snapshot));
                        }
                    }
                }
            }
            drop(chat);
            if end.failure.is_none()
                && let Err(e) = reader.finish(&mut ignored)
            {
                end.failure = Some(e);
            }
            let output = reader.take_value();
            let response = reader.to_response(end.usage, end.finish.clone());
            trace::record_response(&chat_span, &response);
            let (outcome, errors) = match (end.failure.take(), output) {
                (Some(f), _) => (outcome_of(&f, end.finish.as_deref()), vec![FieldError::new("", f)]),
                (None, None) => (AttemptOutcome::NoOutput, vec![FieldError::new("", "no JSON found in the answer")]),
                (None, Some(value)) => {
                    let value = compiled.schema.unwrap_value(value);
                    match chat_span.in_scope(|| check_value::<T>(&compiled, &value, validator.as_deref())) {
                        Ok(v) => {
                            stats.push(attempt_record(number, started, &end, AttemptOutcome::Success, Vec::new(), None));
                            ending.outcome = "success";
                            trace::end(chat_span);
                            yield Ok(PartialUpdate::Done(v));
                            return;
                        }
                        Err(errors) => (AttemptOutcome::ValidationFailed, errors),
                    }
                }
            };
            if outcome != AttemptOutcome::ValidationFailed {
                chat_span.in_scope(|| trace::unreadable(&compiled.schema.name, response.content.as_deref(), &errors));
            }
            trace::end(chat_span);
            let attempts = stats.push(attempt_record(number, started, &end, outcome, errors.clone(), None));
            if number > builder.max_retries {
                ending.outcome = "retries_exhausted";
                yield Err(ExtractError::RetriesExhausted {
                    usage: attempts.iter().map(|a| a.usage).sum(),
                    attempts,
                    last_response: Some(Box::new(response)),
                });
                return;
            }
            yield Ok(PartialUpdate::Retry { attempt: number, errors: errors.clone() });
            request.messages.extend(mode.reask(&compiled.schema, &response, &errors));
        }
    }
}
