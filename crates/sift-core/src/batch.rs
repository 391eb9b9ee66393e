//! A provider's batch API, as `sift batch --via ...-batch` drives it: requests sent in bulk,
//! run by the provider within a day at a discount, polled, their answers collected as JSONL
//! files and read back one line each. One driver (in `sift-batch`) runs every provider's:
//! the rounds, the state file, the re-asks and the validation are the same; only what this
//! trait does differs.

use std::path::Path;

use async_trait::async_trait;
use serde_json::Value;

use crate::{ChatRequest, ChatResponse, ProviderError};

/// A batch just created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreatedBatch {
    /// The provider's id for it.
    pub id: String,
    /// Its status as the provider says it.
    pub status: String,
    /// The input file it runs, when the API takes one (OpenAI's).
    pub input_file_id: Option<String>,
}

impl CreatedBatch {
    /// A batch `id` in `status`.
    pub fn new(id: impl Into<String>, status: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: status.into(),
            input_file_id: None,
        }
    }
}

/// A batch as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchState {
    /// The provider's id for it.
    pub id: String,
    /// Its status as the provider says it.
    pub status: String,
    /// It will not change any more.
    pub terminal: bool,
    /// It ended having run every request (each answered or failed on its own).
    pub complete: bool,
    /// Requests answered so far.
    pub succeeded: u64,
    /// Requests failed so far.
    pub failed: u64,
    /// Why it ended short, when it did (its own errors, or its status).
    pub why: String,
    /// What the provider said, for [`BatchApi::collect`].
    pub raw: Value,
}

/// The files an ended batch's answers were written to (names relative to the folder given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// The answers.
    pub output: Option<String>,
    /// The requests that failed, when the provider lists them apart.
    pub errors: Option<String>,
}

/// One request's answer read from a collected file: its id, and the answer or why there is
/// none. `Err` when the line itself cannot be read.
pub type AnswerLine = Result<(String, Result<ChatResponse, ProviderError>), String>;

/// A provider's batch API.
#[async_trait]
pub trait BatchApi: Send + Sync + std::fmt::Debug {
    /// Its `--via` name (`openai-batch`, `anthropic-batch`, `gemini-batch`).
    fn via(&self) -> &'static str;

    /// The most requests one batch takes, and the most bytes of their encoded lines.
    fn limits(&self) -> (usize, usize);

    /// The id item `id` goes by in this API's lines (and comes back with in its answers):
    /// the id itself unless the API restricts ids.
    fn line_id(&self, id: &str) -> String {
        id.to_owned()
    }

    /// `request` as one line of a batch, its item named `id` (as [`line_id`](Self::line_id)
    /// makes it).
    fn request_line(&self, id: &str, request: &ChatRequest) -> Result<Value, ProviderError>;

    /// Creates a batch of `lines` (made by [`request_line`](Self::request_line)), named
    /// `name`, with `metadata` (strings) where the API keeps some.
    async fn create(
        &self,
        name: &str,
        lines: Vec<Value>,
        metadata: &Value,
    ) -> Result<CreatedBatch, ProviderError>;

    /// The batch `id` as it is now.
    async fn state(&self, id: &str) -> Result<BatchState, ProviderError>;

    /// Writes the answers of an ended batch as JSONL into `dir`, in files named from `stem`,
    /// none past `limit` bytes.
    async fn collect(
        &self,
        batch: &BatchState,
        dir: &Path,
        stem: &str,
        limit: u64,
    ) -> Result<Collected, ProviderError>;

    /// Reads one line of a collected file (the id as the line has it).
    fn answer_line(&self, line: &str) -> AnswerLine;
}

/// `message` cut to 500 bytes (at a character boundary), for an answer line's error.
pub fn bounded_message(mut message: String) -> String {
    if message.len() > 500 {
        let mut cut = 500;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}
