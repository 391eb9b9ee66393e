//! What an extraction yields and how it ends: the data types of the attempt loop, in a leaf
//! module that the modules driving the loop (`machine`, `attempts`, `turns`, the builder)
//! all import and that imports none of them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::grounding::{Spans, Ungrounded};
use crate::message::{ChatResponse, Usage};
use crate::provider::ProviderError;
use crate::schema::SchemaError;
use crate::validate::FieldError;

/// A successful extraction.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Extraction<T> {
    /// The validated value.
    pub value: T,
    /// Tokens used by every attempt together.
    pub usage: Usage,
    /// Every attempt, the last one successful.
    pub attempts: Vec<Attempt>,
    /// The final raw completion.
    pub response: ChatResponse,
    /// Where each grounded value of the answer was found, by JSON pointer into the value;
    /// `None` when the extraction was not grounded (see
    /// [`ExtractBuilder::grounding`](crate::ExtractBuilder::grounding)).
    pub spans: Option<Spans>,
}

impl<T> Extraction<T> {
    /// The value, dropping the rest.
    pub fn into_value(self) -> T {
        self.value
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// Parsed and validated.
    Success,
    /// No tool call or no content.
    NoOutput,
    /// Not valid JSON.
    InvalidJson,
    /// Cut off at the token limit.
    Truncated,
    /// Valid JSON that failed the schema, deserialisation or a custom rule.
    ValidationFailed,
    /// Valid against the schema, but with values the input does not hold.
    Ungrounded,
    /// The provider call itself failed.
    ProviderError,
}

impl AttemptOutcome {
    /// The outcome's name (`success`, `validation_failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::NoOutput => "no_output",
            AttemptOutcome::InvalidJson => "invalid_json",
            AttemptOutcome::Truncated => "truncated",
            AttemptOutcome::ValidationFailed => "validation_failed",
            AttemptOutcome::Ungrounded => "ungrounded",
            AttemptOutcome::ProviderError => "provider_error",
        }
    }
}

/// The record of one call to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// 1 for the first call.
    pub number: u32,
    /// Wall time of the call and the checks.
    #[serde(serialize_with = "serialize_millis", rename = "duration_ms")]
    pub duration: Duration,
    /// Tokens this call used.
    pub usage: Usage,
    /// What became of it.
    pub outcome: AttemptOutcome,
    /// What was wrong (empty on success).
    pub errors: Vec<FieldError>,
    /// The JSON text the model produced, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The model that answered, as the provider named it (in a fallback chain, the one that
    /// took the call); `None` when the call failed or the provider did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Attempt {
    /// The record of an attempt whose provider call failed after `duration`.
    pub(crate) fn provider_failure(
        number: u32,
        duration: Duration,
        source: &ProviderError,
    ) -> Self {
        Self {
            number,
            duration,
            usage: Usage::default(),
            outcome: AttemptOutcome::ProviderError,
            errors: vec![FieldError::new("", source.to_string())],
            output: None,
            model: None,
        }
    }
}

fn serialize_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Why an extraction failed. Every variant keeps the attempts made and the tokens spent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// A call to the provider failed (after its own transport retries).
    #[error("model call failed on attempt {attempt}")]
    Provider {
        /// Which attempt failed.
        attempt: u32,
        /// The provider's error.
        #[source]
        source: ProviderError,
        /// Every attempt, the failed one last.
        attempts: Vec<Attempt>,
        /// Tokens spent before the failure.
        usage: Usage,
    },
    /// No attempt produced a valid answer.
    #[error("no valid answer after {} attempts", attempts.len())]
    RetriesExhausted {
        /// Every attempt with its errors.
        attempts: Vec<Attempt>,
        /// Tokens spent in all.
        usage: Usage,
        /// The last completion.
        last_response: Option<Box<ChatResponse>>,
    },
    /// Every attempt fitted the schema, the last one with values the input does not hold
    /// (and the re-asks ran out): not passed on as if it were true to the text.
    #[error("{}", ungrounded_message(ungrounded, attempts.len()))]
    Ungrounded {
        /// The last answer's values that are not in the input.
        ungrounded: Vec<Ungrounded>,
        /// The last answer (valid against the schema).
        value: Box<Value>,
        /// Every attempt with its errors.
        attempts: Vec<Attempt>,
        /// Tokens spent in all.
        usage: Usage,
    },
    /// A streamed answer broke off after some elements had been handed over.
    #[error("the answer broke off after {emitted} elements")]
    Incomplete {
        /// Elements handed over before the break.
        emitted: usize,
        /// Every attempt, the broken one last with its error.
        attempts: Vec<Attempt>,
        /// Tokens spent in all.
        usage: Usage,
    },
    /// The answer was cut off by the token limit (`finish_reason: length`, from any
    /// provider). Not re-asked: the same limit would cut the same answer again.
    #[error("{}", token_limit_message(*.limit, .attempts))]
    TokenLimit {
        /// The limit the request set, when it set one.
        limit: Option<u32>,
        /// Every attempt, the cut one last.
        attempts: Vec<Attempt>,
        /// Tokens spent in all.
        usage: Usage,
    },
    /// The response schema could not be compiled, or the provider cannot enforce it.
    #[error("invalid response schema")]
    Schema(#[from] SchemaError),
}

