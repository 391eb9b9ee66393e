//! Anthropic's Messages wire format: provider-neutral types to JSON and back.
//!
//! sift's modes map onto it as follows:
//! - `tools`: the schema as a tool's `input_schema`, the call forced with
//!   `tool_choice: {"type": "tool", "name": ...}`; the answer is a `tool_use` block.
//! - `json_schema`: native structured outputs, `output_config.format` with the schema cut to
//!   the subset Anthropic accepts ([`subset`]); the answer is the text.
//! - `json` and `md_json`: plain text (Anthropic has no JSON mode), the schema in the system
//!   prompt as sift puts it there.
//!
//! Whatever the mode, the answer is validated against the whole schema after generation.

use serde_json::{Map, Value, json};
use sift_core::{
    ChatRequest, ChatResponse, Message, OutputFormat, ProviderError, Role, ToolCall, Usage,
};

/// The JSON body of a `POST /v1/messages`; `max_tokens` (Anthropic requires one) is the
/// request's or `default_max_tokens`.
pub(crate) fn request_body(request: &ChatRequest, default_max_tokens: u32) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(request.model.clone()));
    body.insert(
        "max_tokens".into(),
        json!(request.max_tokens.unwrap_or(default_max_tokens)),
    );
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .filter_map(|m| m.content.as_deref())
        .collect();
    if !system.is_empty() {
        // One block, marked for the prompt cache: the system prompt (with the schema in
        // `json` modes) is the prefix every request of an extractor shares. Anthropic caches
        // from 1024 tokens on and ignores the mark below that.
        body.insert(
            "system".into(),
            json!([{"type": "text", "text": system.join("\n\n"), "cache_control": {"type": "ephemeral"}}]),
        );
    }
    body.insert("messages".into(), Value::Array(messages(&request.messages)));
    match &request.output {
        OutputFormat::Tool {
            name,
            description,
            parameters,
            ..
        } => {
            body.insert(
                "tools".into(),
                // Marked for the cache: the tool (with its schema) is the first part of the
                // prefix every request of an extractor shares.
                json!([{"name": name, "description": description, "input_schema": parameters,
                        "cache_control": {"type": "ephemeral"}}]),
            );
            body.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
        }
        OutputFormat::JsonSchema { schema, .. } => {
            body.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": subset(schema)}}),
            );
        }
        OutputFormat::JsonObject | OutputFormat::Text | _ => {}
    }
    if let Some(t) = request.temperature {
        // Anthropic's range is 0 to 1.
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    Value::Object(body)
}

/// The conversation as Anthropic's turns: system messages left out (they are `system`),
/// tool calls as `tool_use` blocks, tool answers as `tool_result` blocks of a user turn
/// (`is_error` for a re-ask's errors), consecutive turns of one role merged (Anthropic wants
/// them alternating).
fn messages(list: &[Message]) -> Vec<Value> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in list {
        let (role, blocks) = match m.role {
            Role::System => continue,
            Role::User => ("user", text_block(m.content.as_deref())),
            Role::Assistant => {
                let mut blocks = text_block(m.content.as_deref());
                blocks.extend(m.tool_calls.iter().map(|c| {
                    // A call's arguments as an object; a malformed one as the text it was.
                    let input = serde_json::from_str::<Value>(&c.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({"arguments": c.arguments}));
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input})
                }));
                ("assistant", blocks)
            }
            Role::Tool => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content.clone().unwrap_or_default(),
                    "is_error": m.is_error,
                })],
            ),
        };
        match out.last_mut() {
            Some((last, previous)) if *last == role => previous.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    // A second cache breakpoint at the end of the turn before the last: what this request
    // shares with the next ones (the extractor's few-shot examples on a first ask; the
    // conversation so far on a re-ask) is read from the cache by later requests. Anthropic
    // allows four breakpoints; sift uses two (this and the system prompt).
    let turns = out.len();
    if turns >= 2
        && let Some(block) = out[turns - 2].1.last_mut()
        && let Some(map) = block.as_object_mut()
    {
        map.insert("cache_control".into(), json!({"type": "ephemeral"}));
    }
    out.into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

fn text_block(text: Option<&str>) -> Vec<Value> {
    match text {
        Some(t) if !t.is_empty() => vec![json!({"type": "text", "text": t})],
        _ => Vec::new(),
    }
}

/// Keywords Anthropic's structured outputs do not take: numeric and string bounds, array
/// sizes beyond `minItems` 0 or 1. Left out of what is sent; the answer is still validated
/// against them.
const UNSUPPORTED: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
];

