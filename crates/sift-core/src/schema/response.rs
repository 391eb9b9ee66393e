//! The schema a model is shown: a JSON Schema adapted for the model (wrapped, strict).

use schemars::JsonSchema;
use serde_json::{Map, Value, json};

/// Formats OpenAI's strict mode accepts; schemars' numeric formats (`uint8`, `int32`, ...) are not
/// among them and are dropped from the schema the model sees (the bounds stay).
const STRICT_FORMATS: &[&str] = &[
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];

/// Name of the property wrapping a response type whose schema is not an object.
pub const WRAPPER_FIELD: &str = "value";

/// The schema of a response type, in the two forms sift needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseSchema {
    /// Name used for the tool / schema (from the type's title, sanitised).
    pub name: String,
    /// Description given to the model.
    pub description: String,
    /// The schema as schemars generated it: what answers are validated against.
    pub schema: Value,
    /// What the model is shown: an object at the root, every object closed and every property
    /// required (optional ones nullable) when `strict` holds.
    pub model_schema: Value,
    /// Whether `model_schema` meets OpenAI's strict-mode rules.
    pub strict: bool,
    /// Whether the type was wrapped in `{"value": ...}` because its schema is not an object.
    pub wrapped: bool,
}

impl ResponseSchema {
    /// Builds the schema of `T`.
    pub fn of<T: JsonSchema>() -> Self {
        let schema = schemars::schema_for!(T).to_value();
        Self::from_schema(&T::schema_name(), schema)
    }

    /// Builds from an already generated schema; `type_name` names it when it has no title.
    pub fn from_schema(type_name: &str, mut schema: Value) -> Self {
        if let Some(obj) = schema.as_object_mut() {
            obj.remove("$schema");
        }
        let title = schema
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or(type_name)
            .to_owned();
        let name = sanitize_name(&title);
        let description = schema
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!("Correctly extracted `{name}` with all the required parameters with correct types")
            });

        let wrapped = schema.get("type").and_then(Value::as_str) != Some("object");
        let mut model_schema = schema.clone();
        if wrapped {
            let defs = model_schema.as_object_mut().and_then(|o| o.remove("$defs"));
            let mut root = json!({
                "type": "object",
                "properties": { WRAPPER_FIELD: model_schema },
                "required": [WRAPPER_FIELD],
            });
            if let (Some(defs), Some(obj)) = (defs, root.as_object_mut()) {
                obj.insert("$defs".into(), defs);
            }
            model_schema = root;
        }
        let strict = strict_compatible(&model_schema);
        if strict {
            make_strict(&mut model_schema);
        }
        Self {
            name,
            description,
            schema,
            model_schema,
            strict,
            wrapped,
        }
    }

    /// Takes the answer out of its `{"value": ...}` wrapper when the type was wrapped.
    pub fn unwrap_value(&self, value: Value) -> Value {
        if !self.wrapped {
            return value;
        }
        match value {
            Value::Object(mut map) if map.contains_key(WRAPPER_FIELD) => {
                map.remove(WRAPPER_FIELD).unwrap_or(Value::Null)
            }
            // A model that answered with the bare value still gets a chance to be right.
            other => other,
        }
    }
}

fn sanitize_name(title: &str) -> String {
    let mut name: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        name.push_str("response");
    }
    name
}

/// Whether every object in the schema can be closed: no maps (`additionalProperties` with a
/// schema), no `patternProperties`.
fn strict_compatible(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            if map.contains_key("patternProperties") {
                return false;
            }
            if map
                .get("additionalProperties")
                .is_some_and(|ap| ap != &Value::Bool(false))
            {
                return false;
            }
            map.values().all(strict_compatible)
        }
        Value::Array(items) => items.iter().all(strict_compatible),
        _ => true,
    }
}

/// Rewrites a schema in place for strict mode: objects closed, every property required,
/// formerly optional ones nullable, unsupported keywords removed.
fn make_strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("default");
            if let Some(Value::String(f)) = map.get("format")
                && !STRICT_FORMATS.contains(&f.as_str())
            {
                map.remove("format");
            }
            if let Some(Value::Object(props)) = map.get("properties") {
                let required: Vec<String> = map
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| {
                        r.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let keys: Vec<String> = props.keys().cloned().collect();
                if let Some(Value::Object(props)) = map.get_mut("properties") {
                    for (key, prop) in props.iter_mut() {
                        if !required.contains(key) {
                            make_nullable(prop);
                        }
                    }
                }
                map.insert(
                    "required".into(),
                    Value::Array(keys.into_iter().map(Value::String).collect()),
                );
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for value in map.values_mut() {
                make_strict(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(make_strict),
        _ => {}
    }
}

fn make_nullable(schema: &mut Value) {
    if accepts_null(schema) {
        return;
    }
    if let Value::Object(map) = schema {
        // Enums and consts are wrapped below: widening their type alone would not admit null.
        let enumerated = map.contains_key("enum") || map.contains_key("const");
        match map.get_mut("type") {
            Some(Value::String(t)) if !enumerated => {
                let t = std::mem::take(t);
                map.insert("type".into(), json!([t, "null"]));
                return;
            }
            Some(Value::Array(types)) if !enumerated => {
                types.push(Value::String("null".into()));
                return;
            }
            _ => {}
        }
    }
    let inner = std::mem::take(schema);
    let mut wrapper = Map::new();
    wrapper.insert("anyOf".into(), json!([inner, {"type": "null"}]));
    *schema = Value::Object(wrapper);
}

fn accepts_null(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
        _ => ["anyOf", "oneOf"].iter().any(|k| {
            schema
                .get(*k)
                .and_then(Value::as_array)
                .is_some_and(|alts| alts.iter().any(accepts_null))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Address {
        city: String,
        zip: Option<String>,
    }

    /// A person.
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Person {
        name: String,
        age: u8,
        nickname: Option<String>,
        address: Option<Address>,
        tags: Vec<String>,
    }

    #[test]
    fn strict_schema_closes_objects_and_requires_everything() {
        let s = ResponseSchema::of::<Person>();
        assert!(s.strict);
        assert!(!s.wrapped);
        assert_eq!(s.name, "Person");
        assert_eq!(s.description, "A person.");
        insta::assert_snapshot!(serde_json::to_string_pretty(&s.model_schema).unwrap());
    }

    #[test]
    fn maps_are_not_strict() {
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Scores {
            by_name: std::collections::HashMap<String, u32>,
        }
        let s = ResponseSchema::of::<Scores>();
        assert!(!s.strict);
        assert_eq!(
            s.model_schema["properties"]["by_name"]["additionalProperties"]["type"],
            "integer"
        );
    }

    #[test]
    fn non_object_roots_are_wrapped_with_defs_hoisted() {
        let s = ResponseSchema::of::<Vec<Address>>();
        assert!(s.wrapped);
        assert_eq!(s.model_schema["type"], "object");
        assert_eq!(s.model_schema["required"], json!(["value"]));
        assert!(s.model_schema["$defs"]["Address"].is_object());
        assert_eq!(s.model_schema["properties"]["value"]["type"], "array");
        assert_eq!(
            s.unwrap_value(json!({"value": [1]})),
            json!([1]),
            "wrapper removed"
        );
    }

    #[test]
    fn names_are_sanitised() {
        let s = ResponseSchema::from_schema(
            "x",
            json!({"title": "Vec<User Detail>", "type": "object", "properties": {}}),
        );
        assert_eq!(s.name, "Vec_User_Detail_");
    }
}
