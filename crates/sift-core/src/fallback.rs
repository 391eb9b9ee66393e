//! A fallback chain: providers asked in order, the next one only when a call fails in a way
//! its own retries could not fix (the upstream down, overloaded or rate-limiting past what
//! it retries, a timeout). An answer that does not validate is re-asked of the same chain
//! from its first provider: a fallback is for failures of the service, not of the model.

use std::sync::Arc;

use async_trait::async_trait;

use crate::extract::Client;
use crate::message::{ChatRequest, ChatResponse, ChatStream};
use crate::provider::{Capabilities, Provider, ProviderError};

/// One provider of a chain and the model asked of it.
#[derive(Debug, Clone)]
struct Member {
    provider: Arc<dyn Provider>,
    model: String,
}

/// Providers asked in order (see the module). Built from clients, each contributing its
/// provider and its model; the first one's model is the chain's default, and a request for
/// another model asks that of the first provider only (the others keep their own).
#[derive(Debug, Clone)]
pub struct Fallback {
    members: Vec<Member>,
}

impl Fallback {
    /// The chain of `clients`' providers, in order. `None` for an empty list.
    pub fn of(clients: &[Client]) -> Option<Self> {
        let members: Vec<Member> = clients
            .iter()
            .map(|c| Member {
                provider: c.provider().clone(),
                model: c.model().to_owned(),
            })
            .collect();
        (!members.is_empty()).then_some(Self { members })
    }

    /// `request` as member `i` is asked it: the first as given, the others with their model.
    fn request_for(&self, i: usize, request: &ChatRequest) -> ChatRequest {
        let mut request = request.clone();
        if i > 0 {
            request.model = self.members[i].model.clone();
        }
        request
    }

    /// Whether `error` moves the call to the next provider, and a warning says so.
    fn moves_on(&self, i: usize, error: &ProviderError) -> bool {
        let Some(next) = self.members.get(i + 1) else {
            return false;
        };
        if !falls_back(error) {
            return false;
        }
        let from = &self.members[i];
        tracing::warn!(
            error = %error,
            from = %from.model,
            to = %next.model,
            "provider {} ({}) failed: {}; asking {} ({})",
            i + 1,
            from.model,
            error,
            i + 2,
            next.model
        );
        true
    }
}

/// Whether a call that failed with `error` (after the provider's own retries) is worth
/// asking another provider: the upstream unreachable, timing out, overloaded, rate-limiting
/// or failing (5xx), or answering garbage. Not a request the upstream refused (4xx), nor
/// an input too long for the model: those fail everywhere alike.
pub fn falls_back(error: &ProviderError) -> bool {
    let cause = error.cause();
    cause.is_retryable()
        || matches!(
            cause,
            ProviderError::Transport(_) | ProviderError::InvalidResponse(_)
        )
}

#[async_trait]
impl Provider for Fallback {
    fn name(&self) -> &str {
        self.members[0].provider.name()
    }

    fn default_model(&self) -> &str {
        &self.members[0].model
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let mut i = 0;
        loop {
            match self.members[i]
                .provider
                .chat(&self.request_for(i, request))
                .await
            {
                Ok(mut response) => {
                    // Which model answered is on the span and the attempt record.
                    if response.model.is_none() {
                        response.model = Some(self.members[i].model.clone());
                    }
                    return Ok(response);
                }
                Err(e) if self.moves_on(i, &e) => i += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// A stream falls back only while it opens: once the first provider streams, its answer
    /// is the one.
    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let mut i = 0;
        loop {
            match self.members[i]
                .provider
                .chat_stream(&self.request_for(i, request))
                .await
            {
                Ok(stream) => return Ok(stream),
                Err(e) if self.moves_on(i, &e) => i += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The first member's, but in process only when every member is: any may answer.
    fn capabilities(&self) -> Capabilities {
        let all_local = self
            .members
            .iter()
            .all(|m| m.provider.capabilities().in_process);
        self.members[0]
            .provider
            .capabilities()
            .with_in_process(all_local)
    }

    fn default_max_tokens(&self, request: &ChatRequest) -> Option<u32> {
        self.members[0].provider.default_max_tokens(request)
    }

    /// Every provider of the chain must take the schema: any of them may answer.
    fn check_schema(&self, schema: &serde_json::Value) -> Result<(), crate::SchemaError> {
        self.members
            .iter()
            .try_for_each(|m| m.provider.check_schema(schema))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_service_failures_fall_back() {
        let status = |status| ProviderError::Status {
            status,
            message: String::new(),
            retry_after: None,
        };
        for e in [
            status(500),
            status(503),
            status(529),
            status(429),
            ProviderError::Timeout(std::time::Duration::from_secs(1)),
            ProviderError::InvalidResponse("not JSON".into()),
            ProviderError::Retried {
                tries: 3,
                last: Box::new(status(502)),
                earlier: Vec::new(),
            },
        ] {
            assert!(falls_back(&e), "{e}");
        }
        for e in [
            status(400),
            status(401),
            status(404),
            ProviderError::InputTooLong("too long".into()),
            ProviderError::Retried {
                tries: 2,
                last: Box::new(status(400)),
                earlier: Vec::new(),
            },
        ] {
            assert!(!falls_back(&e), "{e}");
        }
    }
}
