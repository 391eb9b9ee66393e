//! Validation of a model's answer: JSON Schema (types, bounds, enums), deserialisation, then
//! the caller's own rules. Every error carries the path of the value it concerns.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json_stream::{JsonPath, PathSegment};

/// One thing wrong with an answer, at a path such as `age` or `items[2].name` (empty for the root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Where: field names joined by `.`, array indices in brackets; empty for the whole value.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Rules beyond what types and the JSON Schema express.
///
/// ```
/// use sift_core::{FieldError, Validate};
///
/// struct User { name: String, age: i64 }
///
/// impl Validate for User {
///     fn validate(&self) -> Result<(), Vec<FieldError>> {
///         let mut errors = Vec::new();
///         if !(0..=150).contains(&self.age) {
///             errors.push(FieldError::new("age", format!("must be within 0..=150, got {}", self.age)));
///         }
///         if self.name.trim().is_empty() {
///             errors.push(FieldError::new("name", "must not be empty"));
///         }
///         if errors.is_empty() { Ok(()) } else { Err(errors) }
///     }
/// }
/// ```
pub trait Validate {
    /// Checks the value; every problem found is returned, each with its path.
    fn validate(&self) -> Result<(), Vec<FieldError>>;
}

/// A compiled JSON Schema validator.
#[derive(Debug)]
pub struct SchemaValidator {
    validator: jsonschema::Validator,
}

impl SchemaValidator {
    /// Compiles `schema`.
    pub fn new(schema: &Value) -> Result<Self, String> {
        jsonschema::validator_for(schema)
            .map(|validator| Self { validator })
            .map_err(|e| e.to_string())
    }

    /// Compiles `schema`, a keyword the validator cannot take (an invalid `pattern`, say)
    /// named with its JSON pointer.
    pub(crate) fn build(schema: &Value) -> Result<Self, crate::SchemaError> {
        jsonschema::validator_for(schema)
            .map(|validator| Self { validator })
            .map_err(|e| {
                // The error locates the keyword in the schema (the schema being what was
                // read): the instance path when it has one, else the schema path.
                let at = [e.instance_path().as_str(), e.schema_path().as_str()]
                    .into_iter()
                    .find(|p| !p.is_empty())
                    .map(str::to_owned);
                match at {
                    Some(pointer) => crate::SchemaError::Invalid {
                        keyword: pointer.rsplit('/').next().map(str::to_owned),
                        pointer,
                        message: e.to_string(),
                    },
                    None => crate::SchemaError::Compile(e.to_string()),
                }
            })
    }

    /// Every violation in `instance`.
    pub fn errors(&self, instance: &Value) -> Vec<FieldError> {
        // The quick yes/no check first: most answers are valid.
        if self.validator.is_valid(instance) {
            return Vec::new();
        }
        self.validator
            .iter_errors(instance)
            .map(|e| {
                let pointer = e.instance_path().to_string();
                FieldError::new(pointer_to_path(&pointer, instance), e.to_string())
            })
            .collect()
    }
}

/// One way an instance fails its schema, located by its segments (for FastAPI-style `loc`s).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// Where in the instance: keys and array indices, from the root.
    pub location: Vec<PathSegment>,
    /// The schema keyword that failed (`type`, `required`, `pattern`, ...).
    pub keyword: String,
    /// What is wrong.
    pub message: String,
}

impl SchemaValidator {
    /// Every violation in `instance`, located by segments.
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        if self.validator.is_valid(instance) {
            return Vec::new();
        }
        self.validator
            .iter_errors(instance)
            .map(|e| {
                let mut location = pointer_segments(e.instance_path().as_str(), instance);
                // A missing property is reported at its parent; locate it at the property.
                if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind()
                    && let Some(name) = property.as_str()
                {
                    location.push(PathSegment::Key(name.to_owned()));
                }
                Violation {
                    location,
                    keyword: e.kind().keyword().to_owned(),
                    message: e.to_string(),
                }
            })
            .collect()
    }
}

/// The segments of a JSON pointer (`/items/2/name`), using the instance to tell array indices
/// from object keys that look like numbers.
pub fn pointer_segments(pointer: &str, instance: &Value) -> Vec<PathSegment> {
    let mut current = Some(instance);
    pointer
        .split('/')
        .skip(1)
        .map(|raw| {
            let segment = raw.replace("~1", "/").replace("~0", "~");
            match (current, segment.parse::<usize>()) {
                (Some(Value::Array(items)), Ok(i)) => {
                    current = items.get(i);
                    PathSegment::Index(i)
                }
                (other, _) => {
                    current = other.and_then(|v| v.get(&segment));
                    PathSegment::Key(segment)
                }
            }
        })
        .collect()
}

/// Turns a JSON pointer (`/items/2/name`) into sift's path form (`items[2].name`), using the
/// instance to tell array indices from object keys that look like numbers.
pub fn pointer_to_path(pointer: &str, instance: &Value) -> String {
    JsonPath(pointer_segments(pointer, instance)).to_string()
}

/// Deserialises `value` into `T`, reporting where it failed.
pub fn deserialize<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldError::new(path, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_become_paths() {
        let v = json!({"items": [{"name": 1}, {"name": 2}, {"name": 3}], "m": {"0": true}});
        assert_eq!(pointer_to_path("/items/2/name", &v), "items[2].name");
        assert_eq!(pointer_to_path("/m/0", &v), "m.0");
        assert_eq!(pointer_to_path("", &v), "");
    }

    #[test]
    fn schema_errors_carry_paths() {
        let schema = json!({
            "type": "object",
            "properties": {
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}
            },
            "required": ["age"]
        });
        let v = SchemaValidator::new(&schema).unwrap();
        let errors = v.errors(&json!({"age": 200, "items": [{"name": "a"}, {"name": "b"}, {}]}));
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"age"), "{errors:?}");
        assert!(paths.contains(&"items[2]"), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.message.contains("150")),
            "{errors:?}"
        );
    }

    #[test]
    fn deserialize_errors_carry_paths() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Item {
            name: String,
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Doc {
            items: Vec<Item>,
        }
        let err = deserialize::<Doc>(&json!({"items": [{"name": "a"}, {"name": 5}]})).unwrap_err();
        assert_eq!(err.path, "items[1].name");
        assert!(err.message.contains("expected a string"), "{err}");
    }
}
