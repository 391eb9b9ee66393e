//! The live attempt loop: makes the calls the [`Machine`] asks for and hands it each answer,
//! for every kind of extraction (typed or against a schema given as data, answered whole or
//! streamed as list elements or partial snapshots). What follows an answer is the machine's
//! decision; this module only calls, reads and records telemetry.

use std::time::Instant;

use futures::{Stream, StreamExt};
use serde_json::Value;
use tracing::Instrument;

use crate::grounding::Spans;
use crate::machine::{Answer, Delivery, Job, Machine, Step};
use crate::message::{ChatDelta, ChatResponse, FinishReason};
use crate::mode::ReadError;
use crate::outcome::{Event, ExtractError, StreamStats};
use crate::reader::{AnswerReader, Purpose};
use crate::trace;

/// Runs `job`: its events (snapshots as JSON values), then `Done`, or an error.
pub(crate) fn run<T: Send + 'static>(
    job: Job<T>,
    delivery: Delivery,
    stats: StreamStats,
    parent: tracing::Span,
) -> impl Stream<Item = Result<Event<T>, ExtractError>> + Send {
    async_stream::stream! {
        let provider = job.provider.clone();
        let extractor = job.extractor.clone();
        let mut ending = Ending::new(&parent, &job, delivery, stats.clone());
        // A schema the provider cannot enforce is refused before any call, never answered
        // unconstrained.
        if let Err(e) = provider.check_schema(job.schema.response().shown(job.constrained)) {
            ending.outcome = "schema";
            yield Err(ExtractError::Schema(e));
            return;
        }
        let mut machine = Machine::new(job, stats.clone());
        let span = ending.span.clone();
        loop {
            let started = Instant::now();
            let request = machine.request();
            let call = trace::Call {
                provider: provider.name(),
                mode: Some(machine.mode()),
                attempt: machine.attempt(),
                stream: delivery != Delivery::Whole,
                extractor: extractor.as_deref(),
            };
            let chat_span = trace::chat_span(&span, call, request, machine.recording());
            let (answer, response) = if delivery == Delivery::Whole {
                match provider.chat(request).instrument(chat_span.clone()).await {
                    Ok(response) => {
                        trace::record_response(&chat_span, &response, machine.recording());
                        drop(chat_span);
                        (Answer::whole(machine.mode(), machine.schema(), &response), response)
                    }
                    Err(e) => {
                        yield Err(ending.failed(&chat_span, machine.failed(e, started.elapsed())));
                        return;
                    }
                }
            } else {
                let mut chat = match provider.chat_stream(request).instrument(chat_span.clone()).await {
                    Ok(chat) => chat,
                    Err(e) => {
                        yield Err(ending.failed(&chat_span, machine.failed(e, started.elapsed())));
                        return;
                    }
                };
                let mut reading = Reading::new(&machine, delivery, started);
                while let Some(delta) = chat.next().await {
                    match delta {
                        Ok(delta) => {
                            for event in reading.push(delta, &mut machine, &mut ending, &chat_span) {
                                yield Ok(event);
                            }
                        }
                        Err(e) => {
                            drop(chat);
                            yield Err(ending.failed(&chat_span, machine.failed(e, started.elapsed())));
                            return;
                        }
                    }
                }
                drop(chat);
                for event in reading.finish(&mut machine, &mut ending, &chat_span) {
                    yield Ok(event);
                }
                let (answer, response) = reading.into_answer();
                trace::record_response(&chat_span, &response, machine.recording());
                if delivery == Delivery::Elements {
                    trace::record_count(&chat_span, "sift.elements", machine.emitted_in_attempt());
                }
                trace::end(chat_span);
                (answer, response)
            };
            match span.in_scope(|| machine.answered(answer, response, started.elapsed())) {
                Step::Done(value, response, spans) => {
                    ending.outcome = "success";
                    stats.set_response(response);
                    yield Ok(Event::Value(value));
                    yield Ok(done(&stats, spans));
                    return;
                }
                Step::Finished => {
                    ending.outcome = "success";
                    yield Ok(done(&stats, None));
                    return;
                }
                Step::Again { attempt, errors } => {
                    if delivery == Delivery::Partial {
                        yield Ok(Event::Retry { attempt, errors });
                    }
                }
                Step::Failed(e) => {
                    ending.outcome = e.kind();
                    yield Err(e);
                    return;
                }
            }
        }
    }
}

