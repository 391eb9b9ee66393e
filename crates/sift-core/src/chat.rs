//! Plain chat calls: a conversation answered in free text, with no schema and no re-asks
//! (the OpenAI-compatible gateway's requests without `response_format` or tools), traced
//! like the calls of an extraction.

use futures::StreamExt;
use tracing::Instrument;

use crate::extract::Client;
use crate::message::{ChatDelta, ChatRequest, ChatResponse, ChatStream};
use crate::provider::ProviderError;
use crate::trace;

impl Client {
    /// One chat call as `request` asks it, under a `chat` span labelled `extractor`. A
    /// request that sets no token limit gets the provider's default (see
    /// [`Provider::default_max_tokens`](crate::Provider::default_max_tokens)).
    pub async fn chat(
        &self,
        request: &ChatRequest,
        extractor: Option<&str>,
    ) -> Result<ChatResponse, ProviderError> {
        let request = self.limited(request);
        let span = self.call_span(&request, extractor, false);
        match self
            .provider()
            .chat(&request)
            .instrument(span.clone())
            .await
        {
            Ok(response) => {
                trace::record_response(&span, &response, self.recording());
                Ok(response)
            }
            Err(e) => {
                trace::record_chat_error(&span, &e);
                Err(e)
            }
        }
    }

    /// [`chat`](Self::chat), streamed: the provider's deltas as they come. The span ends
    /// with the stream and records what it carried.
    pub async fn chat_stream(
        &self,
        request: &ChatRequest,
        extractor: Option<&str>,
    ) -> Result<ChatStream, ProviderError> {
        let request = self.limited(request);
        let span = self.call_span(&request, extractor, true);
        let mut inner = match self
            .provider()
            .chat_stream(&request)
            .instrument(span.clone())
            .await
        {
            Ok(inner) => inner,
            Err(e) => {
                trace::record_chat_error(&span, &e);
                return Err(e);
            }
        };
        let recording = self.recording().clone();
        Ok(Box::pin(async_stream::stream! {
            // What the span records at the end; the text is kept only when it is recorded.
            let mut seen = ChatResponse::default();
            let keep = recording.span_content();
            while let Some(delta) = inner.next().await {
                match &delta {
                    Ok(d) => note(&mut seen, d, keep),
                    Err(e) => trace::record_chat_error(&span, e),
                }
                yield delta;
            }
            trace::record_response(&span, &seen, &recording);
            trace::end(span);
        }))
    }

    /// `request` with the provider's default token limit when it sets none.
    fn limited(&self, request: &ChatRequest) -> ChatRequest {
        let mut request = request.clone();
        if request.max_tokens.is_none() {
            request.max_tokens = self.provider().default_max_tokens(&request);
        }
        request
    }

    fn call_span(
        &self,
        request: &ChatRequest,
        extractor: Option<&str>,
        stream: bool,
    ) -> tracing::Span {
        let call = trace::Call {
            provider: self.provider().name(),
            mode: None,
            attempt: 1,
            stream,
            extractor,
        };
        trace::chat_span(&tracing::Span::current(), call, request, self.recording())
    }
}

/// Adds `delta` to what a streamed call's span records.
fn note(seen: &mut ChatResponse, delta: &ChatDelta, keep_text: bool) {
    match delta {
        ChatDelta::Meta { id, model } => {
            seen.id = id.clone().or(seen.id.take());
            seen.model = model.clone().or(seen.model.take());
        }
        ChatDelta::Content(text) if keep_text => {
            seen.content.get_or_insert_with(String::new).push_str(text);
        }
        ChatDelta::Finish(reason) => seen.finish_reason = Some(reason.clone()),
        ChatDelta::Usage(usage) => seen.usage = *usage,
        _ => {}
    }
}
