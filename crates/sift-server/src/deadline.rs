//! A deadline over each whole request: whatever it waits on (model calls, their retries, a
//! queue), it answers by then. A plain request answers `504` naming the deadline; a batch
//! (`/many-users`, `.../many`) answers with what was done and what was not; a stream ends
//! with an `error` event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sift_core::report::{ExtractionFailure, UsageReport};
use tokio::time::Instant;

use crate::error::ApiError;

/// The deadline of the request being handled (set by [`deadline`] as an extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    /// When it passes.
    pub(crate) at: Instant,
    /// The whole allowance.
    pub(crate) limit: Duration,
}

/// Time a handler that reports its own partial results (a batch) is given past the deadline
/// to answer, before the request is cut off whole.
const ANSWER_GRACE: Duration = Duration::from_millis(250);

impl Deadline {
    /// The failure report of work cut off by the deadline.
    pub(crate) fn failure(&self, what: &str) -> ExtractionFailure {
        ExtractionFailure {
            message: format!(
                "{what} did not finish within the request's deadline of {}",
                seconds(self.limit)
            ),
            kind: "deadline".into(),
            upstream_status: None,
            attempts: Vec::new(),
            usage: UsageReport::default(),
        }
    }
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s} s")
    }
}

/// Runs the rest of the request within `limit`: the handler finds the [`Deadline`] among the
/// request's extensions; a request still running past it answers `504`.
pub(crate) async fn within(limit: Duration, mut req: Request, next: Next) -> Response {
    let d = Deadline {
        at: Instant::now() + limit,
        limit,
    };
    req.extensions_mut().insert(d);
    let progress = Arc::new(Progress::default());
    let run = PROGRESS.scope(progress.clone(), next.run(req));
    match tokio::time::timeout_at(d.at + ANSWER_GRACE, run).await {
        Ok(response) => response,
        Err(_) => {
            let mut failure = d.failure("the extraction");
            progress.report(&mut failure);
            ApiError::Deadline(Box::new(failure)).into_response()
        }
    }
}

/// What a request's model calls did, for the report of a request cut off by its deadline
/// (the calls go through the gate, which counts them here).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    started: AtomicU64,
    answered: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
}

tokio::task_local! {
    static PROGRESS: Arc<Progress>;
}

impl Progress {
    /// A model call of the request being handled started (nothing, outside one).
    pub(crate) fn call_started() {
        let _ = PROGRESS.try_with(|p| p.started.fetch_add(1, Ordering::Relaxed));
    }

    /// A model call of the request being handled answered, using `usage`.
    pub(crate) fn call_answered(usage: &sift_core::Usage) {
        let _ = PROGRESS.try_with(|p| {
            p.answered.fetch_add(1, Ordering::Relaxed);
            p.input_tokens
                .fetch_add(usage.input_tokens, Ordering::Relaxed);
            p.output_tokens
                .fetch_add(usage.output_tokens, Ordering::Relaxed);
        });
    }

    /// Adds what was done to `failure`: its message says how many calls ran and answered,
    /// its usage counts their tokens.
    fn report(&self, failure: &mut ExtractionFailure) {
        let started = self.started.load(Ordering::Relaxed);
        let answered = self.answered.load(Ordering::Relaxed);
        let done = match (started, answered) {
            (0, _) => {
                "no model call had started (it waited for a place, or on the client)".to_owned()
            }
            (s, a) => format!(
                "{s} model call{} made, {a} answered{}",
                if s == 1 { " was" } else { "s were" },
                if s > a {
                    format!(", {} still running when it passed", s - a)
                } else {
                    String::new()
                }
            ),
        };
        failure.message = format!("{}: {done}", failure.message);
        failure.usage.input_tokens += self.input_tokens.load(Ordering::Relaxed);
        failure.usage.output_tokens += self.output_tokens.load(Ordering::Relaxed);
    }
}

/// The next item of `stream`, or `Err` with the deadline once it passes first.
pub(crate) async fn next_before<S>(
    stream: &mut S,
    deadline: Option<Deadline>,
) -> Result<Option<S::Item>, Deadline>
where
    S: futures::Stream + Unpin,
{
    use futures::StreamExt;
    match deadline {
        None => Ok(stream.next().await),
        Some(d) => tokio::time::timeout_at(d.at, stream.next())
            .await
            .map_err(|_| d),
    }
}
