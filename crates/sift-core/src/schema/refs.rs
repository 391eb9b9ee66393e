//! `$ref` checking: every reference must stay inside the schema. sift never fetches a
//! document, so a remote reference is refused up front, with where it is, rather than failing
//! later (or, worse, silently validating nothing).

use std::collections::HashSet;

use serde_json::Value;

use super::SchemaError;

/// Keywords whose values are data, not schemas: a `$ref` inside them is not a reference.
const DATA_KEYWORDS: &[&str] = &["enum", "const", "examples", "default"];

/// Checks every `$ref` in `root`: local pointers must resolve, anchors must exist, and
/// anything else must name a document identified (`$id`) inside the schema itself.
pub(super) fn check(root: &Value) -> Result<(), SchemaError> {
    let mut ids = HashSet::new();
    let mut anchors = HashSet::new();
    collect(root, &mut ids, &mut anchors);
    let mut pointer = String::new();
    walk(root, root, None, &ids, &anchors, &mut pointer)
}

/// A subschema an `$id` makes a document of its own: where it is, and itself. `#` pointers
/// inside it resolve against it, not the root.
type Resource<'a> = Option<(String, &'a Value)>;

/// The document `value` (at `pointer`) starts, if its `$id`/`id` names one.
fn resource<'a>(value: &'a Value, pointer: &str) -> Resource<'a> {
    let id = value
        .get("$id")
        .or_else(|| value.get("id"))
        .and_then(Value::as_str)?;
    (!pointer.is_empty() && !id.starts_with('#')).then(|| (pointer.to_owned(), value))
}

fn collect<'a>(value: &'a Value, ids: &mut HashSet<&'a str>, anchors: &mut HashSet<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$id" | "id", Value::String(id)) => {
                        match id.strip_prefix('#') {
                            // Draft 4-7 anchors are spelled as a fragment-only id.
                            Some(anchor) => anchors.insert(anchor),
                            None => ids.insert(id.split('#').next().unwrap_or(id)),
                        };
                    }
                    ("$anchor" | "$dynamicAnchor", Value::String(a)) => {
                        anchors.insert(a);
                    }
                    (k, _) if DATA_KEYWORDS.contains(&k) => {}
                    _ => collect(v, ids, anchors),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, ids, anchors)),
        _ => {}
    }
}

fn walk<'a>(
    root: &'a Value,
    value: &'a Value,
    base: Resource<'a>,
    ids: &HashSet<&str>,
    anchors: &HashSet<&str>,
    pointer: &mut String,
) -> Result<(), SchemaError> {
    match value {
        Value::Object(map) => {
            let base = resource(value, pointer).or(base);
            for (key, v) in map {
                if DATA_KEYWORDS.contains(&key.as_str()) {
                    continue;
                }
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape_token(key));
                if let ("$ref" | "$dynamicRef", Value::String(reference)) = (key.as_str(), v) {
                    check_one(root, base.as_ref(), reference, ids, anchors, pointer)?;
                } else {
                    walk(root, v, base.clone(), ids, anchors, pointer)?;
                }
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                walk(root, v, base.clone(), ids, anchors, pointer)?;
                pointer.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_one(
    root: &Value,
    base: Option<&(String, &Value)>,
    reference: &str,
    ids: &HashSet<&str>,
    anchors: &HashSet<&str>,
    pointer: &str,
) -> Result<(), SchemaError> {
    let (document, fragment) = match reference.split_once('#') {
        Some((d, f)) => (d, f),
        None => (reference, ""),
    };
    if !document.is_empty() {
        // A document named by an `$id` inside this schema is local; the validator resolves
        // the rest of the reference against it.
        if ids
            .iter()
            .any(|id| *id == document || id.ends_with(&format!("/{document}")))
        {
            return Ok(());
        }
        return Err(SchemaError::RemoteRef {
            pointer: pointer.to_owned(),
            reference: reference.to_owned(),
        });
    }
    let document = base.map_or(root, |(_, v)| *v);
    let found = if fragment.is_empty() {
        true
    } else if fragment.starts_with('/') {
        resolve_local(document, reference).is_some()
    } else {
        anchors.contains(fragment)
    };
    if found {
        Ok(())
    } else {
        Err(SchemaError::UnresolvedRef {
            pointer: pointer.to_owned(),
            reference: reference.to_owned(),
            within: base.map(|(at, _)| at.clone()),
        })
    }
}

/// `key` as one JSON pointer token (`~` and `/` escaped).
pub fn escape_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// What a local `$ref` (`#/...`, `%XX` escapes allowed) points at in `root`, if anything.
pub(crate) fn resolve_local<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    root.pointer(&percent_decode(reference.strip_prefix('#')?))
}

/// Decodes `%XX` escapes in a URI fragment (JSON pointers in `$ref`s are URI-encoded).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pointer_under_a_nested_id_is_read_in_that_document() {
        // Draft 4: `id` on a subschema starts a document; `#/definitions/x` is then looked
        // up inside it (where it is missing), not at the root.
        let schema = json!({
            "id": "https://example.com/root.json",
            "definitions": {"x": {"type": "string"}},
            "properties": {"a": {"id": "/properties/a", "$ref": "#/definitions/x"}}
        });
        let err = check(&schema).unwrap_err();
        assert_eq!(err.pointer(), Some("/properties/a/$ref"));
        assert!(
            err.to_string()
                .contains("the `$id` (or `id`) at `/properties/a`"),
            "{err}"
        );
        // A fragment-only id is an anchor, not a document.
        let anchored = json!({
            "definitions": {"x": {"type": "string"}},
            "properties": {"a": {"id": "#a", "$ref": "#/definitions/x"}}
        });
        check(&anchored).unwrap();
    }

    #[test]
    fn local_references_pass() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"$ref": "#/$defs/A"},
                "b": {"$ref": "#/definitions/B%20C"},
                "c": {"$ref": "#anchor"},
                "d": {"$ref": "#"},
                "e": {"$ref": "item.json"},
                "enum_data": {"enum": [{"$ref": "http://not.a.ref"}]}
            },
            "$defs": {"A": {"type": "string"}, "I": {"$id": "https://x.test/item.json"}},
            "definitions": {"B C": {"$anchor": "anchor"}}
        });
        check(&schema).unwrap();
    }

    #[test]
    fn remote_references_are_refused_with_their_place() {
        let schema =
            json!({"properties": {"a": {"items": [{"$ref": "https://example.com/s.json#/x"}]}}});
        let err = check(&schema).unwrap_err();
        assert_eq!(
            err,
            SchemaError::RemoteRef {
                pointer: "/properties/a/items/0/$ref".into(),
                reference: "https://example.com/s.json#/x".into(),
            }
        );
    }

    #[test]
    fn dangling_references_are_refused() {
        let err = check(&json!({"properties": {"a": {"$ref": "#/$defs/Missing"}}})).unwrap_err();
        assert_eq!(err.kind(), "unresolved_ref");
        assert_eq!(err.pointer(), Some("/properties/a/$ref"));
    }
}
