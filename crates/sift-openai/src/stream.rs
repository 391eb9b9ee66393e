//! Server-sent events of a streamed chat completion, turned into [`ChatDelta`]s.

use std::time::Duration;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use sift_core::{ChatDelta, ChatResponse, ChatStream, ProviderError, Usage};

use crate::wire;
use sift_http::sse::{EventReader, SseDecoder, SseEvent, TooLong};

/// The deltas of `response`'s event stream. Each event must arrive within `idle`; a line or
/// an event over `max_event` bytes ends it with an error (see `sift_http::sse::deltas`).
pub(crate) fn deltas(response: reqwest::Response, idle: Duration, max_event: usize) -> ChatStream {
    sift_http::sse::deltas(response, idle, max_event, Reader::default())
}

/// The state of one streamed completion.
#[derive(Debug, Default)]
struct Reader {
    /// The first chunk's id and model were passed on.
    told_meta: bool,
    /// A finish reason arrived: a stream that then closes without `[DONE]` (some compatible
    /// servers send none) is whole; one that closes before either was cut.
    finished: bool,
    /// `[DONE]` arrived.
    done: bool,
}

impl EventReader for Reader {
    fn read(&mut self, event: &SseEvent) -> Result<Vec<ChatDelta>, ProviderError> {
        match read_event(event, &mut self.told_meta) {
            Read::Done => {
                self.done = true;
                Ok(Vec::new())
            }
            Read::Deltas(list) => {
                self.finished |= list.iter().any(|d| matches!(d, ChatDelta::Finish(_)));
                Ok(list)
            }
            Read::Failed(e) => Err(e),
        }
    }

    fn whole(&self) -> bool {
        self.finished || self.done
    }

    fn done(&self) -> bool {
        self.done
    }

    fn end_marker(&self) -> &'static str {
        "a `finish_reason` or `[DONE]`"
    }
}

/// What one event of the stream says.
enum Read {
    /// `[DONE]`: the end.
    Done,
    /// Deltas (none for an empty event).
    Deltas(Vec<ChatDelta>),
    /// The stream failed.
    Failed(ProviderError),
}

/// Reads one event: `[DONE]`, an error, or a completion chunk's deltas (the first chunk's id
/// and model as `Meta`, once).
fn read_event(event: &SseEvent, told_meta: &mut bool) -> Read {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Read::Done;
    }
    if data.is_empty() {
        return Read::Deltas(Vec::new());
    }
    // Typed, borrowing deserialisation: this runs once per token.
    let chunk: Chunk<'_> = match serde_json::from_str(data) {
        Ok(c) => c,
        Err(e) => {
            return Read::Failed(ProviderError::Stream(format!(
                "an event is not a completion chunk ({e}): {}",
                data.chars().take(200).collect::<String>()
            )));
        }
    };
    if event.event == "error" || chunk.error.as_ref().is_some_and(|e| !e.is_null()) {
        let message = match &chunk.error {
            Some(err) => wire::error_message(err.to_string().as_bytes()),
            None => wire::error_message(data.as_bytes()),
        };
        return Read::Failed(ProviderError::Stream(message));
    }
    let mut out = Vec::new();
    if !*told_meta {
        *told_meta = true;
        out.push(ChatDelta::Meta {
            id: chunk.id.as_deref().map(str::to_owned),
            model: chunk.model.as_deref().map(str::to_owned),
        });
    }
    out.extend(chunk_deltas(chunk));
    Read::Deltas(out)
}

/// The deltas an event stream arriving in `chunks` reads as (with the per-line limit
/// `max_event`), the way a streamed call reads them, without a connection: for the fuzz
/// target.
#[doc(hidden)]
pub fn read_chunks(chunks: &[&[u8]], max_event: usize) -> Vec<Result<ChatDelta, ProviderError>> {
    let mut decoder = SseDecoder::new(max_event);
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut told_meta = false;
    for bytes in chunks {
        if let Err(TooLong(limit)) = decoder.push(bytes, &mut events) {
            out.push(Err(ProviderError::InvalidResponse(format!(
                "a line or event larger than {limit} bytes"
            ))));
            return out;
        }
        for event in events.drain(..) {
            match read_event(&event, &mut told_meta) {
                Read::Done => return out,
                Read::Deltas(list) => out.extend(list.into_iter().map(Ok)),
                Read::Failed(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

/// One `chat.completion.chunk`, as much of it as sift reads.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Vec<ChoiceDelta<'a>>,
    #[serde(default)]
    usage: Option<UsageWire>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChoiceDelta<'a> {
    #[serde(borrow, default)]
    delta: Option<DeltaWire<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaWire<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallWire<'a>>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ToolCallWire<'a> {
    #[serde(default)]
    index: Option<usize>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<FunctionWire<'a>>,
}

#[derive(Deserialize)]
struct FunctionWire<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct UsageWire {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetailsWire>,
}

#[derive(Deserialize)]
struct PromptDetailsWire {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

fn chunk_deltas(chunk: Chunk<'_>) -> Vec<ChatDelta> {
    let mut out = Vec::new();
    if let Some(choice) = chunk.choices.into_iter().next() {
        if let Some(delta) = choice.delta {
            if let Some(text) = delta.content
                && !text.is_empty()
            {
                out.push(ChatDelta::Content(text.into_owned()));
            }
            if let Some(text) = delta.refusal
                && !text.is_empty()
            {
                out.push(ChatDelta::Refusal(text.into_owned()));
            }
            for (i, call) in delta.tool_calls.into_iter().flatten().enumerate() {
                let (name, arguments) = match call.function {
                    Some(f) => (f.name.map(Cow::into_owned), f.arguments.unwrap_or_default()),
                    None => (None, Cow::Borrowed("")),
                };
                out.push(ChatDelta::ToolCall {
                    index: call.index.unwrap_or(i),
                    id: call.id.map(Cow::into_owned),
                    name,
                    arguments: arguments.into_owned(),
                });
            }
        }
        if let Some(reason) = choice.finish_reason {
            out.push(ChatDelta::Finish(reason.into_owned()));
        }
    }
    if let Some(usage) = chunk.usage {
        out.push(ChatDelta::Usage(Usage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            cached_input_tokens: usage
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0)
                .min(usage.prompt_tokens),
        }));
    }
    out
}

/// A whole answer as a stream of deltas.
pub(crate) fn from_whole(response: ChatResponse) -> ChatStream {
    let refusal = response.refusal().map(str::to_owned);
    let mut deltas = vec![ChatDelta::Meta {
        id: response.id,
        model: response.model,
    }];
    if let Some(text) = refusal {
        deltas.push(ChatDelta::Refusal(text));
    }
    if let Some(text) = response.content {
        deltas.push(ChatDelta::Content(text));
    }
    for (index, call) in response.tool_calls.into_iter().enumerate() {
        deltas.push(ChatDelta::ToolCall {
            index,
            id: Some(call.id),
            name: Some(call.name),
            arguments: call.arguments,
        });
    }
    if let Some(reason) = response.finish_reason {
        deltas.push(ChatDelta::Finish(reason));
    }
    deltas.push(ChatDelta::Usage(response.usage));
    Box::pin(futures::stream::iter(deltas.into_iter().map(Ok)))
}
