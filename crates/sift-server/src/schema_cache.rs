//! Compiled ad-hoc schemas (those `POST /v1/extract` is sent inline), kept so a client
//! sending the same schema again pays for compiling it once.
//!
//! Bounded three ways, because anyone who may call `/v1/extract` chooses what is compiled:
//! - in bytes: each kept schema is charged an estimate of its compiled size, and the least
//!   recently used go until the total is within the budget (a schema larger than the whole
//!   budget is compiled for its request and not kept);
//! - failures are remembered by the schema's digest (32 bytes, not its text) for a short
//!   time, so the same bad schema sent again is refused without compiling it again, and
//!   remembering them costs almost nothing;
//! - compiles run on the blocking pool, at most a set number at once, never on the async
//!   workers that accept connections and answer `/healthz`.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use sift_core::{Schema, SchemaError};

/// The bytes a compiled schema is charged per byte of its JSON text: the schema as the
/// caller sent it, the forms sent to the model and the validator's copy together (with an
/// OpenAI-compatible upstream; the embedded model's grammar is compiled per generation, not
/// kept here). Measured with `scripts/soak-bounds.sh cache` on a build that kept
/// them all: 36.4 MB of RSS per kept 889 KB schema (100,000-value enums), 41 per byte, rounded
/// up.
const COMPILED_PER_TEXT_BYTE: usize = 42;

/// How long a schema that failed to compile is refused without compiling it again.
const FAILURE_LIFE: Duration = Duration::from_secs(60);

/// Failures remembered at most (each a digest and an error message).
const FAILURES_KEPT: NonZeroUsize = NonZeroUsize::new(1024).unwrap();

type Key = [u8; 32];

/// The settings of a [`SchemaCache`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheLimits {
    /// Schemas kept at most.
    pub(crate) entries: usize,
    /// The estimated compiled bytes kept at most.
    pub(crate) bytes: usize,
    /// Compiles running at once at most.
    pub(crate) compiles: usize,
}

pub(crate) struct SchemaCache {
    inner: Mutex<Entries>,
    max_bytes: usize,
    compiles: Arc<tokio::sync::Semaphore>,
}

struct Entries {
    kept: lru::LruCache<Key, (Schema, usize)>,
    bytes: usize,
    failed: lru::LruCache<Key, (SchemaError, Instant)>,
}

impl SchemaCache {
    pub(crate) fn new(limits: CacheLimits) -> Self {
        Self {
            inner: Mutex::new(Entries {
                kept: lru::LruCache::new(
                    NonZeroUsize::new(limits.entries).unwrap_or(NonZeroUsize::MIN),
                ),
                bytes: 0,
                failed: lru::LruCache::new(FAILURES_KEPT),
            }),
            max_bytes: limits.bytes,
            compiles: Arc::new(tokio::sync::Semaphore::new(limits.compiles.max(1))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The compiled form of `schema`, named `name` (unless it has a `title`), once `accept`
    /// (the check of the provider called `checker`) has taken it: run on a miss only, off
    /// the async workers, so a schema sent again is neither compiled nor checked again. The
    /// name and the checker are part of the key: a schema one provider takes may be refused
    /// by another.
    pub(crate) async fn get(
        &self,
        name: &str,
        checker: &str,
        schema: &Value,
        accept: impl FnOnce(&Schema) -> Result<(), SchemaError> + Send + 'static,
    ) -> Result<Schema, SchemaError> {
        let (key, size) = {
            let text = schema.to_string();
            let mut digest = Sha256::new();
            for part in [name, checker] {
                digest.update((part.len() as u64).to_le_bytes());
                digest.update(part.as_bytes());
            }
            digest.update(text.as_bytes());
            let key: Key = digest.finalize().into();
            (key, text.len().saturating_mul(COMPILED_PER_TEXT_BYTE))
        };
        if let Some(hit) = self.lookup(&key) {
            return hit;
        }
        // The pool's threads are shared with other blocking work; the permit bounds how many
        // compile at once. A request that gives up while waiting leaves the queue.
        let permit = self
            .compiles
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SchemaError::Compile("the schema compiler has stopped".into()))?;
        // Another request may have compiled it while this one waited.
        if let Some(hit) = self.lookup(&key) {
            return hit;
        }
        let (owned, name) = (schema.clone(), name.to_owned());
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let compiled = Schema::compile(&name, owned)?;
            accept(&compiled)?;
            Ok(compiled)
        })
        .await
        .unwrap_or_else(|e| {
            Err(SchemaError::Compile(format!(
                "the schema compiler stopped: {e}"
            )))
        });
        let mut entries = self.lock();
        match &outcome {
            Ok(compiled) if size <= self.max_bytes => {
                if let Some((_, (_, old))) = entries.kept.push(key, (compiled.clone(), size)) {
                    entries.bytes -= old;
                }
                entries.bytes += size;
                while entries.bytes > self.max_bytes {
                    match entries.kept.pop_lru() {
                        Some((_, (_, freed))) => entries.bytes -= freed,
                        None => break,
                    }
                }
            }
            // Too large to keep: compiled for this request only.
            Ok(_) => {}
            Err(e) => {
                entries.failed.put(key, (e.clone(), Instant::now()));
            }
        }
        outcome
    }