fn ungrounded_message(ungrounded: &[Ungrounded], attempts: usize) -> String {
    let values: Vec<String> = ungrounded
        .iter()
        .take(5)
        .map(|u| format!("{} at {}", u.value, u.pointer))
        .collect();
    let more = ungrounded.len().saturating_sub(values.len());
    format!(
        "after {attempts} attempts the answer still holds {} value{} the text does not: {}{}",
        ungrounded.len(),
        if ungrounded.len() == 1 { "" } else { "s" },
        values.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// Which limit cut the answer off: the `max_tokens` sent (the answer used it all), or the
/// upstream's own (it stopped short of the limit sent: its context was full).
fn token_limit_message(limit: Option<u32>, attempts: &[Attempt]) -> String {
    let generated = attempts.last().map(|a| a.usage.output_tokens).unwrap_or(0);
    match limit {
        Some(n) if generated > 0 && generated < u64::from(n) => format!(
            "the upstream stopped the answer after {generated} tokens, short of the limit of {n} sift sent: its own limit (the model's context, prompt included) was reached; give the server a longer context, or send a shorter text"
        ),
        Some(n) => format!(
            "the answer did not fit in the limit of {n} tokens sift sent: raise max_tokens, or ask for less"
        ),
        None => "the answer did not fit in the provider's token limit: set a higher max_tokens, or ask for less".into(),
    }
}

impl ExtractError {
    /// A provider failure on attempt `number`, after `attempts` (the failed one last).
    pub(crate) fn provider(number: u32, source: ProviderError, attempts: Vec<Attempt>) -> Self {
        ExtractError::Provider {
            attempt: number,
            source,
            usage: attempts.iter().map(|a| a.usage).sum(),
            attempts,
        }
    }

    /// The attempts made.
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            ExtractError::Provider { attempts, .. }
            | ExtractError::RetriesExhausted { attempts, .. }
            | ExtractError::Ungrounded { attempts, .. }
            | ExtractError::Incomplete { attempts, .. }
            | ExtractError::TokenLimit { attempts, .. } => attempts,
            ExtractError::Schema(_) => &[],
        }
    }

    /// Tokens spent in all.
    pub fn usage(&self) -> Usage {
        match self {
            ExtractError::Provider { usage, .. }
            | ExtractError::RetriesExhausted { usage, .. }
            | ExtractError::Ungrounded { usage, .. }
            | ExtractError::Incomplete { usage, .. }
            | ExtractError::TokenLimit { usage, .. } => *usage,
            ExtractError::Schema(_) => Usage::default(),
        }
    }

    /// A short name for the failure (`provider_error`, `retries_exhausted`, `ungrounded`,
    /// `incomplete`, `token_limit`, `schema`).
    pub fn kind(&self) -> &'static str {
        match self {
            ExtractError::Provider { .. } => "provider_error",
            ExtractError::RetriesExhausted { .. } => "retries_exhausted",
            ExtractError::Ungrounded { .. } => "ungrounded",
            ExtractError::Incomplete { .. } => "incomplete",
            ExtractError::TokenLimit { .. } => "token_limit",
            ExtractError::Schema(_) => "schema",
        }
    }

    /// The provider error, if that is what failed.
    pub fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            ExtractError::Provider { source, .. } => Some(source.cause()),
            _ => None,
        }
    }
}

