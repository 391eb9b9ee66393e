//! Gemini's batch mode (`models/{model}:batchGenerateContent`): requests sent inline, run
//! within a day at half the price, polled as a long-running operation, their responses read
//! from it (inline requests get inline responses).
//!
//! Each request carries the same body [`Gemini`] would send itself, its item's id in the
//! request's `metadata.key`; each response is read by the same parser as a direct answer.
//! Every call gets the transport's retries; every body read is bounded.

use std::path::Path;

use serde_json::{Value, json};
use sift_core::batch::{AnswerLine, BatchApi, BatchState, Collected, CreatedBatch};
use sift_core::{ChatRequest, ProviderError};
use tokio::io::AsyncWriteExt;

use crate::{Gemini, wire};

/// The most requests sift puts in one batch.
pub const MAX_REQUESTS_PER_BATCH: usize = 100_000;
/// The most bytes of one batch's inline requests (the API's limit: 20 MB).
pub const MAX_BATCH_BYTES: usize = 20 * 1000 * 1000;

/// A batch's name (`batches/abc123`) as a path: `batches/` and one segment.
fn batch_path(id: &str) -> Result<String, ProviderError> {
    let rest = id.strip_prefix("batches/").unwrap_or(id);
    if rest.is_empty()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ProviderError::InvalidResponse(format!(
            "`{}` is not a batch's name",
            rest.chars().take(80).collect::<String>()
        )));
    }
    Ok(format!("batches/{rest}"))
}

#[sift_core::async_trait]
impl BatchApi for Gemini {
    fn via(&self) -> &'static str {
        "gemini-batch"
    }

    fn limits(&self) -> (usize, usize) {
        (MAX_REQUESTS_PER_BATCH, MAX_BATCH_BYTES)
    }

    fn request_line(&self, id: &str, request: &ChatRequest) -> Result<Value, ProviderError> {
        // The model rides along in the metadata: the batch is created at its URL.
        Ok(json!({"request": self.request_body(request)?,
                  "metadata": {"key": id, "model": request.model}}))
    }

    async fn create(
        &self,
        name: &str,
        lines: Vec<Value>,
        _metadata: &Value,
    ) -> Result<CreatedBatch, ProviderError> {
        let model = lines
            .first()
            .and_then(|l| l.pointer("/metadata/model"))
            .and_then(Value::as_str)
            .unwrap_or(&self.config.default_model)
            .to_owned();
        let body = serde_json::to_vec(&json!({"batch": {
            "display_name": name,
            "input_config": {"requests": {"requests": lines}},
        }}))
        .map_err(|e| ProviderError::InvalidResponse(e.to_string()))?;
        let url = self.url(&model, "batchGenerateContent");
        let operation = self
            .transport
            .json(
                "the created batch",
                || {
                    self.http
                        .post(&url)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                },
                self.config.api_key.iter(),
            )
            .await?;
        let state = read_state(operation)?;
        Ok(CreatedBatch::new(state.id, state.status))
    }

    async fn state(&self, id: &str) -> Result<BatchState, ProviderError> {
        let url = format!(
            "{}/{}/{}",
            self.config.base_url,
            self.config.version,
            batch_path(id)?
        );
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
        let list = [
            "/response/inlinedResponses/inlinedResponses",
            "/metadata/output/inlinedResponses/inlinedResponses",
        ]
        .iter()
        .find_map(|p| batch.raw.pointer(p))
        .and_then(Value::as_array);
        let Some(list) = list else {
            if batch.complete {
                return Err(ProviderError::InvalidResponse(
                    "the batch succeeded but holds no inline responses (sift sends its requests inline and reads the responses there)".into(),
                ));
            }
            return Ok(Collected::default());
        };
        let name = format!("{stem}.output.jsonl");
        let to = dir.join(&name);
        let local = |e: std::io::Error| {
            ProviderError::Transport(format!("writing {}: {e}", to.display()).into())
        };
        let mut file = tokio::fs::File::create(&to).await.map_err(local)?;
        let mut written = 0u64;
        for entry in list {
            let mut line = entry.to_string();
            line.push('\n');
            written += line.len() as u64;
            if written > limit {
                return Err(ProviderError::InvalidResponse(format!(
                    "the batch's responses are larger than the limit of {limit} bytes"
                )));
            }
            file.write_all(line.as_bytes()).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        Ok(Collected {
            output: Some(name),
            errors: None,
        })
    }

    fn answer_line(&self, line: &str) -> AnswerLine {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
        let id = v
            .pointer("/metadata/key")
            .and_then(Value::as_str)
            .ok_or("no `metadata.key`")?
            .to_owned();
        if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
            let text = json!({"error": error}).to_string();
            return Ok((id, Err(sift_http::batch_request_error(text.as_bytes()))));
        }
        let response = v.get("response").ok_or("neither `response` nor `error`")?;
        Ok((id, wire::parse_response(response.to_string().as_bytes())))
    }
}

/// A batch operation (or the batch itself) as sift's [`BatchState`]. Its `state` is
/// `BATCH_STATE_PENDING`, `_RUNNING`, `_SUCCEEDED`, `_FAILED`, `_CANCELLED` or `_EXPIRED`;
/// an operation that is `done` has ended.
fn read_state(v: Value) -> Result<BatchState, ProviderError> {
    let id = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::InvalidResponse("the batch has no `name`".into()))?
        .to_owned();
    let meta = v.get("metadata").unwrap_or(&v);
    let status = meta
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("BATCH_STATE_UNSPECIFIED")
        .to_owned();
    // int64 counts arrive as strings.
    let count = |k: &str| {
        meta.pointer(&format!("/batchStats/{k}"))
            .and_then(|n| {
                n.as_u64()
                    .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0)
    };
    let terminal = v.get("done").and_then(Value::as_bool) == Some(true)
        || matches!(
            status.as_str(),
            "BATCH_STATE_SUCCEEDED"
                | "BATCH_STATE_FAILED"
                | "BATCH_STATE_CANCELLED"
                | "BATCH_STATE_EXPIRED"
        );
    let why = v
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map_or_else(|| format!("the batch ended `{status}`"), str::to_owned);
    Ok(BatchState {
        id,
        terminal,
        complete: terminal && status == "BATCH_STATE_SUCCEEDED",
        succeeded: count("successfulRequestCount"),
        failed: count("failedRequestCount"),
        why,
        status,
        raw: v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_names_stay_in_their_path_and_states_are_read() {
        assert_eq!(batch_path("batches/abc-1").unwrap(), "batches/abc-1");
        assert!(batch_path("batches/../files/x").is_err());
        let s = read_state(json!({"name": "batches/b1", "done": true,
            "metadata": {"state": "BATCH_STATE_SUCCEEDED", "batchStats": {"requestCount": "3", "successfulRequestCount": "2", "failedRequestCount": "1"}}}))
        .unwrap();
        assert!(s.terminal && s.complete);
        assert_eq!((s.succeeded, s.failed), (2, 1));
        let s =
            read_state(json!({"name": "batches/b2", "metadata": {"state": "BATCH_STATE_RUNNING"}}))
                .unwrap();
        assert!(!s.terminal);
    }
}
