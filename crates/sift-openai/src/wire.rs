//! OpenAI chat-completions wire format: provider-neutral types to JSON and back.

use serde_json::{Map, Value, json};
use sift_core::{ChatRequest, ChatResponse, Message, OutputFormat, ProviderError, ToolCall, Usage};

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

/// An answer that is not JSON, described: HTML (a proxy's or a login page) by its title or
/// start, anything else by its start and the parser's complaint.
pub(crate) fn not_json(bytes: &[u8], complaint: &str) -> ProviderError {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let start = text.trim_start();
    let snippet = |t: &str| {
        let flat: String = t.split_whitespace().collect::<Vec<_>>().join(" ");
        let cut: String = flat.chars().take(120).collect();
        if cut.len() < flat.len() {
            format!("{cut}…")
        } else {
            cut
        }
    };
    if start.starts_with('<') {
        let lower = start.to_ascii_lowercase();
        let title = lower
            .find("<title>")
            .and_then(|i| {
                let from = i + "<title>".len();
                lower[from..]
                    .find("</title>")
                    .map(|j| &start[from..from + j])
            })
            .map(snippet);
        return ProviderError::InvalidResponse(match title {
            Some(t) => format!(
                "the upstream answered with an HTML page (\"{t}\"), not a JSON completion: is the base URL right?"
            ),
            None => format!(
                "the upstream answered with HTML, not a JSON completion: {}",
                snippet(start)
            ),
        });
    }
    if start.is_empty() {
        return ProviderError::InvalidResponse("the upstream answered with an empty body".into());
    }
    if complaint.is_empty() {
        return ProviderError::InvalidResponse(format!(
            "the answer is not JSON: {}",
            snippet(start)
        ));
    }
    ProviderError::InvalidResponse(format!(
        "the answer is not JSON ({complaint}): {}",
        snippet(start)
    ))
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

/// The upstream's own message from an error body (`{"error": {"message": ...}}` or text).
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"));
        if let Some(m) = found {
            return m
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| m.to_string());
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text.chars().take(500).collect()
    }
}

/// Whether an error body says the input is too long for the model (OpenAI's
/// `context_length_exceeded`, and the wording of servers that give no code).
pub(crate) fn input_too_long(body: &[u8]) -> bool {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && v.pointer("/error/code").and_then(Value::as_str) == Some("context_length_exceeded")
    {
        return true;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    [
        "context_length_exceeded",
        "maximum context length",
        "exceeds the context",
        "prompt is too long",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// The longest upstream error message kept, in characters.
const MESSAGE_CHARS: usize = 500;

/// `message` with every trace of `secrets` masked: the whole secret, and any word that starts
/// like one (an upstream echoes keys shortened, `sk-proj-abc1****wxyz`); words shaped like an
/// OpenAI key (`sk-...`) too. At most [`MESSAGE_CHARS`] characters are kept.
pub(crate) fn redact<'a>(message: &str, secrets: impl Iterator<Item = &'a String>) -> String {
    let secrets: Vec<&str> = secrets
        .map(String::as_str)
        .filter(|s| s.len() >= 4)
        .collect();
    let mut text = message.to_owned();
    for s in &secrets {
        text = text.replace(s, "[redacted]");
    }
    let keyish = |word: &str| {
        let word = word
            .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_' && c != '*');
        (word.starts_with("sk-") && word.len() >= 10)
            || secrets
                .iter()
                .any(|s| word.len() >= 6 && s.get(..6).is_some_and(|head| word.starts_with(head)))
    };
    let redacted = text
        .split(' ')
        .map(|w| if keyish(w) { "[redacted]" } else { w })
        .collect::<Vec<_>>()
        .join(" ");
    if redacted.chars().count() <= MESSAGE_CHARS {
        return redacted;
    }
    let mut out: String = redacted.chars().take(MESSAGE_CHARS).collect();
    out.push_str("...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_echoed_by_the_upstream_are_masked() {
        let key = "sk-proj-Abc123verysecretkeyWXYZ".to_owned();
        let header = "tenant-token-998877".to_owned();
        let message = format!(
            "Incorrect API key provided: sk-proj-Abc1************WXYZ. Also {key}, and {header}."
        );
        let out = redact(&message, [&key, &header].into_iter());
        assert!(
            !out.contains("Abc1") && !out.contains("verysecret"),
            "{out}"
        );
        assert!(!out.contains("998877"), "{out}");
        assert!(
            out.starts_with("Incorrect API key provided: [redacted]"),
            "{out}"
        );
        // Someone else's OpenAI-shaped key too, and the length is bounded.
        let other = redact("bad key sk-otherkey12345", std::iter::empty());
        assert_eq!(other, "bad key [redacted]");
        let long = redact(&"x".repeat(10_000), std::iter::empty());
        assert_eq!(long.len(), MESSAGE_CHARS + 3);
    }

    #[test]
    fn error_messages_are_found() {
        assert_eq!(
            error_message(br#"{"error": {"message": "bad model", "type": "invalid"}}"#),
            "bad model"
        );
        assert_eq!(error_message(br#"{"error": "nope"}"#), "nope");
        assert_eq!(error_message(b"  upstream down "), "upstream down");
        assert_eq!(error_message(b""), "(empty body)");
    }

    #[test]
    fn responses_without_choices_are_invalid() {
        let err = parse_response(json!({"id": "x"})).unwrap_err();
        assert!(err.to_string().contains("choices"), "{err}");
    }
}