    /// What is remembered of `key`: the compiled schema, or a recent failure.
    fn lookup(&self, key: &Key) -> Option<Result<Schema, SchemaError>> {
        let mut entries = self.lock();
        if let Some((schema, _)) = entries.kept.get(key) {
            return Some(Ok(schema.clone()));
        }
        match entries.failed.get(key) {
            Some((e, at)) if at.elapsed() < FAILURE_LIFE => Some(Err(e.clone())),
            Some(_) => {
                entries.failed.pop(key);
                None
            }
            None => None,
        }
    }

    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let entries = self.lock();
        (entries.kept.len(), entries.bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    fn limits(entries: usize, bytes: usize) -> CacheLimits {
        CacheLimits {
            entries,
            bytes,
            compiles: 1,
        }
    }

    fn titled(n: u32) -> Value {
        json!({"type": "object", "title": format!("S{n}")})
    }

    #[tokio::test]
    async fn the_cache_is_bounded_by_count_and_keeps_the_recent() {
        let cache = SchemaCache::new(limits(2, usize::MAX));
        for n in [1, 2, 1, 3] {
            cache
                .get("Output", "test", &titled(n), |_| Ok(()))
                .await
                .unwrap();
        }
        assert_eq!(cache.kept().0, 2);
        // S2 was the least recently used: asked again, it is compiled (and checked) again.
        let checks = Arc::new(AtomicUsize::new(0));
        for n in [1, 3, 2] {
            let c = checks.clone();
            cache
                .get("Output", "test", &titled(n), move |_| {
                    c.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
                .unwrap();
        }
        assert_eq!(checks.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_in_bytes() {
        let one = titled(10).to_string().len() * COMPILED_PER_TEXT_BYTE;
        let cache = SchemaCache::new(limits(100, one * 3));
        for n in 1..=10 {
            cache
                .get("Output", "test", &titled(n), |_| Ok(()))
                .await
                .unwrap();
        }
        let (count, bytes) = cache.kept();
        assert_eq!(count, 3);
        assert!(bytes <= one * 3, "{bytes}");
        // A schema larger than the whole budget is compiled for its request, not kept.
        let big =
            json!({"type": "string", "enum": (0..2000).map(|i| i.to_string()).collect::<Vec<_>>()});
        let compiled = cache.get("Output", "test", &big, |_| Ok(())).await.unwrap();
        assert!(compiled.errors(&json!("1999")).is_empty());
        assert!(!compiled.errors(&json!("2000")).is_empty());
        assert_eq!(cache.kept().0, 3);
    }

    #[tokio::test]
    async fn a_failed_compile_is_remembered_by_digest() {
        let cache = SchemaCache::new(limits(10, usize::MAX));
        let checks = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let c = checks.clone();
            let e = cache
                .get("Output", "test", &titled(7), move |_| {
                    c.fetch_add(1, Ordering::SeqCst);
                    Err(SchemaError::Shape("refused".into()))
                })
                .await
                .unwrap_err();
            assert_eq!(e, SchemaError::Shape("refused".into()));
        }
        assert_eq!(checks.load(Ordering::SeqCst), 1);
        assert_eq!(cache.kept().0, 0);
    }
}
