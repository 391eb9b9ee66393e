//! Streamed extraction: list elements as they close ([`ExtractBuilder::elements`]) and
//! partial values as they fill in ([`ExtractBuilder::partials`]); for a schema given as data,
//! [`ExtractBuilder::stream`] picks by the schema (elements of an array, snapshots of anything
//! else). Every stream yields `Result<`[`Event`]`, `[`ExtractError`]`>`.
//!
//! # Failures and retries
//!
//! - **An element that fails validation** is reported in place as [`Event::ItemError`] (its
//!   index, its errors and the raw value) and the stream goes on with the next element: one
//!   bad element never hides the good ones, and is never dropped silently.
//! - **An answer that breaks** (malformed JSON, no tool call, no list where one was asked
//!   for, cut off by the token limit) before any element was handed over is judged like a
//!   non-streamed answer (re-asked up to `max_retries`); the consumer sees nothing of the
//!   failed attempt. Once elements have been handed over, a break ends the stream with
//!   [`ExtractError::Incomplete`], saying how many came through, rather than re-asking and
//!   delivering them twice.
//! - **Partial streams** re-ask when the completed value fails validation. The consumer then
//!   sees [`Event::Retry`] (the attempt number and its errors): every snapshot before it is
//!   void, and snapshots start again from empty.
//!
//! A stream that succeeds ends with [`Event::Done`], carrying the usage and attempts summed
//! over every attempt, as [`ExtractBuilder::send`] does; they can also be read from the
//! stream ([`ExtractStream::usage`]) while and after it runs.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::attempts;
use crate::extract::ExtractBuilder;
use crate::machine::Delivery;
use crate::message::Usage;
use crate::outcome::{Attempt, Event, ExtractError, StreamStats};
use crate::partial::PartialObject;
use crate::schema::Schema;

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

/// What a stream of [`Event`]s is: see the [module docs](crate::stream).
pub type EventStream<T, P = Value> = ExtractStream<Result<Event<T, P>, ExtractError>>;

fn failed<I: Send + 'static>(
    e: ExtractError,
) -> Pin<Box<dyn Stream<Item = Result<I, ExtractError>> + Send>> {
    Box::pin(futures::stream::once(async move { Err(e) }))
}

impl<T> ExtractBuilder<T>
where
    T: DeserializeOwned + JsonSchema + Send + 'static,
{
    /// Runs the extraction of a list, yielding each element as soon as it is complete and
    /// checked: [`Event::Element`] or [`Event::ItemError`], then [`Event::Done`].
    ///
    /// For a typed extraction the list is one of `T`s, each element deserialised and checked
    /// by the rules of [`validate_with`](Self::validate_with); for a schema given as data
    /// ([`Client::extract_value`](crate::Client::extract_value)) the schema is the list's
    /// (an array), each element checked against its `items`. The model is asked for
    /// `{"value": [...]}` (a list wrapped in an object, which every mode accepts) unless the
    /// provider constrains decoding; a top-level array and one tool call per element are read
    /// too. See the [module docs](crate::stream) for what failures look like.
    pub fn elements(self) -> EventStream<T> {
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
        let inner = match schemas {
            Err(e) => failed(e),
            Ok((list, element)) => {
                let name = format!("Iterable[{}]", element.name());
                let job = self.job(list, Some(element), name);
                Box::pin(attempts::run(
                    job,
                    Delivery::Elements,
                    stats.clone(),
                    parent,
                )) as _
            }
        };
        ExtractStream { inner, stats }
    }

    /// Runs the extraction of one value, yielding [`Event::Snapshot`] each time it grows (a
    /// field or element completes, or a string gets longer), then [`Event::Value`] (the
    /// validated value) and [`Event::Done`]. Validators run only on the complete value; see
    /// the [module docs](crate::stream) for retries.
    pub fn partials(self) -> EventStream<T, T::Fields>
    where
        T: PartialObject,
    {
        let stats = StreamStats::default();
        let parent = tracing::Span::current();
        let inner = match self.schema_or_type() {
            Err(e) => failed(e),
            Ok(schema) => {
                let name = schema.name().to_owned();
                let job = self.job(schema, None, name);
                let mut last: Option<T::Fields> = None;
                Box::pin(
                    attempts::run(job, Delivery::Partial, stats.clone(), parent).filter_map(
                        move |event| {
                            let event = match event {
                                Ok(Event::Snapshot(v)) => serde_json::from_value::<T::Fields>(v)
                                    .ok()
                                    .filter(|s| last.as_ref() != Some(s))
                                    .map(|s| {
                                        last = Some(s.clone());
                                        Ok(Event::Snapshot(s))
                                    }),
                                Ok(other) => {
                                    if matches!(other, Event::Retry { .. }) {
                                        last = None;
                                    }
                                    other.cast().map(Ok)
                                }
                                Err(e) => Some(Err(e)),
                            };
                            futures::future::ready(event)
                        },
                    ),
                ) as _
            }
        };
        ExtractStream { inner, stats }
    }
}

impl ExtractBuilder<Value> {
    /// Runs the extraction streamed, as its schema asks: the elements of an array schema as
    /// they close ([`elements`](Self::elements)), snapshots of anything else as it fills in
    /// ([`partials`](Self::partials)).
    pub fn stream(self) -> EventStream<Value> {
        match &self.schema {
            Some(s) if s.is_array() => self.elements(),
            _ => self.partials(),
        }
    }
}
