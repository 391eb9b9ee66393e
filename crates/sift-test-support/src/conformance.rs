//! The conformance suite every HTTP provider passes: each mode one-shot and streamed (whole
//! values and list elements), re-asks in the provider's own turn format, usage summed over
//! attempts, truncation, refusal, each error kind and retry rule, and the fault matrix
//! (bounded bodies and indexes, hostile headers and bodies, keys masked), run against the
//! scripted server speaking the provider's wire format over real HTTP.
//!
//! A provider's test crate runs it with [`conformance_suite!`](crate::conformance_suite),
//! naming a [`Subject`]: its wire format and how to build it against a server. A provider is
//! done when it passes the whole suite.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sift_core::{Client, Event, ExtractError, Mode, Provider, ProviderError, Schema};

use crate::faults::FAULT_KEY;
use crate::{Reply, ScriptedServer, Wire, split_chars};

/// How the suite builds the provider under test.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    /// The key to send (the suite checks it never comes back).
    pub key: &'static str,
    /// The time one try is given.
    pub timeout: Duration,
    /// The largest answer read.
    pub max_body: usize,
    /// The header hook to set (`header_hook` on the provider's config), if any.
    pub header_hook: Option<fn(&mut http::HeaderMap)>,
}

/// A provider under test: its wire format, and how to build it talking to a scripted
/// server (with 2 transport retries and a backoff of milliseconds).
#[derive(Clone, Copy)]
pub struct Subject {
    /// The format it speaks.
    pub wire: Wire,
    /// Builds it against `server` with `knobs`.
    pub build: fn(&ScriptedServer, Knobs) -> Arc<dyn Provider>,
}

impl Subject {
    fn client(&self, server: &ScriptedServer) -> Client {
        self.client_with(server, Duration::from_secs(5), 1 << 20)
    }

    fn client_with(&self, server: &ScriptedServer, timeout: Duration, max_body: usize) -> Client {
        let knobs = Knobs {
            key: FAULT_KEY,
            timeout,
            max_body,
            header_hook: None,
        };
        Client::from_arc((self.build)(server, knobs))
    }
}

/// Runs every check of the suite as its own test: `conformance_suite!(subject)`, where
/// `subject` is a function returning the [`Subject`].
#[macro_export]
macro_rules! conformance_suite {
    ($subject:ident) => {
        mod suite {
            use $crate::conformance as checks;
            $crate::conformance_suite!(@tests $subject;
                every_mode_one_shot, every_mode_streamed, reasks_use_the_providers_turns,
                truncation, refusal, retry_rules, header_hook_runs_on_every_try,
                hostile_answers, hostile_streams, keys_never_come_back);
        }
    };
    (@tests $subject:ident; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                checks::$check(&super::$subject()).await;
            }
        )*
    };
}

fn person() -> Schema {
    Schema::compile(
        "Person",
        json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "maximum": 150}},
            "required": ["name", "age"]
        }),
    )
    .unwrap_or_else(|e| panic!("the suite's schema compiles: {e}"))
}

fn people() -> Schema {
    person()
        .list_of()
        .unwrap_or_else(|e| panic!("the suite's schema compiles: {e}"))
}

const GOOD: &str = r#"{"name": "Ada", "age": 36}"#;
const BAD: &str = r#"{"name": "Ada", "age": 360}"#;
const LIST: &str = r#"{"value": [{"name": "Ada", "age": 36}, {"name": "Bob", "age": 43}]}"#;

const MODES: [Mode; 4] = [Mode::Tools, Mode::JsonSchema, Mode::Json, Mode::MdJson];

