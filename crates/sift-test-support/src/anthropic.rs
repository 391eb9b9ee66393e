//! The scripted replies in Anthropic's Messages format (`POST /v1/messages`): the same
//! [`Reply`](crate::Reply)s, rendered as a message or as its events.

use serde_json::{Value, json};

use crate::{Reply, ReplyBody, StreamScript};

/// An OpenAI `finish_reason` as Anthropic's `stop_reason`.
fn stop_reason(finish: &str) -> &str {
    match finish {
        "stop" => "end_turn",
        "tool_calls" => "tool_use",
        "length" => "max_tokens",
        "content_filter" => "refusal",
        other => other,
    }
}

/// A scripted usage `(prompt, completion, cached)` in Anthropic's three-part count.
fn usage(u: (u64, u64, u64)) -> Value {
    json!({"input_tokens": u.0.saturating_sub(u.2), "cache_read_input_tokens": u.2,
           "cache_creation_input_tokens": 0, "output_tokens": u.1})
}

/// A call's arguments as the `input` object Anthropic sends (text that is not an object is
/// sent as a string, as a broken upstream might).
fn input(arguments: &str) -> Value {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::String(arguments.to_owned()))
}

/// The whole body of `reply`.
pub(crate) fn render(reply: &Reply, n: usize, model: &str) -> String {
    match &reply.body {
        ReplyBody::Completion {
            content,
            tool_calls,
            finish_reason,
            usage: u,
        } => {
            let mut blocks = Vec::new();
            if let Some(text) = content {
                blocks.push(json!({"type": "text", "text": text}));
            }
            for (i, (name, arguments)) in tool_calls.iter().enumerate() {
                blocks.push(json!({"type": "tool_use", "id": format!("toolu_{n}_{i}"),
                                   "name": name, "input": input(arguments)}));
            }
            json!({
                "id": format!("msg_{n}"),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop_reason(finish_reason),
                "stop_sequence": null,
                "usage": usage(*u),
            })
            .to_string()
        }
        // Errors keep `{"error": {"message"}}`, which Anthropic's shape also has.
        _ => reply.render(n, model),
    }
}

/// The events of a scripted stream, one string each.
pub(crate) fn stream_events(script: &StreamScript, n: usize, model: &str) -> Vec<String> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": format!("msg_{n}"), "type": "message",
               "role": "assistant", "model": model, "content": [], "stop_reason": null,
               "usage": usage((script.usage.0, 1, script.usage.2))}}),
    )];
    let mut open: Option<usize> = None;
    for (i, (index, name, text)) in script.pieces.iter().enumerate() {
        if let Some((after, message)) = &script.error_after
            && *after == i
        {
            events.push(event(
                "error",
                json!({"type": "error", "error": {"type": "api_error", "message": message}}),
            ));
            return events;
        }
        // Content is block 0; a call is block 1 + its index.
        let block = index.map_or(0, |ix| ix + 1);
        if open != Some(block) {
            if let Some(b) = open {
                events.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": b}),
                ));
            }
            let start = match (index, name) {
                (None, _) => json!({"type": "text", "text": ""}),
                (Some(ix), name) => json!({"type": "tool_use", "id": format!("toolu_{n}_{ix}"),
                                          "name": name.clone().unwrap_or_default(), "input": {}}),
            };
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": block, "content_block": start}),
            ));
            open = Some(block);
        }
        let delta = match index {
            None => json!({"type": "text_delta", "text": text}),
            Some(_) => json!({"type": "input_json_delta", "partial_json": text}),
        };
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": block, "delta": delta}),
        ));
        if i % 4 == 3 {
            events.push(event("ping", json!({"type": "ping"})));
        }
    }
    if let Some(b) = open {
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": b}),
        ));
    }
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(&script.finish_reason),
               "stop_sequence": null}, "usage": {"output_tokens": script.usage.1}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    events
}
