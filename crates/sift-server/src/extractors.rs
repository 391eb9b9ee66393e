//! The extractors a service serves: each a spec from the config (schemas, prompt, settings)
//! with the client that answers it, plus the built-in `user` and a bounded cache of ad-hoc
//! schemas.

use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};
use sift_config::ExtractorSpec;
use sift_core::{Client, Schema, SchemaError};

use crate::models::UserDetail;

/// One extractor ready to serve.
#[derive(Debug, Clone)]
pub struct Extractor {
    /// What it extracts, from what, and how.
    pub spec: ExtractorSpec,
    /// Who answers (provider, default model, mode and retries).
    pub client: Client,
    /// A list of outputs, for `/extract` (built when first asked for).
    list: OnceLock<Result<Schema, SchemaError>>,
    /// Whether this is the built-in `user` (whose `/extract` sends the query as it is, as
    /// the seed does).
    pub(crate) builtin: bool,
}

impl Extractor {
    /// An extractor answered by `client`; the spec's model, mode and retries win over the
    /// client's.
    pub fn new(spec: ExtractorSpec, client: Client) -> Self {
        let client = spec.client(client);
        Self {
            spec,
            client,
            list: OnceLock::new(),
            builtin: false,
        }
    }

    /// The schema of a list of this extractor's outputs (what `/extract` streams).
    pub fn list_schema(&self) -> Result<&Schema, &SchemaError> {
        self.list
            .get_or_init(|| self.spec.output.list_of())
            .as_ref()
    }

    /// The seed's extractor: `{"query": string}` in, `{name, age}` out, the seed's prompt.
    pub fn user(client: Client) -> Result<Self, String> {
        let mut user = Self::new(Self::user_spec()?, client);
        user.builtin = true;
        Ok(user)
    }

    /// The spec of the built-in `user` extractor (for `sift extract`, `batch` and `eval`).
    pub fn user_spec() -> Result<ExtractorSpec, String> {
        let output = Schema::of::<UserDetail>().map_err(|e| e.to_string())?;
        let input = Schema::compile(
            "UserData",
            json!({
                "type": "object",
                "properties": {"query": {"type": "string", "description": "Free text describing one or more people"}},
                "required": ["query"]
            }),
        )
        .map_err(|e| e.to_string())?;
        ExtractorSpec::new(
            "user",
            "A person's name and age (the seed's extractor, also served as /user, /many-users and /extract)",
            output,
            input,
            None,
            "Extract: `{{ query }}`",
        )
    }
}

/// Every extractor by name, in declaration order.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    list: Vec<Arc<Extractor>>,
}

impl Registry {
    /// A registry of `extractors` (a later one of the same name replaces an earlier one).
    pub fn new(extractors: impl IntoIterator<Item = Extractor>) -> Self {
        let mut list: Vec<Arc<Extractor>> = Vec::new();
        for e in extractors {
            list.retain(|x| x.spec.name != e.spec.name);
            list.push(Arc::new(e));
        }
        Self { list }
    }

    /// The extractor called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Extractor>> {
        self.list.iter().find(|e| e.spec.name == name)
    }

    /// Every extractor.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Extractor>> {
        self.list.iter()
    }
}

/// Compiled ad-hoc schemas, keyed by their text, at most `capacity` of them (least recently
/// used evicted): a client sending the same schema again pays for compiling it once.
#[derive(Debug)]
pub(crate) struct SchemaCache {
    inner: Mutex<lru::LruCache<String, Schema>>,
}

impl SchemaCache {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = std::num::NonZeroUsize::new(capacity).unwrap_or(std::num::NonZeroUsize::MIN);
        Self {
            inner: Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    /// The compiled form of `schema`, once `accept` (the provider's check) has taken it: run
    /// on a miss only, so a schema sent again is neither compiled nor checked again.
    pub(crate) fn get(
        &self,
        schema: &Value,
        accept: impl FnOnce(&Schema) -> Result<(), SchemaError>,
    ) -> Result<Schema, SchemaError> {
        let key = schema.to_string();
        if let Some(hit) = self
            .inner
            .lock()
            .ok()
            .and_then(|mut c| c.get(&key).cloned())
        {
            return Ok(hit);
        }
        let compiled = Schema::compile("Output", schema.clone())?;
        accept(&compiled)?;
        if let Ok(mut c) = self.inner.lock() {
            c.put(key, compiled.clone());
        }
        Ok(compiled)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_keeps_the_recent() {
        let cache = SchemaCache::new(2);
        let s = |n: u32| json!({"type": "object", "title": format!("S{n}")});
        cache.get(&s(1), |_| Ok(())).unwrap();
        cache.get(&s(2), |_| Ok(())).unwrap();
        cache.get(&s(1), |_| Ok(())).unwrap();
        cache.get(&s(3), |_| Ok(())).unwrap();
        assert_eq!(cache.len(), 2);
        // S2 was the least recently used.
        let guard = cache.inner.lock().unwrap();
        assert!(guard.iter().all(|(k, _)| !k.contains("S2")));
    }
}
