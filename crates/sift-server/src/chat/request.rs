//! A Chat Completions request read into what sift runs: the conversation, the answer's shape
//! (free text, any JSON object, a JSON Schema, or a forced function call) and the sampling
//! settings. Every problem is refused with OpenAI's error shape, naming the parameter; a
//! parameter sift cannot honour is refused, one that changes nothing sift promises is
//! listed as ignored (the `sift-ignored-params` header), never dropped unsaid.

use std::borrow::Cow;

use serde_json::{Map, Value};
use sift_core::{Message, Role, ToolCall};

use super::wire::ChatError;

/// What the answer must be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// Free text: the conversation passed to the model as plain chat.
    Text,
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// A value of a JSON Schema, given back as the message's content.
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Value,
    },
    /// A call of one function, given back as the message's one tool call.
    Tool {
        name: String,
        description: Option<String>,
        parameters: Value,
    },
}

impl Answer {
    /// The schema the answer is validated against, named, with the description the client
    /// gave added when the schema has none (the only case it is copied); `None` for free
    /// text. Also the parameter that carried it.
    pub(crate) fn schema(&self) -> Option<(&str, Cow<'_, Value>, &'static str)> {
        static ANY_OBJECT: std::sync::LazyLock<Value> =
            std::sync::LazyLock::new(|| serde_json::json!({"type": "object"}));
        let (name, description, schema, param) = match self {
            Answer::Text => return None,
            Answer::JsonObject => {
                return Some((
                    "json_object",
                    Cow::Borrowed(&*ANY_OBJECT),
                    "response_format",
                ));
            }
            Answer::JsonSchema {
                name,
                description,
                schema,
            } => (
                name,
                description,
                schema,
                "response_format.json_schema.schema",
            ),
            Answer::Tool {
                name,
                description,
                parameters,
            } => (name, description, parameters, "tools.function.parameters"),
        };
        let schema = match (description, schema.as_object()) {
            (Some(d), Some(obj)) if !obj.contains_key("description") => {
                let mut with = obj.clone();
                with.insert("description".into(), Value::String(d.clone()));
                Cow::Owned(Value::Object(with))
            }
            _ => Cow::Borrowed(schema),
        };
        Some((name, schema, param))
    }
}

/// A Chat Completions request, read.
#[derive(Debug, Clone)]
pub(crate) struct ChatCall {
    /// The model asked for (`None`: the default).
    pub(crate) model: Option<String>,
    pub(crate) messages: Vec<Message>,
    pub(crate) answer: Answer,
    pub(crate) temperature: Option<f32>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) seed: Option<u64>,
    pub(crate) stream: bool,
    /// `stream_options.include_usage`: a last chunk carries the usage.
    pub(crate) include_usage: bool,
    /// Parameters given that change nothing sift does, by name.
    pub(crate) ignored: Vec<String>,
}

/// Parameters read and honoured (or refused when set otherwise) by [`read`].
const READ: &[&str] = &[
    "model",
    "messages",
    "response_format",
    "tools",
    "tool_choice",
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "n",
    "stream",
    "stream_options",
    "stop",
    "logprobs",
    "top_logprobs",
    "audio",
    "modalities",
    "functions",
    "function_call",
];

/// The most messages a request may hold (the body limit bounds their size).
pub(crate) const MAX_MESSAGES: usize = 4096;

/// The most tools a request may declare.
pub(crate) const MAX_TOOLS: usize = 128;

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ChatError {
    ChatError::Invalid {
        message: message.into(),
        param: Some(param.into()),
        code: None,
    }
}

