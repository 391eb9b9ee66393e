//! The attempt loop's decisions, against an in-memory provider that answers from a script:
//! every branch (valid, invalid then fixed, truncated, provider failure, exhausted,
//! incomplete after elements, partial retry, an object that is not the list), and a property
//! test that the live loop and the Batch API path (`Turns`) reach the same outcome for the
//! same answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use sift_core::{
    AttemptOutcome, Capabilities, ChatDelta, ChatRequest, ChatResponse, ChatStream, Client, Event,
    ExtractError, Mode, Provider, ProviderError, Role, ToolCall, Turn, Usage,
};

#[derive(Debug, Clone, PartialEq, serde::Deserialize, schemars::JsonSchema)]
struct Person {
    name: String,
    #[schemars(range(max = 150))]
    age: u32,
}

/// One scripted answer.
#[derive(Debug, Clone)]
enum Script {
    /// A whole answer: the JSON text (as the tool call's arguments in `tools` mode, as content
    /// otherwise) and its finish reason.
    Whole(String, &'static str),
    /// A streamed answer of these text pieces, then its finish reason.
    Stream(Vec<String>, &'static str),
    /// The call fails.
    Fail,
}

/// A provider that answers from a script and records what it was asked.
#[derive(Debug, Clone)]
struct Scripted {
    mode: Mode,
    script: Arc<Mutex<VecDeque<Script>>>,
    requests: Arc<Mutex<Vec<ChatRequest>>>,
}

impl Scripted {
    fn new(mode: Mode, script: impl IntoIterator<Item = Script>) -> Self {
        Self {
            mode,
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            requests: Arc::default(),
        }
    }

    fn next(&self, request: &ChatRequest) -> Option<Script> {
        self.requests.lock().unwrap().push(request.clone());
        self.script.lock().unwrap().pop_front()
    }

    fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn scripted_failure() -> ProviderError {
    ProviderError::Status {
        status: 500,
        message: "scripted failure".into(),
        retry_after: None,
    }
}

fn usage() -> Usage {
    Usage {
        input_tokens: 10,
        output_tokens: 5,
        cached_input_tokens: 0,
    }
}

/// The whole response `text` makes in `mode`, named `name` (the tool's name).
fn response(mode: Mode, name: &str, text: &str, finish: &str) -> ChatResponse {
    let (content, tool_calls) = if mode == Mode::Tools {
        let call = ToolCall {
            id: "call_1".into(),
            name: name.into(),
            arguments: text.into(),
        };
        (None, vec![call])
    } else {
        (Some(text.to_owned()), Vec::new())
    };
    ChatResponse {
        id: None,
        model: None,
        content,
        tool_calls,
        finish_reason: Some(finish.into()),
        usage: usage(),
        raw: Value::Null,
    }
}

fn tool_name(request: &ChatRequest) -> String {
    match &request.output {
        sift_core::OutputFormat::Tool { name, .. } => name.clone(),
        _ => String::new(),
    }
}

#[sift_core::async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn default_model(&self) -> &str {
        "m"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().with_streaming(true)
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        match self.next(request) {
            Some(Script::Whole(text, finish)) => {
                Ok(response(self.mode, &tool_name(request), &text, finish))
            }
            Some(Script::Stream(..)) => Err(ProviderError::Unsupported("a stream here")),
            Some(Script::Fail) | None => Err(scripted_failure()),
        }
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let (pieces, finish) = match self.next(request) {
            Some(Script::Stream(pieces, finish)) => (pieces, finish),
            Some(Script::Whole(text, finish)) => (vec![text], finish),
            Some(Script::Fail) | None => {
                return Err(scripted_failure());
            }
        };
        let name = tool_name(request);
        let mode = self.mode;
        let mut deltas: Vec<Result<ChatDelta, ProviderError>> = pieces
            .into_iter()
            .map(|p| {
                Ok(if mode == Mode::Tools {
                    ChatDelta::ToolCall {
                        index: 0,
                        id: Some("call_1".into()),
                        name: Some(name.clone()),
                        arguments: p,
                    }
                } else {
                    ChatDelta::Content(p)
                })
            })
            .collect();
        deltas.push(Ok(ChatDelta::Finish(finish.into())));
        deltas.push(Ok(ChatDelta::Usage(usage())));
        Ok(Box::pin(futures::stream::iter(deltas)))
    }
}

fn client(provider: &Scripted) -> Client {
    Client::new(provider.clone()).with_mode(provider.mode)
}

fn whole(text: &str) -> Script {
    Script::Whole(text.into(), "stop")
}

fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

const ANN: &str = r#"{"name": "Ann", "age": 30}"#;
const TOO_OLD: &str = r#"{"name": "Ann", "age": 300}"#;

#[tokio::test]
async fn a_valid_answer_is_the_value() {
    let p = Scripted::new(Mode::Tools, [whole(ANN)]);
    let out = client(&p)
        .extract::<Person>()
        .user("Ann is 30")
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.name, "Ann");
    assert_eq!(out.attempts.len(), 1);
    assert_eq!(out.attempts[0].outcome, AttemptOutcome::Success);
    assert_eq!(out.usage, usage());
}