fn done<T>(stats: &StreamStats, spans: Option<Spans>) -> Event<T> {
    let attempts = stats.attempts();
    Event::Done {
        usage: attempts.iter().map(|a| a.usage).sum(),
        attempts,
        spans,
    }
}

/// One streamed answer being read: its deltas routed to the reader, elements checked as they
/// close, snapshots shown as the value grows.
struct Reading {
    reader: AnswerReader,
    delivery: Delivery,
    answer: Answer,
    snapshots: Snapshots,
    started: Instant,
    seen_token: bool,
    closed: Vec<Value>,
    finish: Option<String>,
}

impl Reading {
    fn new<T>(machine: &Machine<T>, delivery: Delivery, started: Instant) -> Self {
        let purpose = if delivery == Delivery::Elements {
            Purpose::Elements
        } else {
            Purpose::Whole
        };
        let wrapper = machine
            .schema()
            .response()
            .list_wrapper(machine.constrained());
        Self {
            reader: AnswerReader::new(
                machine.mode(),
                purpose,
                machine.element_schema().name(),
                wrapper,
            ),
            delivery,
            answer: Answer::default(),
            snapshots: Snapshots::default(),
            started,
            seen_token: false,
            closed: Vec::new(),
            finish: None,
        }
    }

    /// Reads one delta: the elements it closed, or a snapshot when one is due. After a
    /// failure the rest is still read (the reader only records it), for the usage it reports
    /// and the full text to echo back.
    fn push<T>(
        &mut self,
        delta: ChatDelta,
        machine: &mut Machine<T>,
        ending: &mut Ending,
        chat_span: &tracing::Span,
    ) -> Vec<Event<T>> {
        match delta {
            ChatDelta::Usage(u) => self.answer.usage = u,
            ChatDelta::Finish(r) => {
                if FinishReason::parse(&r) == FinishReason::ContentFilter {
                    // Read as a refusal, as a whole answer's is (`ChatResponse::refusal`).
                    let refusal = ChatDelta::Refusal(crate::message::FILTERED.into());
                    let _ = self.reader.push(refusal, &mut self.closed);
                }
                self.finish = Some(r);
            }
            delta => {
                if !self.seen_token && !matches!(delta, ChatDelta::Meta { .. }) {
                    self.seen_token = true;
                    trace::record_ms(chat_span, "sift.time_to_first_token_ms", self.started);
                }
                self.snapshots.fed += match &delta {
                    ChatDelta::Content(t) => t.len(),
                    ChatDelta::ToolCall { arguments, .. } => arguments.len(),
                    _ => 0,
                };
                if let Err(e) = self.reader.push(delta, &mut self.closed) {
                    self.answer.fail_reading(e);
                } else if self.delivery == Delivery::Partial
                    && self.reader.progressed
                    && self.snapshots.due()
                    && let Some(v) = self.reader.partial()
                {
                    let shown = machine
                        .schema()
                        .response()
                        .unwrap_value(v, machine.constrained());
                    return vec![Event::Snapshot(shown)];
                }
            }
        }
        self.elements(machine, ending, chat_span)
    }

    /// The answer ended: what its end closed.
    fn finish<T>(
        &mut self,
        machine: &mut Machine<T>,
        ending: &mut Ending,
        chat_span: &tracing::Span,
    ) -> Vec<Event<T>> {
        if self.answer.unreadable.is_none()
            && let Err(e) = self.reader.finish(&mut self.closed)
        {
            self.answer.fail_reading(e);
        }
        let events = self.elements(machine, ending, chat_span);
        if self.answer.unreadable.is_none() {
            self.answer.value = match self.delivery {
                Delivery::Elements => self.reader.take_unlisted(),
                _ => match self.reader.take_value() {
                    Some(v) => Some(v),
                    None => {
                        self.answer
                            .fail_reading(ReadError::Missing("no JSON found in the answer".into()));
                        None
                    }
                },
            };
        }
        events
    }