/// Reads `body` (its schemas are moved out, not copied), or says what in it is wrong.
pub(crate) fn read(mut body: Value) -> Result<ChatCall, ChatError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(ChatError::Invalid {
            message: "the request body must be a JSON object".into(),
            param: None,
            code: None,
        });
    };
    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(invalid("model", "`model` must be a string")),
    };
    let messages = messages(obj.get("messages"))?;
    refuse_unsupported(obj)?;
    let answer = answer(obj)?;
    let obj = &*obj;
    let temperature = match number(obj, "temperature")? {
        None => None,
        Some(t) if (0.0..=2.0).contains(&t) => Some(t as f32),
        Some(t) => {
            return Err(invalid(
                "temperature",
                format!("`temperature` must be between 0 and 2, not {t}"),
            ));
        }
    };
    let max_tokens = match (
        count(obj, "max_completion_tokens")?,
        count(obj, "max_tokens")?,
    ) {
        (Some(n), _) | (None, Some(n)) => Some(n),
        (None, None) => None,
    };
    let seed = match obj.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => match (v.as_i64(), v.as_u64()) {
            // OpenAI's seed is a signed 64-bit integer; its bits are the seed.
            (Some(i), _) => Some(i as u64),
            (None, Some(u)) => Some(u),
            _ => return Err(invalid("seed", "`seed` must be an integer")),
        },
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream", "`stream` must be a boolean")),
    };
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(invalid(
                    "stream_options.include_usage",
                    "`stream_options.include_usage` must be a boolean",
                ));
            }
        },
        Some(_) => {
            return Err(invalid(
                "stream_options",
                "`stream_options` must be an object",
            ));
        }
    };
    let mut ignored: Vec<String> = obj
        .iter()
        .filter(|(k, v)| !v.is_null() && !READ.contains(&k.as_str()))
        .map(|(k, _)| k.clone())
        .collect();
    // Tools declared but not called (a `response_format` answer, or `tool_choice: "none"`).
    if !matches!(answer, Answer::Tool { .. })
        && obj
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
    {
        ignored.push("tools".into());
    }
    Ok(ChatCall {
        model,
        messages,
        answer,
        temperature,
        max_tokens,
        seed,
        stream,
        include_usage,
        ignored,
    })
}

/// Parameters whose asked behaviour sift does not give: refused, not ignored.
fn refuse_unsupported(obj: &Map<String, Value>) -> Result<(), ChatError> {
    match obj.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => {
            return Err(invalid(
                "n",
                "sift answers one choice per request: `n` must be 1",
            ));
        }
    }
    let set = |k: &str| match obj.get(k) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    for (param, why) in [
        (
            "stop",
            "sift does not stop answers at stop sequences (a structured answer ends where its value does)",
        ),
        ("logprobs", "sift does not return log probabilities"),
        ("top_logprobs", "sift does not return log probabilities"),
        ("audio", "sift answers in text only"),
        (
            "functions",
            "the legacy `functions` parameter is not supported: send `tools`",
        ),
        (
            "function_call",
            "the legacy `function_call` parameter is not supported: send `tool_choice`",
        ),
    ] {
        if set(param) {
            return Err(invalid(param, why));
        }
    }
    if let Some(Value::Array(modalities)) = obj.get("modalities")
        && modalities.iter().any(|m| m.as_str() != Some("text"))
    {
        return Err(invalid("modalities", "sift answers in text only"));
    }
    Ok(())
}

/// A number parameter, if given.
fn number(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, ChatError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(key, format!("`{key}` must be a number"))),
    }
}

/// A positive integer parameter that fits 32 bits, if given.
fn count(obj: &Map<String, Value>, key: &str) -> Result<Option<u32>, ChatError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(invalid(
                key,
                format!("`{key}` must be an integer from 1 to {}", u32::MAX),
            )),
        },
    }
}

/// The conversation.
fn messages(given: Option<&Value>) -> Result<Vec<Message>, ChatError> {
    let list = match given {
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(invalid(
                "messages",
                "`messages` must hold at least one message",
            ));
        }
        Some(Value::Array(list)) if list.len() > MAX_MESSAGES => {
            return Err(invalid(
                "messages",
                format!(
                    "`messages` holds {} messages; at most {MAX_MESSAGES} are taken",
                    list.len()
                ),
            ));
        }
        Some(Value::Array(list)) => list,
        None | Some(Value::Null) => {
            return Err(invalid("messages", "`messages` is required"));
        }
        Some(_) => return Err(invalid("messages", "`messages` must be a list")),
    };
    list.iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect()
}

