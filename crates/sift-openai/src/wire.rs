//! OpenAI chat-completions wire format: provider-neutral types to JSON and back.

use serde_json::{Map, Value, json};
use sift_core::{ChatRequest, ChatResponse, Message, OutputFormat, ProviderError, ToolCall, Usage};
pub(crate) use sift_http::{error_message, input_too_long, not_json};

/// The JSON body of a `POST /chat/completions`.
pub(crate) fn request_body(request: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(request.model.clone()));
    body.insert(
        "messages".into(),
        Value::Array(request.messages.iter().map(message).collect()),
    );
    match &request.output {
        OutputFormat::Tool {
            name,
            description,
            parameters,
            strict,
        } => {
            body.insert(
                "tools".into(),
                json!([{
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": description,
                        "parameters": parameters,
                        "strict": strict,
                    }
                }]),
            );
            body.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": name}}),
            );
        }
        OutputFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            body.insert(
                "response_format".into(),
                json!({
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": strict}
                }),
            );
        }
        OutputFormat::JsonObject => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        OutputFormat::Text | _ => {}
    }
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(n) = request.max_tokens {
        body.insert("max_tokens".into(), json!(n));
    }
    if let Some(seed) = request.seed {
        body.insert("seed".into(), json!(seed));
    }
    Value::Object(body)
}

fn message(m: &Message) -> Value {
    let mut out = Map::new();
    out.insert(
        "role".into(),
        serde_json::to_value(m.role).unwrap_or(Value::Null),
    );
    out.insert(
        "content".into(),
        m.content.clone().map(Value::String).unwrap_or(Value::Null),
    );
    if !m.tool_calls.is_empty() {
        out.insert(
            "tool_calls".into(),
            Value::Array(
                m.tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}
                        })
                    })
                    .collect(),
            ),
        );
    }
    if let Some(id) = &m.tool_call_id {
        out.insert("tool_call_id".into(), Value::String(id.clone()));
    }
    Value::Object(out)
}

/// Reads a whole chat-completions body: JSON, not an error object, with a first choice.
pub(crate) fn parse_completion(bytes: &[u8]) -> Result<ChatResponse, ProviderError> {
    let raw: Value = serde_json::from_slice(bytes).map_err(|e| not_json(bytes, &e.to_string()))?;
    if let Some(err) = raw.get("error").filter(|e| !e.is_null()) {
        // Some servers answer 200 with an error object.
        return Err(ProviderError::InvalidResponse(error_message(
            err.to_string().as_bytes(),
        )));
    }
    parse_response(raw)
}

/// Reads a chat-completions answer.
pub(crate) fn parse_response(raw: Value) -> Result<ChatResponse, ProviderError> {
    let choice = match raw.get("choices") {
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(ProviderError::InvalidResponse(
                "the upstream answered with no choices (an empty `choices` list)".into(),
            ));
        }
        Some(Value::Array(list)) => &list[0],
        _ => {
            return Err(ProviderError::InvalidResponse(
                "the answer is not a chat completion: it has no `choices` list".into(),
            ));
        }
    };
    let message = choice
        .get("message")
        .ok_or_else(|| ProviderError::InvalidResponse("no `choices[0].message`".into()))?;
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let tool_calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let function = c.get("function");
                    let arguments = match function.and_then(|f| f.get("arguments")) {
                        Some(Value::String(s)) => s.clone(),
                        // Some servers send the arguments as an object rather than a string.
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    ToolCall {
                        id: str_at(c, "id").unwrap_or_else(|| format!("call_{i}")),
                        name: function.and_then(|f| str_at(f, "name")).unwrap_or_default(),
                        arguments,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let usage = raw.get("usage").map(usage).unwrap_or_default();
    Ok(ChatResponse {
        id: str_at(&raw, "id"),
        model: str_at(&raw, "model"),
        content,
        tool_calls,
        finish_reason: str_at(choice, "finish_reason"),
        usage,
        raw,
    })
}

/// A completion's `usage`: prompt, completion and cached prompt tokens (a cached count above
/// the prompt's is capped: upstream numbers are not trusted).
pub(crate) fn usage(u: &Value) -> Usage {
    let input_tokens = u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens,
        output_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        cached_input_tokens: u
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(input_tokens),
    }
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_without_choices_are_invalid() {
        let err = parse_response(json!({"id": "x"})).unwrap_err();
        assert!(err.to_string().contains("choices"), "{err}");
    }
}
