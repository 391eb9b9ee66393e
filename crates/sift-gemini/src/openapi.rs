//! A JSON Schema as the OpenAPI 3.0 subset Gemini's `responseSchema` and a function's
//! `parameters` take (the models before 2.5 know no other): upper-case `type`s, `nullable`
//! for a type that admits `null`, local `$ref`s inlined (there are no `$defs`), `oneOf` as
//! `anyOf`, `const` as a one-value `enum`, `propertyOrdering` set to the properties' order (so
//! the model writes them as the schema lists them), and keywords the subset lacks left out:
//! the answer is still validated against the whole schema.

use serde_json::{Map, Value, json};
use sift_core::SchemaError;

/// Keywords kept as they are.
const KEPT: &[&str] = &[
    "format",
    "title",
    "description",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
    "required",
    "default",
    "example",
];

/// How deep inlined references may nest: a recursive schema cannot be inlined.
const MAX_DEPTH: usize = 32;

/// `schema` in the OpenAPI subset, or why it cannot be: a recursive or unresolved `$ref`.
pub fn convert(schema: &Value) -> Result<Value, SchemaError> {
    Converter { root: schema }.node(schema, "", 0)
}

struct Converter<'a> {
    root: &'a Value,
}

impl Converter<'_> {
    fn node(&self, schema: &Value, pointer: &str, depth: usize) -> Result<Value, SchemaError> {
        let Value::Object(map) = schema else {
            // `true` (anything) has no form in the subset: an unconstrained object is closest.
            return Ok(json!({}));
        };
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            if depth >= MAX_DEPTH {
                return Err(unsupported(
                    pointer,
                    "$ref",
                    &format!(
                        "`{reference}` is recursive (or nested over {MAX_DEPTH} deep); this model's schema subset has no references"
                    ),
                ));
            }
            let target = reference
                .strip_prefix('#')
                .and_then(|p| self.root.pointer(p))
                .ok_or_else(|| SchemaError::UnresolvedRef {
                    pointer: pointer.to_owned(),
                    reference: reference.to_owned(),
                    within: None,
                })?;
            let mut out = self.node(target, pointer, depth + 1)?;
            // Siblings of the `$ref` (a description) win over the target's.
            if let (Value::Object(o), Some(Value::String(d))) = (&mut out, map.get("description")) {
                o.insert("description".into(), json!(d));
            }
            return Ok(out);
        }
        let mut out = Map::new();
        let mut nullable = false;
        match map.get("type") {
            Some(Value::String(t)) if t == "null" => nullable = true,
            Some(Value::String(t)) => {
                out.insert("type".into(), json!(t.to_ascii_uppercase()));
            }
            Some(Value::Array(types)) => {
                let named: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
                nullable = named.contains(&"null");
                let rest: Vec<&&str> = named.iter().filter(|t| **t != "null").collect();
                match rest.as_slice() {
                    [one] => {
                        out.insert("type".into(), json!(one.to_ascii_uppercase()));
                    }
                    [] => {}
                    many => {
                        // Several types: one alternative each.
                        let alternatives: Vec<Value> = many
                            .iter()
                            .map(|t| json!({"type": t.to_ascii_uppercase()}))
                            .collect();
                        out.insert("anyOf".into(), Value::Array(alternatives));
                    }
                }
            }
            _ => {}
        }
        for (k, v) in map {
            let here = format!("{pointer}/{k}");
            match k.as_str() {
                k if KEPT.contains(&k) => {
                    out.insert(k.into(), v.clone());
                }
                "enum" | "const" => {
                    let values: Vec<Value> = match v {
                        Value::Array(a) if k == "enum" => a.clone(),
                        other => vec![other.clone()],
                    };
                    nullable |= values.contains(&Value::Null);
                    let values: Vec<&Value> = values.iter().filter(|x| !x.is_null()).collect();
                    // The subset has enums of strings only: others are left to validation.
                    if !values.is_empty() && values.iter().all(|x| x.is_string()) {
                        out.insert("enum".into(), json!(values));
                        out.insert("type".into(), json!("STRING"));
                    }
                }
                "properties" => {
                    let Some(props) = v.as_object() else { continue };
                    let mut converted = Map::new();
                    for (name, s) in props {
                        let p = format!("{here}/{}", sift_core::escape_pointer_token(name));
                        converted.insert(name.clone(), self.node(s, &p, depth)?);
                    }
                    out.insert(
                        "propertyOrdering".into(),
                        json!(props.keys().collect::<Vec<_>>()),
                    );
                    out.insert("properties".into(), Value::Object(converted));
                }
                "items" => {
                    out.insert("items".into(), self.node(v, &here, depth)?);
                }
                "anyOf" | "oneOf" => {
                    let Some(list) = v.as_array() else { continue };
                    let mut alternatives = Vec::new();
                    for (i, s) in list.iter().enumerate() {
                        if s.get("type").and_then(Value::as_str) == Some("null") {
                            nullable = true;
                            continue;
                        }
                        alternatives.push(self.node(s, &format!("{here}/{i}"), depth)?);
                    }
                    if alternatives.len() == 1 && !out.contains_key("type") {
                        // `anyOf: [X, null]`, the usual optional: X itself, nullable.
                        if let Some(Value::Object(only)) = alternatives.pop() {
                            for (k, v) in only {
                                out.entry(k).or_insert(v);
                            }
                        }
                    } else if !alternatives.is_empty() {
                        out.insert("anyOf".into(), Value::Array(alternatives));
                    }
                }
                "allOf" => {
                    // Merged into one schema: the subset has no `allOf`.
                    let Some(list) = v.as_array() else { continue };
                    for (i, s) in list.iter().enumerate() {
                        if let Value::Object(part) = self.node(s, &format!("{here}/{i}"), depth)? {
                            for (k, v) in part {
                                out.entry(k).or_insert(v);
                            }
                        }
                    }
                }
                // `type` handled above; `$defs`, `additionalProperties`, `$schema` and the
                // rest have no place in the subset.
                _ => {}
            }
        }
        if nullable {
            out.insert("nullable".into(), Value::Bool(true));
        }
        Ok(Value::Object(out))
    }
}

