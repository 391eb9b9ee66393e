//! Anthropic's Message Batches API (`/v1/messages/batches`): requests sent inline, run within
//! a day at half the price, polled, their results read as JSONL.
//!
//! Each request carries the same body [`Anthropic`] would send itself; each result is read
//! by the same parser as a direct answer. The results are always fetched from
//! `{base_url}/v1/messages/batches/{id}/results`, never from the `results_url` an answer
//! names (the key would follow it). Every call gets the transport's retries; every body read
//! is bounded.

use std::path::Path;

use serde_json::{Value, json};
use sift_core::batch::{AnswerLine, BatchApi, BatchState, Collected, CreatedBatch};
use sift_core::{ChatRequest, ProviderError};

use crate::{Anthropic, wire};

/// The most requests one batch takes (the API's limit).
pub const MAX_REQUESTS_PER_BATCH: usize = 100_000;
/// The most bytes of one batch's requests (the API's limit: 256 MB).
pub const MAX_BATCH_BYTES: usize = 256 * 1000 * 1000;

/// The `custom_id` of item `id`: the id itself when Anthropic takes it (1 to 64 of
/// `A-Za-z0-9_-`), else `sift-` and a 64-bit hash of it.
pub fn custom_id(id: &str) -> String {
    let fits = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if fits {
        return id.to_owned();
    }
    // FNV-1a: stable across runs and builds (a resumed job must find the same ids).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sift-{hash:016x}")
}

impl Anthropic {
    fn batches_url(&self, rest: &str) -> String {
        format!("{}/v1/messages/batches{rest}", self.config.base_url)
    }
}

#[sift_core::async_trait]
impl BatchApi for Anthropic {
    fn via(&self) -> &'static str {
        "anthropic-batch"
    }

    fn limits(&self) -> (usize, usize) {
        (MAX_REQUESTS_PER_BATCH, MAX_BATCH_BYTES)
    }

    fn line_id(&self, id: &str) -> String {
        custom_id(id)
    }

    fn request_line(&self, id: &str, request: &ChatRequest) -> Result<Value, ProviderError> {
        Ok(json!({"custom_id": custom_id(id), "params": self.request_body(request)}))
    }

    async fn create(
        &self,
        _name: &str,
        lines: Vec<Value>,
        _metadata: &Value,
    ) -> Result<CreatedBatch, ProviderError> {
        let body = serde_json::to_vec(&json!({"requests": lines}))
            .map_err(|e| ProviderError::InvalidResponse(e.to_string()))?;
        let url = self.batches_url("");
        let created = self
            .transport
            .json(
                "the created batch",
                || {
                    let request = self
                        .http
                        .post(&url)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(body.clone());
                    if self.config.beta_output_format {
                        request.header("anthropic-beta", crate::STRUCTURED_OUTPUTS_BETA)
                    } else {
                        request
                    }
                },
                self.config.api_key.iter(),
            )
            .await?;
        let state = read_state(created)?;
        Ok(CreatedBatch::new(state.id, state.status))
    }

    async fn state(&self, id: &str) -> Result<BatchState, ProviderError> {
        let url = self.batches_url(&format!("/{}", path_segment(id)));
        read_state(
            self.transport
                .json(
                    "the batch",
                    || self.http.get(&url),
                    self.config.api_key.iter(),
                )
                .await?,
        )
    }

    async fn collect(
        &self,
        batch: &BatchState,
        dir: &Path,
        stem: &str,
        limit: u64,
    ) -> Result<Collected, ProviderError> {
        let url = self.batches_url(&format!("/{}/results", path_segment(&batch.id)));
        let name = format!("{stem}.results.jsonl");
        let to = dir.join(&name);
        let response = self
            .transport
            .with_retries(0, || {
                self.transport
                    .open(self.http.get(&url), self.config.api_key.iter())
            })
            .await?;
        self.transport.download(response, &to, limit).await?;
        Ok(Collected {
            output: Some(name),
            errors: None,
        })
    }

    fn answer_line(&self, line: &str) -> AnswerLine {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
        let id = v
            .get("custom_id")
            .and_then(Value::as_str)
            .ok_or("no `custom_id`")?
            .to_owned();
        let result = v.get("result").ok_or("no `result`")?;
        let answer = match result.get("type").and_then(Value::as_str) {
            Some("succeeded") => {
                let message = result.get("message").ok_or("no `message`")?;
                wire::parse_message(message.to_string().as_bytes())
            }
            Some("errored") => {
                let text = result
                    .get("error")
                    .map(Value::to_string)
                    .unwrap_or_default();
                Err(sift_http::batch_request_error(text.as_bytes()))
            }
            Some("canceled") => Err(ProviderError::Batch(
                "the batch was cancelled before this request ran".into(),
            )),
            Some("expired") => Err(ProviderError::Batch(
                "the batch expired before this request ran".into(),
            )),
            other => return Err(format!("an unknown result type {other:?}")),
        };
        Ok((id, answer))
    }
}

/// A batch id as one path segment (an upstream's id never reaches another path).
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A Message Batch as sift's [`BatchState`]: `in_progress`, `canceling`, `ended`; an ended
/// batch has a result for every request (succeeded, errored, canceled or expired), so it is
/// complete.
fn read_state(v: Value) -> Result<BatchState, ProviderError> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::InvalidResponse("the batch has no `id`".into()))?
        .to_owned();
    let status = v
        .get("processing_status")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let count = |k: &str| {
        v.pointer(&format!("/request_counts/{k}"))
            .and_then(Value::as_u64)
    };
    let failed = ["errored", "canceled", "expired"]
        .iter()
        .filter_map(|k| count(k))
        .sum();
    let ended = status == "ended";
    Ok(BatchState {
        id,
        terminal: ended,
        complete: ended,
        succeeded: count("succeeded").unwrap_or(0),
        failed,
        why: String::new(),
        status,
        raw: v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_fit_anthropics_pattern_and_stay_stable() {
        assert_eq!(custom_id("item-7_b"), "item-7_b");
        let odd = custom_id("docs/invoice 3.txt");
        assert!(odd.starts_with("sift-") && odd.len() == 21, "{odd}");
        assert_eq!(odd, custom_id("docs/invoice 3.txt"));
        assert_ne!(odd, custom_id("docs/invoice 4.txt"));
        assert!(custom_id(&"x".repeat(65)).starts_with("sift-"));
    }
}
