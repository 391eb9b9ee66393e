//! A deadline over each whole request: whatever it waits on (model calls, their retries, a
//! queue), it answers by then. A plain request answers `504` naming the deadline; a batch
//! (`/many-users`, `.../many`) answers with what was done and what was not; a stream ends
//! with an `error` event.

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
                "{what} not finished within the request's deadline of {}",
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
    match tokio::time::timeout_at(d.at + ANSWER_GRACE, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Deadline(Box::new(d.failure("the extraction"))).into_response(),
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