fn unsupported(pointer: &str, keyword: &str, message: &str) -> SchemaError {
    SchemaError::Unsupported {
        pointer: pointer.to_owned(),
        keyword: keyword.to_owned(),
        provider: "gemini".into(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pydantic_shaped_schema_becomes_the_subset() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "Full name"},
                "age": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
                "role": {"enum": ["admin", "user"]},
                "address": {"$ref": "#/$defs/Address"}
            },
            "required": ["name"],
            "additionalProperties": false,
            "$defs": {"Address": {"type": "object", "properties": {"city": {"type": ["string", "null"]}}}}
        });
        let out = convert(&schema).unwrap();
        assert_eq!(
            out,
            json!({
                "type": "OBJECT",
                "propertyOrdering": ["name", "age", "role", "address"],
                "properties": {
                    "name": {"type": "STRING", "description": "Full name"},
                    "age": {"type": "INTEGER", "minimum": 0, "nullable": true},
                    "role": {"type": "STRING", "enum": ["admin", "user"]},
                    "address": {"type": "OBJECT", "propertyOrdering": ["city"],
                                "properties": {"city": {"type": "STRING", "nullable": true}}}
                },
                "required": ["name"]
            })
        );
    }

    #[test]
    fn a_recursive_schema_is_refused_where_it_recurses() {
        let schema = json!({
            "$defs": {"Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
            "$ref": "#/$defs/Node"
        });
        let e = convert(&schema).unwrap_err();
        assert_eq!(e.kind(), "unsupported");
        assert!(
            e.pointer().unwrap().ends_with("/properties/children/items"),
            "{e}"
        );
        let e = convert(&json!({"$ref": "#/$defs/Missing"})).unwrap_err();
        assert_eq!(e.kind(), "unresolved_ref");
    }
}
