//! JSON Schemas for extraction: a Rust type's (schemars) or one given as data, compiled once
//! into a [`Schema`]: checked against the JSON Schema meta-schema, references checked (local
//! only, never fetched), the version the model is shown derived, and the validator built.

mod refs;
mod response;

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use schemars::JsonSchema;
use serde_json::Value;

use crate::validate::{FieldError, SchemaValidator};

pub use refs::{escape_token as escape_pointer_token, percent_decode as decode_fragment};
pub use response::{ResponseSchema, WRAPPER_FIELD};

/// Why a JSON Schema cannot be used for extraction. Each variant names where in the schema
/// the problem is, as a JSON pointer (`/properties/age/type`; empty for the root).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The schema does not conform to the JSON Schema meta-schema.
    #[error("invalid schema at `{pointer}`: {message}")]
    Invalid {
        /// Where.
        pointer: String,
        /// The keyword at fault, when known.
        keyword: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A `$ref` names a document outside the schema: sift never fetches one.
    #[error(
        "`$ref` at `{pointer}` names `{reference}`, outside this schema: only local references (`#/...`) are allowed"
    )]
    RemoteRef {
        /// Where the `$ref` is.
        pointer: String,
        /// What it names.
        reference: String,
    },
    /// A local `$ref` points at nothing.
    #[error("`$ref` at `{pointer}` names `{reference}`, which is not in the schema{}", within_note(.within.as_deref()))]
    UnresolvedRef {
        /// Where the `$ref` is.
        pointer: String,
        /// What it names.
        reference: String,
        /// The subschema it is read against, when an `$id` (or draft 4's `id`) there makes it
        /// a document of its own.
        within: Option<String>,
    },
    /// The schema's root is not what the operation needs (an array for element streams).
    #[error("{0}")]
    Shape(String),
    /// The validator could not be built from the schema.
    #[error("the schema cannot be compiled: {0}")]
    Compile(String),
    /// The provider cannot enforce the schema (the embedded model's grammar compiler does not
    /// take a feature it uses): refused rather than answered unconstrained.
    #[error("`{keyword}` at `{pointer}` cannot be enforced by {provider}: {message}")]
    Unsupported {
        /// Where the feature is used.
        pointer: String,
        /// The keyword at fault (`$ref`, `pattern`, `not`, ...).
        keyword: String,
        /// The provider that refused it.
        provider: String,
        /// What its compiler said.
        message: String,
    },
}

impl SchemaError {
    /// A short name for the kind of problem (`invalid`, `remote_ref`, `unresolved_ref`,
    /// `shape`, `compile`, `unsupported`).
    pub fn kind(&self) -> &'static str {
        match self {
            SchemaError::Invalid { .. } => "invalid",
            SchemaError::RemoteRef { .. } => "remote_ref",
            SchemaError::UnresolvedRef { .. } => "unresolved_ref",
            SchemaError::Shape(_) => "shape",
            SchemaError::Compile(_) => "compile",
            SchemaError::Unsupported { .. } => "unsupported",
        }
    }

    /// The JSON pointer of the problem in the schema, when it has one.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            SchemaError::Invalid { pointer, .. }
            | SchemaError::RemoteRef { pointer, .. }
            | SchemaError::UnresolvedRef { pointer, .. }
            | SchemaError::Unsupported { pointer, .. } => Some(pointer),
            SchemaError::Shape(_) | SchemaError::Compile(_) => None,
        }
    }
}

fn within_note(within: Option<&str>) -> String {
    within
        .map(|w| {
            format!(
                " document it is read in: the `$id` (or `id`) at `{w}` makes that subschema a document of its own, and `#` pointers resolve inside it"
            )
        })
        .unwrap_or_default()
}

