//! Many extractions in one request (`/many-users`, `/v1/extractors/{name}/many`): run
//! concurrently under a bound, results kept in order, and failures reported together with the
//! results of the others.

use std::future::Future;

use axum::http::StatusCode;
use futures::StreamExt;

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
    },
}

/// Runs `run` on every item, at most `concurrency` at once, keeping their order. A failed
/// extraction is described by `failure` (index, item, why) and costs the others nothing; any
/// other error ends the batch.
pub(crate) async fn run_batch<I, V, F, Fut>(
    items: &[I],
    concurrency: usize,
    run: impl FnMut(I) -> Fut,
    failure: impl Fn(usize, &I, ExtractionFailure) -> F,
) -> Result<Batch<V, F>, ApiError>
where
    I: Clone,
    Fut: Future<Output = Result<V, ApiError>>,
{
    let results: Vec<Result<V, ApiError>> = futures::stream::iter(items.iter().cloned())
        .map(run)
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut failed = Vec::new();
    let mut statuses = Vec::new();
    let mut values = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(v) => values.push(Some(v)),
            Err(ApiError::Extraction(e)) => {
                statuses.push(extraction_status(&e));
                failed.push(failure(
                    index,
                    &items[index],
                    ExtractionFailure::from_error(&e),
                ));
                values.push(None);
            }
            Err(other) => return Err(other),
        }
    }
    if failed.is_empty() {
        return Ok(Batch::All(values.into_iter().flatten().collect()));
    }
    Ok(Batch::Failed {
        failed,
        results: values,
        status: batch_status(&statuses),
    })
}
