//! Many extractions in one request (`/many-users`, `/v1/extractors/{name}/many`): run
//! concurrently under a bound, results kept in order, and failures reported together with the
//! results of the others.

use std::future::Future;

use axum::http::StatusCode;
use futures::StreamExt;

use crate::deadline::Deadline;
use crate::error::{ApiError, ExtractionFailure, batch_status, extraction_status};

/// How a batch ended.
pub(crate) enum Batch<V, F> {
    /// Every item succeeded: the values in order.
    All(Vec<V>),
    /// Some failed.
    Failed {
        /// The failed items, described.
        failed: Vec<F>,
        /// Every item's result in order, `None` where it failed.
        results: Vec<Option<V>>,
        /// The status the failures share (see [`batch_status`]).
        status: StatusCode,
        /// Of the failed, those the request's deadline cut off.
        cut_off: usize,
    },
}

/// Runs `run` on every item, at most `concurrency` at once, keeping their order. A failed
/// extraction is described by `failure` (index, item, why) and costs the others nothing; any
/// other error ends the batch. At `deadline` the items not finished are cut off and reported
/// as such (kind `deadline`, status `504`), beside the results of the others.
pub(crate) async fn run_batch<I, V, F, Fut>(
    items: &[I],
    concurrency: usize,
    deadline: Option<Deadline>,
    mut run: impl FnMut(I) -> Fut,
    failure: impl Fn(usize, &I, ExtractionFailure) -> F,
) -> Result<Batch<V, F>, ApiError>
where
    I: Clone,
    Fut: Future<Output = Result<V, ApiError>>,
{
    let mut results: Vec<Option<Result<V, ApiError>>> = items.iter().map(|_| None).collect();
    {
        let mut running = futures::stream::iter(items.iter().cloned().enumerate())
            .map(|(i, item)| {
                let call = run(item);
                async move { (i, call.await) }
            })
            .buffer_unordered(concurrency.max(1));
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d.at, running.next()).await {
                    Ok(next) => next,
                    // The calls still running are dropped (cancelled) with the stream.
                    Err(_) => break,
                },
                None => running.next().await,
            };
            match next {
                Some((i, result)) => results[i] = Some(result),
                None => break,
            }
        }
    }
    let mut failed = Vec::new();
    let mut statuses = Vec::new();
    let mut values = Vec::with_capacity(results.len());
    let mut cut_off = 0;
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Some(Ok(v)) => values.push(Some(v)),
            Some(Err(ApiError::Extraction(e, recording))) => {
                statuses.push(extraction_status(&e));
                failed.push(failure(
                    index,
                    &items[index],
                    ExtractionFailure::from_error(&e, &recording),
                ));
                values.push(None);
            }
            Some(Err(other)) => return Err(other),
            None => {
                cut_off += 1;
                statuses.push(StatusCode::GATEWAY_TIMEOUT);
                let why =
                    deadline
                        .map(|d| d.failure("this item"))
                        .unwrap_or_else(|| ExtractionFailure {
                            message: "not run".into(),
                            kind: "deadline".into(),
                            upstream_status: None,
                            attempts: Vec::new(),
                            usage: sift_core::report::UsageReport::default(),
                        });
                failed.push(failure(index, &items[index], why));
                values.push(None);
            }
        }
    }
    if failed.is_empty() {
        return Ok(Batch::All(values.into_iter().flatten().collect()));
    }
    Ok(Batch::Failed {
        failed,
        results: values,
        status: batch_status(&statuses),
        cut_off,
    })
}

/// The headline of a batch with failures: how many failed, and how many of those the
/// deadline cut off.
pub(crate) fn failure_message(
    failed: usize,
    cut_off: usize,
    total: usize,
    noun: &str,
    deadline: Option<Deadline>,
) -> String {
    match (cut_off, deadline) {
        (0, _) | (_, None) => format!("{failed} of {total} {noun} failed"),
        (n, Some(d)) => {
            let mut m = format!(
                "{n} of {total} {noun} not finished within the request's deadline of {}s",
                d.limit.as_secs_f64()
            );
            if failed > n {
                m.push_str(&format!("; {} more failed", failed - n));
            }
            m
        }
    }
}
