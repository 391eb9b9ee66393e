//! Reads a streamed answer: routes content and tool-call deltas to incremental parsers and
//! hands back what completed.

use serde_json::Value;

use crate::json_stream::{Event, JsonStreamParser};
use crate::message::{ChatDelta, ChatResponse, ToolCall, Usage};
use crate::mode::{Mode, ReadError};

/// Tool calls read from one streamed answer, at most (an upstream's `index` beyond it is an
/// error, not an allocation).
const MAX_TOOL_CALLS: usize = 128;

/// One streamed tool call.
#[derive(Debug)]
struct Call {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
    parser: Option<JsonStreamParser>,
    /// The call is one list element (named after the element type), not the wrapper.
    single: bool,
    found_elements: bool,
}

/// What the reader is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// List elements, each handed over when complete.
    Elements,
    /// One value, seen as it grows.
    Whole,
}

/// Turns deltas into completed values (elements) or a growing value.
#[derive(Debug)]
pub(crate) struct AnswerReader {
    mode: Mode,
    purpose: Purpose,
    /// A tool call of this name carries one element (parallel tool calls).
    element_name: String,
    /// The member of a top-level object holding the list, when the list was asked for
    /// wrapped (see [`crate::schema::ResponseSchema::list_wrapper`]).
    wrapper: Option<&'static str>,
    content: String,
    /// The model's refusal, when it streams one.
    refusal: String,
    content_parser: Option<JsonStreamParser>,
    content_found_elements: bool,
    calls: Vec<Call>,
    events: Vec<Event>,
    /// Whether the last push changed the value being built (for snapshots).
    pub(crate) progressed: bool,
    /// A parse failed: later deltas are only recorded.
    failed: bool,
}

impl AnswerReader {
    pub(crate) fn new(
        mode: Mode,
        purpose: Purpose,
        element_name: &str,
        wrapper: Option<&'static str>,
    ) -> Self {
        Self {
            mode,
            purpose,
            element_name: element_name.to_owned(),
            wrapper,
            content: String::new(),
            refusal: String::new(),
            content_parser: None,
            content_found_elements: false,
            calls: Vec::new(),
            events: Vec::new(),
            progressed: false,
            failed: false,
        }
    }

    /// Feeds one delta; completed elements are appended to `out`. After the first error,
    /// later deltas are only recorded (for echoing the answer back).
    pub(crate) fn push(&mut self, delta: ChatDelta, out: &mut Vec<Value>) -> Result<(), ReadError> {
        self.progressed = false;
        if self.failed {
            match delta {
                ChatDelta::Content(text) => self.content.push_str(&text),
                ChatDelta::ToolCall {
                    index, arguments, ..
                } => {
                    if let Some(call) = self.calls.get_mut(index) {
                        call.arguments.push_str(&arguments);
                    }
                }
                _ => {}
            }
            return Ok(());
        }
        let result = match delta {
            ChatDelta::Content(text) => self.push_content(&text, out),
            ChatDelta::Refusal(text) => {
                if self.refusal.len() < 4096 {
                    self.refusal.push_str(&text);
                }
                Ok(())
            }
            ChatDelta::ToolCall {
                index,
                id,
                name,
                arguments,
            } => self.push_call(index, id, name, &arguments, out),
            _ => Ok(()),
        };
        self.failed = result.is_err();
        result
    }

    fn push_content(&mut self, text: &str, out: &mut Vec<Value>) -> Result<(), ReadError> {
        self.content.push_str(text);
        if self.mode == Mode::Tools {
            // Text beside the tool call is commentary.
            return Ok(());
        }
        let mut bytes = text.as_bytes();
        if self.content_parser.is_none() {
            // Skip prose and fences before the JSON (md_json), and any leading noise.
            let Some(start) = bytes.iter().position(|b| *b == b'{' || *b == b'[') else {
                return Ok(());
            };
            bytes = &bytes[start..];
            self.content_parser = Some(new_parser(self.purpose, self.wrapper));
        }
        let Some(parser) = self.content_parser.as_mut() else {
            return Ok(());
        };
        if parser.is_done() {
            // After the JSON: a closing fence or trailing prose.
            return Ok(());
        }
        feed_stopping_at_end(parser, bytes, &mut self.events).map_err(invalid)?;
        self.progressed = true;
        drain(
            self.purpose,
            &mut self.events,
            parser,
            false,
            &mut self.content_found_elements,
            out,
        );
        Ok(())
    }

