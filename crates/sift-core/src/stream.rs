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

fn provider_failure(
    stats: &StreamStats,
    number: u32,
    started: Instant,
    source: crate::ProviderError,
) -> ExtractError {
    let attempts = stats.push(Attempt::provider_failure(number, started, &source));
    ExtractError::provider(number, source, attempts)
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
        let inner = run_iter(self, stats.clone());
        ExtractStream {
            inner: Box::pin(inner),
            stats,
        }
    }
}

fn run_iter<T>(
    builder: ExtractBuilder<T, Iterable>,
    stats: StreamStats,
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
        let span = stream_span(&list.schema.name, mode);
        let mut index = 0usize;
        for number in 1..=builder.max_retries + 1 {
            let started = Instant::now();
            let mut chat = match open(&*provider, &request, &span).await {
                Ok(c) => c,
                Err(e) => {
                    yield Err(StreamError::Extract(provider_failure(&stats, number, started, e)));
                    return;
                }
            };
            let mut reader = AnswerReader::new(mode, Purpose::Elements, &element.schema.name);
            let mut end = AttemptEnd { usage: Usage::default(), finish: None, failure: None };
            let mut done = Vec::new();
            let mut first_element = None;
            while let Some(delta) = chat.next().await {
                match delta {
                    Err(e) => {
                        drop(chat);
                        yield Err(StreamError::Extract(provider_failure(&stats, number, started, e)));
                        return;
                    }
                    Ok(ChatDelta::Usage(u)) => end.usage = u,
                    Ok(ChatDelta::Finish(r)) => end.finish = Some(r),
                    // After a failure the rest is still read (the reader only records it), for
                    // the usage it reports and the full text to echo back.
                    Ok(d) => {
                        if let Err(e) = reader.push(d, &mut done) {
                            end.failure = Some(e);
                        }
                    }
                }
                for value in done.drain(..) {
                    if first_element.is_none() {
                        first_element = Some(started.elapsed());
                        tracing::debug!(parent: &span, ms = started.elapsed().as_secs_f64() * 1000.0, "first element");
                    }
                    yield check_element(&element, value, validator.as_deref(), index);
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
                yield check_element(&element, value, validator.as_deref(), index);
                index += 1;
            }
            let Some(failure) = end.failure.take() else {
                stats.push(attempt_record(number, started, &end, AttemptOutcome::Success, Vec::new(), None));
                tracing::info!(parent: &span, elements = index, attempts = number, "stream complete");
                return;
            };
            let outcome = outcome_of(&failure, end.finish.as_deref());
            let errors = vec![FieldError::new("", failure)];
            let response = reader.to_response(end.usage, end.finish.clone());
            let attempts = stats.push(attempt_record(number, started, &end, outcome, errors.clone(), None));
            tracing::warn!(parent: &span, attempt = number, errors = %serde_json::to_string(&errors).unwrap_or_default(), "streamed answer failed");
            let usage = attempts.iter().map(|a| a.usage).sum();
            if index > 0 {
                yield Err(StreamError::Extract(ExtractError::Incomplete { emitted: index, attempts, usage }));
                return;
            }
            if number > builder.max_retries {
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

/// The span around a streamed extraction.
fn stream_span(response_model: &str, mode: crate::Mode) -> tracing::Span {
    tracing::info_span!(
        "extract",
        otel.name = format!("extract {response_model}"),
        response_model = %response_model,
        mode = %mode,
        stream = true,
    )
}

async fn open(
    provider: &dyn Provider,
    request: &ChatRequest,
    span: &tracing::Span,
) -> Result<crate::ChatStream, crate::ProviderError> {
    use tracing::Instrument;
    provider
        .chat_stream(request)
        .instrument(tracing::info_span!(
            parent: span,
            "chat",
            otel.name = format!("chat {}", request.model),
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = provider.name(),
            gen_ai.request.model = %request.model,
        ))
        .await
}

fn check_element<T: DeserializeOwned>(
    compiled: &crate::extract::Compiled,
    value: Value,
    validator: Option<&Check<T>>,
    index: usize,
) -> Result<T, StreamError> {
    check_value(compiled, &value, validator).map_err(|errors| {
        tracing::warn!(index, errors = %serde_json::to_string(&errors).unwrap_or_default(), "element failed validation");
        StreamError::Item {
            index,
            errors,
            value,
        }
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
        let inner = run_partial(self, stats.clone());
        ExtractStream {
            inner: Box::pin(inner),
            stats,
        }
    }
}

fn run_partial<T>(
    builder: ExtractBuilder<T, PartialStream>,
    stats: StreamStats,
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
        let span = stream_span(&compiled.schema.name, mode);
        for number in 1..=builder.max_retries + 1 {
            let started = Instant::now();
            let mut chat = match open(&*provider, &request, &span).await {
                Ok(c) => c,
                Err(e) => {
                    yield Err(provider_failure(&stats, number, started, e));
                    return;
                }
            };
            let mut reader = AnswerReader::new(mode, Purpose::Whole, "");
            let mut end = AttemptEnd { usage: Usage::default(), finish: None, failure: None };
            let mut ignored = Vec::new();
            let mut last: Option<T::Fields> = None;
            while let Some(delta) = chat.next().await {
                match delta {
                    Err(e) => {
                        drop(chat);
                        yield Err(provider_failure(&stats, number, started, e));
                        return;
                    }
                    Ok(ChatDelta::Usage(u)) => end.usage = u,
                    Ok(ChatDelta::Finish(r)) => end.finish = Some(r),
                    Ok(d) => {
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
            let (outcome, errors) = match (end.failure.take(), output) {
                (Some(f), _) => (outcome_of(&f, end.finish.as_deref()), vec![FieldError::new("", f)]),
                (None, None) => (AttemptOutcome::NoOutput, vec![FieldError::new("", "no JSON found in the answer")]),
                (None, Some(value)) => {
                    let value = compiled.schema.unwrap_value(value);
                    match check_value::<T>(&compiled, &value, validator.as_deref()) {
                        Ok(v) => {
                            stats.push(attempt_record(number, started, &end, AttemptOutcome::Success, Vec::new(), None));
                            yield Ok(PartialUpdate::Done(v));
                            return;
                        }
                        Err(errors) => (AttemptOutcome::ValidationFailed, errors),
                    }
                }
            };
            let response = reader.to_response(end.usage, end.finish.clone());
            let attempts = stats.push(attempt_record(number, started, &end, outcome, errors.clone(), None));
            tracing::warn!(parent: &span, attempt = number, errors = %serde_json::to_string(&errors).unwrap_or_default(), "validate {} failed", compiled.schema.name);
            if number > builder.max_retries {
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
