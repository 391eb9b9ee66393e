//! OpenAI's Batch API: a JSONL file of chat requests uploaded through the Files API, run by
//! the provider within a day at half the price, its answers downloaded as JSONL.
//!
//! Each request line carries the same body [`OpenAi`] would send for the request itself
//! (`custom_id` names the item); each answer line is read by the same parser as a direct
//! call. Every call here gets the provider's transport retries, and every body read is
//! bounded: the batch status by the provider's `max_body`, a downloaded file by the limit the
//! caller gives.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};
use sift_core::{ChatRequest, ChatResponse, ProviderError};

use crate::{OpenAi, wire};

/// The most requests one batch input file may hold (the API's limit).
pub const MAX_REQUESTS_PER_BATCH: usize = 50_000;
/// The largest batch input file, in bytes (the API's limit: 200 MB).
pub const MAX_BATCH_FILE_BYTES: usize = 200 * 1000 * 1000;
/// The endpoint the batched requests are sent to.
pub const CHAT_ENDPOINT: &str = "/v1/chat/completions";

/// A batch as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct BatchStatus {
    /// The batch's id.
    pub id: String,
    /// `validating`, `in_progress`, `finalizing`, `completed`, `failed`, `expired`,
    /// `cancelling` or `cancelled`.
    pub status: String,
    /// The answers, once there are some.
    #[serde(default)]
    pub output_file_id: Option<String>,
    /// The requests that failed, once there are some.
    #[serde(default)]
    pub error_file_id: Option<String>,
    /// Counts of requests.
    #[serde(default)]
    pub request_counts: RequestCounts,
    /// Why the batch failed (`failed`: the input was refused).
    #[serde(default)]
    pub errors: Option<BatchErrors>,
}

impl BatchStatus {
    /// Whether the batch will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        )
    }

    /// The batch's own errors, as one line.
    pub fn error_text(&self) -> String {
        let list: Vec<String> = self
            .errors
            .iter()
            .flat_map(|e| &e.data)
            .map(|e| match (&e.line, &e.code) {
                (Some(line), _) => format!("line {line}: {}", e.message),
                (None, Some(code)) => format!("{code}: {}", e.message),
                (None, None) => e.message.clone(),
            })
            .collect();
        if list.is_empty() {
            format!("the batch ended `{}`", self.status)
        } else {
            list.join("; ")
        }
    }
}

/// Counts of a batch's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct RequestCounts {
    /// All of them.
    #[serde(default)]
    pub total: u64,
    /// Answered.
    #[serde(default)]
    pub completed: u64,
    /// Failed.
    #[serde(default)]
    pub failed: u64,
}

/// A batch's errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct BatchErrors {
    /// Each error.
    #[serde(default)]
    pub data: Vec<BatchError>,
}

/// One error of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BatchError {
    /// A machine-readable code.
    #[serde(default)]
    pub code: Option<String>,
    /// What is wrong.
    #[serde(default)]
    pub message: String,
    /// The input line it is about.
    #[serde(default)]
    pub line: Option<u64>,
}

/// One line of a batch's input file: `request` as this provider would send it.
pub fn request_line(custom_id: &str, request: &ChatRequest) -> Value {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT_ENDPOINT,
        "body": wire::request_body(request),
    })
}

/// Reads one line of a batch's output or error file: the `custom_id`, and the completion or
/// why there is none. `Err` when the line itself cannot be read.
pub fn answer_line(line: &str) -> Result<(String, Result<ChatResponse, ProviderError>), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let id = v
        .get("custom_id")
        .and_then(Value::as_str)
        .ok_or("no `custom_id`")?
        .to_owned();
    if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the request failed");
        let text = match error.get("code").and_then(Value::as_str) {
            Some(code) => format!("{code}: {message}"),
            None => message.to_owned(),
        };
        return Ok((id, Err(ProviderError::Batch(bounded(text)))));
    }
    let response = v.get("response").ok_or("neither `response` nor `error`")?;
    let status = response
        .get("status_code")
        .and_then(Value::as_u64)
        .unwrap_or(200);
    let body = response.get("body").cloned().unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let text = body.to_string();
        let message = bounded(wire::error_message(text.as_bytes()));
        let error = if wire::input_too_long(text.as_bytes()) {
            ProviderError::InputTooLong(message)
        } else {
            ProviderError::Status {
                status: u16::try_from(status).unwrap_or(0),
                message,
                retry_after: None,
            }
        };
        return Ok((id, Err(error)));
    }
    let bytes = body.to_string();
    Ok((id, wire::parse_completion(bytes.as_bytes())))
}

use sift_core::batch::bounded_message as bounded;

