//! What OpenAI-compatible servers do differently, and how sift gets a forced function call
//! out of each.
//!
//! OpenAI honours `tool_choice` naming the function. llama.cpp's `llama-server` takes
//! `tool_choice` only as a string: an object is ignored (it falls back to `auto`, logging
//! the wrong type on its own side) and the model answers in prose. Ollama ignores
//! `tool_choice`. So a call is forced in one of four forms, tried in this order:
//!
//! 1. [`Forcing::Named`]: `tool_choice: {"type": "function", "function": {"name": ...}}`;
//! 2. [`Forcing::Required`]: `tool_choice: "required"` (the one function offered);
//! 3. [`Forcing::JsonSchema`]: no tools, `response_format: json_schema` with the function's
//!    parameters as the schema;
//! 4. [`Forcing::JsonObject`]: no tools, `response_format: json_object`, the schema in the
//!    system prompt.
//!
//! A [`Dialect`] names where a server starts. A form the server does not honour is left for
//! the next one: a prose answer to a forced call, or a `400` whose message names the
//! parameter (`tool_choice`, `response_format`). Once learned, the form is kept for the
//! process and reported as a warning in the call's span. An answer to forms 3 and 4 comes as
//! text; it is handed back as the call of the function the request asked for, so callers see
//! what they asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{Map, Value, json};
use sift_core::{ChatDelta, ChatRequest, ChatResponse, ChatStream, OutputFormat, ToolCall};

/// The kind of OpenAI-compatible server, for what it needs asked differently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dialect {
    /// Decided by the base URL: OpenAI's own API is `openai`; anything else starts with the
    /// named form, learns the one it honours, and gets `temperature` 0.
    #[default]
    Auto,
    /// OpenAI's API: the named form, no default temperature (its reasoning models refuse
    /// any but their own).
    OpenAi,
    /// llama.cpp's `llama-server`: `tool_choice` only as a string, so `"required"` first.
    LlamaCpp,
    /// vLLM: the named form (guided decoding enforces it).
    Vllm,
    /// Ollama: no `tool_choice` at all, so the JSON Schema response format first.
    Ollama,
}

impl Dialect {
    /// The name used in configuration (`auto`, `openai`, `llamacpp`, `vllm`, `ollama`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Auto => "auto",
            Dialect::OpenAi => "openai",
            Dialect::LlamaCpp => "llamacpp",
            Dialect::Vllm => "vllm",
            Dialect::Ollama => "ollama",
        }
    }

    /// `Auto` decided for the server at `base_url`.
    pub(crate) fn resolve(self, base_url: &str) -> Dialect {
        match self {
            Dialect::Auto => {
                let host = base_url
                    .split("://")
                    .nth(1)
                    .unwrap_or(base_url)
                    .split(['/', ':'])
                    .next()
                    .unwrap_or_default();
                if host.eq_ignore_ascii_case("api.openai.com") {
                    Dialect::OpenAi
                } else {
                    Dialect::Auto
                }
            }
            other => other,
        }
    }

    /// The form a server of this dialect is asked with first.
    pub fn first_forcing(self) -> Forcing {
        match self {
            Dialect::Auto | Dialect::OpenAi | Dialect::Vllm => Forcing::Named,
            Dialect::LlamaCpp => Forcing::Required,
            Dialect::Ollama => Forcing::JsonSchema,
        }
    }

    /// The temperature sent when a request sets none: 0 (an extraction wants the likeliest
    /// answer, and the same one each time), except to OpenAI's API.
    pub(crate) fn default_temperature(self) -> Option<f32> {
        (self != Dialect::OpenAi).then_some(0.0)
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace(['-', '.', '_'], "").as_str() {
            "auto" => Ok(Dialect::Auto),
            "openai" => Ok(Dialect::OpenAi),
            "llamacpp" => Ok(Dialect::LlamaCpp),
            "vllm" => Ok(Dialect::Vllm),
            "ollama" => Ok(Dialect::Ollama),
            _ => Err(format!(
                "unknown dialect `{s}`: expected auto, openai, llamacpp, vllm or ollama"
            )),
        }
    }
}

/// A way of forcing a call of the function (see the module's documentation), in the order
/// tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Forcing {
    /// `tool_choice` naming the function.
    Named,
    /// `tool_choice: "required"`.
    Required,
    /// The function's parameters as a `json_schema` response format.
    JsonSchema,
    /// `json_object`, the schema in the system prompt.
    JsonObject,
}