impl Wire {
    /// The name of the function a request asks to be called, if it asks for one.
    pub fn tool_name(self, body: &Value) -> Option<String> {
        let pointer = match self {
            Wire::OpenAi => "/tools/0/function/name",
            Wire::Anthropic => "/tools/0/name",
            Wire::Gemini => "/tools/0/functionDeclarations/0/name",
        };
        body.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The mode a request asks its answer in, read from what it sends.
    pub fn mode_of(self, body: &Value) -> Mode {
        let has = |p: &str| body.pointer(p).is_some_and(|v| !v.is_null());
        match self {
            Wire::OpenAi if has("/tool_choice") => Mode::Tools,
            Wire::OpenAi => match body
                .pointer("/response_format/type")
                .and_then(Value::as_str)
            {
                Some("json_schema") => Mode::JsonSchema,
                Some("json_object") => Mode::Json,
                _ => Mode::MdJson,
            },
            Wire::Anthropic if body["tool_choice"]["type"] == "tool" => Mode::Tools,
            Wire::Anthropic if has("/output_config/format/schema") => Mode::JsonSchema,
            // Anthropic has no JSON mode: both prompt modes send plain text requests.
            Wire::Anthropic => {
                if system_text(self, body).contains("```json") {
                    Mode::MdJson
                } else {
                    Mode::Json
                }
            }
            Wire::Gemini if body["toolConfig"]["functionCallingConfig"]["mode"] == "ANY" => {
                Mode::Tools
            }
            Wire::Gemini
                if has("/generationConfig/responseJsonSchema")
                    || has("/generationConfig/responseSchema") =>
            {
                Mode::JsonSchema
            }
            Wire::Gemini if body["generationConfig"]["responseMimeType"] == "application/json" => {
                Mode::Json
            }
            Wire::Gemini => Mode::MdJson,
        }
    }

    /// Whether a request asks for a streamed answer.
    pub fn streamed(self, body: &Value) -> bool {
        match self {
            Wire::OpenAi | Wire::Anthropic => body["stream"] == true,
            Wire::Gemini => body["method"] == "streamGenerateContent",
        }
    }

    /// The header a request carries its key in, and the value it should hold.
    pub fn key_header(self, key: &str) -> (&'static str, String) {
        match self {
            Wire::OpenAi => ("authorization", format!("Bearer {key}")),
            Wire::Anthropic => ("x-api-key", key.to_owned()),
            Wire::Gemini => ("x-goog-api-key", key.to_owned()),
        }
    }

    /// What a re-ask reports about the failed answer, read from the provider's own turn for
    /// it: a `tool` message (OpenAI), a `tool_result` with `is_error` (Anthropic), a
    /// `functionResponse` with an `error` (Gemini) in tools mode; the last user text
    /// otherwise. `None` when the turn is not there in that form.
    pub fn reask_report(self, body: &Value, mode: Mode) -> Option<String> {
        let turns = match self {
            Wire::OpenAi | Wire::Anthropic => body["messages"].as_array()?,
            Wire::Gemini => body["contents"].as_array()?,
        };
        if mode == Mode::Tools {
            return match self {
                Wire::OpenAi => turns
                    .iter()
                    .rev()
                    .find(|m| m["role"] == "tool")
                    .and_then(|m| m["content"].as_str())
                    .map(str::to_owned),
                Wire::Anthropic => turns
                    .iter()
                    .flat_map(|t| t["content"].as_array().into_iter().flatten())
                    .find(|b| b["type"] == "tool_result" && b["is_error"] == true)
                    .and_then(|b| b["content"].as_str())
                    .map(str::to_owned),
                Wire::Gemini => turns
                    .iter()
                    .flat_map(|t| t["parts"].as_array().into_iter().flatten())
                    .find_map(|p| p.pointer("/functionResponse/response/error"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
        }
        let last = turns.iter().rev().find(|t| t["role"] == "user")?;
        Some(match self {
            Wire::OpenAi => last["content"].as_str()?.to_owned(),
            Wire::Anthropic => texts(&last["content"], "text"),
            Wire::Gemini => texts(&last["parts"], "text"),
        })
    }

    /// A refusal in this format: the model declines and gives nothing to read.
    pub fn refusal(self) -> Reply {
        match self {
            Wire::OpenAi => Reply::json(
                200,
                json!({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": null, "refusal": "I will not do that."}}]}),
            ),
            Wire::Anthropic => Reply::json(
                200,
                json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                       "content": [], "stop_reason": "refusal", "usage": {"input_tokens": 5, "output_tokens": 0}}),
            ),
            Wire::Gemini => Reply::json(
                200,
                json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "SAFETY"}],
                       "usageMetadata": {"promptTokenCount": 5}}),
            ),
        }
    }

