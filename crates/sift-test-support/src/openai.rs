//! The scripted replies in OpenAI's chat-completions format (`POST /v1/chat/completions`):
//! a completion, or its chunks.

use serde_json::{Value, json};

use crate::{Reply, ReplyBody, StreamScript};

/// The whole body of `reply`.
pub(crate) fn render(reply: &Reply, n: usize, model: &str) -> String {
    match &reply.body {
        ReplyBody::Completion {
            content,
            tool_calls,
            finish_reason,
            usage,
        } => {
            let calls: Vec<Value> = tool_calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| {
                    json!({"id": format!("call_{n}_{i}"), "type": "function",
                           "function": {"name": name, "arguments": args}})
                })
                .collect();
            let mut message = json!({"role": "assistant", "content": content});
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
            }
            json!({
                "id": format!("chatcmpl-{n}"),
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1,
                          "total_tokens": usage.0 + usage.1,
                          "prompt_tokens_details": {"cached_tokens": usage.2}}
            })
            .to_string()
        }
        ReplyBody::Json(v) => v.to_string(),
        ReplyBody::Raw(s) => s.clone(),
        ReplyBody::Stream(_) | ReplyBody::Stalled | ReplyBody::Broken(_) => String::new(),
    }
}

/// The SSE events of a scripted stream, one string each.
pub(crate) fn stream_events(script: &StreamScript, n: usize, model: &str) -> Vec<String> {
    let id = format!("chatcmpl-{n}");
    let chunk = |delta: Value, finish: Option<&str>| {
        format!(
            "data: {}\n\n",
            json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    for (i, (index, name, text)) in script.pieces.iter().enumerate() {
        if let Some((after, message)) = &script.error_after
            && *after == i
        {
            events.push(format!(
                "data: {}\n\n",
                json!({"error": {"message": message, "type": "scripted"}})
            ));
            return events;
        }
        let delta = match (index, name) {
            (None, _) => json!({"content": text}),
            (Some(ix), Some(name)) => {
                json!({"tool_calls": [{"index": ix, "id": format!("call_{n}_{ix}"),
                "type": "function", "function": {"name": name, "arguments": text}}]})
            }
            (Some(ix), None) => {
                json!({"tool_calls": [{"index": ix, "function": {"arguments": text}}]})
            }
        };
        events.push(chunk(delta, None));
    }
    events.push(chunk(json!({}), Some(&script.finish_reason)));
    events.push(format!(
        "data: {}\n\n",
        json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
               "usage": {"prompt_tokens": script.usage.0, "completion_tokens": script.usage.1,
                         "total_tokens": script.usage.0 + script.usage.1,
                         "prompt_tokens_details": {"cached_tokens": script.usage.2}}})
    ));
    events.push("data: [DONE]\n\n".into());
    events
}
