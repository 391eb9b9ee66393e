//! The decision after each answer, written once and free of I/O.
//!
//! A [`Machine`] holds one extraction's conversation and attempts. Whoever makes the calls
//! (the live loop in `attempts`, or the caller of a provider's batch API through
//! [`Turns`](crate::Turns)) hands it each answer or failure, and it decides: the value is
//! valid (done), the answer was cut off by the token limit (failed, not re-asked: the same
//! limit would cut it again), elements were already handed over (incomplete), a re-ask is
//! left (the request now carries the errors: ask again), or none is (exhausted). Every
//! attempt is recorded, and usage summed, here.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::grounding::{Sources, Spans, Ungrounded};
use crate::message::{ChatRequest, ChatResponse, Usage};
use crate::mode::{Mode, ReadError, parse_json};
use crate::outcome::{Attempt, AttemptOutcome, ExtractError, StreamStats};
use crate::provider::ProviderError;
use crate::schema::Schema;
use crate::trace::{self, Recording};
use crate::validate::FieldError;

/// Turns a value that passed the schema into the caller's type, or says what is wrong.
pub(crate) type Decode<T> = Arc<dyn Fn(&Value) -> Result<T, Vec<FieldError>> + Send + Sync>;

/// How the answer is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// One value, from a plain (non-streamed) call.
    Whole,
    /// One value, streamed: snapshots as it grows.
    Partial,
    /// A list, streamed: each element as it closes.
    Elements,
}

/// Everything one extraction needs.
pub(crate) struct Job<T> {
    pub(crate) provider: Arc<dyn crate::Provider>,
    pub(crate) request: ChatRequest,
    pub(crate) mode: Mode,
    pub(crate) max_retries: u32,
    /// What the model is asked for (for [`Delivery::Elements`], the list).
    pub(crate) schema: Schema,
    /// Whether the provider constrains decoding (it is shown the schema as it is: see
    /// `ResponseSchema::unwrap_value`).
    pub(crate) constrained: bool,
    /// For [`Delivery::Elements`]: the schema of one element.
    pub(crate) element: Option<Schema>,
    /// Applied to the whole value, or to each element.
    pub(crate) decode: Decode<T>,
    /// The name on the extraction span (`UserDetail`, `Iterable[UserDetail]`).
    pub(crate) span_name: String,
    /// The extractor's name, for telemetry.
    pub(crate) extractor: Option<String>,
    /// What telemetry shows of the content.
    pub(crate) recording: Recording,
    /// What answers are grounded in, when they are.
    pub(crate) sources: Option<Arc<Sources>>,
}

/// What one attempt's answer held, read whole or streamed.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) usage: Usage,
    /// The answer was cut off by the token limit (`finish_reason: length`, from any provider).
    pub(crate) truncated: bool,
    /// Why the answer could not be read, if it could not.
    pub(crate) unreadable: Option<ReadError>,
    /// The JSON text, when read whole.
    pub(crate) output: Option<String>,
    /// The value to judge. For a streamed list, `None` once its elements were the answer.
    pub(crate) value: Option<Value>,
}

impl Answer {
    /// A whole (not streamed) answer read in `mode`: its JSON text and value, or why there is
    /// none.
    pub(crate) fn whole(mode: Mode, schema: &Schema, response: &ChatResponse) -> Self {
        let mut answer = Answer {
            usage: response.usage,
            truncated: response.truncated(),
            ..Answer::default()
        };
        match mode.read(schema.response(), response) {
            Err(e) => answer.unreadable = Some(e),
            Ok(text) => {
                answer.output = Some(text.to_owned());
                match parse_json(text) {
                    Ok(v) => answer.value = Some(v),
                    Err(e) => answer.unreadable = Some(e),
                }
            }
        }
        answer
    }

    /// Records why the answer cannot be read (the first reason only).
    pub(crate) fn fail_reading(&mut self, error: ReadError) {
        self.unreadable.get_or_insert(error);
    }
}

/// What follows an answer.
#[derive(Debug)]
pub(crate) enum Step<T> {
    /// A valid value: the extraction is done (with its spans, when grounded).
    Done(T, ChatResponse, Option<Spans>),
    /// A streamed list ended well: its elements were the answer.
    Finished,
    /// The answer failed and a re-ask is left: the request now carries the errors.
    Again {
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        errors: Vec<FieldError>,
    },
    /// The extraction failed.
    Failed(ExtractError),
}

/// One extraction's conversation, attempts and decisions (see the module's doc).
pub(crate) struct Machine<T> {
    request: ChatRequest,
    schema: Schema,
    element: Option<Schema>,
    decode: Decode<T>,
    mode: Mode,
    max_retries: u32,
    constrained: bool,
    stats: StreamStats,
    recording: Recording,
    /// Elements handed over (valid or not).
    emitted: usize,
    /// Elements handed over in the current attempt.
    emitted_in_attempt: usize,
    sources: Option<Arc<Sources>>,
}