    /// A `200` that holds no answer at all (`choices: []`, `content: []`, `candidates: []`).
    pub fn empty(self) -> Reply {
        Reply::json(
            200,
            match self {
                Wire::OpenAi => json!({"id": "c", "model": "m", "choices": []}),
                Wire::Anthropic => json!({"id": "msg_1", "type": "message", "content": []}),
                Wire::Gemini => json!({"candidates": []}),
            },
        )
    }

    /// A `400` saying the prompt is longer than the model takes, as each provider says it.
    pub fn too_long(self) -> Reply {
        match self {
            Wire::OpenAi => Reply::json(
                400,
                json!({"error": {"message": "This model's maximum context length is 8192 tokens.", "code": "context_length_exceeded"}}),
            ),
            Wire::Anthropic => Reply::json(
                400,
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 250000 tokens > 200000 maximum"}}),
            ),
            Wire::Gemini => Reply::json(
                400,
                json!({"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}),
            ),
        }
    }

    /// A stream that breaks off after part of a call of `name`, without its end (`[DONE]`,
    /// `message_stop`, a `finishReason`).
    pub fn stream_without_end(self, name: &str) -> Reply {
        let half = &GOOD[..GOOD.len() / 2];
        let events: Vec<String> = match self {
            Wire::OpenAi => split_chars(half, 6)
                .iter()
                .map(|p| {
                    let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": p}}]}}]});
                    format!("data: {chunk}\n\n")
                })
                .collect(),
            Wire::Anthropic => {
                let mut events = vec![
                    format!("event: message_start\ndata: {}\n\n", json!({"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}})),
                    format!("event: content_block_start\ndata: {}\n\n", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": name, "input": {}}})),
                ];
                events.extend(split_chars(half, 6).iter().map(|p| {
                    format!("event: content_block_delta\ndata: {}\n\n", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": p}}))
                }));
                events
            }
            Wire::Gemini => vec![format!(
                "data: {}\r\n\r\n",
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": half}]}}]})
            )],
        };
        Reply::raw(events.concat()).header("content-type", "text/event-stream")
    }

    /// A stream naming an absurd call or block index (100,000,000), or for Gemini, whose
    /// calls are not indexed, an answer with 1,000 calls: bounded before use.
    pub fn huge_index(self, name: &str) -> Reply {
        let body = match self {
            Wire::OpenAi => format!(
                "data: {}\n\ndata: [DONE]\n\n",
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 100_000_000, "id": "call_1", "type": "function", "function": {"name": name, "arguments": "{"}}]}}]})
            ),
            Wire::Anthropic => format!(
                "event: content_block_delta\ndata: {}\n\n",
                json!({"type": "content_block_delta", "index": 100_000_000, "delta": {"type": "input_json_delta", "partial_json": "{"}})
            ),
            Wire::Gemini => {
                let call = json!({"functionCall": {"name": name, "args": {}}});
                let parts = vec![call; 1_000];
                format!(
                    "data: {}\r\n\r\n",
                    json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]})
                )
            }
        };
        Reply::raw(body).header("content-type", "text/event-stream")
    }
}

fn system_text(wire: Wire, body: &Value) -> String {
    match wire {
        Wire::Anthropic => texts(&body["system"], "text"),
        Wire::Gemini => texts(&body["systemInstruction"]["parts"], "text"),
        Wire::OpenAi => body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == "system")
            .filter_map(|m| m["content"].as_str())
            .collect(),
    }
}

/// The `key` texts of a list of blocks or parts, joined.
fn texts(list: &Value, key: &str) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b[key].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The answer `text` as a reply in `mode` to a request asking for the function `name`
/// (whole, or streamed in pieces).
fn answer(mode: Mode, name: Option<&str>, text: &str, stream: bool) -> Reply {
    match (mode, stream) {
        (Mode::Tools, false) => Reply::tool_call(name.unwrap_or("Person"), text),
        (Mode::Tools, true) => {
            Reply::stream_tool_call(name.unwrap_or("Person"), split_chars(text, 7))
        }
        (Mode::MdJson, false) => Reply::content(format!("Here it is:\n```json\n{text}\n```")),
        (Mode::MdJson, true) => Reply::stream_content(split_chars(
            &format!("Here it is:\n```json\n{text}\n```"),
            7,
        )),
        (_, false) => Reply::content(text),
        (_, true) => Reply::stream_content(split_chars(text, 7)),
    }
}

