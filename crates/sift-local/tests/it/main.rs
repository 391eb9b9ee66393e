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

/// A model that cannot be had fails to load by kind, naming the file, and never panics.
#[test]
fn a_missing_or_broken_model_file_is_an_error_by_kind() {
    let dir = std::env::temp_dir().join(format!("sift-local-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.gguf");
    match LocalProvider::load(LocalConfig::default().model_path(&missing)) {
        Err(sift_local::LocalError::NoModelFile(path)) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
    let broken = dir.join("broken.gguf");
    std::fs::write(&broken, b"not a gguf file at all").unwrap();
    match LocalProvider::load(LocalConfig::default().model_path(&broken)) {
        Err(sift_local::LocalError::Load(sift_local::EngineError::Model { path, .. })) => {
            assert_eq!(path, broken);
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
