//! A JSON Schema as llguidance's grammar: the exact grammar where llguidance compiles the
//! schema as it is, else the approximate one (its `lenient` option ignores keywords it does
//! not implement, such as `not` or `uniqueItems`, and `coerce_one_of` reads `oneOf` as
//! `anyOf`), and a refusal naming the keyword and its JSON pointer where neither compiles.
//! What an approximate grammar leaves out, sift's validation of the answer against the whole
//! schema catches, and the re-ask fixes.

use std::sync::{Arc, Mutex};

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};
use sift_core::{SchemaError, escape_pointer_token};

use crate::bounds::Tight;

/// How closely the grammar follows the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    /// Every keyword is enforced while decoding.
    Exact,
    /// Some keywords are left to validation after decoding.
    Approximate,
}

/// What a generation is constrained to.
#[derive(Debug, Clone)]
pub(crate) enum Constraint {
    /// An answer that fits the schema.
    Schema(Value),
    /// An answer that fits the schema, its grounded values held to the input: the grounded
    /// grammar (see [`grounded`](crate::grounded)), and the schema it was made from, used
    /// when llguidance refuses the grammar.
    Grounded { lark: String, schema: Value },
}

/// Compiled outcomes kept, so a schema sent again is not compiled again to be checked.
const CACHE: std::num::NonZeroUsize = std::num::NonZeroUsize::new(256).unwrap();

/// A schema text's SHA-256.
type Digest = [u8; 32];

/// Compiles schemas for one model's vocabulary. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Grammars {
    factory: Arc<ParserFactory>,
    whitespace_flexible: bool,
    /// The schema text's digest to outcome, the least recently used evicted (a digest, not
    /// the text: a kept outcome costs a few bytes however large its schema).
    checked: Arc<Mutex<lru::LruCache<Digest, Result<Fit, SchemaError>>>>,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars")
            .field("whitespace_flexible", &self.whitespace_flexible)
            .finish_non_exhaustive()
    }
}

impl Grammars {
    pub(crate) fn new(factory: ParserFactory, whitespace_flexible: bool) -> Self {
        Self {
            factory: Arc::new(factory),
            whitespace_flexible,
            checked: Arc::new(Mutex::new(lru::LruCache::new(CACHE))),
        }
    }

    /// Whether `schema` compiles, and how closely (remembered for the last few hundred).
    pub(crate) fn check(&self, schema: &Value) -> Result<Fit, SchemaError> {
        use sha2::Digest as _;
        let key: Digest = sha2::Sha256::digest(schema.to_string().as_bytes()).into();
        if let Some(hit) = self
            .checked
            .lock()
            .ok()
            .and_then(|mut c| c.get(&key).cloned())
        {
            return hit;
        }
        let outcome = self.best(schema).map(|(_, fit)| fit);
        if let Ok(mut c) = self.checked.lock() {
            c.put(key, outcome.clone());
        }
        outcome
    }

    /// A fresh matcher for one generation, built only in the form [`Self::check`] found (and
    /// remembered): a schema that takes only the approximate grammar is not compiled twice on
    /// every generation.
    pub(crate) fn matcher(&self, schema: &Value) -> Result<Matcher, SchemaError> {
        let fit = self.check(schema)?;
        self.compile(schema, fit == Fit::Approximate)
            .map_err(|e| unsupported(schema, &e, keyword_of(&e)))
    }

    /// What a generation for `schema` is held to: the grounded grammar when the answer is
    /// grounded in `sources` and the schema has a grounded value the walk can translate, else
    /// the schema.
    pub(crate) fn constraint(
        &self,
        schema: Value,
        sources: Option<&sift_core::grounding::Sources>,
    ) -> Constraint {
        match sources.and_then(|s| crate::grounded::lark(&schema, s, self.whitespace_flexible)) {
            Some(lark) => Constraint::Grounded { lark, schema },
            None => Constraint::Schema(schema),
        }
    }

    /// A fresh matcher for one generation under `constraint`. A grounded grammar llguidance
    /// refuses (it should not: a test compiles the grammars of the example schemas) falls
    /// back to the schema's, with a warning.
    pub(crate) fn matcher_for(&self, constraint: &Constraint) -> Result<Matcher, SchemaError> {
        match constraint {
            Constraint::Schema(schema) => self.matcher(schema),
            Constraint::Grounded { lark, schema } => {
                let started = std::time::Instant::now();
                match self.compile_lark(lark) {
                    Ok(matcher) => {
                        tracing::debug!(
                            compile_ms = started.elapsed().as_secs_f64() * 1e3,
                            grammar_bytes = lark.len(),
                            "grounded grammar compiled"
                        );
                        Ok(matcher)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the grounded grammar did not compile; the schema's is used");
                        self.matcher(schema)
                    }
                }
            }
        }
    }

