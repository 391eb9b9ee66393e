//! Gemini's `generateContent` wire format: provider-neutral types to JSON and back.
//!
//! sift's modes map onto it as follows:
//! - `tools`: the schema as a function declaration's `parametersJsonSchema`, the call
//!   forced with `toolConfig.functionCallingConfig` `{"mode": "ANY", "allowedFunctionNames":
//!   [name]}`; the answer is a `functionCall` part.
//! - `json_schema`: `generationConfig.responseMimeType: application/json` with the schema as
//!   `responseJsonSchema`; the answer is the text.
//! - `json`: `responseMimeType: application/json` alone (Gemini's JSON mode), the schema in
//!   the system prompt as sift puts it there.
//! - `md_json`: plain text, the schema in the system prompt.
//!
//! Models that take only the OpenAPI subset of schemas (Gemini 1.x and 2.0) get the schema
//! as `parameters` / `responseSchema` instead, cut by [`openapi`](crate::openapi). Whatever
//! the mode, the answer is validated against the whole schema after generation.

use serde_json::{Map, Value, json};
use sift_core::{
    ChatRequest, ChatResponse, Message, OutputFormat, ProviderError, Role, ToolCall, Usage,
};

use crate::SchemaDialect;

/// The `thoughtSignature` sent with a function call sift echoes back in a re-ask. Gemini 3
/// models refuse a history whose calls carry no signature; sift's messages keep none (they
/// are provider-neutral), and Google documents this value for histories built elsewhere.
pub(crate) const ECHOED_SIGNATURE: &str = "skip_thought_signature_validator";

/// The prefix of call ids sift makes up for calls that came without one (Gemini's `id` is
/// optional): such ids are never sent back.
pub(crate) const MADE_UP_ID: &str = "sift-call-";

/// The JSON body of a `generateContent` call.
pub(crate) fn request_body(
    request: &ChatRequest,
    max_tokens: Option<u32>,
    dialect: SchemaDialect,
) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .filter_map(|m| m.content.as_deref())
        .collect();
    if !system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system.join("\n\n")}]}),
        );
    }
    body.insert("contents".into(), Value::Array(contents(&request.messages)));
    let mut config = Map::new();
    let schema = |s: &Value| -> Result<Value, ProviderError> {
        match dialect {
            SchemaDialect::JsonSchema => Ok(s.clone()),
            SchemaDialect::OpenApi => {
                crate::openapi::convert(s).map_err(|e| ProviderError::Schema(Box::new(e)))
            }
        }
    };
    match &request.output {
        OutputFormat::Tool {
            name,
            description,
            parameters,
            ..
        } => {
            let field = match dialect {
                SchemaDialect::JsonSchema => "parametersJsonSchema",
                SchemaDialect::OpenApi => "parameters",
            };
            body.insert(
                "tools".into(),
                json!([{"functionDeclarations": [{"name": name, "description": description, field: schema(parameters)?}]}]),
            );
            body.insert(
                "toolConfig".into(),
                json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}),
            );
        }
        OutputFormat::JsonSchema { schema: s, .. } => {
            let field = match dialect {
                SchemaDialect::JsonSchema => "responseJsonSchema",
                SchemaDialect::OpenApi => "responseSchema",
            };
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert(field.into(), schema(s)?);
        }
        OutputFormat::JsonObject => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        OutputFormat::Text | _ => {}
    }
    if let Some(t) = request.temperature {
        // Gemini's range is 0 to 2.
        config.insert("temperature".into(), json!(t.clamp(0.0, 2.0)));
    }
    if let Some(n) = request.max_tokens.or(max_tokens) {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(seed) = request.seed {
        config.insert("seed".into(), json!(seed));
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// The conversation as Gemini's `contents`: system messages left out (they are
/// `systemInstruction`), the assistant as `model`, its calls as `functionCall` parts, tool
/// answers as `functionResponse` parts of a user turn (`{"error": ...}` for a re-ask's
/// errors, `{"output": ...}` otherwise, as Google's documentation asks), consecutive turns of
/// one role merged.
fn contents(list: &[Message]) -> Vec<Value> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in list {
        let (role, parts) = match m.role {
            Role::System => continue,
            Role::User => ("user", text_part(m.content.as_deref())),
            Role::Assistant => {
                let mut parts = text_part(m.content.as_deref());
                parts.extend(m.tool_calls.iter().map(|c| {
                    let args = serde_json::from_str::<Value>(&c.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({"arguments": c.arguments}));
                    let mut call = json!({"name": c.name, "args": args});
                    if !c.id.starts_with(MADE_UP_ID) {
                        call["id"] = json!(c.id);
                    }
                    json!({"functionCall": call, "thoughtSignature": ECHOED_SIGNATURE})
                }));
                ("model", parts)
            }
            Role::Tool => {
                let id = m.tool_call_id.clone().unwrap_or_default();
                // Gemini answers a call by its function's name: the call's, found by id.
                let name = list
                    .iter()
                    .flat_map(|m| &m.tool_calls)
                    .find(|c| c.id == id)
                    .map_or_else(String::new, |c| c.name.clone());
                let text = m.content.clone().unwrap_or_default();
                let key = if m.is_error { "error" } else { "output" };
                let mut response = json!({"name": name, "response": {key: text}});
                if !id.is_empty() && !id.starts_with(MADE_UP_ID) {
                    response["id"] = json!(id);
                }
                ("user", vec![json!({"functionResponse": response})])
            }
        };
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last, previous)) if *last == role => previous.extend(parts),
            _ => out.push((role, parts)),
        }
    }
    out.into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect()
}

