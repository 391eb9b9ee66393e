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

use futures::{Stream, StreamExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::attempts::{self, Delivery, Event};
use crate::extract::{Attempt, ExtractBuilder, ExtractError, Iterable, PartialStream};
use crate::message::Usage;
use crate::partial::PartialObject;
use crate::schema::Schema;
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

    pub(crate) fn count(&self) -> usize {
        self.with(|p| p.attempts.len())
    }

    pub(crate) fn push(&self, attempt: Attempt) -> Vec<Attempt> {
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

impl<T> ExtractBuilder<T, Iterable>
where
    T: DeserializeOwned + JsonSchema + Send + 'static,
{
    /// Runs the extraction, yielding each element as soon as it is complete and valid.
    ///
    /// The model is asked for `{"value": [T, ...]}` (a list wrapped in an object, which every
    /// mode accepts); a top-level array, one tool call per element, or a bare single object
    /// are read too. See the [module docs](crate::stream) for what failures look like. For a
    /// schema given as data ([`Client::extract_value_iter`](crate::Client::extract_value_iter)),
    /// the schema is the list's and each element is checked against its `items`.
    pub fn stream(self) -> ExtractStream<Result<T, StreamError>> {
        let stats = StreamStats::default();
        let parent = tracing::Span::current();
        let schemas = match &self.schema {
            Some(list) => list
                .items()
                .map(|element| (list.clone(), element))
                .map_err(ExtractError::from),
            None => Schema::of::<Vec<T>>()
                .and_then(|list| Ok((list, Schema::of::<T>()?)))
                .map_err(ExtractError::from),
        };
        let inner: Pin<Box<dyn Stream<Item = Result<T, StreamError>> + Send>> = match schemas {
            Err(e) => Box::pin(futures::stream::once(async move {
                Err(StreamError::Extract(e))
            })),
            Ok((list, element)) => {
                let name = format!("Iterable[{}]", element.name());
                let job = self.job(list, Some(element), name);
                Box::pin(
                    attempts::run(job, Delivery::Elements, stats.clone(), parent).filter_map(
                        |event| async move {
                            match event {
                                Ok(Event::Element(item)) => Some(item),
                                Ok(_) => None,
                                Err(e) => Some(Err(StreamError::Extract(e))),
                            }
                        },
                    ),
                )
            }
        };
        ExtractStream { inner, stats }
    }
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
        let parent = tracing::Span::current();
        let inner: Pin<Box<dyn Stream<Item = Result<PartialUpdate<T>, ExtractError>> + Send>> =
            match self.schema_or_type() {
                Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
                Ok(schema) => {
                    let name = schema.name().to_owned();
                    let job = self.job(schema, None, name);
                    let mut last: Option<T::Fields> = None;
                    Box::pin(
                        attempts::run(job, Delivery::Partial, stats.clone(), parent).filter_map(
                            move |event| {
                                let update = match event {
                                    Ok(Event::Snapshot(v)) => {
                                        serde_json::from_value::<T::Fields>(v)
                                            .ok()
                                            .filter(|s| last.as_ref() != Some(s))
                                            .map(|s| {
                                                last = Some(s.clone());
                                                Ok(PartialUpdate::Snapshot(s))
                                            })
                                    }
                                    Ok(Event::Retry { attempt, errors }) => {
                                        last = None;
                                        Some(Ok(PartialUpdate::Retry { attempt, errors }))
                                    }
                                    Ok(Event::Done { value, .. }) => {
                                        Some(Ok(PartialUpdate::Done(value)))
                                    }
                                    Ok(Event::Element(_)) => None,
                                    Err(e) => Some(Err(e)),
                                };
                                futures::future::ready(update)
                            },
                        ),
                    )
                }
            };
        ExtractStream { inner, stats }
    }
}
