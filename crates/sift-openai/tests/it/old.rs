//! The shapes these tests assert on: an element stream as each element or its failure, a
//! partial stream as snapshots, retries and the value (read from sift's one [`Event`] enum).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use serde_json::Value;
use sift_core::{Attempt, Event, EventStream, ExtractError, FieldError, Usage};

/// What an element stream yields besides elements.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// One element failed validation; the stream goes on.
    #[error("element {index} is invalid")]
    Item {
        index: usize,
        errors: Vec<FieldError>,
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
#[derive(Debug)]
pub enum PartialUpdate<T, P> {
    Snapshot(P),
    Retry {
        attempt: u32,
        errors: Vec<FieldError>,
    },
    Done(T),
}

/// An event stream read as elements, or as partial updates.
pub struct Read<T, P, I> {
    inner: EventStream<T, P>,
    map: fn(Event<T, P>) -> Option<I>,
}

impl<T, P, I> Read<T, P, I> {
    pub fn usage(&self) -> Usage {
        self.inner.usage()
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.inner.attempts()
    }
}

impl<T, P, I> Stream for Read<T, P, I> {
    type Item = Result<I, ExtractError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => {
                    if let Some(item) = (self.map)(event) {
                        return Poll::Ready(Some(Ok(item)));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// An element stream as `Result<T, StreamError>`.
pub struct Results<T, P = Value>(Read<T, P, Result<T, StreamError>>);

impl<T, P> Results<T, P> {
    pub fn usage(&self) -> Usage {
        self.0.usage()
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.0.attempts()
    }
}

impl<T, P> Stream for Results<T, P> {
    type Item = Result<T, StreamError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.0).poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => Poll::Ready(Some(item)),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(StreamError::Extract(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

pub trait Old<T, P> {
    fn results(self) -> Results<T, P>;
    fn updates(self) -> Read<T, P, PartialUpdate<T, P>>;
}

impl<T, P> Old<T, P> for EventStream<T, P> {
    fn results(self) -> Results<T, P> {
        fn map<T, P>(e: Event<T, P>) -> Option<Result<T, StreamError>> {
            match e {
                Event::Element { value, .. } => Some(Ok(value)),
                Event::ItemError {
                    index,
                    errors,
                    value,
                } => Some(Err(StreamError::Item {
                    index,
                    errors,
                    value,
                })),
                _ => None,
            }
        }
        Results(Read {
            inner: self,
            map: map::<T, P>,
        })
    }

    fn updates(self) -> Read<T, P, PartialUpdate<T, P>> {
        fn map<T, P>(e: Event<T, P>) -> Option<PartialUpdate<T, P>> {
            match e {
                Event::Snapshot(s) => Some(PartialUpdate::Snapshot(s)),
                Event::Retry { attempt, errors } => Some(PartialUpdate::Retry { attempt, errors }),
                Event::Value(v) => Some(PartialUpdate::Done(v)),
                _ => None,
            }
        }
        Read {
            inner: self,
            map: map::<T, P>,
        }
    }
}