#[tokio::test]
async fn an_invalid_answer_is_reasked_with_its_errors_then_fixed() {
    for mode in [Mode::Tools, Mode::Json] {
        let p = Scripted::new(mode, [whole(TOO_OLD), whole(ANN)]);
        let out = client(&p)
            .extract::<Person>()
            .user("Ann")
            .send()
            .await
            .unwrap();
        let outcomes: Vec<_> = out.attempts.iter().map(|a| a.outcome).collect();
        assert_eq!(
            outcomes,
            [AttemptOutcome::ValidationFailed, AttemptOutcome::Success]
        );
        assert_eq!(out.attempts[0].errors[0].path, "age");
        assert_eq!(out.usage.input_tokens, 20, "usage summed over the attempts");
        let second = &p.requests()[1];
        let last = second.messages.last().unwrap();
        let expected = if mode == Mode::Tools {
            Role::Tool
        } else {
            Role::User
        };
        assert_eq!(last.role, expected, "{mode}");
        assert!(last.content.as_deref().unwrap().contains("age"), "{mode}");
    }
}

#[tokio::test]
async fn a_truncated_answer_ends_without_a_reask() {
    let p = Scripted::new(
        Mode::Tools,
        [
            Script::Whole(r#"{"name": "An"#.into(), "length"),
            whole(ANN),
        ],
    );
    let err = client(&p)
        .extract::<Person>()
        .max_tokens(8)
        .user("Ann")
        .send()
        .await
        .unwrap_err();
    match &err {
        ExtractError::TokenLimit {
            limit, attempts, ..
        } => {
            assert_eq!(*limit, Some(8));
            assert_eq!(attempts[0].outcome, AttemptOutcome::Truncated);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.requests().len(), 1);
}

#[tokio::test]
async fn a_provider_failure_ends_the_extraction() {
    let p = Scripted::new(Mode::Tools, [whole(TOO_OLD), Script::Fail]);
    let err = client(&p)
        .extract::<Person>()
        .user("Ann")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "provider_error");
    let outcomes: Vec<_> = err.attempts().iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AttemptOutcome::ValidationFailed,
            AttemptOutcome::ProviderError
        ]
    );
    assert!(err.provider_error().is_some());
}

