//! One extraction driven by the caller, for answers that do not come back from a call sift
//! makes itself: a provider's batch API, where every request of a round is sent together and
//! the answers arrive hours later.
//!
//! [`Turns::request`] is what to send; each answer goes to [`Turns::answer`], which reads it,
//! validates it against the whole schema and decides, by the same rules as the attempt loop
//! (the same reading, the same truncation rule, the same re-ask), whether the extraction is
//! done, failed, or asks again, in which case [`Turns::request`] is the extended
//! conversation.

use std::time::Duration;

use crate::attempts::{self, Answer, Decode, Next, after_failure, judge, record};
use crate::extract::{Attempt, AttemptOutcome, ExtractError, Extraction};
use crate::message::{ChatRequest, ChatResponse};
use crate::mode::Mode;
use crate::provider::ProviderError;
use crate::schema::Schema;

/// An extraction whose calls the caller makes (see the module's doc).
pub struct Turns<T> {
    request: ChatRequest,
    schema: Schema,
    mode: Mode,
    max_retries: u32,
    constrained: bool,
    decode: Decode<T>,
    attempts: Vec<Attempt>,
}

impl<T> std::fmt::Debug for Turns<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turns")
            .field("schema", &self.schema.name())
            .field("mode", &self.mode)
            .field("attempts", &self.attempts.len())
            .finish_non_exhaustive()
    }
}

/// What an answer led to.
#[derive(Debug)]
pub enum Turn<T> {
    /// A valid answer: the extraction is done.
    Done(Extraction<T>),
    /// The answer failed and a re-ask is left: send [`Turns::request`] again.
    Again,
    /// The extraction failed (re-asks spent, or the answer was cut off).
    Failed(ExtractError),
}

impl<T> Turns<T> {
    pub(crate) fn new(job: attempts::Job<T>) -> Self {
        Self {
            request: job.request,
            schema: job.schema,
            mode: job.mode,
            max_retries: job.max_retries,
            constrained: job.constrained,
            decode: job.decode,
            attempts: Vec::new(),
        }
    }

    /// The request to send next.
    pub fn request(&self) -> &ChatRequest {
        &self.request
    }

    /// The attempts so far.
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// The answer to [`request`](Self::request), which took `duration`.
    pub fn answer(&mut self, response: ChatResponse, duration: Duration) -> Turn<T> {
        let number = self.attempts.len() as u32 + 1;
        let mut answer = Answer::whole(self.mode, &self.schema, &response);
        let verdict = judge(
            &mut answer,
            &self.schema,
            &self.decode,
            self.constrained,
            &response,
        );
        let (outcome, errors) = match verdict {
            Ok(value) => {
                self.attempts.push(record(
                    number,
                    duration,
                    &answer,
                    AttemptOutcome::Success,
                    Vec::new(),
                ));
                let attempts = std::mem::take(&mut self.attempts);
                return Turn::Done(Extraction {
                    value,
                    usage: attempts.iter().map(|a| a.usage).sum(),
                    attempts,
                    response,
                });
            }
            Err(failed) => failed,
        };
        let next = after_failure(&answer, number, self.max_retries);
        let outcome = if next == Next::TokenLimit {
            AttemptOutcome::Truncated
        } else {
            outcome
        };
        self.attempts
            .push(record(number, duration, &answer, outcome, errors.clone()));
        let usage = self.attempts.iter().map(|a| a.usage).sum();
        match next {
            Next::TokenLimit => Turn::Failed(ExtractError::TokenLimit {
                limit: self.request.max_tokens,
                attempts: std::mem::take(&mut self.attempts),
                usage,
            }),
            Next::Exhausted => Turn::Failed(ExtractError::RetriesExhausted {
                attempts: std::mem::take(&mut self.attempts),
                usage,
                last_response: Some(Box::new(response)),
            }),
            Next::Reask => {
                let reask = self.mode.reask(self.schema.response(), &response, &errors);
                self.request.messages.extend(reask);
                Turn::Again
            }
        }
    }

    /// The call for [`request`](Self::request) failed: the extraction fails with `error`.
    pub fn fail(mut self, error: ProviderError, duration: Duration) -> ExtractError {
        let number = self.attempts.len() as u32 + 1;
        self.attempts.push(Attempt {
            number,
            duration,
            usage: Default::default(),
            outcome: AttemptOutcome::ProviderError,
            errors: vec![crate::FieldError::new("", error.to_string())],
            output: None,
        });
        ExtractError::provider(number, error, self.attempts)
    }
}
