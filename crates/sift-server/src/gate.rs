//! One bound on model calls in flight across every request of the service: a call beyond it
//! waits in a bounded queue, and one that finds the queue full is refused at once as busy
//! (the service answers `503` with `Retry-After`). Without it, a few `/many-users` requests
//! can put thousands of calls on an upstream (or the embedded model) at once.
//!
//! The bound wraps each client's provider ([`gated`]); a streamed call holds its place until
//! its stream is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use sift_core::{
    Capabilities, ChatDelta, ChatRequest, ChatResponse, ChatStream, Client, Provider,
    ProviderError, SchemaError, async_trait,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a refused caller is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The shared bound.
#[derive(Debug)]
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Gate {
    pub(crate) fn new(in_flight: usize, queue: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(in_flight.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting: queue,
        }
    }

    /// A place for one call: at once when one is free, else after waiting in the queue;
    /// `Busy` when the queue is full.
    async fn enter(&self) -> Result<OwnedSemaphorePermit, ProviderError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _leave = Leave(&self.waiting);
        if queued >= self.max_waiting {
            return Err(ProviderError::Busy {
                retry_after: Some(RETRY_AFTER),
            });
        }
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ProviderError::Busy {
                retry_after: Some(RETRY_AFTER),
            })
    }

    /// Calls in flight now.
    #[cfg(test)]
    pub(crate) fn in_flight(&self, bound: usize) -> usize {
        bound.saturating_sub(self.permits.available_permits())
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `client` with its provider behind `gate` (its model, mode and re-asks kept).
pub(crate) fn gated(client: &Client, gate: &Arc<Gate>) -> Client {
    client.clone().with_provider(Arc::new(Gated {
        inner: client.provider().clone(),
        gate: gate.clone(),
    }))
}

#[derive(Debug)]
struct Gated {
    inner: Arc<dyn Provider>,
    gate: Arc<Gate>,
}

#[async_trait]
impl Provider for Gated {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn default_model(&self) -> &str {
        self.inner.default_model()
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let _place = self.gate.enter().await?;
        crate::deadline::Progress::call_started();
        let response = self.inner.chat(request).await?;
        crate::deadline::Progress::call_answered(&response.usage);
        Ok(response)
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let place = self.gate.enter().await?;
        crate::deadline::Progress::call_started();
        let stream = self.inner.chat_stream(request).await?;
        Ok(Box::pin(Holding {
            stream,
            _place: place,
        }))
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn check_schema(&self, schema: &serde_json::Value) -> Result<(), SchemaError> {
        self.inner.check_schema(schema)
    }

    fn default_max_tokens(&self, request: &sift_core::ChatRequest) -> Option<u32> {
        self.inner.default_max_tokens(request)
    }
}

/// A stream that keeps its place in the gate until it is dropped.
struct Holding {
    stream: ChatStream,
    _place: OwnedSemaphorePermit,
}

impl futures::Stream for Holding {
    type Item = Result<ChatDelta, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn calls_past_the_bound_wait_and_past_the_queue_are_refused() {
        let gate = Arc::new(Gate::new(2, 1));
        let a = gate.enter().await.unwrap();
        let _b = gate.enter().await.unwrap();
        assert_eq!(gate.in_flight(2), 2);
        // The third waits in the queue...
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter().await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        // ...so the fourth finds the queue full.
        match gate.enter().await {
            Err(ProviderError::Busy { retry_after }) => assert_eq!(retry_after, Some(RETRY_AFTER)),
            other => panic!("expected busy, got {other:?}"),
        }
        // A place frees: the waiting one goes.
        drop(a);
        waiting.await.unwrap().unwrap();
        assert_eq!(gate.waiting.load(Ordering::SeqCst), 0);
    }
}