/// Answers every request with `text` in the mode the request asks, streamed when it asks.
fn answer_every_request(server: &ScriptedServer, wire: Wire, text: &'static str) {
    server.fallback(move |body| {
        let mode = wire.mode_of(body);
        let name = wire.tool_name(body);
        answer(mode, name.as_deref(), text, wire.streamed(body)).usage(100, 10)
    });
}

/// Each mode one-shot: the request asks in that mode's form (checked from what was sent),
/// with the key in the provider's header, and the answer is read and counted.
pub async fn every_mode_one_shot(subject: &Subject) {
    for mode in MODES {
        let server = ScriptedServer::start().await;
        answer_every_request(&server, subject.wire, GOOD);
        let out = subject
            .client(&server)
            .extract_value(&person())
            .system("Extract the person.")
            .user("Ada is 36")
            .mode(mode)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e:#}"));
        assert_eq!(out.value, json!({"name": "Ada", "age": 36}), "{mode}");
        assert_eq!(
            (out.usage.input_tokens, out.usage.output_tokens),
            (100, 10),
            "{mode}"
        );
        let sent = server.requests();
        assert_eq!(sent.len(), 1, "{mode}");
        assert_eq!(
            subject.wire.mode_of(&sent[0].body),
            mode,
            "{mode}: {}",
            sent[0].body
        );
        assert!(!subject.wire.streamed(&sent[0].body), "{mode}");
        let (header, value) = subject.wire.key_header(FAULT_KEY);
        assert_eq!(
            sent[0].headers.get(header).and_then(|v| v.to_str().ok()),
            Some(value.as_str()),
            "{mode}: the key in `{header}`"
        );
    }
}

/// Each mode streamed both ways: a whole value as it fills in (snapshots, then the value)
/// and a list element by element, with usage read from the stream.
pub async fn every_mode_streamed(subject: &Subject) {
    for mode in MODES {
        let server = ScriptedServer::start().await;
        answer_every_request(&server, subject.wire, GOOD);
        let client = subject.client(&server);
        let mut stream = client
            .extract_value(&person())
            .user("Ada is 36")
            .mode(mode)
            .stream();
        let (mut snapshots, mut value) = (0, None);
        while let Some(event) = stream.next().await {
            match event.unwrap_or_else(|e| panic!("{mode}: {e:#}")) {
                Event::Snapshot(_) => snapshots += 1,
                Event::Value(v) => value = Some(v),
                _ => {}
            }
        }
        assert_eq!(value, Some(json!({"name": "Ada", "age": 36})), "{mode}");
        assert!(snapshots >= 1, "{mode}: no snapshot before the value");
        assert_eq!(stream.usage().output_tokens, 10, "{mode}");
        assert!(subject.wire.streamed(&server.requests()[0].body), "{mode}");

        let server = ScriptedServer::start().await;
        answer_every_request(&server, subject.wire, LIST);
        let client = subject.client(&server);
        let mut stream = client
            .extract_value(&people())
            .user("Ada is 36, Bob 43")
            .mode(mode)
            .stream();
        let mut names = Vec::new();
        while let Some(event) = stream.next().await {
            if let Event::Element { value, .. } = event.unwrap_or_else(|e| panic!("{mode}: {e:#}"))
            {
                names.push(value["name"].as_str().unwrap_or_default().to_owned());
            }
        }
        assert_eq!(names, ["Ada", "Bob"], "{mode}");
        assert_eq!(stream.usage().input_tokens, 100, "{mode}");
    }
}

