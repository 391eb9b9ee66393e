//! The OpenAPI operations of `/v1/extractors/{name}/document` and `/document/stream`: the
//! uploads (multipart with a file part, or the raw file typed by `Content-Type`) and the
//! answer (`value`, `document`, `conflicts`, `failed_chunks`, and with `?spans=true` the
//! spans and the text they index).

use serde_json::{Value, json};

use crate::extractors::Extractor;

/// The answer of `/document`, around `value` (the output's schema).
fn answer(value: &Value) -> Value {
    let span_list = json!({"type": "array", "items": {"$ref": "#/components/schemas/Span"}});
    json!({
        "type": "object",
        "properties": {
            "value": value,
            "document": {
                "type": "object",
                "description": "What was read",
                "properties": {
                    "kind": {"enum": ["pdf", "html", "markdown", "text"]},
                    "pages": {"type": "integer", "minimum": 1},
                    "chars": {"type": "integer", "minimum": 0, "description": "The text's length in characters (Unicode scalar values)"},
                    "chunks": {"type": "array", "items": {
                        "type": "object",
                        "properties": {
                            "chunk": {"type": "integer"},
                            "start": {"type": "integer"},
                            "end": {"type": "integer"},
                            "pages": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}
                        }
                    }},
                    "warnings": {"type": "array", "items": {"type": "string"}, "description": "What could not be read (a PDF page), named"}
                },
                "required": ["kind", "pages", "chars", "chunks"]
            },
            "conflicts": {"type": "array", "description": "Fields where chunks grounded different values; the first (in document order) is taken", "items": {
                "type": "object",
                "properties": {
                    "pointer": {"type": "string"},
                    "chosen": {},
                    "candidates": {"type": "array", "items": {"type": "object", "properties": {
                        "value": {}, "chunk": {"type": "integer"}, "spans": span_list
                    }}}
                }
            }},
            "failed_chunks": {"type": "array", "description": "Chunks whose extraction failed; the value merges the others", "items": {
                "type": "object",
                "properties": {
                    "chunk": {"type": "integer"},
                    "start": {"type": "integer"},
                    "end": {"type": "integer"},
                    "pages": {"type": "array", "items": {"type": "integer"}},
                    "kind": {"type": "string"},
                    "message": {"type": "string"}
                }
            }},
            "spans": {
                "type": "object",
                "description": "With `?spans=true`: where each grounded value was found, by JSON pointer into `value`; offsets index `text` (Unicode scalar values, end exclusive), `page` is the PDF page (from 1)",
                "additionalProperties": span_list
            },
            "text": {"type": "string", "description": "With `?spans=true`: the document's text as read (PDF pages separated by form feeds)"},
            "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/PricedAttempt"}, "description": "With `?attempts=true`: every chunk's calls, in chunk order"},
            "usage": {"$ref": "#/components/schemas/UsageReport"},
            "cost_usd": {"type": ["number", "null"], "minimum": 0, "description": "With `?attempts=true`: USD at the configured prices; `null` when a model has none"}
        },
        "required": ["value", "document", "conflicts", "failed_chunks"]
    })
}

/// The request body: multipart with a file part (and the input's other fields as parts), or
/// the raw file.
fn upload(e: &Extractor, field: &str) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert(
        "file".into(),
        json!({"type": "string", "format": "binary", "description": "The document (PDF, HTML, Markdown or text); its kind from the part's Content-Type, else its file name, else its content"}),
    );
    for (name, schema) in e
        .spec
        .input
        .value()
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(name, _)| name.as_str() != field)
    {
        properties.insert(name.clone(), schema.clone());
    }
    let binary = json!({"schema": {"type": "string", "format": "binary"}});
    let mut content = serde_json::Map::new();
    content.insert(
        "multipart/form-data".into(),
        json!({"schema": {"type": "object", "properties": properties, "required": ["file"]}}),
    );
    for mime in sift_documents::Kind::media_types() {
        content.insert(mime.into(), binary.clone());
    }
    json!({
        "required": true,
        "description": format!("The document, whose text goes into the input's `{field}`: as a multipart form (a file part, the other input fields as parts) or as the raw file typed by its Content-Type"),
        "content": content
    })
}

/// Adds the two document operations of `e` (when its input has a field for the text).
pub(super) fn operations(
    e: &Extractor,
    id: &str,
    output_ref: &Value,
    responses: Value,
    paths: &mut serde_json::Map<String, Value>,
) {
    let Ok(field) = e.spec.document_field() else {
        return;
    };
    let name = &e.spec.name;
    let mut responses = responses;
    let refusal = json!({
        "type": "object",
        "properties": {
            "detail": {"type": "string", "description": "Why the document was refused"},
            "type": {"enum": ["too_large", "too_many_pages", "encrypted", "no_text", "malformed", "empty", "unsupported"]}
        },
        "required": ["detail", "type"]
    });
    let body = |description: &str, schema: Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    responses["400"] = body(
        "The multipart body is malformed",
        json!({"$ref": "#/components/schemas/Message"}),
    );
    responses["413"] = body(
        "The document is over the size or page limit",
        refusal.clone(),
    );
    responses["415"] = body("A document type sift does not read", refusal.clone());
    responses["422"] = body(
        "The input's other fields do not fit (FastAPI's shape), or the document cannot be read: encrypted, scanned with no text layer, malformed, empty",
        json!({"anyOf": [{"$ref": "#/components/schemas/HttpValidationError"}, refusal]}),
    );
    let mut failure = responses["502"].clone();
    failure["description"] = json!(
        "The model failed on the document: as for any extraction when it was one chunk; else every chunk failed (`all_chunks_failed`) or the merged answer does not fit the schema (`document_invalid`)"
    );
    failure["content"]["application/json"]["schema"] = json!({"type": "object", "properties": {"detail": {"type": "object"}}, "required": ["detail"]});
    responses["502"] = failure;
    let mut one = responses.clone();
    one["200"] = json!({
        "description": format!("The {name} extracted from the document, valid against its schema"),
        "content": {"application/json": {"schema": answer(output_ref)}}
    });
    paths.insert(
        format!("/v1/extractors/{name}/document"),
        json!({"post": {
            "tags": ["extractors"],
            "summary": format!("{name}, from a document (PDF, HTML, Markdown, text): split into chunks, extracted, merged"),
            "operationId": format!("extract_{id}_document"),
            "parameters": [super::spans_parameter(), super::attempts_parameter()],
            "requestBody": upload(e, &field),
            "responses": one
        }}),
    );
    let mut stream = responses;
    stream["200"] = json!({
        "description": "NDJSON by default: for a list output each element as its chunk completes, for an object `{\"partial\": ...}` the merged value after each chunk; `{\"chunk_error\": ...}` for a failed chunk, then `{\"document\": ...}` (the answer of `/document`, without spans) or `{\"error\": ...}`. With `Accept: text/event-stream`, the same as SSE events (`partial`, `chunk_error`, `document`, `error`, `done`).",
        "content": {
            "application/x-ndjson": {"schema": {}},
            "text/event-stream": {"schema": {}}
        }
    });
    paths.insert(
        format!("/v1/extractors/{name}/document/stream"),
        json!({"post": {
            "tags": ["extractors"],
            "summary": format!("{name}, from a document, streamed as chunks complete"),
            "operationId": format!("stream_{id}_document"),
            "parameters": [super::stream_attempts_parameter()],
            "requestBody": upload(e, &field),
            "responses": stream
        }}),
    );
}
