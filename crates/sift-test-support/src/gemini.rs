//! The scripted replies in Gemini's format (`POST /v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse`): the same [`Reply`](crate::Reply)s, rendered as a
//! `GenerateContentResponse` or as its chunks. Function calls come without ids and whole (as
//! Gemini sends them), even when the script splits their arguments.

use serde_json::{Value, json};

use crate::{Reply, ReplyBody, StreamScript};

/// An OpenAI `finish_reason` as Gemini's `finishReason`.
fn finish_reason(finish: &str) -> String {
    match finish {
        "stop" | "tool_calls" => "STOP".into(),
        "length" => "MAX_TOKENS".into(),
        "content_filter" => "SAFETY".into(),
        other => other.to_ascii_uppercase(),
    }
}

/// A scripted usage `(prompt, completion, cached)` as `usageMetadata`.
fn usage(u: (u64, u64, u64)) -> Value {
    json!({"promptTokenCount": u.0, "candidatesTokenCount": u.1,
           "cachedContentTokenCount": u.2, "totalTokenCount": u.0 + u.1})
}

/// A call's arguments as the `args` object Gemini sends (text that is not an object is sent
/// as a string, as a broken upstream might).
fn args(arguments: &str) -> Value {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::String(arguments.to_owned()))
}

fn response(n: usize, model: &str, parts: Vec<Value>, finish: Option<&str>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(finish_reason(f));
    }
    json!({"candidates": [candidate], "modelVersion": model, "responseId": format!("resp_{n}")})
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
            let mut parts = Vec::new();
            if let Some(text) = content {
                parts.push(json!({"text": text}));
            }
            for (name, arguments) in tool_calls {
                parts.push(json!({"functionCall": {"name": name, "args": args(arguments)}}));
            }
            let mut body = response(n, model, parts, Some(finish_reason));
            body["usageMetadata"] = usage(*u);
            body.to_string()
        }
        // Errors keep `{"error": {"message"}}`, which Google's shape also has.
        _ => reply.render(n, model),
    }
}

/// The chunks of a scripted stream, one event each.
pub(crate) fn stream_events(script: &StreamScript, n: usize, model: &str) -> Vec<String> {
    let event = |data: Value| format!("data: {data}\r\n\r\n");
    let mut events = Vec::new();
    // A call's pieces are gathered and sent whole when the next call or the end comes.
    let mut call: Option<(String, String)> = None;
    let flush = |call: &mut Option<(String, String)>, events: &mut Vec<String>| {
        if let Some((name, arguments)) = call.take() {
            let part = json!({"functionCall": {"name": name, "args": args(&arguments)}});
            events.push(event(response(n, model, vec![part], None)));
        }
    };
    for (i, (index, name, text)) in script.pieces.iter().enumerate() {
        if let Some((after, message)) = &script.error_after
            && *after == i
        {
            flush(&mut call, &mut events);
            events.push(event(
                json!({"error": {"code": 500, "message": message, "status": "INTERNAL"}}),
            ));
            return events;
        }
        match (index, name) {
            (None, _) => {
                flush(&mut call, &mut events);
                events.push(event(response(n, model, vec![json!({"text": text})], None)));
            }
            (Some(_), Some(name)) => {
                flush(&mut call, &mut events);
                call = Some((name.clone(), text.clone()));
            }
            (Some(_), None) => {
                if let Some((_, arguments)) = call.as_mut() {
                    arguments.push_str(text);
                }
            }
        }
    }
    flush(&mut call, &mut events);
    let mut last = response(n, model, Vec::new(), Some(&script.finish_reason));
    last["usageMetadata"] = usage((script.usage.0, script.usage.1, script.usage.2));
    events.push(event(last));
    events
}