/// A JSON Schema ready for extraction. Compile it once and reuse it: cloning is cheap.
///
/// ```
/// use sift_core::Schema;
///
/// let schema = Schema::compile("Contact", serde_json::json!({
///     "type": "object",
///     "properties": {"email": {"type": "string", "pattern": "^[^@]+@[^@]+$"}},
///     "required": ["email"]
/// }))?;
/// assert!(schema.errors(&serde_json::json!({"email": "a@b"})).is_empty());
/// assert_eq!(schema.errors(&serde_json::json!({"email": "nope"}))[0].path, "email");
/// # Ok::<(), sift_core::SchemaError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Schema(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    response: ResponseSchema,
    validator: SchemaValidator,
}

impl Schema {
    /// Compiles `schema`, named `name` unless it has a `title`.
    pub fn compile(name: &str, schema: Value) -> Result<Self, SchemaError> {
        check_meta(&schema)?;
        refs::check(&schema)?;
        Self::build(ResponseSchema::from_schema(name, schema))
    }

    /// The schema of a Rust type, compiled once per type and cached.
    pub fn of<T: JsonSchema + 'static>() -> Result<Self, SchemaError> {
        static CACHE: OnceLock<Mutex<HashMap<TypeId, Schema>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let key = TypeId::of::<T>();
        if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        // schemars' output needs no meta-schema check: it is valid by construction.
        let compiled = Self::build(ResponseSchema::of::<T>())?;
        if let Ok(mut c) = cache.lock() {
            c.insert(key, compiled.clone());
        }
        Ok(compiled)
    }

    fn build(response: ResponseSchema) -> Result<Self, SchemaError> {
        let validator = SchemaValidator::build(&response.schema)?;
        Ok(Self(Arc::new(Inner {
            response,
            validator,
        })))
    }

    /// The schema of one element of this array schema, with the root's definitions, so its
    /// references still resolve.
    pub fn items(&self) -> Result<Schema, SchemaError> {
        let root = self.value();
        let items = match root.get("items") {
            Some(items @ Value::Object(_))
                if root.get("type").and_then(Value::as_str) == Some("array") =>
            {
                items
            }
            _ => {
                return Err(SchemaError::Shape(
                    "an element stream needs an array schema with an `items` schema".into(),
                ));
            }
        };
        let mut element = items.clone();
        if let Some(obj) = element.as_object_mut() {
            for key in ["$defs", "definitions"] {
                if let Some(defs) = root.get(key) {
                    obj.entry(key).or_insert_with(|| defs.clone());
                }
            }
        }
        let name = element
            .get("title")
            .and_then(Value::as_str)
            .or_else(|| {
                items
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.rsplit('/').next())
            })
            .unwrap_or("item")
            .to_owned();
        refs::check(&element)?;
        Self::build(ResponseSchema::from_schema(&name, element))
    }

    /// The schema of a list of values of this one (`Array_of_{name}`), as schemars writes
    /// `Vec<T>` for a type `T`: the element under `$defs`, referred to by `items`.
    pub fn list_of(&self) -> Result<Schema, SchemaError> {
        let name = self.name().to_owned();
        let mut element = self.value().clone();
        let mut defs = element
            .as_object_mut()
            .and_then(|o| o.remove("$defs"))
            .and_then(|d| match d {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .unwrap_or_default();
        defs.insert(name.clone(), element);
        let list = serde_json::json!({
            "title": format!("Array_of_{name}"),
            "type": "array",
            "items": {"$ref": format!("#/$defs/{}", escape_pointer_token(&name))},
            "$defs": defs,
        });
        Schema::compile(&format!("Array_of_{name}"), list)
    }

    /// The name the model sees (the tool or schema name).
    pub fn name(&self) -> &str {
        &self.0.response.name
    }

    /// The schema as given: what answers are validated against.
    pub fn value(&self) -> &Value {
        &self.0.response.schema
    }

    /// What a provider that constrains decoding enforces: the schema given, with objects that
    /// list their properties closed where that keeps its meaning. What
    /// [`Provider::check_schema`](crate::Provider::check_schema) is asked about.
    pub fn constrained_schema(&self) -> &Value {
        &self.0.response.closed_schema
    }

    /// The schema the model is shown (wrapped when the root is not an object; strict-mode
    /// rewritten when the schema allows).
    pub fn model_schema(&self) -> &Value {
        &self.0.response.model_schema
    }

    /// Whether the model's schema meets OpenAI's strict-mode rules.
    pub fn is_strict(&self) -> bool {
        self.0.response.strict
    }

    /// Whether the root is an array (its elements can be streamed).
    pub fn is_array(&self) -> bool {
        self.value().get("type").and_then(Value::as_str) == Some("array")
    }

    /// Every way `value` fails the schema, each with its path.
    pub fn errors(&self, value: &Value) -> Vec<FieldError> {
        self.0.validator.errors(value)
    }

    /// Every way `value` fails the schema, located by segments and keyword.
    pub fn violations(&self, value: &Value) -> Vec<crate::validate::Violation> {
        self.0.validator.violations(value)
    }

    pub(crate) fn response(&self) -> &ResponseSchema {
        &self.0.response
    }
}

/// Checks `schema` against its meta-schema (the draft its `$schema` names, 2020-12 when none).
fn check_meta(schema: &Value) -> Result<(), SchemaError> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(SchemaError::Invalid {
            pointer: String::new(),
            keyword: None,
            message: "a schema must be a JSON object (or a boolean)".into(),
        });
    }
    // An unknown `$schema` makes the meta-schema lookup fail; say so instead of guessing.
    if let Some(uri) = schema.get("$schema").and_then(Value::as_str)
        && !KNOWN_DRAFTS.iter().any(|d| uri.trim_end_matches('#') == *d)
    {
        return Err(SchemaError::Invalid {
            pointer: "/$schema".into(),
            keyword: Some("$schema".into()),
            message: format!("unknown meta-schema `{uri}`: use draft 4, 6, 7, 2019-09 or 2020-12"),
        });
    }
    jsonschema::meta::validate(schema).map_err(|e| {
        let pointer = e.instance_path().to_string();
        let keyword = pointer
            .rsplit('/')
            .next()
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
        SchemaError::Invalid {
            pointer,
            keyword,
            message: e.to_string(),
        }
    })
}

