//! Worked examples (few-shot prompting): an input turn and the answer it should get, shown to
//! the model before the request itself.
//!
//! An example is given in the terms of the request (the prompt as the model reads it, and
//! the value of the schema asked for); how it is shown depends on the mode and is decided
//! in one place, [`Mode::example_turns`](crate::Mode): a user turn, then the answer as the
//! mode expects it (a call of the function and its result in `tools` mode, the JSON text in
//! `json_schema` and `json`, a fenced block in `md_json`). The examples sit after the system
//! prompt and before the conversation, so every request of an extractor shares them as a
//! prefix (which the embedded model keeps, reading them once).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One worked example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Example {
    /// The user's turn, as the model reads it (the prompt rendered for the example's input).
    pub prompt: String,
    /// The answer it should get: a value of the schema asked for (not wrapped, without the
    /// `null`s of strict mode; sift shows it the way the mode and provider need).
    pub output: Value,
}

impl Example {
    /// An example: `prompt` answered by `output`.
    pub fn new(prompt: impl Into<String>, output: Value) -> Self {
        Self {
            prompt: prompt.into(),
            output,
        }
    }
}
