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
    /// What a provider that constrains decoding is given: the schema as given, with objects
    /// that list their properties and say nothing of others closed (`additionalProperties:
    /// false`). Every answer it admits fits the schema given; a small model held to it cannot
    /// invent keys without end.
    pub closed_schema: Value,
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
        let mut closed_schema = schema.clone();
        close_objects(&mut closed_schema);
        Self {
            name,
            description,
            schema,
            model_schema,
            strict,
            wrapped,
            closed_schema,
        }
    }

    /// The schema shown to a provider: the one given when the provider constrains decoding
    /// itself (it takes any root and answers the bare value), else the model schema.
    pub fn shown(&self, constrained: bool) -> &Value {
        if constrained {
            &self.closed_schema
        } else {
            &self.model_schema
        }
    }

    /// Whether an answer comes wrapped in `{"value": ...}`: the one place that decides it.
    /// A provider that constrains decoding is given the schema as it is, so never.
    pub fn wraps_for(&self, constrained: bool) -> bool {
        self.wrapped && !constrained
    }

    /// The member of a top-level object under which an answer's list comes, when one is: the
    /// one definition of the list wrapper, read by the stream parser (whose elements are those
    /// of a top-level array or of the array under this member, and of no other) as by
    /// [`unwrap_value`](Self::unwrap_value) for a whole answer, so that an object holding
    /// some other array (`{"person": "Ann", "tags": [...]}`) is refused in every framing.
    pub fn list_wrapper(&self, constrained: bool) -> Option<&'static str> {
        self.wraps_for(constrained).then_some(WRAPPER_FIELD)
    }

    /// The answer as the schema given expects it, from a provider that constrains decoding
    /// (`constrained`: it was shown the schema as it is) or not: out of its `{"value": ...}`
    /// wrapper when it was asked for wrapped, and, when the model was shown the strict-mode
    /// rewrite, without the `null`s that rewrite asks for in place of an optional property
    /// (strict mode makes every property required and the optional ones nullable; the schema
    /// given may not accept `null` there, only the property's absence).
    pub fn unwrap_value(&self, value: Value, constrained: bool) -> Value {
        let mut value = self.unwrap_wrapper(value, self.wraps_for(constrained));
        self.drop_strict_nulls(&mut value, constrained);
        value
    }

    /// Removes the `null`s the strict rewrite asked for (see [`Self::unwrap_value`]) from a
    /// value of this schema: a whole answer, or one element of a streamed list.
    pub fn drop_strict_nulls(&self, value: &mut Value, constrained: bool) {
        if self.strict && !constrained {
            drop_strict_nulls(&self.schema, &self.schema, value, 0);
        }
    }

    /// `value` (of the schema given) as the model is asked to write it: the inverse of
    /// [`unwrap_value`](Self::unwrap_value), wrapped in `{"value": ...}` when answers come
    /// wrapped, and, when the model is shown the strict-mode rewrite, with a `null` for each
    /// optional property left out. Used to show worked examples.
    pub fn answer_for(&self, value: &Value, constrained: bool) -> Value {
        let mut value = value.clone();
        if self.strict && !constrained {
            fill_strict_nulls(&self.schema, &self.schema, &mut value, 0);
        }
        if self.wraps_for(constrained) {
            json!({ WRAPPER_FIELD: value })
        } else {
            value
        }
    }

    fn unwrap_wrapper(&self, value: Value, wrapped: bool) -> Value {
        if !wrapped {
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

/// Gives, in place, a schema whose keywords apply to one type only (`properties`, `items`)
/// that type, and closes every object schema that lists `properties` and says nothing of other
/// keys, except where closing would change what the schema means: a branch of `allOf` or a
/// definition a branch refers to (the other branches add properties), a schema with its own
/// `allOf`, `anyOf`, `oneOf` or `$ref` next to its properties (and what such a `$ref` names).
/// A key `required` names but the properties do not list is listed (any value), so it stays
/// allowed.
fn close_objects(schema: &mut Value) {
    let mut composed = std::collections::HashSet::new();
    composed_refs(schema, false, &mut composed);
    close_at(schema, false, "", &composed);
}

/// The `$ref`s whose target is combined with other schemas: in an `allOf` branch (or an
/// `anyOf`/`oneOf` inside one), in an `anyOf`/`oneOf` next to `properties`, or next to
/// `properties` itself.
fn composed_refs(schema: &Value, in_all_of: bool, out: &mut std::collections::HashSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref")
                && (in_all_of || map.contains_key("properties"))
            {
                out.insert(r.clone());
            }
            let shared = in_all_of || map.contains_key("properties");
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("allOf", Value::Array(branches)) => {
                        branches.iter().for_each(|b| composed_refs(b, true, out));
                    }
                    ("anyOf" | "oneOf", Value::Array(branches)) => {
                        branches.iter().for_each(|b| composed_refs(b, shared, out));
                    }
                    _ => composed_refs(value, false, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| composed_refs(v, false, out)),
        _ => {}
    }
}

fn close_at(
    schema: &mut Value,
    in_all_of: bool,
    pointer: &str,
    composed: &std::collections::HashSet<String>,
) {
    let Value::Object(map) = schema else {
        if let Value::Array(items) = schema {
            for (i, v) in items.iter_mut().enumerate() {
                close_at(v, false, &format!("{pointer}/{i}"), composed);
            }
        }
        return;
    };
    // Keywords that only apply to one type imply it: without the type, a grammar also admits
    // any other JSON value (a schema of `properties` alone is satisfied by a string).
    if ![
        "type", "enum", "const", "$ref", "anyOf", "oneOf", "allOf", "not", "if",
    ]
    .iter()
    .any(|k| map.contains_key(*k))
    {
        let has = |keys: &[&str]| keys.iter().any(|k| map.contains_key(*k));
        let object = has(&[
            "properties",
            "required",
            "additionalProperties",
            "patternProperties",
            "minProperties",
            "maxProperties",
        ]);
        let array = has(&[
            "items",
            "prefixItems",
            "minItems",
            "maxItems",
            "uniqueItems",
        ]);
        if object != array {
            let implied = if object { "object" } else { "array" };
            map.insert("type".into(), Value::String(implied.into()));
        }
    }
    let combined = [
        "allOf",
        "anyOf",
        "oneOf",
        "$ref",
        "if",
        "dependentSchemas",
        "dependencies",
    ]
    .iter()
    .any(|k| map.contains_key(*k));
    let open = ![
        "additionalProperties",
        "patternProperties",
        "unevaluatedProperties",
    ]
    .iter()
    .any(|k| map.contains_key(*k));
    if map.get("properties").is_some_and(Value::is_object)
        && open
        && !combined
        && !in_all_of
        && !composed.contains(&format!("#{pointer}"))
    {
        // A required key the properties do not list is listed, with any value, so that
        // closing keeps it allowed.
        let required = required_keys(map);
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            for key in required {
                props.entry(key).or_insert(Value::Bool(true));
            }
        }
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    // Branches of `anyOf`/`oneOf` next to properties (or inside an `allOf`) are combined with
    // them: closing a branch would refuse the others' keys.
    let shared = in_all_of || map.contains_key("properties");
    for (key, value) in map.iter_mut() {
        let here = format!("{pointer}/{}", super::refs::escape_token(key));
        match key.as_str() {
            // Keywords whose values are not schemas.
            "enum" | "const" | "default" | "examples" | "required" => {}
            "allOf" | "anyOf" | "oneOf" => {
                let combined = key == "allOf" || shared;
                if let Value::Array(branches) = value {
                    for (i, b) in branches.iter_mut().enumerate() {
                        close_at(b, combined, &format!("{here}/{i}"), composed);
                    }
                }
            }
            // Maps of name to schema: each value is a schema.
            "properties" | "$defs" | "definitions" | "patternProperties" | "dependentSchemas" => {
                if let Value::Object(m) = value {
                    for (name, v) in m.iter_mut() {
                        let at = format!("{here}/{}", super::refs::escape_token(name));
                        close_at(v, false, &at, composed);
                    }
                }
            }
            _ => close_at(value, false, &here, composed),
        }
    }
}

/// The keys an object schema's `required` lists.
fn required_keys(schema: &Map<String, Value>) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
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
                let required = required_keys(map);
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

/// `schema` with its `$ref` followed (local references only, checked at compile time), or
/// `None` past the depth that bounds a walk of a recursive schema.
fn walked<'s>(root: &'s Value, schema: &'s Value, depth: usize) -> Option<&'s Value> {
    if depth > 64 {
        return None;
    }
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => super::refs::resolve_local(root, r),
        None => Some(schema),
    }
}