    /// The exact grammar, else the approximate one, else the refusal.
    fn best(&self, schema: &Value) -> Result<(Matcher, Fit), SchemaError> {
        let exact = match self.compile(schema, false) {
            Ok(m) => return Ok((m, Fit::Exact)),
            Err(e) => e,
        };
        match self.compile(schema, true) {
            Ok(m) => Ok((m, Fit::Approximate)),
            // The approximate grammar's error names what stops it; the exact one's may only
            // name what the approximation would have ignored.
            Err(e) => Err(refusal(schema, &e).unwrap_or_else(|| {
                refusal(schema, &exact).unwrap_or_else(|| unsupported(schema, &e, None))
            })),
        }
    }

    /// A compiler with a one-byte-per-token vocabulary: whether a schema compiles does not
    /// depend on the model's vocabulary, so schemas can be checked with no model loaded.
    pub(crate) fn offline() -> &'static Grammars {
        static OFFLINE: std::sync::OnceLock<Grammars> = std::sync::OnceLock::new();
        OFFLINE.get_or_init(|| {
            let env = llguidance::toktrie::ApproximateTokEnv::single_byte_env();
            // Building a factory for a 256-token vocabulary cannot fail.
            #[allow(clippy::expect_used)]
            let mut factory = ParserFactory::new_simple(&env).expect("a one-byte vocabulary");
            factory.quiet();
            Grammars::new(factory, true)
        })
    }

    /// A matcher for a Lark grammar, or llguidance's reason it is refused.
    pub(crate) fn compile_lark(&self, lark: &str) -> Result<Matcher, String> {
        let matcher = Matcher::new(
            self.factory
                .create_parser(TopLevelGrammar::from_lark(lark.to_owned())),
        );
        match matcher.get_error() {
            Some(e) => Err(e),
            None => Ok(matcher),
        }
    }

    fn compile(&self, schema: &Value, approximate: bool) -> Result<Matcher, String> {
        // Free values bounded (see `bounds`): a small model otherwise repeats itself until
        // the token limit. The answer is still validated against the schema as written.
        // Bounds llguidance refuses fall back to fewer: a word pattern beside a schema's own
        // pattern can be more than llguidance decides in its budget, and so can a length
        // bound on a pattern (or leave it nothing to match); last, the schema as written.
        let bounded = |tight: Tight| {
            let mut bounded = self.guided(schema, approximate)?;
            crate::bounds::bound_free_values(&mut bounded, tight);
            self.compile_schema(bounded)
        };
        bounded(Tight::All)
            .or_else(|_| bounded(Tight::NoWords))
            .or_else(|_| bounded(Tight::Loose))
            .or_else(|_| self.compile_schema(self.guided(schema, approximate)?))
    }

    /// A copy of `schema` carrying llguidance's options (`x-guidance`).
    fn guided(&self, schema: &Value, approximate: bool) -> Result<Value, String> {
        let mut options = crate::grounded::whitespace_options(self.whitespace_flexible);
        options.insert("lenient".into(), json!(approximate));
        options.insert("coerce_one_of".into(), json!(approximate));
        let options = Value::Object(options);
        match schema {
            Value::Object(obj) => {
                let mut obj = obj.clone();
                obj.insert("x-guidance".into(), options);
                Ok(Value::Object(obj))
            }
            // `true`: any JSON value.
            Value::Bool(true) => Ok(json!({"x-guidance": options})),
            _ => Err("the schema `false` admits no answer".into()),
        }
    }

    /// `schema` compiled as it is: no bounds added, none taken away.
    #[cfg(test)]
    pub(crate) fn compile_as_written(&self, schema: &Value) -> Result<Matcher, String> {
        self.compile_schema(self.guided(schema, false)?)
    }

    fn compile_schema(&self, schema: Value) -> Result<Matcher, String> {
        let matcher = Matcher::new(
            self.factory
                .create_parser(TopLevelGrammar::from_json_schema(schema)),
        );
        match matcher.get_error() {
            Some(e) => Err(e),
            None => Ok(matcher),
        }
    }
}