const KNOWN_DRAFTS: &[&str] = &[
    "http://json-schema.org/draft-04/schema",
    "http://json-schema.org/draft-06/schema",
    "http://json-schema.org/draft-07/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "https://json-schema.org/draft/2020-12/schema",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_invalid_pattern_is_named_at_its_keyword() {
        let err = Schema::compile(
            "x",
            json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^a**$"}}}),
        )
        .unwrap_err();
        assert_eq!(err.pointer(), Some("/properties/code/pattern"), "{err}");
        assert_eq!(err.kind(), "invalid", "{err}");
    }

    #[test]
    fn a_schema_failing_its_meta_schema_names_the_place() {
        let err = Schema::compile(
            "x",
            json!({"type": "object", "properties": {"age": {"type": "integr"}}}),
        )
        .unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert_eq!(err.pointer(), Some("/properties/age/type"), "{err}");
    }

    #[test]
    fn unknown_meta_schemas_are_refused() {
        let err = Schema::compile(
            "x",
            json!({"$schema": "https://example.com/s", "type": "object"}),
        )
        .unwrap_err();
        assert_eq!(err.pointer(), Some("/$schema"));
    }

    #[test]
    fn non_objects_are_refused() {
        assert_eq!(
            Schema::compile("x", json!(3)).unwrap_err().kind(),
            "invalid"
        );
    }

    #[test]
    fn items_keep_definitions() {
        let list = Schema::compile(
            "Events",
            json!({
                "type": "array",
                "items": {"$ref": "#/$defs/Event"},
                "$defs": {"Event": {"type": "object", "properties": {"at": {"type": "string"}}, "required": ["at"]}}
            }),
        )
        .unwrap();
        assert!(list.is_array());
        let item = list.items().unwrap();
        assert_eq!(item.name(), "Event");
        assert!(item.errors(&json!({"at": "noon"})).is_empty());
        assert_eq!(item.errors(&json!({})).len(), 1);
        let object = Schema::compile("o", json!({"type": "object"})).unwrap();
        assert_eq!(object.items().unwrap_err().kind(), "shape");
    }
}
