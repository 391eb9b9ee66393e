//! A JSON Schema as OpenAPI components: OpenAPI 3.1 takes JSON Schema as it is, but its
//! definitions must live under `components/schemas`, so `$defs` (and draft 7's `definitions`)
//! become components of their own and every local `$ref` is rewritten to point there.

use serde_json::{Map, Value};

/// `schema` as components: the root named `name`, each definition `name` + its own name.
/// Returns the components in order, the root first.
pub(super) fn components(name: &str, schema: &Value) -> Vec<(String, Value)> {
    let mut root = schema.clone();
    let mut defs: Vec<(String, Value)> = Vec::new();
    if let Some(obj) = root.as_object_mut() {
        // An `$id` would change what references resolve against; `$schema` is the document's.
        obj.remove("$id");
        obj.remove("$schema");
        for key in ["$defs", "definitions"] {
            if let Some(Value::Object(map)) = obj.remove(key) {
                defs.extend(map.into_iter().map(|(k, v)| (format!("{key}/{k}"), v)));
            }
        }
    }
    let rename = |def: &str| -> String {
        let (_, short) = def.split_once('/').unwrap_or(("", def));
        format!("{name}{}", component_name(short))
    };
    let mut out = vec![(name.to_owned(), root)];
    out.extend(defs.iter().map(|(k, v)| (rename(k), v.clone())));
    let def_names: Vec<(String, String)> =
        defs.iter().map(|(k, _)| (k.clone(), rename(k))).collect();
    for (_, value) in &mut out {
        rewrite_refs(value, name, &def_names);
    }
    out
}

/// A component name OpenAPI accepts (`^[a-zA-Z0-9._-]+$`), in CamelCase.
pub(super) fn component_name(raw: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            if upper {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if out.is_empty() {
        out.push_str("Schema");
    }
    out
}

/// Rewrites every local `$ref` in `value`: into a definition (`#/$defs/X/...`) to that
/// definition's component, anything else (`#`, `#/properties/...`) into the root's.
fn rewrite_refs(value: &mut Value, root: &str, defs: &[(String, String)]) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some(pointer) = r.strip_prefix('#')
            {
                *r = target(pointer, root, defs);
            }
            map.values_mut().for_each(|v| rewrite_refs(v, root, defs));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, root, defs)),
        _ => {}
    }
}

fn target(pointer: &str, root: &str, defs: &[(String, String)]) -> String {
    let pointer = sift_core::decode_fragment(pointer);
    let pointer = pointer.as_str();
    for (def, component) in defs {
        // `def` is `$defs/Name` unescaped; the pointer has `~0`/`~1` escapes.
        let (section, name) = def.split_once('/').unwrap_or(("", def));
        let escaped = format!("/{section}/{}", sift_core::escape_pointer_token(name));
        if let Some(rest) = pointer.strip_prefix(&escaped)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("#/components/schemas/{component}{rest}");
        }
    }
    format!("#/components/schemas/{root}{pointer}")
}

/// Inserts `components` under `doc.components.schemas`.
pub(super) fn insert(doc: &mut Value, components: Vec<(String, Value)>) {
    let Some(schemas) = doc
        .as_object_mut()
        .map(|d| {
            d.entry("components")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .and_then(Value::as_object_mut)
        .map(|c| {
            c.entry("schemas")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (name, schema) in components {
        schemas.insert(name, schema);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definitions_become_components_and_refs_follow_them() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "seller": {"$ref": "#/$defs/Party"},
                "lines": {"type": "array", "items": {"$ref": "#/definitions/line%20item"}},
                "again": {"$ref": "#/properties/seller"},
                "self": {"$ref": "#"}
            },
            "$defs": {"Party": {"type": "object", "properties": {"sub": {"$ref": "#/$defs/Party/properties/x"}}}},
            "definitions": {"line item": {"type": "string"}}
        });
        let out = components("InvoiceOutput", &schema);
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "InvoiceOutput",
                "InvoiceOutputParty",
                "InvoiceOutputLineItem"
            ]
        );
        let root = &out[0].1;
        assert!(root.get("$schema").is_none() && root.get("$defs").is_none());
        let props = &root["properties"];
        assert_eq!(
            props["seller"]["$ref"],
            "#/components/schemas/InvoiceOutputParty"
        );
        assert_eq!(
            props["again"]["$ref"],
            "#/components/schemas/InvoiceOutput/properties/seller"
        );
        assert_eq!(props["self"]["$ref"], "#/components/schemas/InvoiceOutput");
        assert_eq!(
            out[1].1["properties"]["sub"]["$ref"],
            "#/components/schemas/InvoiceOutputParty/properties/x"
        );
        assert_eq!(component_name("line item"), "LineItem");
        assert_eq!(component_name("my-extractor_2"), "MyExtractor2");
    }
}