fn text_part(text: Option<&str>) -> Vec<Value> {
    match text {
        Some(t) if !t.is_empty() => vec![json!({"text": t})],
        _ => Vec::new(),
    }
}

/// The most function calls read from one answer: more is an upstream error, not memory.
pub(crate) const MAX_CALLS: usize = 128;

/// What one `GenerateContentResponse` (a whole answer, or one chunk of a stream) holds.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Piece {
    pub(crate) id: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) text: Option<String>,
    pub(crate) calls: Vec<ToolCall>,
    pub(crate) finish: Option<String>,
    pub(crate) usage: Option<Usage>,
}

/// Reads one `GenerateContentResponse`. A prompt Gemini blocked (no candidate,
/// `promptFeedback.blockReason`) reads as a filtered answer; an `error` object as the error.
/// `first_call` numbers made-up call ids after the calls already read.
pub(crate) fn read_piece(raw: &Value, first_call: usize) -> Result<Piece, ProviderError> {
    if raw.get("error").is_some() {
        return Err(ProviderError::Stream(sift_http::error_message(
            raw.to_string().as_bytes(),
        )));
    }
    let str_at = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut piece = Piece {
        id: str_at(raw, "responseId"),
        model: str_at(raw, "modelVersion"),
        usage: raw.get("usageMetadata").map(usage),
        ..Piece::default()
    };
    let candidate = raw.pointer("/candidates/0");
    let Some(candidate) = candidate else {
        if raw.pointer("/promptFeedback/blockReason").is_some() {
            piece.finish = Some("content_filter".into());
        }
        return Ok(piece);
    };
    let parts = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for part in parts {
        // Thought summaries are no part of the answer.
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            piece.text.get_or_insert_with(String::new).push_str(t);
        }
        if let Some(call) = part.get("functionCall") {
            if first_call + piece.calls.len() >= MAX_CALLS {
                return Err(ProviderError::InvalidResponse(format!(
                    "the upstream's answer has more than {MAX_CALLS} function calls; at most {MAX_CALLS} are read"
                )));
            }
            let n = first_call + piece.calls.len();
            piece.calls.push(ToolCall {
                id: str_at(call, "id").unwrap_or_else(|| format!("{MADE_UP_ID}{n}")),
                name: str_at(call, "name").unwrap_or_default(),
                arguments: call
                    .get("args")
                    .map_or_else(|| "{}".into(), Value::to_string),
            });
        }
    }
    piece.finish = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .map(|r| finish_reason(r, !piece.calls.is_empty()));
    Ok(piece)
}