#[tokio::test]
async fn reasks_run_out() {
    let p = Scripted::new(Mode::Json, [whole(TOO_OLD), whole("not json"), whole(ANN)]);
    let err = client(&p)
        .extract::<Person>()
        .max_retries(1)
        .user("Ann")
        .send()
        .await
        .unwrap_err();
    match &err {
        ExtractError::RetriesExhausted { attempts, .. } => {
            let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome).collect();
            assert_eq!(
                outcomes,
                [
                    AttemptOutcome::ValidationFailed,
                    AttemptOutcome::InvalidJson
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.requests().len(), 2);
}

#[tokio::test]
async fn a_break_after_elements_is_incomplete() {
    let text = r#"{"value": [{"name": "Ann", "age": 30}, {"name": "Bo"#;
    let p = Scripted::new(
        Mode::Json,
        [Script::Stream(pieces(text, 5), "stop"), whole(ANN)],
    );
    let events: Vec<_> = client(&p)
        .extract::<Person>()
        .user("Ann and Bo")
        .elements()
        .collect()
        .await;
    assert!(
        matches!(&events[0], Ok(Event::Element { index: 0, value, .. }) if value.name == "Ann")
    );
    match &events[1] {
        Err(ExtractError::Incomplete {
            emitted, attempts, ..
        }) => {
            assert_eq!(*emitted, 1);
            assert_eq!(attempts.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(events.len(), 2);
    assert_eq!(
        p.requests().len(),
        1,
        "elements handed over are not asked for again"
    );
}

#[tokio::test]
async fn an_invalid_element_is_reported_in_place() {
    let text =
        r#"[{"name": "Ann", "age": 30}, {"name": "Old", "age": 999}, {"name": "Cy", "age": 4}]"#;
    let p = Scripted::new(Mode::Json, [Script::Stream(pieces(text, 3), "stop")]);
    let events: Vec<_> = client(&p)
        .extract::<Person>()
        .user("x")
        .elements()
        .collect()
        .await;
    assert!(matches!(&events[0], Ok(Event::Element { index: 0, .. })));
    match &events[1] {
        Ok(Event::ItemError {
            index,
            errors,
            value,
        }) => {
            assert_eq!(*index, 1);
            assert_eq!(errors[0].path, "age");
            assert_eq!(value["name"], "Old");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&events[2], Ok(Event::Element { index: 2, .. })));
    assert!(matches!(&events[3], Ok(Event::Done { attempts, .. }) if attempts.len() == 1));
}

#[tokio::test]
async fn a_partial_stream_announces_its_retry_and_starts_over() {
    let p = Scripted::new(
        Mode::Tools,
        [
            Script::Stream(pieces(TOO_OLD, 4), "stop"),
            Script::Stream(pieces(ANN, 4), "stop"),
        ],
    );
    let events: Vec<Event<Person, Value>> = client(&p)
        .extract_value(&sift_core::Schema::of::<Person>().unwrap())
        .user("x")
        .partials()
        .map(Result::unwrap)
        .map(|e| match e {
            Event::Value(v) => Event::Value(serde_json::from_value(v).unwrap()),
            Event::Snapshot(s) => Event::Snapshot(s),
            Event::Retry { attempt, errors } => Event::Retry { attempt, errors },
            Event::Done {
                usage,
                attempts,
                spans,
            } => Event::Done {
                usage,
                attempts,
                spans,
            },
            other => panic!("{other:?}"),
        })
        .collect()
        .await;
    let retry = events
        .iter()
        .position(|e| matches!(e, Event::Retry { attempt: 1, .. }))
        .expect("a retry");
    assert!(retry > 0, "snapshots of the first attempt came before it");
    assert!(matches!(&events[retry + 1], Event::Snapshot(_)));
    let n = events.len();
    assert!(matches!(&events[n - 2], Event::Value(p) if p.age == 30));
    assert!(matches!(&events[n - 1], Event::Done { attempts, .. } if attempts.len() == 2));
}

/// An object holding some other array is not the list: the stream refuses it and re-asks,
/// as the one-shot path does with the same answer, in every framing.
#[tokio::test]
async fn an_object_holding_another_array_is_not_a_list() {
    let wrong =
        r#"{"person": "Ann", "tags": [{"name": "Bob", "age": 3}, {"name": "Cy", "age": 4}]}"#;
    let right = r#"{"value": [{"name": "Dee", "age": 5}]}"#;
    for mode in [Mode::Tools, Mode::JsonSchema, Mode::Json, Mode::MdJson] {
        let fence = |t: &str| {
            if mode == Mode::MdJson {
                format!("Here:\n```json\n{t}\n```")
            } else {
                t.to_owned()
            }
        };
        let p = Scripted::new(
            mode,
            [
                Script::Stream(pieces(&fence(wrong), 7), "stop"),
                Script::Stream(pieces(&fence(right), 7), "stop"),
            ],
        );
        let events: Vec<_> = client(&p)
            .extract::<Person>()
            .user("x")
            .elements()
            .collect()
            .await;
        let names: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Ok(Event::Element { value, .. }) => Some(value.name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["Dee"], "{mode}");
        match events.last() {
            Some(Ok(Event::Done { attempts, .. })) => {
                assert_eq!(
                    attempts[0].outcome,
                    AttemptOutcome::ValidationFailed,
                    "{mode}"
                );
                assert!(
                    attempts[0].errors[0].message.contains("array"),
                    "{mode}: {:?}",
                    attempts[0].errors
                );
            }
            other => panic!("{mode}: {other:?}"),
        }
        // The one-shot path decides the same on the same answer.
        let p = Scripted::new(mode, [whole(&fence(wrong)), whole(&fence(right))]);
        let out = client(&p)
            .extract::<Vec<Person>>()
            .user("x")
            .send()
            .await
            .unwrap();
        assert_eq!(out.value[0].name, "Dee", "{mode}");
        assert_eq!(
            out.attempts[0].outcome,
            AttemptOutcome::ValidationFailed,
            "{mode}"
        );
    }
}

/// What an extraction came to, comparable across the two paths.
#[derive(Debug, PartialEq)]
enum Ending {
    Value(Person, Vec<AttemptOutcome>, Usage),
    Failed(&'static str, Vec<AttemptOutcome>, Usage),
}

fn ending(result: Result<sift_core::Extraction<Person>, ExtractError>) -> Ending {
    match result {
        Ok(out) => Ending::Value(
            out.value,
            out.attempts.iter().map(|a| a.outcome).collect(),
            out.usage,
        ),
        Err(e) => Ending::Failed(
            e.kind(),
            e.attempts().iter().map(|a| a.outcome).collect(),
            e.usage(),
        ),
    }
}

fn answer() -> impl Strategy<Value = Script> {
    prop_oneof![
        Just(whole(ANN)),
        Just(whole(TOO_OLD)),
        Just(whole("{\"name\": ")),
        Just(whole("")),
        Just(whole(r#"{"name": 3, "age": "x"}"#)),
        Just(Script::Whole(r#"{"name": "An"#.into(), "length")),
        Just(Script::Whole(ANN.into(), "length")),
        Just(Script::Fail),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Tools),
        Just(Mode::JsonSchema),
        Just(Mode::Json),
        Just(Mode::MdJson)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The live loop and `Turns` (the Batch API path) reach the same outcome, with the same
    /// attempts, usage and conversation, for the same answers.
    #[test]
    fn the_live_loop_and_turns_agree(
        answers in proptest::collection::vec(answer(), 1..5),
        max_retries in 0u32..4,
        mode in mode(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let live = Scripted::new(mode, answers.clone());
        let live_ending = runtime.block_on(async {
            ending(client(&live).extract::<Person>().max_retries(max_retries).user("Ann").send().await)
        });

        let idle = Scripted::new(mode, []);
        let mut turns = client(&idle)
            .extract::<Person>()
            .max_retries(max_retries)
            .user("Ann")
            .turns()
            .unwrap();
        let mut sent = Vec::new();
        let mut script: VecDeque<Script> = answers.into_iter().collect();
        let turns_ending = loop {
            sent.push(turns.request().clone());
            let name = tool_name(turns.request());
            let reply = match script.pop_front() {
                Some(Script::Whole(text, finish)) => Ok(response(mode, &name, &text, finish)),
                _ => Err(scripted_failure()),
            };
            match reply {
                Ok(r) => match turns.answer(r, Duration::ZERO) {
                    Turn::Done(out) => break ending(Ok(out)),
                    Turn::Again => {}
                    Turn::Failed(e) => break ending(Err(e)),
                },
                Err(e) => break ending(Err(turns.fail(e, Duration::ZERO))),
            }
        };
        prop_assert_eq!(live_ending, turns_ending);
        let live_sent: Vec<Value> = live.requests().iter().map(|r| json!(r.messages)).collect();
        let turns_sent: Vec<Value> = sent.iter().map(|r| json!(r.messages)).collect();
        prop_assert_eq!(live_sent, turns_sent);
    }
}

/// Recording and scrubbing are settings of a client: two clients in one process differ.
#[tokio::test]
async fn two_clients_in_one_process_record_and_scrub_differently() {
    let p = Scripted::new(Mode::Tools, [Script::Fail, Script::Fail]);
    let plain = client(&p);
    let scrubbing = client(&p).with_recording(
        sift_core::trace::Recording::default()
            .with_log_content(false)
            .with_scrubber(Arc::new(|text: &str| {
                text.contains("scripted")
                    .then(|| text.replace("scripted", "[scrubbed]"))
            })),
    );
    assert!(plain.recording().span_content());
    assert!(!scrubbing.recording().span_content());
    let a = plain
        .extract::<Person>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    let b = scrubbing
        .extract::<Person>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    let a = sift_core::report::ExtractionFailure::from_error(&a, plain.recording());
    let b = sift_core::report::ExtractionFailure::from_error(&b, scrubbing.recording());
    assert!(a.message.contains("scripted failure"), "{}", a.message);
    assert!(b.message.contains("[scrubbed] failure"), "{}", b.message);
    assert!(b.attempts[0].errors[0].message.contains("[scrubbed]"));
}
