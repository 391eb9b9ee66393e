//! Extraction against the scripted OpenAI-compatible server, over real HTTP.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod answers;
mod conformance;
mod dialects;
mod dynamic;
mod examples;
mod golden;
mod grounded;
mod old;
mod reask;
mod streaming;
mod transport;
mod turns;

use std::time::Duration;

use sift_core::Client;
use sift_openai::{OpenAi, OpenAiConfig};
use sift_test_support::ScriptedServer;

#[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema, sift_derive::Partial)]
pub struct UserDetail {
    pub name: String,
    #[schemars(range(max = 150))]
    pub age: u32,
}

pub const API_KEY: &str = "sk-test-secret-key";

/// The provider's settings for `server`, which plays OpenAI's API (the `openai` dialect:
/// the named form honoured, no temperature added); `dialects.rs` plays the others.
pub fn config(server: &ScriptedServer) -> OpenAiConfig {
    OpenAiConfig::new(server.base_url())
        .dialect(sift_openai::Dialect::OpenAi)
        .api_key(API_KEY)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .timeout(Duration::from_secs(5))
}

pub fn client(server: &ScriptedServer) -> Client {
    Client::new(OpenAi::new(config(server)).unwrap()).with_model("test-model")
}
