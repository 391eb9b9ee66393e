//! A streamed Messages answer, turned into [`ChatDelta`]s: `message_start` (id, model and
//! the prompt's usage), `content_block_start` (a tool call's id and name),
//! `content_block_delta` (`text_delta` as content, `input_json_delta` as a call's
//! arguments), `message_delta` (the stop reason and the output's usage), `message_stop`,
//! `ping`, and `error` (ending the stream with the error).

use std::time::Duration;

use serde_json::Value;
use sift_core::{ChatDelta, ChatStream, ProviderError, Usage};
#[cfg(test)]
use sift_http::sse::SseDecoder;
use sift_http::sse::{EventReader, SseEvent};

use crate::wire;

/// The deltas of `response`'s event stream (see `sift_http::sse::deltas`).
pub(crate) fn deltas(response: reqwest::Response, idle: Duration, max_event: usize) -> ChatStream {
    sift_http::sse::deltas(response, idle, max_event, Reader::default())
}

/// The state of one streamed answer.
#[derive(Debug, Default)]
struct Reader {
    /// The prompt's usage, from `message_start`, added to the output's at `message_delta`.
    usage: Usage,
    /// `message_stop` arrived: the answer is whole.
    stopped: bool,
}

/// The most content blocks one answer may open: an upstream's `index` beyond it is an error,
/// not an allocation.
const MAX_BLOCKS: u64 = 128;

impl EventReader for Reader {
    fn whole(&self) -> bool {
        self.stopped
    }

    fn done(&self) -> bool {
        self.stopped
    }

    fn end_marker(&self) -> &'static str {
        "`message_stop`"
    }

    /// The deltas one event carries.
    fn read(&mut self, event: &SseEvent) -> Result<Vec<ChatDelta>, ProviderError> {
        let Some(v) = event.json()? else {
            return Ok(Vec::new());
        };
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(event.event.as_str());
        let index = || -> Result<usize, ProviderError> {
            let i = v.get("index").and_then(Value::as_u64).unwrap_or(0);
            if i >= MAX_BLOCKS {
                return Err(ProviderError::InvalidResponse(format!(
                    "the upstream's stream names content block {i}; at most {MAX_BLOCKS} are read"
                )));
            }
            Ok(i as usize)
        };
        Ok(match kind {
            "message_start" => {
                let message = v.get("message").cloned().unwrap_or_default();
                self.usage = message.get("usage").map(wire::usage).unwrap_or_default();
                vec![ChatDelta::Meta {
                    id: message.get("id").and_then(Value::as_str).map(str::to_owned),
                    model: message
                        .get("model")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                }]
            }
            "content_block_start" => {
                let block = v.get("content_block").cloned().unwrap_or_default();
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => vec![ChatDelta::ToolCall {
                        index: index()?,
                        id: block.get("id").and_then(Value::as_str).map(str::to_owned),
                        name: block.get("name").and_then(Value::as_str).map(str::to_owned),
                        arguments: String::new(),
                    }],
                    Some("text") => match block.get("text").and_then(Value::as_str) {
                        Some(t) if !t.is_empty() => vec![ChatDelta::Content(t.to_owned())],
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta").cloned().unwrap_or_default();
                let text = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or_default();
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => vec![ChatDelta::Content(text("text").to_owned())],
                    Some("input_json_delta") => vec![ChatDelta::ToolCall {
                        index: index()?,
                        id: None,
                        name: None,
                        arguments: text("partial_json").to_owned(),
                    }],
                    // Thinking, signatures, citations: no part of the answer.
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                let mut out = Vec::new();
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    out.push(ChatDelta::Finish(wire::finish_reason(reason)));
                }
                if let Some(u) = v.get("usage") {
                    // The output's count is cumulative; the prompt's came at the start (and
                    // may be restated here).
                    let later = wire::usage(u);
                    self.usage.output_tokens = later.output_tokens;
                    if later.input_tokens > 0 {
                        self.usage.input_tokens = later.input_tokens;
                        self.usage.cached_input_tokens = later.cached_input_tokens;
                    }
                    out.push(ChatDelta::Usage(self.usage));
                }
                out
            }
            "message_stop" => {
                self.stopped = true;
                Vec::new()
            }
            "error" => {
                let message = sift_http::error_message(event.data.trim().as_bytes());
                let overloaded =
                    v.pointer("/error/type").and_then(Value::as_str) == Some("overloaded_error");
                return Err(if overloaded {
                    ProviderError::Busy { retry_after: None }
                } else {
                    ProviderError::Stream(message)
                });
            }
            // `ping`, `content_block_stop`, and events added later.
            _ => Vec::new(),
        })
    }
}

/// The deltas an event stream arriving in `chunks` reads as, without a connection (tests).
#[cfg(test)]
fn read_chunks(chunks: &[&str]) -> Vec<Result<ChatDelta, ProviderError>> {
    let mut decoder = SseDecoder::new(1 << 20);
    let mut reader = Reader::default();
    let mut events = Vec::new();
    let mut out = Vec::new();
    for c in chunks {
        decoder.push(c.as_bytes(), &mut events).unwrap();
        for e in events.drain(..) {
            match reader.read(&e) {
                Ok(d) => out.extend(d.into_iter().map(Ok)),
                Err(e) => out.push(Err(e)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_call_streams_as_its_argument_pieces_with_usage_summed() {
        let events = [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"Person\",\"input\":{}}}\n\n",
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"name\\\": \\\"A\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"da\\\"}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ];
        let deltas: Vec<ChatDelta> = read_chunks(&events)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let arguments: String = deltas
            .iter()
            .filter_map(|d| match d {
                ChatDelta::ToolCall { arguments, .. } => Some(arguments.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(arguments, r#"{"name": "Ada"}"#);
        assert!(deltas.contains(&ChatDelta::Finish("tool_calls".into())));
        assert!(deltas.contains(&ChatDelta::Usage(Usage {
            input_tokens: 120,
            output_tokens: 9,
            cached_input_tokens: 100,
        })));
        assert!(matches!(&deltas[0], ChatDelta::Meta { model: Some(m), .. } if m == "claude-x"));
    }

    #[test]
    fn an_overloaded_error_event_is_busy_and_an_absurd_index_is_refused() {
        let out = read_chunks(&[
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        ]);
        assert!(matches!(out[0], Err(ProviderError::Busy { .. })), "{out:?}");
        let out = read_chunks(&[
            "data: {\"type\":\"content_block_delta\",\"index\":99999999,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
        ]);
        assert!(
            matches!(out[0], Err(ProviderError::InvalidResponse(_))),
            "{out:?}"
        );
    }
}