/// An answer that breaks the schema is re-asked with the errors in the provider's own turn
/// for it; usage is summed over both attempts, whole and streamed.
pub async fn reasks_use_the_providers_turns(subject: &Subject) {
    for mode in MODES {
        for stream in [false, true] {
            let server = ScriptedServer::start().await;
            let wire = subject.wire;
            let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counted = calls.clone();
            server.fallback(move |body| {
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let text = if n == 0 { BAD } else { GOOD };
                let name = wire.tool_name(body);
                answer(
                    wire.mode_of(body),
                    name.as_deref(),
                    text,
                    wire.streamed(body),
                )
                .usage(100 + 50 * n as u64, 10)
            });
            let client = subject.client(&server);
            let builder = client.extract_value(&person()).user("Ada is 36").mode(mode);
            let (value, usage, attempts) = if stream {
                let mut s = builder.stream();
                let mut value = None;
                while let Some(e) = s.next().await {
                    if let Event::Value(v) = e.unwrap_or_else(|e| panic!("{mode}: {e:#}")) {
                        value = Some(v);
                    }
                }
                (value, s.usage(), s.attempts().len())
            } else {
                let out = builder
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{mode}: {e:#}"));
                (Some(out.value), out.usage, out.attempts.len())
            };
            assert_eq!(
                value,
                Some(json!({"name": "Ada", "age": 36})),
                "{mode} {stream}"
            );
            assert_eq!(attempts, 2, "{mode} {stream}");
            assert_eq!(usage.input_tokens, 250, "{mode} {stream}: usage summed");
            assert_eq!(usage.output_tokens, 20, "{mode} {stream}");
            let second = &server.requests()[1].body;
            let report = wire
                .reask_report(second, mode)
                .unwrap_or_else(|| panic!("{mode} {stream}: no re-ask turn in {second}"));
            assert!(report.contains("150"), "{mode} {stream}: {report}");
        }
    }
}

/// A token limit that cuts the answer off is truncation (whole and streamed), not a re-ask.
pub async fn truncation(subject: &Subject) {
    for stream in [false, true] {
        let server = ScriptedServer::start().await;
        let wire = subject.wire;
        server.fallback(move |body| {
            let name = wire.tool_name(body);
            answer(
                Mode::Tools,
                name.as_deref(),
                &GOOD[..GOOD.len() / 2],
                wire.streamed(body),
            )
            .finish_reason("length")
            .usage(10, 512)
        });
        let client = subject.client(&server);
        let builder = client
            .extract_value(&person())
            .user("Ada is 36")
            .max_retries(0);
        let err = if stream {
            let mut s = builder.stream();
            let mut err = None;
            while let Some(e) = s.next().await {
                if let Err(e) = e {
                    err = Some(e);
                }
            }
            err.unwrap_or_else(|| panic!("streamed: no error"))
        } else {
            builder
                .send()
                .await
                .err()
                .unwrap_or_else(|| panic!("no error"))
        };
        assert!(
            matches!(err, ExtractError::TokenLimit { .. }),
            "{stream}: {}",
            report(&err)
        );
    }
}

/// A refusal is reported as one, in the provider's words or as a filtered answer.
pub async fn refusal(subject: &Subject) {
    let server = ScriptedServer::start().await;
    let wire = subject.wire;
    server.fallback(move |_| wire.refusal());
    let err = subject
        .client(&server)
        .extract_value(&person())
        .user("Ada is 36")
        .max_retries(0)
        .send()
        .await
        .err()
        .unwrap_or_else(|| panic!("a refusal is no answer"));
    let text = report(&err);
    assert!(text.contains("refused"), "{text}");
}

/// Runs one extraction against `reply` (every request), returning the error.
async fn failing(subject: &Subject, timeout: Duration, reply: Reply) -> (ExtractError, usize) {
    let server = ScriptedServer::start().await;
    server.fallback(move |_| reply.clone());
    let err = subject
        .client_with(&server, timeout, 1 << 20)
        .extract_value(&person())
        .user("Ada is 36")
        .max_retries(0)
        .send()
        .await
        .err()
        .unwrap_or_else(|| panic!("the extraction succeeded"));
    (err, server.requests().len())
}

/// Everything an error says: its message, its causes, and each attempt's errors.
fn report(err: &ExtractError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    for a in err.attempts() {
        for e in &a.errors {
            text.push_str(&format!("; attempt {}: {e}", a.number));
        }
    }
    text
}

/// The provider error's kind.
fn kind(err: &ExtractError) -> &'static str {
    err.provider_error().map_or("none", ProviderError::kind)
}