/// Reads a whole `generateContent` answer.
pub(crate) fn parse_response(bytes: &[u8]) -> Result<ChatResponse, ProviderError> {
    let raw: Value =
        serde_json::from_slice(bytes).map_err(|e| sift_http::not_json(bytes, &e.to_string()))?;
    if !raw.is_object() || (raw.get("candidates").is_none() && raw.get("promptFeedback").is_none())
    {
        if raw.get("error").is_some() {
            return Err(ProviderError::InvalidResponse(sift_http::error_message(
                bytes,
            )));
        }
        return Err(ProviderError::InvalidResponse(
            "the answer is not a GenerateContentResponse: it has no `candidates`".into(),
        ));
    }
    let piece = read_piece(&raw, 0)?;
    Ok(ChatResponse {
        id: piece.id,
        model: piece.model,
        content: piece.text,
        tool_calls: piece.calls,
        finish_reason: piece.finish,
        usage: piece.usage.unwrap_or_default(),
        raw,
    })
}

/// Gemini's `finishReason` in the words sift's other providers use: `STOP` is `stop` (or
/// `tool_calls` when the answer calls a function), `MAX_TOKENS` is `length` (truncation),
/// the safety stops (`SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`,
/// `IMAGE_SAFETY`, `LANGUAGE`) are `content_filter` (the answer was withheld); others are
/// kept in lower case (`malformed_function_call`, `other`).
pub(crate) fn finish_reason(reason: &str, calls: bool) -> String {
    match reason {
        "STOP" if calls => "tool_calls".into(),
        "STOP" => "stop".into(),
        "MAX_TOKENS" => "length".into(),
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => "content_filter".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// `usageMetadata` as sift counts it: the prompt (tool-use prompts included) as input, the
/// answer and the model's thinking (billed as output) as output, the cached share.
pub(crate) fn usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount")),
        output_tokens: n("candidatesTokenCount").saturating_add(n("thoughtsTokenCount")),
        cached_input_tokens: n("cachedContentTokenCount"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_asks_answer_the_call_by_name_with_the_error() {
        let list = vec![
            Message::system("Be exact."),
            Message::user("Ada is 36"),
            Message {
                tool_calls: vec![ToolCall {
                    id: format!("{MADE_UP_ID}0"),
                    name: "Person".into(),
                    arguments: r#"{"age": 250}"#.into(),
                }],
                content: None,
                ..Message::assistant("")
            },
            Message::tool_error(format!("{MADE_UP_ID}0"), "age: 250 is greater than 150"),
            Message::user("Try again."),
        ];
        let turns = contents(&list);
        assert_eq!(turns.len(), 3, "{turns:#?}");
        assert_eq!(turns[1]["role"], "model");
        let call = &turns[1]["parts"][0];
        assert_eq!(call["functionCall"]["args"], json!({"age": 250}));
        assert!(call["functionCall"].get("id").is_none(), "{call}");
        assert_eq!(call["thoughtSignature"], ECHOED_SIGNATURE);
        let answer = &turns[2]["parts"][0]["functionResponse"];
        assert_eq!(answer["name"], "Person");
        assert_eq!(answer["response"]["error"], "age: 250 is greater than 150");
        assert_eq!(turns[2]["parts"][1]["text"], "Try again.");
    }

    #[test]
    fn finish_reasons_and_usage_are_read() {
        assert_eq!(finish_reason("STOP", true), "tool_calls");
        assert_eq!(finish_reason("MAX_TOKENS", false), "length");
        assert_eq!(finish_reason("RECITATION", false), "content_filter");
        assert_eq!(
            finish_reason("MALFORMED_FUNCTION_CALL", false),
            "malformed_function_call"
        );
        let u = usage(
            &json!({"promptTokenCount": 100, "cachedContentTokenCount": 60,
            "candidatesTokenCount": 7, "thoughtsTokenCount": 20, "totalTokenCount": 127}),
        );
        assert_eq!(
            u,
            Usage {
                input_tokens: 100,
                output_tokens: 27,
                cached_input_tokens: 60
            }
        );
    }

    #[test]
    fn a_blocked_prompt_reads_as_filtered() {
        let r = parse_response(
            br#"{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}"#,
        )
        .unwrap();
        assert_eq!(r.finish_reason.as_deref(), Some("content_filter"));
        assert_eq!(r.content, None);
    }
}