#[sift_core::async_trait]
impl sift_core::batch::BatchApi for OpenAi {
    fn via(&self) -> &'static str {
        "openai-batch"
    }

    fn limits(&self) -> (usize, usize) {
        (MAX_REQUESTS_PER_BATCH, MAX_BATCH_FILE_BYTES)
    }

    fn request_line(&self, id: &str, request: &ChatRequest) -> Result<Value, ProviderError> {
        Ok(request_line(id, request))
    }

    async fn create(
        &self,
        name: &str,
        lines: Vec<Value>,
        metadata: &Value,
    ) -> Result<sift_core::batch::CreatedBatch, ProviderError> {
        let mut bytes = Vec::new();
        for line in &lines {
            bytes.extend_from_slice(line.to_string().as_bytes());
            bytes.push(b'\n');
        }
        let file = self.upload_batch_file(name, bytes).await?;
        let batch = self.create_batch(&file, metadata).await?;
        let mut created = sift_core::batch::CreatedBatch::new(batch.id, batch.status);
        created.input_file_id = Some(file);
        Ok(created)
    }

    async fn state(&self, id: &str) -> Result<sift_core::batch::BatchState, ProviderError> {
        let url = self.url(&format!("/batches/{id}"));
        let raw: Value = self.call_json("the batch", || self.http.get(&url)).await?;
        let status: BatchStatus = serde_json::from_value(raw.clone())
            .map_err(|e| ProviderError::InvalidResponse(format!("the batch: {e}")))?;
        Ok(sift_core::batch::BatchState {
            terminal: status.is_terminal(),
            complete: status.status == "completed",
            succeeded: status.request_counts.completed,
            failed: status.request_counts.failed,
            why: status.error_text(),
            id: status.id,
            status: status.status,
            raw,
        })
    }

    async fn collect(
        &self,
        batch: &sift_core::batch::BatchState,
        dir: &Path,
        stem: &str,
        limit: u64,
    ) -> Result<sift_core::batch::Collected, ProviderError> {
        let mut out = sift_core::batch::Collected::default();
        for (key, kind) in [("output_file_id", "output"), ("error_file_id", "errors")] {
            let Some(file_id) = batch.raw.get(key).and_then(Value::as_str) else {
                continue;
            };
            let name = format!("{stem}.{kind}.jsonl");
            self.download_file(file_id, &dir.join(&name), limit).await?;
            if kind == "output" {
                out.output = Some(name);
            } else {
                out.errors = Some(name);
            }
        }
        Ok(out)
    }

    fn answer_line(&self, line: &str) -> sift_core::batch::AnswerLine {
        answer_line(line)
    }
}

impl OpenAi {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url)
    }

    /// Sends the request `request` makes, with the transport's retries; the whole (bounded)
    /// answer read as a `T`.
    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        let value = self.transport.json(what, request, self.secrets()).await?;
        serde_json::from_value(value)
            .map_err(|e| ProviderError::InvalidResponse(format!("{what}: {e}")))
    }

    /// Uploads a batch input file (`purpose: batch`); its id.
    pub async fn upload_batch_file(
        &self,
        name: &str,
        content: Vec<u8>,
    ) -> Result<String, ProviderError> {
        #[derive(Deserialize)]
        struct FileObject {
            id: String,
        }
        let url = self.url("/files");
        let file: FileObject = self
            .call_json("the uploaded file", || {
                let part =
                    reqwest::multipart::Part::bytes(content.clone()).file_name(name.to_owned());
                let form = reqwest::multipart::Form::new()
                    .text("purpose", "batch")
                    .part("file", part);
                self.http.post(&url).multipart(form)
            })
            .await?;
        Ok(file.id)
    }

    /// Creates a batch of the requests in file `input_file_id`, with `metadata` (strings).
    pub async fn create_batch(
        &self,
        input_file_id: &str,
        metadata: &Value,
    ) -> Result<BatchStatus, ProviderError> {
        let url = self.url("/batches");
        let body = json!({
            "input_file_id": input_file_id,
            "endpoint": CHAT_ENDPOINT,
            "completion_window": "24h",
            "metadata": metadata,
        });
        self.call_json("the created batch", || self.http.post(&url).json(&body))
            .await
    }

    /// The batch `id` as it is now.
    pub async fn batch(&self, id: &str) -> Result<BatchStatus, ProviderError> {
        let url = self.url(&format!("/batches/{id}"));
        self.call_json("the batch", || self.http.get(&url)).await
    }

    /// Downloads file `id` to `to`, streamed (never whole in memory), refused past `limit`
    /// bytes.
    pub async fn download_file(
        &self,
        id: &str,
        to: &Path,
        limit: u64,
    ) -> Result<u64, ProviderError> {
        let url = self.url(&format!("/files/{id}/content"));
        let response = self
            .transport
            .with_retries(0, || {
                self.transport.open(self.http.get(&url), self.secrets())
            })
            .await?;
        self.transport.download(response, to, limit).await
    }
}
