//! A streamed `streamGenerateContent?alt=sse` answer, turned into [`ChatDelta`]s. Each event
//! is a whole `GenerateContentResponse` holding the next piece: more text, whole function
//! calls (Gemini does not split a call's arguments), the cumulative `usageMetadata`, and, in
//! the last, the `finishReason`. There is no end marker: the stream is whole when a finish
//! reason has arrived and the connection closes. An `error` object ends it with the error.

use std::time::Duration;

use sift_core::{ChatDelta, ChatStream, ProviderError};
#[cfg(test)]
use sift_http::sse::SseDecoder;
use sift_http::sse::{EventReader, SseEvent};

use crate::wire;

/// The deltas of `response`'s event stream (see `sift_http::sse::deltas`).
pub(crate) fn deltas(response: reqwest::Response, idle: Duration, max_event: usize) -> ChatStream {
    sift_http::sse::deltas(response, idle, max_event, Reader::default())
}

/// The state of one streamed answer.
#[derive(Debug, Default)]
struct Reader {
    /// The id and model were passed on.
    met: bool,
    /// Function calls read so far (the next call's index).
    calls: usize,
    /// A finish reason arrived.
    finished: bool,
}

impl EventReader for Reader {
    fn whole(&self) -> bool {
        self.finished
    }

    fn end_marker(&self) -> &'static str {
        "a `finishReason`"
    }

    /// The deltas one event carries.
    fn read(&mut self, event: &SseEvent) -> Result<Vec<ChatDelta>, ProviderError> {
        let Some(v) = event.json()? else {
            return Ok(Vec::new());
        };
        let piece = wire::read_piece(&v, self.calls)?;
        let mut out = Vec::new();
        if !self.met && (piece.id.is_some() || piece.model.is_some()) {
            self.met = true;
            out.push(ChatDelta::Meta {
                id: piece.id,
                model: piece.model,
            });
        }
        if let Some(text) = piece.text.filter(|t| !t.is_empty()) {
            out.push(ChatDelta::Content(text));
        }
        for call in piece.calls {
            out.push(ChatDelta::ToolCall {
                index: self.calls,
                id: Some(call.id),
                name: Some(call.name),
                arguments: call.arguments,
            });
            self.calls += 1;
        }
        if let Some(reason) = piece.finish {
            self.finished = true;
            out.push(ChatDelta::Finish(reason));
        }
        if let Some(u) = piece.usage {
            // Cumulative: the last one counts.
            out.push(ChatDelta::Usage(u));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sift_core::Usage;

    fn read_chunks(chunks: &[&str]) -> Vec<Result<ChatDelta, ProviderError>> {
        let mut decoder = SseDecoder::new(1 << 20);
        let mut reader = Reader::default();
        let mut events = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            decoder.push(c.as_bytes(), &mut events).unwrap();
            for e in events.drain(..) {
                match reader.read(&e) {
                    Ok(d) => out.extend(d.into_iter().map(Ok)),
                    Err(e) => out.push(Err(e)),
                }
            }
        }
        out
    }

    #[test]
    fn text_streams_in_pieces_and_a_call_arrives_whole() {
        let deltas: Vec<ChatDelta> = read_chunks(&[
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"{\\\"na\"}]}}],\"modelVersion\":\"gemini-x\",\"responseId\":\"r1\"}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"me\\\": 1}\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":4}}\r\n\r\n",
        ])
        .into_iter()
        .map(Result::unwrap)
        .collect();
        let text: String = deltas
            .iter()
            .filter_map(|d| match d {
                ChatDelta::Content(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, r#"{"name": 1}"#);
        assert!(matches!(&deltas[0], ChatDelta::Meta { model: Some(m), .. } if m == "gemini-x"));
        assert!(deltas.contains(&ChatDelta::Finish("stop".into())));
        assert!(deltas.contains(&ChatDelta::Usage(Usage {
            input_tokens: 9,
            output_tokens: 4,
            cached_input_tokens: 0
        })));

        let out = read_chunks(&[
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"Person\",\"args\":{\"name\":\"Ada\"}}}]},\"finishReason\":\"STOP\"}]}\n\n",
        ]);
        assert!(
            matches!(&out[0], Ok(ChatDelta::ToolCall { index: 0, name: Some(n), arguments, .. })
                if n == "Person" && arguments == r#"{"name":"Ada"}"#),
            "{out:?}"
        );
        assert!(
            out.iter()
                .any(|d| matches!(d, Ok(ChatDelta::Finish(f)) if f == "tool_calls")),
            "{out:?}"
        );
    }

    #[test]
    fn an_error_event_ends_the_stream() {
        let out = read_chunks(&[
            "data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\n\n",
        ]);
        assert!(
            matches!(&out[0], Err(ProviderError::Stream(m)) if m.contains("overloaded")),
            "{out:?}"
        );
    }
}