    /// The elements closed so far, checked.
    fn elements<T>(
        &mut self,
        machine: &mut Machine<T>,
        ending: &mut Ending,
        chat_span: &tracing::Span,
    ) -> Vec<Event<T>> {
        if self.closed.is_empty() {
            return Vec::new();
        }
        let closed = std::mem::take(&mut self.closed);
        closed
            .into_iter()
            .map(|value| ending.element(chat_span, self.started, machine, value))
            .collect()
    }

    fn into_answer(mut self) -> (Answer, ChatResponse) {
        let response = self.reader.to_response(self.answer.usage, self.finish);
        // The one truncation rule, as for a whole answer.
        self.answer.truncated = response.truncated();
        (self.answer, response)
    }
}

/// When a partial stream shows the value so far. Each snapshot copies the whole value, so
/// one per chunk costs time quadratic in the answer's size (an 80 KB object in 4-byte chunks:
/// 20,000 copies); instead a snapshot is shown once the answer has grown by an eighth since
/// the last one, which shows a small answer at every chunk and keeps the copying of a large
/// one linear in its size.
#[derive(Debug, Default)]
struct Snapshots {
    /// Bytes of answer text read.
    fed: usize,
    /// `fed` at the last snapshot.
    shown_at: usize,
}

impl Snapshots {
    /// Whether a snapshot is due now (and, if so, counts it as shown).
    fn due(&mut self) -> bool {
        let due = self.fed - self.shown_at >= self.shown_at / 8;
        if due {
            self.shown_at = self.fed;
        }
        due
    }
}

/// Records how an extraction ended on its span, also when it is dropped before it ends
/// (outcome `cancelled`).
struct Ending {
    span: tracing::Span,
    stats: StreamStats,
    outcome: &'static str,
    elements: Option<usize>,
    first_element: bool,
}

impl Ending {
    /// The extraction's span, a child of `parent` (the span current when the extraction was
    /// made, not when it is first polled).
    fn new<T>(
        parent: &tracing::Span,
        job: &Job<T>,
        delivery: Delivery,
        stats: StreamStats,
    ) -> Self {
        let stream = delivery != Delivery::Whole;
        Self {
            span: parent.in_scope(|| {
                trace::extract_span(
                    &job.span_name,
                    job.extractor.as_deref(),
                    job.mode,
                    job.max_retries,
                    stream,
                )
            }),
            stats,
            outcome: "cancelled",
            elements: (delivery == Delivery::Elements).then_some(0),
            first_element: false,
        }
    }

    /// A model call that failed: recorded on its span and as the outcome.
    fn failed(&mut self, chat_span: &tracing::Span, e: ExtractError) -> ExtractError {
        if let Some(source) = e.provider_error() {
            trace::record_chat_error(chat_span, source);
        }
        self.outcome = e.kind();
        e
    }

    /// Checks one streamed element inside the generation's span.
    fn element<T>(
        &mut self,
        chat_span: &tracing::Span,
        started: Instant,
        machine: &mut Machine<T>,
        value: Value,
    ) -> Event<T> {
        if !self.first_element {
            self.first_element = true;
            trace::record_ms(chat_span, "sift.time_to_first_element_ms", started);
            trace::record_ms(&self.span, "sift.time_to_first_element_ms", started);
        }
        if let Some(n) = self.elements.as_mut() {
            *n += 1;
        }
        chat_span.in_scope(|| {
            let text = machine.recording().log_content().then(|| value.to_string());
            let (index, result) = machine.element(value);
            tracing::debug!(
                index = index as i64,
                value = text.as_deref(),
                "emitted {{index}}"
            );
            match result {
                Ok((value, spans)) => Event::Element {
                    index,
                    value,
                    spans,
                },
                Err((errors, value)) => Event::ItemError {
                    index,
                    errors,
                    value,
                },
            }
        })
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        if let Some(n) = self.elements {
            trace::record_count(&self.span, "sift.elements", n);
        }
        trace::record_extract_end(
            &self.span,
            self.stats.count(),
            self.outcome,
            self.stats.usage(),
        );
    }
}