impl Forcing {
    const ALL: [Forcing; 4] = [
        Forcing::Named,
        Forcing::Required,
        Forcing::JsonSchema,
        Forcing::JsonObject,
    ];

    /// How the form is described in reports.
    pub fn describe(self) -> &'static str {
        match self {
            Forcing::Named => "tool_choice naming the function",
            Forcing::Required => "tool_choice \"required\"",
            Forcing::JsonSchema => "a json_schema response format",
            Forcing::JsonObject => "a json_object response format with the schema in the prompt",
        }
    }

    fn next(self) -> Option<Forcing> {
        Self::ALL.get(self as usize + 1).copied()
    }

    /// Whether the answer comes as text rather than as a call.
    fn answers_in_text(self) -> bool {
        matches!(self, Forcing::JsonSchema | Forcing::JsonObject)
    }

    /// The parameter a `400` names when the server refuses this form.
    fn parameter(self) -> &'static str {
        match self {
            Forcing::Named | Forcing::Required => "tool_choice",
            Forcing::JsonSchema | Forcing::JsonObject => "response_format",
        }
    }
}

/// The form learned for one upstream, shared by every clone of its provider.
#[derive(Debug, Clone)]
pub(crate) struct Learned {
    dialect: Dialect,
    current: Arc<AtomicU8>,
}

impl Learned {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            current: Arc::new(AtomicU8::new(dialect.first_forcing() as u8)),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The form to ask with now.
    pub(crate) fn current(&self) -> Forcing {
        Forcing::ALL[usize::from(self.current.load(Ordering::Relaxed)).min(Forcing::ALL.len() - 1)]
    }

