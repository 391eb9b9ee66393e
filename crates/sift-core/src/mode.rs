//! How the model is asked for structured output, how its answer is read back, and how errors
//! are fed back for a re-ask. Each [`Mode`] is one of instructor's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::example::Example;
use crate::message::{ChatResponse, Message, OutputFormat, Role, ToolCall};
use crate::schema::ResponseSchema;
use crate::validate::FieldError;

/// How structured output is requested.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// The schema as a function's parameters, the call forced (`tool_choice`). The default.
    #[default]
    Tools,
    /// Native structured output: `response_format: {"type": "json_schema", ...}`, strict where
    /// the schema allows.
    JsonSchema,
    /// `response_format: {"type": "json_object"}`, the schema in the system prompt.
    Json,
    /// Plain text with the JSON in a fenced ```` ```json ```` block; the schema in the system prompt.
    MdJson,
}

impl Mode {
    /// The mode's name as used in configuration and telemetry (`tools`, `json_schema`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Tools => "tools",
            Mode::JsonSchema => "json_schema",
            Mode::Json => "json",
            Mode::MdJson => "md_json",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "tools" | "tool" => Ok(Mode::Tools),
            "json_schema" => Ok(Mode::JsonSchema),
            "json" => Ok(Mode::Json),
            "md_json" => Ok(Mode::MdJson),
            other => Err(format!(
                "unknown mode `{other}`: expected tools, json_schema, json or md_json"
            )),
        }
    }
}

/// Why an answer could not be read as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// No tool call, no content, or no JSON found.
    Missing(String),
    /// Text found, but not valid JSON.
    InvalidJson(String),
}

impl ReadError {
    /// What is wrong, as reported to the model and the caller.
    pub(crate) fn into_message(self) -> String {
        match self {
            ReadError::Missing(m) | ReadError::InvalidJson(m) => m,
        }
    }
}

impl Mode {
    /// The output format to request and the system prompt text to add (if any); for a
    /// provider that constrains decoding, with the schema as given.
    pub(crate) fn output(
        self,
        schema: &ResponseSchema,
        constrained: bool,
    ) -> (OutputFormat, Option<String>) {
        let shown = schema.shown(constrained);
        match self {
            Mode::Tools => (
                OutputFormat::Tool {
                    name: schema.name.clone(),
                    description: schema.description.clone(),
                    parameters: shown.clone(),
                    strict: schema.strict,
                },
                None,
            ),
            Mode::JsonSchema => (
                OutputFormat::JsonSchema {
                    name: schema.name.clone(),
                    schema: shown.clone(),
                    strict: schema.strict,
                },
                None,
            ),
            Mode::Json => (
                OutputFormat::JsonObject,
                Some(format!(
                    "As a genius expert, your task is to understand the content and provide the parsed objects in json that match the following json_schema:\n\n{}\n\nMake sure to return an instance of the JSON, not the schema itself.",
                    shown
                )),
            ),
            Mode::MdJson => (
                OutputFormat::Text,
                Some(format!(
                    "As a genius expert, your task is to understand the content and provide the parsed objects in json that match the following json_schema:\n\n{}\n\nMake sure to return an instance of the JSON, not the schema itself. Reply with the JSON in a ```json fenced code block.",
                    shown
                )),
            ),
        }
    }

