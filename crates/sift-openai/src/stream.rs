//! Server-sent events of a streamed chat completion, turned into [`ChatDelta`]s.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;
use sift_core::{ChatDelta, ChatResponse, ChatStream, ProviderError, Usage};

use crate::wire;

/// The deltas of `response`'s event stream. Each event must arrive within `idle`.
pub(crate) fn deltas(response: reqwest::Response, idle: Duration) -> ChatStream {
    let mut events = response.bytes_stream().eventsource();
    Box::pin(async_stream::stream! {
        let mut told_meta = false;
        loop {
            let event = match tokio::time::timeout(idle, events.next()).await {
                Err(_) => {
                    yield Err(ProviderError::Timeout(idle));
                    return;
                }
                Ok(None) => return,
                Ok(Some(Err(e))) => {
                    yield Err(ProviderError::Stream(e.to_string()));
                    return;
                }
                Ok(Some(Ok(event))) => event,
            };
            let data = event.data.trim();
            if data == "[DONE]" {
                return;
            }
            if data.is_empty() {
                continue;
            }
            let chunk: Value = match serde_json::from_str(data) {
                Ok(v) => v,
                Err(e) => {
                    yield Err(ProviderError::Stream(format!("an event is not JSON ({e}): {}",
                        data.chars().take(200).collect::<String>())));
                    return;
                }
            };
            if event.event == "error" || chunk.get("error").is_some_and(|e| !e.is_null()) {
                let err = chunk.get("error").unwrap_or(&chunk);
                yield Err(ProviderError::Stream(wire::error_message(err.to_string().as_bytes())));
                return;
            }
            if !told_meta {
                told_meta = true;
                yield Ok(ChatDelta::Meta {
                    id: chunk.get("id").and_then(Value::as_str).map(str::to_owned),
                    model: chunk.get("model").and_then(Value::as_str).map(str::to_owned),
                });
            }
            for delta in chunk_deltas(&chunk) {
                yield Ok(delta);
            }
        }
    })
}

fn chunk_deltas(chunk: &Value) -> Vec<ChatDelta> {
    let mut out = Vec::new();
    if let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) {
        let delta = &choice["delta"];
        if let Some(text) = delta.get("content").and_then(Value::as_str)
            && !text.is_empty()
        {
            out.push(ChatDelta::Content(text.to_owned()));
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for (i, call) in calls.iter().enumerate() {
                let function = call.get("function");
                out.push(ChatDelta::ToolCall {
                    index: call
                        .get("index")
                        .and_then(Value::as_u64)
                        .map_or(i, |n| n as usize),
                    id: call.get("id").and_then(Value::as_str).map(str::to_owned),
                    name: function
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    arguments: function
                        .and_then(|f| f.get("arguments"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            out.push(ChatDelta::Finish(reason.to_owned()));
        }
    }
    if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
        out.push(ChatDelta::Usage(Usage {
            input_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
            output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
        }));
    }
    out
}

/// A whole answer as a stream of deltas.
pub(crate) fn from_whole(response: ChatResponse) -> ChatStream {
    let mut deltas = vec![ChatDelta::Meta {
        id: response.id,
        model: response.model,
    }];
    if let Some(text) = response.content {
        deltas.push(ChatDelta::Content(text));
    }
    for (index, call) in response.tool_calls.into_iter().enumerate() {
        deltas.push(ChatDelta::ToolCall {
            index,
            id: Some(call.id),
            name: Some(call.name),
            arguments: call.arguments,
        });
    }
    if let Some(reason) = response.finish_reason {
        deltas.push(ChatDelta::Finish(reason));
    }
    deltas.push(ChatDelta::Usage(response.usage));
    Box::pin(futures::stream::iter(deltas.into_iter().map(Ok)))
}