fn message(i: usize, m: &Value) -> Result<Message, ChatError> {
    let at = |k: &str| format!("messages[{i}].{k}");
    let Some(obj) = m.as_object() else {
        return Err(invalid(
            format!("messages[{i}]"),
            "each message must be an object",
        ));
    };
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some(other) => {
            return Err(invalid(
                at("role"),
                format!(
                    "unknown role `{other}`: expected system, developer, user, assistant or tool"
                ),
            ));
        }
        None => return Err(invalid(at("role"), "each message needs a string `role`")),
    };
    let content = content(obj.get("content"), &at("content"))?;
    let mut message = Message {
        role,
        content,
        tool_calls: Vec::new(),
        tool_call_id: None,
        is_error: false,
    };
    match role {
        Role::Assistant => {
            message.tool_calls = tool_calls(obj.get("tool_calls"), &at("tool_calls"))?
        }
        Role::Tool => match obj.get("tool_call_id") {
            Some(Value::String(id)) => message.tool_call_id = Some(id.clone()),
            _ => {
                return Err(invalid(
                    at("tool_call_id"),
                    "a tool message needs the string `tool_call_id` of the call it answers",
                ));
            }
        },
        Role::System | Role::User => {}
    }
    if message.content.is_none() && message.tool_calls.is_empty() {
        return Err(invalid(at("content"), "the message has no content"));
    }
    Ok(message)
}

/// A message's text: a string, or text parts joined (a refusal part counts as text).
fn content(given: Option<&Value>, param: &str) -> Result<Option<String>, ChatError> {
    match given {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str);
                let piece = match kind {
                    Some("text") => part.get("text"),
                    Some("refusal") => part.get("refusal"),
                    _ => None,
                };
                match (kind, piece) {
                    (_, Some(Value::String(s))) => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(s);
                    }
                    (Some("text" | "refusal"), _) => {
                        return Err(invalid(
                            format!("{param}[{j}]"),
                            "a text part needs its text as a string",
                        ));
                    }
                    (other, _) => {
                        return Err(invalid(
                            format!("{param}[{j}].type"),
                            format!(
                                "sift takes text content parts only, not `{}`",
                                other.unwrap_or("(no type)")
                            ),
                        ));
                    }
                }
            }
            Ok(Some(text))
        }
        Some(_) => Err(invalid(
            param,
            "content must be a string or a list of parts",
        )),
    }
}

/// An assistant turn's earlier tool calls.
fn tool_calls(given: Option<&Value>, param: &str) -> Result<Vec<ToolCall>, ChatError> {
    let list = match given {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) if list.len() <= MAX_TOOLS => list,
        Some(_) => {
            return Err(invalid(
                param,
                format!("`tool_calls` must be a list of at most {MAX_TOOLS} calls"),
            ));
        }
    };
    list.iter()
        .enumerate()
        .map(|(j, call)| {
            let function = call.get("function");
            let text = |k: &str| function.and_then(|f| f.get(k)).and_then(Value::as_str);
            match (text("name"), text("arguments")) {
                (Some(name), Some(arguments)) => Ok(ToolCall {
                    id: call
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    name: name.to_owned(),
                    arguments: arguments.to_owned(),
                }),
                _ => Err(invalid(
                    format!("{param}[{j}].function"),
                    "a tool call needs `function.name` and `function.arguments` as strings",
                )),
            }
        })
        .collect()
}

/// The answer's shape: a forced tool, a response format, or free text.
fn answer(obj: &mut Map<String, Value>) -> Result<Answer, ChatError> {
    let format = response_format(obj.get_mut("response_format"))?;
    let tool = forced_tool(obj)?;
    match (tool, format) {
        (Some(_), Some(Answer::JsonSchema { .. } | Answer::JsonObject)) => Err(invalid(
            "tool_choice",
            "a request forces either a tool call or a response format, not both: sift gives \
             one structured answer",
        )),
        (Some(tool), _) => Ok(tool),
        (None, Some(format)) => Ok(format),
        (None, None) => Ok(Answer::Text),
    }
}

fn response_format(given: Option<&mut Value>) -> Result<Option<Answer>, ChatError> {
    let Some(format) = given.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Answer::JsonObject)),
        Some("json_schema") => {
            let Some(spec) = format.get_mut("json_schema").and_then(Value::as_object_mut) else {
                return Err(invalid(
                    "response_format.json_schema",
                    "`response_format.json_schema` must be an object with `name` and `schema`",
                ));
            };
            let name = checked_name(spec.get("name"), "response_format.json_schema.name")?;
            strict_flag(spec.get("strict"), "response_format.json_schema.strict")?;
            let schema = match spec.remove("schema") {
                Some(s @ (Value::Object(_) | Value::Bool(_))) => s,
                // OpenAI takes a missing schema as "any JSON object".
                None | Some(Value::Null) => serde_json::json!({"type": "object"}),
                Some(_) => {
                    return Err(invalid(
                        "response_format.json_schema.schema",
                        "the schema must be a JSON Schema object",
                    ));
                }
            };
            Ok(Some(Answer::JsonSchema {
                name,
                description: description(spec.get("description")),
                schema,
            }))
        }
        other => Err(invalid(
            "response_format.type",
            format!(
                "`response_format.type` must be text, json_object or json_schema, not {}",
                other.map_or_else(|| "missing".to_owned(), |t| format!("`{t}`"))
            ),
        )),
    }
}

