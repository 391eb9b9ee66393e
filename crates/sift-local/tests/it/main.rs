//! The embedded model, for real: SmolLM2-135M-Instruct (fetched into the cache on first use,
//! or `SIFT_MODEL_PATH`), with JSON-schema-constrained decoding.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod batching;
mod extraction;
mod service;

use std::sync::OnceLock;

use sift_local::{LocalConfig, LocalProvider};

/// One model for the whole test binary.
pub fn provider() -> LocalProvider {
    static PROVIDER: OnceLock<LocalProvider> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut config = LocalConfig::default();
            if let Some(path) = std::env::var_os("SIFT_MODEL_PATH").filter(|p| !p.is_empty()) {
                config = config.model_path(path);
            }
            LocalProvider::load(config).expect("the local model loads")
        })
        .clone()
}

/// Held by each test for its whole run: on two cores generations beside another test's only
/// slow each other down, and tests that read the model's counters must not see another
/// test's tokens.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

pub fn client() -> sift_core::Client {
    sift_core::Client::new(provider())
}
