//! The fault matrix: every way an OpenAI-compatible upstream has been seen to misbehave, as
//! replies the scripted server gives ([`Fault::reply`]), for the table-driven tests that run
//! each against every endpoint and framing.

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::{Reply, split_chars};

/// The key sift is given in fault tests; [`Fault::EchoedKey`] sends it back.
pub const FAULT_KEY: &str = "sk-fault-matrix-secret-0123456789";

/// A misbehaving upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `429` on the first call of each request, then a good answer.
    RateLimitedOnce,
    /// `429` every time.
    RateLimitedForever,
    /// `Retry-After: 1e20` on a `429`.
    HugeRetryAfter,
    /// `503` once, then a good answer.
    ServerErrorOnce,
    /// `500` every time.
    ServerErrorForever,
    /// No answer at all.
    Hang,
    /// Headers, then no body.
    HangAfterHeaders,
    /// Headers, then the connection breaks.
    ResetBeforeBody,
    /// Half a body, then the connection breaks.
    ResetMidBody,
    /// A stream that ends without `[DONE]` (or finish reason) after a partial answer.
    SseWithoutDone,
    /// Tool-call arguments cut short (`{"name": "Dan`).
    TruncatedArguments,
    /// A body that is not JSON.
    MalformedJson,
    /// Valid JSON of the wrong types (`"age": "old"`).
    WrongTypes,
    /// `finish_reason: length` on a cut answer.
    Length,
    /// The model refuses.
    Refusal,
    /// `choices: []`.
    EmptyChoices,
    /// A `200` with an HTML page.
    Html,
    /// A body larger than sift reads (20 MB).
    HugeBody,
    /// A streamed tool call at index 100,000,000.
    HugeIndex,
    /// A `401` whose message echoes the key sift sent.
    EchoedKey,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 20] = [
        Fault::RateLimitedOnce,
        Fault::RateLimitedForever,
        Fault::HugeRetryAfter,
        Fault::ServerErrorOnce,
        Fault::ServerErrorForever,
        Fault::Hang,
        Fault::HangAfterHeaders,
        Fault::ResetBeforeBody,
        Fault::ResetMidBody,
        Fault::SseWithoutDone,
        Fault::TruncatedArguments,
        Fault::MalformedJson,
        Fault::WrongTypes,
        Fault::Length,
        Fault::Refusal,
        Fault::EmptyChoices,
        Fault::Html,
        Fault::HugeBody,
        Fault::HugeIndex,
        Fault::EchoedKey,
    ];

    /// Its name, as a test's query names it (`fault:hang`).
    pub fn name(self) -> &'static str {
        match self {
            Fault::RateLimitedOnce => "rate_limited_once",
            Fault::RateLimitedForever => "rate_limited_forever",
            Fault::HugeRetryAfter => "huge_retry_after",
            Fault::ServerErrorOnce => "server_error_once",
            Fault::ServerErrorForever => "server_error_forever",
            Fault::Hang => "hang",
            Fault::HangAfterHeaders => "hang_after_headers",
            Fault::ResetBeforeBody => "reset_before_body",
            Fault::ResetMidBody => "reset_mid_body",
            Fault::SseWithoutDone => "sse_without_done",
            Fault::TruncatedArguments => "truncated_arguments",
            Fault::MalformedJson => "malformed_json",
            Fault::WrongTypes => "wrong_types",
            Fault::Length => "length",
            Fault::Refusal => "refusal",
            Fault::EmptyChoices => "empty_choices",
            Fault::Html => "html",
            Fault::HugeBody => "huge_body",
            Fault::HugeIndex => "huge_index",
            Fault::EchoedKey => "echoed_key",
        }
    }

    /// The fault a request's user messages name (`... fault:hang ...`; re-asks add user
    /// messages after the first).
    pub fn named_in(body: &Value) -> Option<Fault> {
        let texts: Vec<&str> = body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter(|m| m["role"] == "user")
                    .filter_map(|m| m["content"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        Fault::ALL.into_iter().find(|f| {
            let tag = format!("fault:{} ", f.name());
            texts.iter().any(|t| t.contains(&tag))
        })
    }

    /// The reply to `body`, the `n`th call naming this fault (1 for the first). `good` is a
    /// valid answer's arguments for the tool the request asks for.
    pub fn reply(self, body: &Value, n: usize, good: &str) -> Reply {
        let stream = body["stream"] == true;
        let name = body["tools"][0]["function"]["name"]
            .as_str()
            .unwrap_or("Output")
            .to_owned();
        let answer = |args: &str| {
            if stream {
                Reply::stream_tool_call(&name, split_chars(args, 8))
            } else {
                Reply::tool_call(&name, args)
            }
        };
        match self {
            Fault::RateLimitedOnce if n == 1 => {
                Reply::error(429, "rate limited").header("retry-after", "0")
            }
            Fault::ServerErrorOnce if n == 1 => Reply::error(503, "overloaded"),
            Fault::RateLimitedOnce | Fault::ServerErrorOnce => answer(good),
            Fault::RateLimitedForever => {
                Reply::error(429, "rate limited for good").header("retry-after", "0")
            }
            Fault::HugeRetryAfter => {
                Reply::error(429, "come back much later").header("retry-after", "1e20")
            }
            Fault::ServerErrorForever => Reply::error(500, "the upstream is broken"),
            Fault::Hang => Reply::hang(),
            Fault::HangAfterHeaders => Reply::stalled(),
            Fault::ResetBeforeBody => Reply::broken(""),
            Fault::ResetMidBody => {
                if stream {
                    Reply::broken("data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"\"}}]}\n\ndata: {\"cho")
                        .header("content-type", "text/event-stream")
                } else {
                    Reply::broken("{\"id\": \"c\", \"choices\": [{\"index\": 0, \"mess")
                }
            }
            Fault::SseWithoutDone => {
                if stream {
                    let mut events = String::new();
                    for piece in split_chars(&good[..good.len() / 2], 8) {
                        let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": piece}}]}}]});
                        events.push_str(&format!("data: {chunk}\n\n"));
                    }
                    Reply::raw(events).header("content-type", "text/event-stream")
                } else {
                    answer(good)
                }
            }
            Fault::TruncatedArguments => answer(&good[..good.len() / 2]),
            Fault::MalformedJson => Reply::raw("{\"choices\": [oops").header("content-type", "application/json"),
            Fault::WrongTypes => answer(r#"{"name": 42, "age": "old"}"#),
            Fault::Length => answer(&good[..good.len() / 2]).finish_reason("length"),
            Fault::Refusal => Reply::json(
                200,
                json!({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": null, "refusal": "I will not do that."}}]}),
            ),
            Fault::EmptyChoices => Reply::json(200, json!({"id": "c", "model": "m", "choices": []})),
            Fault::Html => Reply::raw(
                "<!DOCTYPE html><html><head><title>Bad Gateway</title></head><body>nginx</body></html>",
            )
            .header("content-type", "text/html"),
            Fault::HugeBody => Reply::raw(huge_body().to_owned()).header("content-type", "application/json"),
            Fault::HugeIndex => {
                let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 100_000_000, "id": "call_1", "type": "function", "function": {"name": name, "arguments": "{"}}]}}]});
                if stream {
                    Reply::raw(format!("data: {chunk}\n\ndata: [DONE]\n\n"))
                        .header("content-type", "text/event-stream")
                } else {
                    answer(good)
                }
            }
            Fault::EchoedKey => Reply::error(
                401,
                &format!("Incorrect API key provided: {FAULT_KEY}. You can find your API key at https://platform.openai.com/account/api-keys."),
            ),
        }
    }
}

/// 20 MB of JSON-looking text, made once.
fn huge_body() -> &'static str {
    static BODY: OnceLock<String> = OnceLock::new();
    BODY.get_or_init(|| {
        let mut s = String::with_capacity(20 * 1024 * 1024 + 64);
        s.push_str("{\"choices\": [{\"message\": {\"content\": \"");
        while s.len() < 20 * 1024 * 1024 {
            s.push_str("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        }
        s.push_str("\"}}]}");
        s
    })
}
