//! One extraction driven by the caller, for answers that do not come back from a call sift
//! makes itself: a provider's batch API, where every request of a round is sent together and
//! the answers arrive hours later.
//!
//! [`Turns::request`] is what to send; each answer goes to [`Turns::answer`], which hands it
//! to the same decision the live loop uses (`machine`: the same reading, the same truncation
//! rule, the same re-ask) to learn whether the extraction is done, failed, or asks again, in
//! which case [`Turns::request`] is the extended conversation.

use std::time::Duration;

use crate::machine::{Answer, Job, Machine, Step};
use crate::message::{ChatRequest, ChatResponse};
use crate::outcome::{Attempt, ExtractError, Extraction, StreamStats};
use crate::provider::ProviderError;

/// An extraction whose calls the caller makes (see the module's doc).
#[derive(Debug)]
pub struct Turns<T> {
    machine: Machine<T>,
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
    pub(crate) fn new(job: Job<T>) -> Self {
        Self {
            machine: Machine::new(job, StreamStats::default()),
        }
    }

    /// The request to send next.
    pub fn request(&self) -> &ChatRequest {
        self.machine.request()
    }

    /// The attempts so far (the machine's record, copied).
    pub fn attempts(&self) -> Vec<Attempt> {
        self.machine.stats().attempts()
    }

    /// The answer to [`request`](Self::request), which took `duration`.
    pub fn answer(&mut self, response: ChatResponse, duration: Duration) -> Turn<T> {
        let answer = Answer::whole(self.machine.mode(), self.machine.schema(), &response);
        match self.machine.answered(answer, response, duration) {
            Step::Done(value, response, spans) => {
                let attempts = self.attempts();
                Turn::Done(Extraction {
                    value,
                    usage: attempts.iter().map(|a| a.usage).sum(),
                    attempts,
                    response,
                    spans,
                })
            }
            Step::Again { .. } => Turn::Again,
            Step::Failed(e) => Turn::Failed(e),
            // Only a streamed list ends without a value.
            Step::Finished => {
                let attempts = self.attempts();
                Turn::Failed(ExtractError::RetriesExhausted {
                    usage: attempts.iter().map(|a| a.usage).sum(),
                    attempts,
                    last_response: None,
                })
            }
        }
    }

    /// The call for [`request`](Self::request) failed: the extraction fails with `error`.
    pub fn fail(mut self, error: ProviderError, duration: Duration) -> ExtractError {
        self.machine.failed(error, duration)
    }
}