    fn push_call(
        &mut self,
        index: usize,
        id: Option<String>,
        name: Option<String>,
        arguments: &str,
        out: &mut Vec<Value>,
    ) -> Result<(), ReadError> {
        // The index comes from the upstream: bounded before it sizes anything.
        if index >= MAX_TOOL_CALLS {
            return Err(ReadError::Missing(format!(
                "the answer names tool call {index}; at most {MAX_TOOL_CALLS} calls are read"
            )));
        }
        while self.calls.len() <= index {
            self.calls.push(Call {
                id: None,
                name: None,
                arguments: String::new(),
                parser: None,
                single: false,
                found_elements: false,
            });
        }
        let purpose = self.purpose;
        let wrapper = self.wrapper;
        let call = &mut self.calls[index];
        if id.is_some() {
            call.id = id;
        }
        if name.is_some() {
            call.name = name;
        }
        if arguments.is_empty() {
            return Ok(());
        }
        call.arguments.push_str(arguments);
        let parser = call.parser.get_or_insert_with(|| {
            call.single = purpose == Purpose::Elements
                && call.name.as_deref() == Some(self.element_name.as_str());
            if call.single {
                JsonStreamParser::new().field_events(false)
            } else {
                new_parser(purpose, wrapper)
            }
        });
        feed_stopping_at_end(parser, arguments.as_bytes(), &mut self.events).map_err(invalid)?;
        self.progressed = true;
        drain(
            purpose,
            &mut self.events,
            parser,
            call.single,
            &mut call.found_elements,
            out,
        );
        Ok(())
    }

    /// Ends the answer: every parser must be complete.
    pub(crate) fn finish(&mut self, out: &mut Vec<Value>) -> Result<(), ReadError> {
        if self.failed {
            return Ok(());
        }
        if self.mode == Mode::Tools {
            if self.calls.iter().all(|c| c.parser.is_none()) {
                return Err(self.missing());
            }
            for call in &mut self.calls {
                if let Some(parser) = call.parser.as_mut() {
                    parser.finish(&mut self.events).map_err(invalid)?;
                    drain(
                        self.purpose,
                        &mut self.events,
                        parser,
                        call.single,
                        &mut call.found_elements,
                        out,
                    );
                }
            }
            return Ok(());
        }
        if self.content_parser.is_none() {
            return Err(self.missing());
        }
        let Some(parser) = self.content_parser.as_mut() else {
            return Ok(());
        };
        parser.finish(&mut self.events).map_err(invalid)?;
        drain(
            self.purpose,
            &mut self.events,
            parser,
            false,
            &mut self.content_found_elements,
            out,
        );
        Ok(())
    }

    /// Why the streamed answer holds nothing to read (see `Mode::missing`).
    fn missing(&self) -> ReadError {
        ReadError::Missing(self.mode.missing(
            &self.element_name,
            Some(self.content.as_str()),
            Some(self.refusal.as_str()),
        ))
    }

    /// The value built so far (for [`Purpose::Whole`]).
    pub(crate) fn partial(&self) -> Option<Value> {
        match self.mode {
            Mode::Tools => self
                .calls
                .iter()
                .find_map(|c| c.parser.as_ref())
                .and_then(JsonStreamParser::partial),
            _ => self
                .content_parser
                .as_ref()
                .and_then(JsonStreamParser::partial),
        }
    }

    /// For [`Purpose::Elements`]: the answer when it held no list in a form lists come in
    /// (a top-level array, or the array under the wrapper member): the value to judge against
    /// the whole list schema, as a whole answer would be. `None` when its elements were
    /// handed over.
    pub(crate) fn take_unlisted(&mut self) -> Option<Value> {
        match self.mode {
            Mode::Tools if self.calls.iter().any(|c| c.found_elements) => None,
            Mode::Tools => self
                .calls
                .iter_mut()
                .find_map(|c| c.parser.take())
                .and_then(JsonStreamParser::into_value),
            _ if self.content_found_elements => None,
            _ => self
                .content_parser
                .take()
                .and_then(JsonStreamParser::into_value),
        }
    }