impl<T> std::fmt::Debug for Machine<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("schema", &self.schema.name())
            .field("mode", &self.mode)
            .field("attempts", &self.stats.count())
            .finish_non_exhaustive()
    }
}

impl<T> Machine<T> {
    /// The machine of `job`, recording its attempts in `stats`.
    pub(crate) fn new(job: Job<T>, stats: StreamStats) -> Self {
        Self {
            request: job.request,
            schema: job.schema,
            element: job.element,
            decode: job.decode,
            mode: job.mode,
            max_retries: job.max_retries,
            constrained: job.constrained,
            stats,
            recording: job.recording,
            emitted: 0,
            emitted_in_attempt: 0,
            sources: job.sources,
        }
    }

    /// The request to send next.
    pub(crate) fn request(&self) -> &ChatRequest {
        &self.request
    }

    /// The number of the attempt to make next (1 for the first).
    pub(crate) fn attempt(&self) -> u32 {
        self.stats.count() as u32 + 1
    }

    /// The attempts so far.
    pub(crate) fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// The mode answers are read in.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// What the model is asked for.
    pub(crate) fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The schema one streamed element is checked against (the list's `items`, or the
    /// whole schema when none is set).
    pub(crate) fn element_schema(&self) -> &Schema {
        self.element.as_ref().unwrap_or(&self.schema)
    }

    /// What telemetry shows of the content.
    pub(crate) fn recording(&self) -> &Recording {
        &self.recording
    }

    /// Whether the provider constrains decoding.
    pub(crate) fn constrained(&self) -> bool {
        self.constrained
    }

    /// Elements handed over in the current attempt (reset by [`answered`](Self::answered)).
    pub(crate) fn emitted_in_attempt(&self) -> usize {
        self.emitted_in_attempt
    }

    /// A streamed list element as it closed: its index, and the element checked against the
    /// element schema and decoded (with its spans, pointers into the element, when grounded),
    /// or its errors and the value as written.
    pub(crate) fn element(&mut self, mut value: Value) -> (usize, ElementResult<T>) {
        let index = self.emitted;
        self.emitted += 1;
        self.emitted_in_attempt += 1;
        let schema = self.element.as_ref().unwrap_or(&self.schema);
        schema
            .response()
            .drop_strict_nulls(&mut value, self.constrained);
        let sources = self.sources.as_deref();
        let result = check(schema, &self.decode, &value, &self.recording, sources)
            .map_err(|failure| (failure.errors, value));
        (index, result)
    }

    /// The answer to [`request`](Self::request), which took `duration`: judged, recorded,
    /// and what follows decided.
    pub(crate) fn answered(
        &mut self,
        mut answer: Answer,
        response: ChatResponse,
        duration: Duration,
    ) -> Step<T> {
        let number = self.attempt();
        self.emitted_in_attempt = 0;
        let record = |answer: &Answer, outcome, errors| Attempt {
            number,
            duration,
            usage: answer.usage,
            outcome,
            errors,
            output: answer.output.clone(),
            model: response.model.clone(),
        };
        // A streamed list may end with nothing left to judge: its elements were the answer.
        let verdict =
            if self.element.is_some() && answer.unreadable.is_none() && answer.value.is_none() {
                Ok(None)
            } else {
                self.judge(&mut answer, &response)
            };
        let Rejection {
            outcome,
            errors,
            invented,
        } = match verdict {
            Ok(value) => {
                self.stats
                    .push(record(&answer, AttemptOutcome::Success, Vec::new()));
                return match value {
                    Some((v, spans)) => Step::Done(v, response, spans),
                    None => Step::Finished,
                };
            }
            Err(rejected) => rejected,
        };
        // The one truncation rule: a cut answer that failed ends the extraction.
        let outcome = if answer.truncated {
            AttemptOutcome::Truncated
        } else {
            outcome
        };
        let attempts = self.stats.push(record(&answer, outcome, errors.clone()));
        let usage = attempts.iter().map(|a| a.usage).sum();
        if self.emitted > 0 {
            return Step::Failed(ExtractError::Incomplete {
                emitted: self.emitted,
                attempts,
                usage,
            });
        }
        if answer.truncated {
            return Step::Failed(ExtractError::TokenLimit {
                limit: self.request.max_tokens,
                attempts,
                usage,
            });
        }
        if number > self.max_retries
            && let Some(invented) = invented
        {
            let (ungrounded, value) = *invented;
            return Step::Failed(ExtractError::Ungrounded {
                ungrounded,
                value: Box::new(value),
                attempts,
                usage,
            });
        }
        if number > self.max_retries {
            return Step::Failed(ExtractError::RetriesExhausted {
                attempts,
                usage,
                last_response: Some(Box::new(response)),
            });
        }
        let reask = self.mode.reask(self.schema.response(), &response, &errors);
        self.request.messages.extend(reask);
        Step::Again {
            attempt: number,
            errors,
        }
    }

    /// The call for [`request`](Self::request) failed after `duration`: the extraction fails
    /// with `error` (transport retries are the provider's).
    pub(crate) fn failed(&mut self, error: ProviderError, duration: Duration) -> ExtractError {
        // A schema the provider's grammar refuses is the request's fault, whenever it is found.
        if let ProviderError::Schema(e) = error {
            return ExtractError::Schema(*e);
        }
        let number = self.attempt();
        let attempts = self
            .stats
            .push(Attempt::provider_failure(number, duration, &error));
        ExtractError::provider(number, error, attempts)
    }

    /// The verdict on an answer: its value (and spans, when grounded), checked against the
    /// whole schema and its input and decoded (for a streamed list, checked only: its
    /// elements were checked and decoded as they closed), or why the attempt failed.
    fn judge(
        &self,
        answer: &mut Answer,
        response: &ChatResponse,
    ) -> Result<Option<(T, Option<Spans>)>, Rejection> {
        match (answer.unreadable.take(), answer.value.take()) {
            (Some(e), _) => {
                let outcome = match e {
                    ReadError::Missing(_) => AttemptOutcome::NoOutput,
                    ReadError::InvalidJson(_) => AttemptOutcome::InvalidJson,
                };
                let errors = vec![FieldError::new("", e.into_message())];
                let text = answer.output.as_deref().or(response.content.as_deref());
                trace::unreadable(self.schema.name(), text, &errors, &self.recording);
                Err(Rejection::new(outcome, errors))
            }
            (None, None) => Err(Rejection::new(
                AttemptOutcome::NoOutput,
                vec![FieldError::new("", "no JSON found in the answer")],
            )),
            (None, Some(value)) => {
                let value = self.schema.response().unwrap_value(value, self.constrained);
                if self.element.is_some() {
                    let errors = self.schema.errors(&value);
                    let result = errors_or_ok(&errors);
                    trace::validation(self.schema.name(), &value, result, &self.recording);
                    if errors.is_empty() {
                        Ok(None)
                    } else {
                        Err(Rejection::new(AttemptOutcome::ValidationFailed, errors))
                    }
                } else {
                    let sources = self.sources.as_deref();
                    match check(&self.schema, &self.decode, &value, &self.recording, sources) {
                        Ok(done) => Ok(Some(done)),
                        Err(failure) if failure.ungrounded.is_empty() => Err(Rejection::new(
                            AttemptOutcome::ValidationFailed,
                            failure.errors,
                        )),
                        Err(failure) => Err(Rejection {
                            outcome: AttemptOutcome::Ungrounded,
                            errors: failure.errors,
                            invented: Some(Box::new((failure.ungrounded, value))),
                        }),
                    }
                }
            }
        }
    }
}

fn errors_or_ok(errors: &[FieldError]) -> Result<(), &[FieldError]> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Why an attempt failed: its outcome and errors, and, when its answer fitted the schema but
/// not the input, the values the input does not hold with the answer.
struct Rejection {
    outcome: AttemptOutcome,
    errors: Vec<FieldError>,
    invented: Option<Box<(Vec<Ungrounded>, Value)>>,
}

impl Rejection {
    fn new(outcome: AttemptOutcome, errors: Vec<FieldError>) -> Self {
        Self {
            outcome,
            errors,
            invented: None,
        }
    }
}

/// A streamed element checked: decoded with its spans, or its errors and the value as written.
pub(crate) type ElementResult<T> = Result<(T, Option<Spans>), (Vec<FieldError>, Value)>;

/// Why a value failed [`check`]: its errors, and among them the values that are not in the
/// input (when it fitted the schema and was grounded).
pub(crate) struct Failure {
    pub(crate) errors: Vec<FieldError>,
    pub(crate) ungrounded: Vec<Ungrounded>,
}

/// Checks `value` against the whole schema, then against its inputs (when `sources` are
/// given: every value with a verbatim or normalized policy must be found in them), then
/// decodes it; records the validation. The decoded value comes with its spans when grounded.
pub(crate) fn check<T>(
    schema: &Schema,
    decode: &Decode<T>,
    value: &Value,
    recording: &Recording,
    sources: Option<&Sources>,
) -> Result<(T, Option<Spans>), Failure> {
    let mut ungrounded = Vec::new();
    let mut spans = None;
    let mut errors = schema.errors(value);
    if errors.is_empty()
        && let Some(sources) = sources
    {
        let grounding = sources.ground(value, schema.value());
        errors = grounding
            .ungrounded
            .iter()
            .map(|u| FieldError::new(crate::pointer_to_path(&u.pointer, value), u.message()))
            .collect();
        ungrounded = grounding.ungrounded;
        spans = Some(grounding.spans);
    }
    let result = if errors.is_empty() {
        decode(value)
    } else {
        Err(errors)
    };
    trace::validation(
        schema.name(),
        value,
        result.as_ref().map(|_| ()).map_err(Vec::as_slice),
        recording,
    );
    match result {
        Ok(v) => Ok((v, spans)),
        Err(errors) => Err(Failure { errors, ungrounded }),
    }
}
