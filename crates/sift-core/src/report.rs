//! The provider-neutral report of a failed extraction: what the service answers in its error
//! bodies and what the command line writes for a failed item, built once here from an
//! [`ExtractError`].

use serde::{Deserialize, Serialize};

use crate::message::Usage;
use crate::outcome::{Attempt, ExtractError};
use crate::provider::ProviderError;
use crate::trace::Recording;

/// Rewrites a text shown to a client when it holds a secret (the scrubbed text), or `None`
/// when it stays as it is.
pub type Scrub = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Tokens spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReport {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Of the prompt tokens, those read from the provider's prompt cache (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<Usage> for UsageReport {
    fn from(u: Usage) -> Self {
        Self {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
        }
    }
}

/// One error in a model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnswerError {
    /// Where in the answer (`age`, `items[2].name`; empty for the whole answer).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// One call to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptReport {
    /// 1 for the first call.
    pub number: u32,
    /// `success`, `no_output`, `invalid_json`, `truncated`, `validation_failed`, `ungrounded`
    /// or `provider_error`.
    pub outcome: String,
    /// Wall time in milliseconds.
    pub duration_ms: f64,
    /// What was wrong with the answer.
    pub errors: Vec<AnswerError>,
    /// Tokens this call used.
    pub usage: UsageReport,
}

impl AttemptReport {
    /// The report of `a`, its errors scrubbed as `recording` says.
    pub fn new(a: &Attempt, recording: &Recording) -> Self {
        Self {
            number: a.number,
            outcome: a.outcome.as_str().into(),
            duration_ms: a.duration.as_secs_f64() * 1000.0,
            errors: a
                .errors
                .iter()
                .map(|e| AnswerError {
                    path: e.path.clone(),
                    message: recording.scrub(e.message.clone()),
                })
                .collect(),
            usage: a.usage.into(),
        }
    }
}

/// Why one extraction failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExtractionFailure {
    /// What failed, cause included.
    pub message: String,
    /// `provider_error`, `retries_exhausted`, `ungrounded`, `incomplete`, `token_limit` or
    /// `schema`.
    pub kind: String,
    /// The upstream's HTTP status, when it answered with an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Every call made, with its errors.
    pub attempts: Vec<AttemptReport>,
    /// Tokens spent in all.
    pub usage: UsageReport,
}

impl ExtractionFailure {
    /// Describes `e`, its messages scrubbed as `recording` says.
    pub fn from_error(e: &ExtractError, recording: &Recording) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self {
            message: recording.scrub(message),
            kind: e.kind().into(),
            upstream_status: match e.provider_error() {
                Some(ProviderError::Status { status, .. }) => Some(*status),
                _ => None,
            },
            attempts: e
                .attempts()
                .iter()
                .map(|a| AttemptReport::new(a, recording))
                .collect(),
            usage: e.usage().into(),
        }
    }
}