/// Removes, along `schema` (the one given, within `root`), every `null` of an optional
/// property whose schema does not accept `null`: what the strict rewrite added.
fn drop_strict_nulls(root: &Value, schema: &Value, value: &mut Value, depth: usize) {
    let Some(schema) = walked(root, schema, depth) else {
        return;
    };
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            for alt in alts {
                drop_strict_nulls(root, alt, value, depth + 1);
            }
        }
    }
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            let required = schema.as_object().map(required_keys).unwrap_or_default();
            map.retain(|k, v| {
                !(v.is_null()
                    && !required.contains(k)
                    && props.get(k).is_some_and(|p| !admits_null(root, p)))
            });
            for (k, v) in map.iter_mut() {
                if let Some(p) = props.get(k) {
                    drop_strict_nulls(root, p, v, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items").filter(|i| i.is_object()) {
                for v in items {
                    drop_strict_nulls(root, item, v, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Adds, along `schema` (within `root`), a `null` for every property an object of `value`
/// leaves out: what the strict rewrite asks the model to write for an optional property
/// (every property required, the optional ones nullable). Follows properties, items, local
/// references and `allOf`; the alternatives of `anyOf`/`oneOf` are left alone (which one a
/// value takes is not known).
fn fill_strict_nulls(root: &Value, schema: &Value, value: &mut Value, depth: usize) {
    let Some(schema) = walked(root, schema, depth) else {
        return;
    };
    if let Some(alts) = schema.get("allOf").and_then(Value::as_array) {
        for alt in alts {
            fill_strict_nulls(root, alt, value, depth + 1);
        }
    }
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (k, p) in props {
                match map.get_mut(k) {
                    Some(v) => fill_strict_nulls(root, p, v, depth + 1),
                    None => {
                        map.insert(k.clone(), Value::Null);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items").filter(|i| i.is_object()) {
                for v in items {
                    fill_strict_nulls(root, item, v, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// Whether `schema` (references followed once) accepts `null`.
fn admits_null(root: &Value, schema: &Value) -> bool {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => match super::refs::resolve_local(root, r) {
            Some(target) => target,
            None => return true,
        },
        None => schema,
    };
    // No type, enum or const: anything goes, `null` included.
    let open = schema.get("type").is_none()
        && schema.get("enum").is_none()
        && schema.get("const").is_none()
        && !["anyOf", "oneOf", "allOf", "$ref"]
            .iter()
            .any(|k| schema.get(*k).is_some());
    open || accepts_null(schema)
        || schema
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|e| e.contains(&Value::Null))
        || schema.get("const") == Some(&Value::Null)
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
            s.unwrap_value(json!({"value": [1]}), false),
            json!([1]),
            "wrapper removed"
        );
    }

    #[test]
    fn nulls_strict_mode_added_are_dropped_before_validation() {
        let s = ResponseSchema::from_schema(
            "Contact",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "email": {"type": "string"},
                    "note": {"type": ["string", "null"]},
                    "home": {"$ref": "#/$defs/Place"}
                },
                "required": ["name"],
                "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}}
            }),
        );
        assert!(s.strict);
        let answer = json!({"name": "Ann", "email": null, "note": null, "home": {"city": null}});
        assert_eq!(
            s.unwrap_value(answer.clone(), false),
            json!({"name": "Ann", "note": null, "home": {}}),
            "optional non-nullable nulls dropped, a nullable one kept"
        );
        // A provider given the schema as it is (constrained decoding) is not second-guessed.
        assert_eq!(s.unwrap_value(answer.clone(), true), answer);
        let list = ResponseSchema::from_schema("L", json!({"type": "array"}));
        assert_eq!(list.unwrap_value(json!({"value": [1]}), false), json!([1]));
        assert_eq!(list.unwrap_value(json!([1]), true), json!([1]));
    }

    #[test]
    fn constrained_providers_get_objects_closed_where_that_keeps_the_meaning() {
        let s = ResponseSchema::from_schema(
            "X",
            json!({
                "type": "object",
                "properties": {
                    "a": {"type": "object", "properties": {"b": {"type": "string"}}},
                    "m": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "c": {"allOf": [{"properties": {"x": {}}}, {"properties": {"y": {}}}]},
                    "properties": {"type": "object", "properties": {"p": {}}},
                    "r": {"type": "object", "properties": {"p": {}}, "required": ["q"]},
                    "s": {"allOf": [{"$ref": "#/$defs/Base"}, {"oneOf": [{"$ref": "#/$defs/Kind"}]}]},
                    "t": {"properties": {"k": {}}, "anyOf": [{"properties": {"z": {}}}]}
                },
                "$defs": {
                    "D": {"properties": {"d": {}}},
                    "Base": {"properties": {"x": {}}},
                    "Kind": {"properties": {"kind": {}}}
                }
            }),
        );
        let c = &s.closed_schema;
        assert_eq!(c["additionalProperties"], false);
        assert_eq!(c["properties"]["a"]["additionalProperties"], false);
        assert_eq!(
            c["properties"]["m"]["additionalProperties"]["type"],
            "integer"
        );
        assert!(
            c["properties"]["c"]["allOf"][0]
                .get("additionalProperties")
                .is_none()
        );
        assert_eq!(c["properties"]["properties"]["additionalProperties"], false);
        assert_eq!(c["$defs"]["D"]["additionalProperties"], false);
        assert_eq!(c["properties"]["r"]["additionalProperties"], false);
        assert_eq!(
            c["properties"]["r"]["properties"]["q"], true,
            "a required key not listed is listed, any value"
        );
        assert!(
            c["$defs"]["Base"].get("additionalProperties").is_none(),
            "a definition an allOf branch names stays open"
        );
        assert!(c["$defs"]["Kind"].get("additionalProperties").is_none());
        assert!(
            c["properties"]["t"]["anyOf"][0]
                .get("additionalProperties")
                .is_none()
        );
        assert!(
            s.schema.get("additionalProperties").is_none(),
            "the given schema is kept"
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