/// `strict`, when given, must be a boolean (sift validates every answer whichever it is).
fn strict_flag(given: Option<&Value>, param: &str) -> Result<(), ChatError> {
    match given {
        None | Some(Value::Null | Value::Bool(_)) => Ok(()),
        Some(_) => Err(invalid(param, "`strict` must be a boolean")),
    }
}

fn description(given: Option<&Value>) -> Option<String> {
    given.and_then(Value::as_str).map(str::to_owned)
}

/// A function or schema name as OpenAI takes them: 1 to 64 of `a-z A-Z 0-9 _ -`.
fn checked_name(given: Option<&Value>, param: &str) -> Result<String, ChatError> {
    match given.and_then(Value::as_str) {
        Some(n)
            if (1..=64).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(n.to_owned())
        }
        Some(n) => Err(invalid(
            param,
            format!(
                "`{}` is not a valid name: use 1 to 64 letters, digits, `_` or `-`",
                n.chars().take(80).collect::<String>()
            ),
        )),
        None => Err(invalid(param, "a name is required")),
    }
}

/// The tool the request forces, if it forces one: `tool_choice` naming a function, or
/// `"required"` with one tool declared. Tools the model may choose among are refused: sift
/// answers with one validated call.
fn forced_tool(obj: &mut Map<String, Value>) -> Result<Option<Answer>, ChatError> {
    let mut none = Vec::new();
    let tools = match obj.get_mut("tools") {
        None | Some(Value::Null) => &mut none,
        Some(Value::Array(t)) if t.len() <= MAX_TOOLS => t,
        Some(_) => {
            return Err(invalid(
                "tools",
                format!("`tools` must be a list of at most {MAX_TOOLS} functions"),
            ));
        }
    };
    let mut declared = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter_mut().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(invalid(
                format!("tools[{i}].type"),
                "sift takes tools of type `function` only",
            ));
        }
        let Some(function) = tool.get_mut("function").and_then(Value::as_object_mut) else {
            return Err(invalid(
                format!("tools[{i}].function"),
                "a tool needs a `function` object",
            ));
        };
        let name = checked_name(function.get("name"), &format!("tools[{i}].function.name"))?;
        strict_flag(
            function.get("strict"),
            &format!("tools[{i}].function.strict"),
        )?;
        let parameters = match function.remove("parameters") {
            Some(p @ Value::Object(_)) => p,
            // OpenAI's default: a function without parameters takes an empty object.
            None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
            Some(_) => {
                return Err(invalid(
                    format!("tools[{i}].function.parameters"),
                    "`parameters` must be a JSON Schema object",
                ));
            }
        };
        declared.push(Answer::Tool {
            name,
            description: description(function.get("description")),
            parameters,
        });
    }
    let named = |wanted: &str| {
        declared
            .iter()
            .find(|t| matches!(t, Answer::Tool { name, .. } if name == wanted))
            .cloned()
            .ok_or_else(|| {
                invalid(
                    "tool_choice",
                    format!("`tool_choice` names `{wanted}`, which `tools` does not declare"),
                )
            })
    };
    let choose = "sift answers a tool request with one forced call: set `tool_choice` to \
                  {\"type\": \"function\", \"function\": {\"name\": ...}}, or to \"required\" \
                  with one tool";
    match obj.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => Ok(None),
        None | Some(Value::Null) if declared.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "required" && declared.len() == 1 => Ok(declared.pop()),
        Some(Value::Object(choice)) => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match (choice.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) => named(name).map(Some),
                _ => Err(invalid("tool_choice", choose)),
            }
        }
        _ if declared.is_empty() => Err(invalid(
            "tool_choice",
            "`tool_choice` asks for a tool, but `tools` declares none",
        )),
        _ => Err(invalid("tool_choice", choose)),
    }
}