/// The retry rules: `429` and `5xx` retried (`Retry-After` honoured, a huge one refused at
/// once), a too-long prompt and other `4xx` not, timeouts retried and reported as such.
pub async fn retry_rules(subject: &Subject) {
    let wire = subject.wire;
    for (status, name) in [(429, "rate limited"), (503, "overloaded")] {
        let server = ScriptedServer::start().await;
        server.push(Reply::error(status, name).header("retry-after", "0"));
        answer_every_request(&server, wire, GOOD);
        let out = subject
            .client(&server)
            .extract_value(&person())
            .user("Ada is 36")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{status}: {e:#}"));
        assert_eq!(out.value["age"], 36);
        assert_eq!(server.requests().len(), 2, "{status} retried once");
    }
    let slow = Duration::from_secs(5);
    let (err, n) = failing(subject, slow, Reply::error(500, "the upstream is broken")).await;
    assert_eq!((kind(&err), n), ("500", 3), "{}", report(&err));
    assert!(
        report(&err).contains("the upstream is broken"),
        "{}",
        report(&err)
    );
    let (err, n) = failing(
        subject,
        slow,
        Reply::error(429, "come back much later").header("retry-after", "1e20"),
    )
    .await;
    assert_eq!((kind(&err), n), ("429", 1), "{}", report(&err));
    let (err, n) = failing(subject, slow, wire.too_long()).await;
    assert_eq!((kind(&err), n), ("input_too_long", 1), "{}", report(&err));
    let (err, n) = failing(subject, slow, Reply::error(404, "no such model")).await;
    assert_eq!((kind(&err), n), ("404", 1), "{}", report(&err));
    let quick = Duration::from_millis(300);
    let (err, n) = failing(subject, quick, Reply::hang()).await;
    assert_eq!((kind(&err), n), ("timeout", 3), "{}", report(&err));
    let (err, _) = failing(subject, quick, Reply::stalled()).await;
    assert_eq!(kind(&err), "timeout", "{}", report(&err));
}

/// A header hook's headers (telemetry's `traceparent`) go with every try, retries and streams
/// included; with no hook, none are added.
pub async fn header_hook_runs_on_every_try(subject: &Subject) {
    fn hook(headers: &mut http::HeaderMap) {
        headers.insert("x-sift-hook", http::HeaderValue::from_static("on"));
    }
    let hooked = |r: &crate::Recorded| r.headers.get("x-sift-hook").map(|v| v.as_bytes().to_vec());
    let server = ScriptedServer::start().await;
    server.push(Reply::error(503, "overloaded").header("retry-after", "0"));
    answer_every_request(&server, subject.wire, GOOD);
    let knobs = Knobs {
        key: FAULT_KEY,
        timeout: Duration::from_secs(5),
        max_body: 1 << 20,
        header_hook: Some(hook),
    };
    let client = Client::from_arc((subject.build)(&server, knobs));
    let out = client
        .extract_value(&person())
        .user("Ada is 36")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(out.value["age"], 36);
    let mut stream = client.extract_value(&person()).user("Ada is 36").stream();
    while let Some(event) = stream.next().await {
        event.unwrap_or_else(|e| panic!("streamed: {e:#}"));
    }
    let sent = server.requests();
    assert_eq!(sent.len(), 3, "a retried call and a streamed one");
    assert!(subject.wire.streamed(&sent[2].body));
    for (i, r) in sent.iter().enumerate() {
        assert_eq!(hooked(r).as_deref(), Some(&b"on"[..]), "request {i}");
    }
    let server = ScriptedServer::start().await;
    answer_every_request(&server, subject.wire, GOOD);
    subject
        .client(&server)
        .extract_value(&person())
        .user("Ada is 36")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(hooked(&server.requests()[0]), None, "no hook, no header");
}

/// Whole answers that are not answers: each a clear error, none read past its bound.
pub async fn hostile_answers(subject: &Subject) {
    let wire = subject.wire;
    let t = Duration::from_secs(5);
    let cases: Vec<(&str, Reply, &[&str])> = vec![
        (
            "reset before the body",
            Reply::broken(""),
            &["transport", "invalid_response"],
        ),
        (
            "reset mid body",
            Reply::broken("{\"id\": \"x\", \"conte"),
            &["transport", "invalid_response"],
        ),
        (
            "malformed JSON",
            Reply::raw("{\"choices\": [oops").header("content-type", "application/json"),
            &["invalid_response"],
        ),
        (
            "an HTML page",
            Reply::raw("<!DOCTYPE html><html><body>Bad Gateway</body></html>")
                .header("content-type", "text/html"),
            &["invalid_response"],
        ),
        (
            "a 20 MB body",
            Reply::raw("x".repeat(20 << 20)).header("content-type", "application/json"),
            &["invalid_response"],
        ),
        (
            "no answer in it",
            wire.empty(),
            &["invalid_response", "none"],
        ),
        // A redirect is never followed (the key would go with it), and says where it led.
        (
            "a redirect",
            Reply::error(307, "moved").header("location", "http://elsewhere.example/v1"),
            &["3xx"],
        ),
    ];
    for (what, reply, kinds) in cases {
        let (err, _) = failing(subject, t, reply).await;
        assert!(
            kinds.contains(&kind(&err)),
            "{what}: {} {}",
            kind(&err),
            report(&err)
        );
        let text = report(&err);
        if what == "a redirect" {
            assert!(text.contains("redirects are not followed"), "{text}");
        }
        assert!(
            text.len() < 2000,
            "{what}: the error is bounded: {} bytes",
            text.len()
        );
    }
}

/// Streams that misbehave: cut off before their end, an error event midway, an absurd index.
pub async fn hostile_streams(subject: &Subject) {
    let wire = subject.wire;
    let cases: Vec<(&str, Reply, &[&str])> = vec![
        ("no end", wire.stream_without_end("People"), &["stream"]),
        (
            "an error event",
            Reply::stream_tool_call("People", split_chars(LIST, 5))
                .stream_error_after(3, "the upstream fell over"),
            &["stream"],
        ),
        // Refused by the provider, or by the reader (a read failure of the answer).
        (
            "an absurd index",
            wire.huge_index("People"),
            &["invalid_response", "none"],
        ),
        (
            "a reset",
            Reply::broken("data: {\"cho").header("content-type", "text/event-stream"),
            &["stream", "transport", "invalid_response"],
        ),
    ];
    for (what, reply, kinds) in cases {
        let server = ScriptedServer::start().await;
        server.fallback(move |_| reply.clone());
        let client = subject.client(&server);
        let mut stream = client
            .extract_value(&people())
            .user("Ada is 36")
            .max_retries(0)
            .stream();
        let mut err = None;
        while let Some(e) = stream.next().await {
            if let Err(e) = e {
                err = Some(e);
            }
        }
        let err = err.unwrap_or_else(|| panic!("{what}: the stream ended without an error"));
        assert!(
            kinds.contains(&kind(&err)),
            "{what}: {} {}",
            kind(&err),
            report(&err)
        );
        if what == "an absurd index" {
            assert!(report(&err).contains("at most"), "{what}: {}", report(&err));
        }
    }
}

/// A key the upstream echoes back (whole or shortened) never reaches an error.
pub async fn keys_never_come_back(subject: &Subject) {
    let shortened = format!(
        "{}****{}",
        &FAULT_KEY[..10],
        &FAULT_KEY[FAULT_KEY.len() - 4..]
    );
    for echoed in [FAULT_KEY.to_owned(), shortened] {
        let (err, _) = failing(
            subject,
            Duration::from_secs(5),
            Reply::error(401, &format!("Incorrect API key provided: {echoed}.")),
        )
        .await;
        assert_eq!(kind(&err), "401", "{}", report(&err));
        let text = format!("{} {err:?}", report(&err));
        assert!(!text.contains(&FAULT_KEY[10..]), "{text}");
        assert!(text.contains("Incorrect API key"), "{text}");
    }
}
