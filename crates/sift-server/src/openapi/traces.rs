//! The OpenAPI operations of `GET /v1/traces` and `GET /v1/traces/{id}` (the recent traces
//! `sift serve --traces N` keeps; `404` when it keeps none).

use serde_json::{Value, json};

fn summary() -> Value {
    json!({
        "type": "object",
        "properties": {
            "trace_id": {"type": "string", "description": "32 hex digits"},
            "name": {"type": "string", "description": "The root span's name (`POST /user`)"},
            "start_unix_nano": {"type": "integer", "minimum": 0},
            "duration_ms": {"type": "number", "minimum": 0},
            "endpoint": {"type": "string", "description": "The request's route"},
            "extractor": {"type": "string"},
            "status": {"type": "integer", "description": "The response's status"},
            "error": {"type": "boolean", "description": "Whether any span failed"},
            "input_tokens": {"type": "integer", "minimum": 0},
            "output_tokens": {"type": "integer", "minimum": 0},
            "spans": {"type": "integer", "minimum": 0},
            "complete": {"type": "boolean", "description": "Its root span has ended"}
        },
        "required": ["trace_id", "name", "start_unix_nano", "duration_ms", "error", "input_tokens", "output_tokens", "spans", "complete"]
    })
}

fn span() -> Value {
    json!({
        "type": "object",
        "properties": {
            "span_id": {"type": "string"},
            "parent_id": {"type": ["string", "null"]},
            "name": {"type": "string"},
            "start_unix_nano": {"type": "integer", "minimum": 0},
            "end_unix_nano": {"type": "integer", "minimum": 0},
            "status": {"enum": ["ok", "error", "unset"]},
            "status_message": {"type": "string"},
            "attributes": {"type": "object", "description": "As exported: scrubbed, content only when content recording is on"}
        },
        "required": ["span_id", "name", "start_unix_nano", "end_unix_nano", "status", "attributes"]
    })
}

/// Adds the two operations.
pub(super) fn operations(paths: &mut serde_json::Map<String, Value>) {
    let message = json!({"$ref": "#/components/schemas/Message"});
    let off = json!({"description": "No such trace, or traces are not kept (`sift serve --traces 0`)", "content": {"application/json": {"schema": message}}});
    let unauthorized = json!({"description": "A service key is required (`Authorization: Bearer KEY`)", "content": {"application/json": {"schema": message}}});
    let mut record = summary();
    record["properties"]["spans"] =
        json!({"type": "array", "items": span(), "description": "Its spans, by start"});
    record["properties"]["dropped_spans"] = json!({"type": "integer", "minimum": 0, "description": "Spans not kept past the per-trace limit"});
    record["required"]
        .as_array_mut()
        .into_iter()
        .for_each(|r| r.push(json!("dropped_spans")));
    paths.insert(
        "/v1/traces".into(),
        json!({"get": {
            "tags": ["traces"],
            "summary": "The recent requests' traces, newest first",
            "operationId": "list_traces",
            "parameters": [{"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}, "description": "The newest N"}],
            "responses": {
                "200": {"description": "The traces kept", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"traces": {"type": "array", "items": summary()}}, "required": ["traces"]
                }}}},
                "400": {"description": "`limit` is not a count"},
                "401": unauthorized,
                "404": off
            }
        }}),
    );
    paths.insert(
        "/v1/traces/{id}".into(),
        json!({"get": {
            "tags": ["traces"],
            "summary": "One trace whole: its spans, each with its attributes",
            "operationId": "show_trace",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The trace", "content": {"application/json": {"schema": record}}},
                "401": unauthorized,
                "404": off
            }
        }}),
    );
}