/// `schema` cut to the subset Anthropic's structured outputs accept: the keywords of
/// [`UNSUPPORTED`] left out, `minItems` above 1 lowered to 1, every object that lists its
/// properties closed (`additionalProperties: false`, which Anthropic requires).
pub fn subset(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                if UNSUPPORTED.contains(&k.as_str()) {
                    continue;
                }
                let v = match k.as_str() {
                    "minItems" => json!(v.as_u64().unwrap_or(0).min(1)),
                    // Maps of subschemas: each value is a schema.
                    "properties" | "$defs" | "definitions" | "patternProperties" => match v {
                        Value::Object(m) => Value::Object(
                            m.iter()
                                .map(|(name, s)| (name.clone(), subset(s)))
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    // Lists of subschemas, and single subschemas.
                    "anyOf" | "allOf" | "oneOf" | "prefixItems" => match v {
                        Value::Array(a) => Value::Array(a.iter().map(subset).collect()),
                        other => other.clone(),
                    },
                    "items"
                    | "additionalProperties"
                    | "not"
                    | "if"
                    | "then"
                    | "else"
                    | "contains" => subset(v),
                    _ => v.clone(),
                };
                out.insert(k.clone(), v);
            }
            if out.contains_key("properties") {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Reads a whole Messages answer.
pub(crate) fn parse_message(bytes: &[u8]) -> Result<ChatResponse, ProviderError> {
    let raw: Value =
        serde_json::from_slice(bytes).map_err(|e| sift_http::not_json(bytes, &e.to_string()))?;
    if raw.get("type").and_then(Value::as_str) == Some("error") {
        return Err(ProviderError::InvalidResponse(sift_http::error_message(
            bytes,
        )));
    }
    let Some(blocks) = raw.get("content").and_then(Value::as_array) else {
        return Err(ProviderError::InvalidResponse(
            "the answer is not a message: it has no `content` list".into(),
        ));
    };
    let mut content: Option<String> = None;
    let mut tool_calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                content.get_or_insert_with(String::new).push_str(text);
            }
            Some("tool_use") => tool_calls.push(ToolCall {
                id: str_at(block, "id").unwrap_or_else(|| format!("toolu_{i}")),
                name: str_at(block, "name").unwrap_or_default(),
                arguments: block
                    .get("input")
                    .map_or_else(|| "{}".into(), Value::to_string),
            }),
            // Thinking and other blocks carry no answer.
            _ => {}
        }
    }
    Ok(ChatResponse {
        id: str_at(&raw, "id"),
        model: str_at(&raw, "model"),
        content,
        tool_calls,
        finish_reason: raw
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(finish_reason),
        usage: raw.get("usage").map(usage).unwrap_or_default(),
        raw,
    })
}

/// Anthropic's `stop_reason` in the words sift's other providers use: `end_turn` and
/// `stop_sequence` are `stop`, `max_tokens` is `length` (truncation), `tool_use` is
/// `tool_calls`, `refusal` is `content_filter` (the model declined).
pub(crate) fn finish_reason(reason: &str) -> String {
    match reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_owned()
}

/// A message's `usage`. Anthropic counts the prompt in three parts (read from the cache,
/// written to it, neither); sift's input tokens are all of them, its cached ones the first.
pub(crate) fn usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    Usage {
        input_tokens: n("input_tokens")
            .saturating_add(cached)
            .saturating_add(n("cache_creation_input_tokens")),
        output_tokens: n("output_tokens"),
        cached_input_tokens: cached,
    }
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_drops_bounds_and_closes_objects_at_every_depth() {
        let schema = json!({
            "type": "object",
            "properties": {
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "tags": {"type": "array", "minItems": 3, "maxItems": 5, "items": {"type": "string", "maxLength": 10}},
                "owner": {"$ref": "#/$defs/Person"}
            },
            "$defs": {"Person": {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}}}}
        });
        let cut = subset(&schema);
        assert_eq!(
            cut,
            json!({
                "type": "object",
                "properties": {
                    "age": {"type": "integer"},
                    "tags": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    "owner": {"$ref": "#/$defs/Person"}
                },
                "$defs": {"Person": {"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": false}},
                "additionalProperties": false
            })
        );
    }

    #[test]
    fn usage_counts_every_part_of_the_prompt() {
        let u = usage(
            &json!({"input_tokens": 10, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 5, "output_tokens": 7}),
        );
        assert_eq!(u.input_tokens, 1015);
        assert_eq!(u.cached_input_tokens, 1000);
        assert_eq!(u.output_tokens, 7);
    }

    #[test]
    fn turns_alternate_and_tool_results_say_when_they_report_errors() {
        let call = ToolCall {
            id: "toolu_1".into(),
            name: "Person".into(),
            arguments: r#"{"age": 250}"#.into(),
        };
        let list = vec![
            Message::system("Be exact."),
            Message::user("Ada is 36"),
            Message {
                tool_calls: vec![call],
                content: None,
                ..Message::assistant("")
            },
            Message::tool_error("toolu_1", "age: 250 is greater than 150"),
            Message::user("Try again."),
        ];
        let turns = messages(&list);
        assert_eq!(turns.len(), 3, "{turns:#?}");
        assert_eq!(turns[1]["content"][0]["input"], json!({"age": 250}));
        // The prefix later requests share ends with a cache breakpoint; nothing else has one.
        assert_eq!(turns[1]["content"][0]["cache_control"]["type"], "ephemeral");
        assert!(turns[0]["content"][0].get("cache_control").is_none());
        assert!(turns[2]["content"][1].get("cache_control").is_none());
        let result = &turns[2]["content"][0];
        assert_eq!(result["type"], "tool_result");
        assert_eq!(result["is_error"], true);
        assert_eq!(turns[2]["content"][1]["text"], "Try again.");
    }
}