    /// `tried` was not honoured: the next form from now on (if there is one and no other
    /// call moved past `tried` already). Returns the form to try next.
    pub(crate) fn give_up(&self, tried: Forcing, why: &str) -> Option<Forcing> {
        // OpenAI honours the named form; anything else there is the model's doing.
        if self.dialect == Dialect::OpenAi {
            return None;
        }
        let next = tried.next()?;
        let moved = self
            .current
            .compare_exchange(
                tried as u8,
                next as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok();
        if moved {
            tracing::warn!(
                dialect = self.dialect.as_str(),
                from = tried.describe(),
                to = next.describe(),
                "the upstream does not honour {} ({why}); asking with {} from now on",
                tried.describe(),
                next.describe()
            );
        }
        Some(self.current().max(next))
    }

    /// Whether `error` is the upstream refusing `forcing` (a `400` naming its parameter).
    pub(crate) fn refused(forcing: Forcing, error: &sift_core::ProviderError) -> bool {
        matches!(
            error.cause(),
            sift_core::ProviderError::Status { status: 400 | 422, message, .. }
                if message.contains(forcing.parameter())
        )
    }
}

/// Rewrites `body` (the request's, as the named form writes it) into `forcing`'s form, when
/// the request asks for a call.
pub(crate) fn apply(body: &mut Map<String, Value>, request: &ChatRequest, forcing: Forcing) {
    let OutputFormat::Tool {
        name,
        parameters,
        strict,
        ..
    } = &request.output
    else {
        return;
    };
    match forcing {
        Forcing::Named => {}
        Forcing::Required => {
            body.insert("tool_choice".into(), json!("required"));
        }
        Forcing::JsonSchema => {
            body.remove("tools");
            body.remove("tool_choice");
            body.insert(
                "response_format".into(),
                json!({
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": parameters, "strict": strict}
                }),
            );
        }
        Forcing::JsonObject => {
            body.remove("tools");
            body.remove("tool_choice");
            body.insert("response_format".into(), json!({"type": "json_object"}));
            let text =
                format!("Reply with only a JSON object that fits this JSON Schema:\n{parameters}");
            if let Some(Value::Array(messages)) = body.get_mut("messages") {
                match messages.first_mut() {
                    Some(first) if first["role"] == "system" => {
                        let before = first["content"].as_str().unwrap_or_default();
                        first["content"] = json!(format!("{before}\n\n{text}"));
                    }
                    _ => messages.insert(0, json!({"role": "system", "content": text})),
                }
            }
        }
    }
}

/// Whether `response` ignored a forced call: prose where a call was asked for (not a
/// refusal, not cut off).
pub(crate) fn ignored(request: &ChatRequest, forcing: Forcing, response: &ChatResponse) -> bool {
    matches!(request.output, OutputFormat::Tool { .. })
        && !forcing.answers_in_text()
        && response.tool_calls.is_empty()
        && response.refusal().is_none()
        && !response.truncated()
        && response
            .content
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
}

/// The answer to a text form, handed back as the call the request asked for.
pub(crate) fn as_call(
    request: &ChatRequest,
    forcing: Forcing,
    mut response: ChatResponse,
) -> ChatResponse {
    if let (true, OutputFormat::Tool { name, .. }) = (forcing.answers_in_text(), &request.output)
        && response.tool_calls.is_empty()
        && let Some(text) = response.content.take()
    {
        response.tool_calls.push(ToolCall {
            id: "call_sift_0".into(),
            name: name.clone(),
            arguments: text,
        });
    }
    response
}

/// A streamed answer to a text form, its text handed back as the call's arguments; and for
/// the call forms, a stream whose first content (before any call) tells `learned` that the
/// form was ignored, for the calls after this one.
pub(crate) fn stream_as_call(
    request: &ChatRequest,
    forcing: Forcing,
    learned: Learned,
    stream: ChatStream,
) -> ChatStream {
    let OutputFormat::Tool { name, .. } = &request.output else {
        return stream;
    };
    let name = name.clone();
    let mut named = false;
    let mut decided = false;
    Box::pin(futures::StreamExt::map(stream, move |delta| {
        let delta = delta?;
        if forcing.answers_in_text() {
            if let ChatDelta::Content(text) = delta {
                let first = !std::mem::replace(&mut named, true);
                return Ok(ChatDelta::ToolCall {
                    index: 0,
                    id: first.then(|| "call_sift_0".to_owned()),
                    name: first.then(|| name.clone()),
                    arguments: text,
                });
            }
            return Ok(delta);
        }
        if !decided {
            match &delta {
                ChatDelta::ToolCall { .. } => decided = true,
                ChatDelta::Content(text) if !text.trim().is_empty() => {
                    decided = true;
                    learned.give_up(forcing, "it answered a forced call in prose");
                }
                _ => {}
            }
        }
        Ok(delta)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_parse_and_start_where_their_servers_need() {
        assert_eq!("llama.cpp".parse::<Dialect>(), Ok(Dialect::LlamaCpp));
        assert_eq!("LLAMACPP".parse::<Dialect>(), Ok(Dialect::LlamaCpp));
        assert!("tgi".parse::<Dialect>().unwrap_err().contains("tgi"));
        assert_eq!(Dialect::Ollama.first_forcing(), Forcing::JsonSchema);
        assert_eq!(
            Dialect::Auto.resolve("https://api.openai.com/v1"),
            Dialect::OpenAi
        );
        assert_eq!(
            Dialect::Auto.resolve("http://127.0.0.1:8080/v1"),
            Dialect::Auto
        );
        assert_eq!(Dialect::OpenAi.default_temperature(), None);
        assert_eq!(Dialect::Auto.default_temperature(), Some(0.0));
    }

    #[test]
    fn forms_are_given_up_in_order_and_never_on_openai() {
        let learned = Learned::new(Dialect::Auto);
        assert_eq!(learned.current(), Forcing::Named);
        assert_eq!(
            learned.give_up(Forcing::Named, "test"),
            Some(Forcing::Required)
        );
        // A second call that saw the named form fail too does not skip a form.
        assert_eq!(
            learned.give_up(Forcing::Named, "test"),
            Some(Forcing::Required)
        );
        assert_eq!(learned.current(), Forcing::Required);
        assert_eq!(
            learned.give_up(Forcing::Required, "test"),
            Some(Forcing::JsonSchema)
        );
        assert_eq!(
            learned.give_up(Forcing::JsonSchema, "test"),
            Some(Forcing::JsonObject)
        );
        assert_eq!(learned.give_up(Forcing::JsonObject, "test"), None);
        let openai = Learned::new(Dialect::OpenAi);
        assert_eq!(openai.give_up(Forcing::Named, "test"), None);
        assert_eq!(openai.current(), Forcing::Named);
    }
}