/// The refusal for llguidance's message `message`, when the message says which keyword.
fn refusal(schema: &Value, message: &str) -> Option<SchemaError> {
    keyword_of(message).map(|k| unsupported(schema, message, Some(k)))
}

fn unsupported(schema: &Value, message: &str, keyword: Option<&str>) -> SchemaError {
    let keyword = keyword.unwrap_or("schema");
    let pointer = pointer_of(schema, message, keyword).unwrap_or_default();
    // The first line says it; the rest is llguidance's trail of where it was.
    let message = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("while processing"))
        .collect::<Vec<_>>()
        .join(" ");
    SchemaError::Unsupported {
        pointer,
        keyword: keyword.into(),
        provider: "the embedded model's grammar".into(),
        message,
    }
}

/// The keyword llguidance's message is about.
fn keyword_of(message: &str) -> Option<&str> {
    if let Some(rest) = message.split("Unimplemented keys: [").nth(1) {
        return rest.split('"').nth(1);
    }
    [
        ("circular references with sibling keys", "$ref"),
        ("regex parse error", "pattern"),
        ("look-around", "pattern"),
        ("Unknown format", "format"),
        ("oneOf", "oneOf"),
        ("min/maxProperties", "minProperties"),
        ("minItems", "minItems"),
        ("maxItems", "maxItems"),
        ("Unable to resolve", "$ref"),
    ]
    .into_iter()
    .find(|(needle, _)| message.contains(needle))
    .map(|(_, k)| k)
}

/// Where in `schema` the trouble is: the place llguidance names (`...#/definitions/x`), or
/// else the first use of `keyword`; with the keyword appended when it is there.
fn pointer_of(schema: &Value, message: &str, keyword: &str) -> Option<String> {
    let named = message
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter_map(|word| word.split_once('#').map(|(_, p)| p))
        .rfind(|p| p.is_empty() || p.starts_with('/'))
        .map(|p| p.trim_end_matches([',', ';', ')']).to_owned());
    let at = match named {
        Some(p) if schema.pointer(&p).is_some() => p,
        _ => return first_use(schema, keyword, String::new()),
    };
    // A `$ref` problem is about the place named (a definition that refers to itself), not
    // about some `$ref` inside it.
    if keyword == "$ref" {
        return Some(at);
    }
    let with_keyword = format!("{at}/{}", escape_pointer_token(keyword));
    if schema.pointer(&with_keyword).is_some() {
        Some(with_keyword)
    } else {
        let inner = schema
            .pointer(&at)
            .and_then(|v| first_use(v, keyword, at.clone()));
        inner.or(Some(at))
    }
}

/// The pointer of the first object key `keyword` in `value`, depth first.
fn first_use(value: &Value, keyword: &str, at: String) -> Option<String> {
    match value {
        Value::Object(map) => {
            if map.contains_key(keyword) {
                return Some(format!("{at}/{}", escape_pointer_token(keyword)));
            }
            map.iter().find_map(|(k, v)| {
                first_use(v, keyword, format!("{at}/{}", escape_pointer_token(k)))
            })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_use(v, keyword, format!("{at}/{i}"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_read_from_llguidance_messages() {
        assert_eq!(keyword_of(r#"Unimplemented keys: ["not"]"#), Some("not"));
        assert_eq!(
            keyword_of("circular references with sibling keys are not supported: x"),
            Some("$ref")
        );
        assert_eq!(
            keyword_of("regex parse error:\n look-around is not supported"),
            Some("pattern")
        );
        assert_eq!(keyword_of("something new"), None);
    }

    #[test]
    fn pointers_come_from_the_message_or_the_first_use() {
        let schema = json!({
            "definitions": {"a": {"type": "string", "pattern": "(?!x)"}},
            "properties": {"b": {"not": {"type": "null"}}}
        });
        assert_eq!(
            pointer_of(
                &schema,
                "regex parse error\n  while processing json-schema:///#/definitions/a",
                "pattern"
            )
            .as_deref(),
            Some("/definitions/a/pattern")
        );
        assert_eq!(
            pointer_of(&schema, r#"Unimplemented keys: ["not"]"#, "not").as_deref(),
            Some("/properties/b/not")
        );
        assert_eq!(pointer_of(&schema, "x", "uniqueItems"), None);
    }
}
