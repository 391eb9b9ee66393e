//! The extractors a service serves: each a spec from the config (schemas, prompt, settings)
//! with the client that answers it, plus the built-in `user`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::json;
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
    /// Name to position in `list`.
    index: HashMap<String, usize>,
}

impl Registry {
    /// A registry of `extractors` (a later one of the same name replaces an earlier one, in
    /// the later one's place). Linear in the number of extractors.
    pub fn new(extractors: impl IntoIterator<Item = Extractor>) -> Self {
        let all: Vec<Extractor> = extractors.into_iter().collect();
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(all.len());
        for (i, e) in all.iter().enumerate() {
            last.insert(e.spec.name.as_str(), i);
        }
        let keep: Vec<bool> = (0..all.len())
            .map(|i| last.get(all[i].spec.name.as_str()) == Some(&i))
            .collect();
        let list: Vec<Arc<Extractor>> = all
            .into_iter()
            .zip(keep)
            .filter_map(|(e, keep)| keep.then(|| Arc::new(e)))
            .collect();
        let index = list
            .iter()
            .enumerate()
            .map(|(i, e)| (e.spec.name.clone(), i))
            .collect();
        Self { list, index }
    }

    /// The extractor called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Extractor>> {
        self.index.get(name).map(|&i| &self.list[i])
    }

    /// Every extractor.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Extractor>> {
        self.list.iter()
    }
}