/// One step of a streamed extraction (see [`crate::stream`]). A stream yields
/// `Result<Event<T, P>, ExtractError>`: events until it ends with [`Event::Done`] or an error.
/// `T` is what is validated (a list element, or the whole value), `P` a snapshot of the value
/// so far (partial streams).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<T, P = Value> {
    /// A list element that passed validation (element streams), in list order.
    Element {
        /// Its position in the list (counting every element, valid or not).
        index: usize,
        /// The element.
        value: T,
        /// Where each grounded value of the element was found, by JSON pointer into the
        /// element; `None` when the extraction is not grounded.
        spans: Option<Spans>,
    },
    /// A list element that failed validation; the stream goes on with the next one.
    ItemError {
        /// Its position in the list (counting every element, valid or not).
        index: usize,
        /// What is wrong with it.
        errors: Vec<FieldError>,
        /// The element as the model wrote it.
        value: Value,
    },
    /// The value so far (partial streams): completed fields, and the string being written.
    Snapshot(P),
    /// The attempt's answer failed and a new attempt starts (partial streams): discard the
    /// snapshots seen so far; new ones start from empty.
    Retry {
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed.
        errors: Vec<FieldError>,
    },
    /// The complete, validated value (partial streams); only [`Event::Done`] follows.
    Value(T),
    /// The extraction succeeded. The last item.
    Done {
        /// Tokens spent over every attempt.
        usage: Usage,
        /// Every attempt, the last one successful.
        attempts: Vec<Attempt>,
        /// Where each grounded value of the final [`Event::Value`] was found (partial streams
        /// of a grounded extraction); `None` otherwise (an element stream's elements carry
        /// their own).
        spans: Option<Spans>,
    },
}

impl<T> Event<T, Value> {
    /// The same event in a stream whose snapshots have type `P`; `None` for a snapshot.
    pub(crate) fn cast<P>(self) -> Option<Event<T, P>> {
        Some(match self {
            Event::Element {
                index,
                value,
                spans,
            } => Event::Element {
                index,
                value,
                spans,
            },
            Event::ItemError {
                index,
                errors,
                value,
            } => Event::ItemError {
                index,
                errors,
                value,
            },
            Event::Snapshot(_) => return None,
            Event::Retry { attempt, errors } => Event::Retry { attempt, errors },
            Event::Value(v) => Event::Value(v),
            Event::Done {
                usage,
                attempts,
                spans,
            } => Event::Done {
                usage,
                attempts,
                spans,
            },
        })
    }
}

#[derive(Debug, Default)]
struct Progress {
    attempts: Vec<Attempt>,
    /// The answer that succeeded (for `send`; its spans come with [`Event::Done`]).
    response: Option<ChatResponse>,
}

/// Tokens and attempts of a stream, readable while and after it runs.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    progress: Arc<Mutex<Progress>>,
}

impl StreamStats {
    fn with<R>(&self, f: impl FnOnce(&mut Progress) -> R) -> R {
        match self.progress.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Tokens used by the attempts finished so far.
    pub fn usage(&self) -> Usage {
        self.with(|p| p.attempts.iter().map(|a| a.usage).sum())
    }

    /// The attempts finished so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.with(|p| p.attempts.clone())
    }

    pub(crate) fn count(&self) -> usize {
        self.with(|p| p.attempts.len())
    }

    pub(crate) fn set_response(&self, response: ChatResponse) {
        self.with(|p| p.response = Some(response));
    }

    /// The answer that succeeded.
    pub(crate) fn take_response(&self) -> Option<ChatResponse> {
        self.with(|p| p.response.take())
    }

    pub(crate) fn push(&self, attempt: Attempt) -> Vec<Attempt> {
        self.with(|p| {
            p.attempts.push(attempt);
            p.attempts.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(output_tokens: u64) -> Vec<Attempt> {
        vec![Attempt {
            number: 1,
            duration: Duration::from_secs(1),
            usage: Usage {
                input_tokens: 100,
                output_tokens,
                cached_input_tokens: 0,
            },
            outcome: AttemptOutcome::Truncated,
            errors: Vec::new(),
            output: None,
            model: None,
        }]
    }

    #[test]
    fn a_token_limit_error_says_which_limit_cut_the_answer() {
        let sift = token_limit_message(Some(1024), &cut(1024));
        assert!(
            sift.contains("the limit of 1024 tokens sift sent"),
            "{sift}"
        );
        // Stopped short of the limit sent: the server's own context was full.
        let server = token_limit_message(Some(8192), &cut(8019));
        assert!(
            server.contains("after 8019 tokens, short of the limit of 8192"),
            "{server}"
        );
        assert!(server.contains("context"), "{server}");
        assert!(token_limit_message(None, &[]).contains("provider's token limit"));
    }
}