    /// The JSON text in the model's answer.
    pub(crate) fn read<'a>(
        self,
        schema: &ResponseSchema,
        response: &'a ChatResponse,
    ) -> Result<&'a str, ReadError> {
        let missing = || {
            ReadError::Missing(self.missing(
                &schema.name,
                response.content.as_deref(),
                response.refusal(),
            ))
        };
        match self {
            Mode::Tools => response
                .tool_calls
                .iter()
                .find(|c| c.name == schema.name)
                .or_else(|| response.tool_calls.first())
                .map(|c| c.arguments.as_str())
                .ok_or_else(missing),
            Mode::JsonSchema | Mode::Json => match response.content.as_deref() {
                Some(text) if !text.trim().is_empty() => Ok(text),
                _ => Err(missing()),
            },
            Mode::MdJson => match response.content.as_deref() {
                Some(text) => extract_fenced_json(text).ok_or_else(missing),
                None => Err(missing()),
            },
        }
    }

    /// Why an answer holds nothing to read, as precisely as it says: the model refused (and
    /// why), answered in prose where a call was asked for (and what it said), or said
    /// nothing. `content` and `refusal` are the answer's, whole or streamed.
    pub(crate) fn missing(
        self,
        name: &str,
        content: Option<&str>,
        refusal: Option<&str>,
    ) -> String {
        let quote = |text: &str| {
            let text = text.trim();
            let cut: String = text.chars().take(200).collect();
            if cut.len() < text.len() {
                format!("{cut}…")
            } else {
                cut
            }
        };
        if let Some(r) = refusal.filter(|r| !r.trim().is_empty()) {
            return format!("the model refused to answer: {}", quote(r));
        }
        let content = content.filter(|c| !c.trim().is_empty());
        match (self, content) {
            (Mode::Tools, Some(text)) => format!(
                "the model did not call the function `{name}`; it answered in text instead: {}",
                quote(text)
            ),
            (Mode::Tools, None) => {
                format!("the model did not call the function `{name}` and said nothing")
            }
            (Mode::MdJson, Some(text)) => {
                format!("no JSON found in the answer: {}", quote(text))
            }
            (_, None) => "the answer is empty: no content and no tool call".into(),
            (_, Some(text)) => format!("no JSON found in the answer: {}", quote(text)),
        }
    }

    /// The turns that show `example` (the `number`th, from 1) to the model: its prompt as a
    /// user turn, then its output answered the way this mode asks answers to be given (and
    /// the way re-asks echo them): a call of the function and the call's result in `tools`
    /// mode, the JSON text in `json_schema` and `json`, a fenced ```` ```json ```` block in
    /// `md_json`. The output is shown as the model is asked to write it (wrapped, strict
    /// `null`s filled in; see [`ResponseSchema::answer_for`]).
    pub(crate) fn example_turns(
        self,
        schema: &ResponseSchema,
        constrained: bool,
        number: usize,
        example: &Example,
    ) -> Vec<Message> {
        let answer = schema.answer_for(&example.output, constrained).to_string();
        let mut turns = vec![Message::user(example.prompt.clone())];
        match self {
            Mode::Tools => {
                let id = format!("example_{number}");
                turns.push(Message {
                    role: Role::Assistant,
                    content: None,
                    tool_calls: vec![ToolCall {
                        id: id.clone(),
                        name: schema.name.clone(),
                        arguments: answer,
                    }],
                    tool_call_id: None,
                    is_error: false,
                });
                // A call must be answered before the next user turn.
                turns.push(Message::tool(id, "Correct."));
            }
            Mode::JsonSchema | Mode::Json => turns.push(Message::assistant(answer)),
            Mode::MdJson => turns.push(Message::assistant(format!("```json\n{answer}\n```"))),
        }
        turns
    }

    /// The messages that feed `errors` back to the model after its answer `response`.
    pub(crate) fn reask(
        self,
        schema: &ResponseSchema,
        response: &ChatResponse,
        errors: &[FieldError],
    ) -> Vec<Message> {
        let listed = serde_json::to_string(errors).unwrap_or_else(|_| "[]".into());
        let mut messages = vec![response.to_message()];
        match (self, response.tool_calls.as_slice()) {
            (Mode::Tools, calls) if !calls.is_empty() => {
                let text = format!(
                    "Validation errors: {listed}\nCall `{}` again with the arguments corrected.",
                    schema.name
                );
                // Every call must be answered before the next user turn.
                messages.extend(
                    calls
                        .iter()
                        .map(|c| Message::tool_error(c.id.clone(), text.clone())),
                );
            }
            (Mode::Tools, _) => messages.push(Message::user(format!(
                "Errors: {listed}\nYou must call the function `{}` with arguments that match its schema.",
                schema.name
            ))),
            _ => messages.push(Message::user(format!(
                "Validation errors: {listed}\nCorrect your JSON answer and reply with the corrected JSON only."
            ))),
        }
        messages
    }
}

/// Finds the JSON in a plain-text answer: a ```` ```json ```` fence first, any fence next, then the
/// text from the first `{` or `[` to the last matching bracket.
fn extract_fenced_json(text: &str) -> Option<&str> {
    for marker in ["```json", "```JSON", "```"] {
        if let Some(start) = text.find(marker) {
            let body = &text[start + marker.len()..];
            let end = body.find("```").unwrap_or(body.len());
            let candidate = body[..end].trim();
            if !candidate.is_empty() {
                return Some(candidate);
            }
        }
    }
    let start = text.find(['{', '['])?;
    let close = if text[start..].starts_with('{') {
        '}'
    } else {
        ']'
    };
    let end = text.rfind(close)?;
    (end >= start).then(|| &text[start..=end])
}

/// Parses JSON text, describing where it broke.
pub(crate) fn parse_json(text: &str) -> Result<Value, ReadError> {
    serde_json::from_str(text).map_err(|e| {
        ReadError::InvalidJson(format!(
            "invalid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_json_is_found() {
        assert_eq!(
            extract_fenced_json("Sure!\n```json\n{\"a\": 1}\n```\nbye"),
            Some("{\"a\": 1}")
        );
        assert_eq!(extract_fenced_json("```\n[1]\n```"), Some("[1]"));
        assert_eq!(
            extract_fenced_json("here: {\"a\": {}} ok"),
            Some("{\"a\": {}}")
        );
        assert_eq!(extract_fenced_json("nothing here"), None);
    }

    #[test]
    fn modes_parse_from_strings() {
        assert_eq!("json-schema".parse::<Mode>(), Ok(Mode::JsonSchema));
        assert_eq!("MD_JSON".parse::<Mode>(), Ok(Mode::MdJson));
        assert!("xml".parse::<Mode>().unwrap_err().contains("xml"));
    }
}