    /// The completed value (for [`Purpose::Whole`]).
    pub(crate) fn take_value(&mut self) -> Option<Value> {
        match self.mode {
            Mode::Tools => self
                .calls
                .iter_mut()
                .find_map(|c| c.parser.take())
                .and_then(JsonStreamParser::into_value),
            _ => self
                .content_parser
                .take()
                .and_then(JsonStreamParser::into_value),
        }
    }

    /// The answer as a response, for echoing it back in a re-ask.
    pub(crate) fn to_response(&self, usage: Usage, finish: Option<String>) -> ChatResponse {
        ChatResponse {
            id: None,
            model: None,
            content: (!self.content.is_empty()).then(|| self.content.clone()),
            tool_calls: self
                .calls
                .iter()
                .enumerate()
                .map(|(i, c)| ToolCall {
                    id: c.id.clone().unwrap_or_else(|| format!("call_{i}")),
                    name: c.name.clone().unwrap_or_default(),
                    arguments: c.arguments.clone(),
                })
                .collect(),
            finish_reason: finish,
            usage,
            raw: Value::Null,
        }
    }
}

/// A parse error as a reading failure.
fn invalid(e: crate::json_stream::ParseError) -> ReadError {
    ReadError::InvalidJson(e.to_string())
}

/// Feeds `bytes`, ignoring whatever follows a completed top-level value (a closing fence,
/// trailing prose): models often add some, and it is not part of the answer.
fn feed_stopping_at_end(
    parser: &mut JsonStreamParser,
    bytes: &[u8],
    events: &mut Vec<Event>,
) -> Result<(), crate::json_stream::ParseError> {
    if parser.is_done() {
        return Ok(());
    }
    match parser.feed(bytes, events) {
        Err(_) if parser.is_done() => Ok(()),
        other => other,
    }
}

/// A parser for `purpose`: elements detached raw (those of a top-level array, or of the
/// array under `wrapper`), or the whole value with field events.
fn new_parser(purpose: Purpose, wrapper: Option<&'static str>) -> JsonStreamParser {
    JsonStreamParser::new()
        .detach_raw(purpose == Purpose::Elements)
        .list_wrapper(wrapper)
        .element_paths(false)
        .field_events(purpose == Purpose::Whole)
}

/// Moves completed elements from `events` to `out` (for [`Purpose::Whole`] the events are only
/// cleared: the value is read from the parser). A call that is one element (parallel tool
/// calls) hands over its whole value. Anything else that completes without a list in it is
/// left to be judged whole (see [`AnswerReader::take_unlisted`]).
fn drain(
    purpose: Purpose,
    events: &mut Vec<Event>,
    parser: &mut JsonStreamParser,
    single: bool,
    found_elements: &mut bool,
    out: &mut Vec<Value>,
) {
    if purpose == Purpose::Whole {
        events.clear();
        return;
    }
    let mut root_done = false;
    for event in events.drain(..) {
        match event {
            Event::ElementComplete { value: Some(v), .. } => {
                *found_elements = true;
                out.push(v);
            }
            Event::ElementComplete {
                raw: Some(text), ..
            } => {
                *found_elements = true;
                // The parser has checked the text already.
                out.push(serde_json::from_str(&text).unwrap_or(Value::Null));
            }
            Event::RootComplete => root_done = true,
            _ => {}
        }
    }
    if root_done
        && single
        && let Some(v) = parser.value().cloned()
    {
        *found_elements = true;
        out.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_tool_call_index_is_an_error_not_an_allocation() {
        let mut reader = AnswerReader::new(Mode::Tools, Purpose::Whole, "X", None);
        let mut out = Vec::new();
        let err = reader
            .push(
                ChatDelta::ToolCall {
                    index: 100_000_000,
                    id: Some("c".into()),
                    name: Some("X".into()),
                    arguments: "{".into(),
                },
                &mut out,
            )
            .unwrap_err();
        let err = err.into_message();
        assert!(err.contains("tool call 100000000"), "{err}");
        assert!(reader.calls.len() <= MAX_TOOL_CALLS);
        // The last index allowed still reads.
        let mut reader = AnswerReader::new(Mode::Tools, Purpose::Whole, "X", None);
        reader
            .push(
                ChatDelta::ToolCall {
                    index: MAX_TOOL_CALLS - 1,
                    id: Some("c".into()),
                    name: Some("X".into()),
                    arguments: "{\"a\": 1}".into(),
                },
                &mut out,
            )
            .unwrap();
        assert_eq!(reader.calls.len(), MAX_TOOL_CALLS);
    }
}
