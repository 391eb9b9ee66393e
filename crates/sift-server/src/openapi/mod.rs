//! The OpenAPI 3.1 document: the seed's endpoints (from the handlers' annotations), then
//! `/v1` with every extractor served as operations of its own, typed by its input and output
//! schemas (see [`document`]).

mod chat;
mod documents;
mod schemas;
mod traces;

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::extractors::{Extractor, Registry};

use crate::answer::{PricedAttempt, StreamDone};
use crate::error::{
    AnswerError, AttemptReport, ExtractionError, ExtractionFailure, HttpValidationError,
    ManyUsersError, ManyUsersFailureDetail, Message, QueryFailure, UsageReport,
};
use crate::handlers::{self, Health, ItemError};
use crate::models::{MultipleUserData, UserData, UserDetail};
use crate::request::{ErrorDetail, LocItem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sift",
        description = "Typed, validated extraction from free text with language models.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(handlers::user, handlers::many_users, handlers::extract, handlers::healthz, handlers::metrics),
    components(schemas(
        UserData, MultipleUserData, UserDetail, HttpValidationError, ErrorDetail, LocItem,
        ExtractionError, ExtractionFailure, AttemptReport, AnswerError, UsageReport,
        ManyUsersError, ManyUsersFailureDetail, QueryFailure, StreamDone, PricedAttempt, ItemError, Health, Message,
        crate::error::InputFailure, crate::error::ManyFailureDetail
    )),
    tags(
        (name = "extraction", description = "The seed's endpoints"),
        (name = "service", description = "Operations"),
        (name = "extractors", description = "The extractors of the config, each with its own operations"),
        (name = "openai", description = "OpenAI's Chat Completions API: existing clients pointed at sift get validated answers"),
    )
)]
struct ApiDoc;

/// The service's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}

/// The document served at `/openapi.json`: [`openapi`] plus, for each extractor, `POST
/// /v1/extractors/{name}` (and `/many`, `/stream`) with its input and output schemas as
/// components (`{Name}Input`, `{Name}Output`, definitions as `{Name}Output{Def}`), the
/// listing endpoints and, when `adhoc`, `POST /v1/extract`.
pub fn document(extractors: &Registry, adhoc: bool) -> Value {
    let mut doc = serde_json::to_value(openapi()).unwrap_or_else(|_| json!({}));
    let mut paths = serde_json::Map::new();
    paths.insert("/v1/extractors".into(), json!({"get": {
        "tags": ["extractors"],
        "summary": "Every extractor: name, description, input and output schemas, version",
        "operationId": "list_extractors",
        "responses": {"200": {"description": "The extractors", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/ExtractorInfo"}}}}}}
    }}));
    // Each extractor's own path documents its GET and POST (a templated
    // `/v1/extractors/{name}` beside them would describe the same requests twice, the POST
    // with no input schema it could honour).
    let mut components = vec![
        (
            "ExtractorInfo".to_owned(),
            json!({
                "type": "object",
                "description": "An extractor as `GET /v1/extractors` lists it.",
                "properties": {
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "input_schema": {"type": "object", "description": "JSON Schema of the request body"},
                    "output_schema": {"type": "object", "description": "JSON Schema of the answer"},
                    "version": {"type": "string", "description": "Hash of everything that shapes the answer"}
                },
                "required": ["name", "description", "input_schema", "output_schema", "version"]
            }),
        ),
        (
            "Span".to_owned(),
            json!({
                "type": "object",
                "description": "Where a value was found: an input field and a range of its characters.",
                "properties": {
                    "field": {"type": "string", "description": "The input field (`text`; nested fields as `doc.body`, list items as `pages[2]`)"},
                    "start": {"type": "integer", "minimum": 0, "description": "The first character, counted in Unicode scalar values from 0"},
                    "end": {"type": "integer", "minimum": 0, "description": "One past the last character"}
                },
                "required": ["field", "start", "end"]
            }),
        ),
        (
            "ManyError".to_owned(),
            json!({
                "type": "object",
                "properties": {"detail": {"$ref": "#/components/schemas/ManyFailureDetail"}},
                "required": ["detail"]
            }),
        ),
    ];
    let mut taken = std::collections::HashSet::new();
    for e in extractors.iter() {
        let mut base = schemas::component_name(&e.spec.name);
        while !taken.insert(base.clone()) {
            base.push('_');
        }
        operations(e, &base, &mut paths, &mut components);
    }
    if adhoc {
        adhoc_operations(&mut paths);
    }
    chat::add(&mut paths, &mut components);
    traces::operations(&mut paths);
    // The seed's stream, as the extractors' are described.
    if let Some(content) = doc.pointer_mut("/paths/~1extract/post/responses/200/content") {
        *content = stream_content(
            &json!({"$ref": "#/components/schemas/UserDetail"}),
            &[
                StreamEvent::ItemError,
                StreamEvent::Error,
                StreamEvent::Done,
            ],
        );
    }
    if let Some(doc_paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        doc_paths.extend(paths);
    }
    schemas::insert(&mut doc, components);
    doc
}

/// A named event of a stream (besides the values themselves).
#[derive(Debug, Clone, Copy)]
enum StreamEvent {
    /// The value so far (object streams).
    Partial,
    /// An attempt failed and another starts (object streams).
    Retry,
    /// An element failed validation (list streams).
    ItemError,
    /// The extraction failed mid-stream.
    Error,
    /// The end, with the usage (SSE only).
    Done,
}

impl StreamEvent {
    fn name(self) -> &'static str {
        match self {
            StreamEvent::Partial => "partial",
            StreamEvent::Retry => "retry",
            StreamEvent::ItemError => "item_error",
            StreamEvent::Error => "error",
            StreamEvent::Done => "done",
        }
    }

    fn schema(self) -> Value {
        let component = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
        match self {
            StreamEvent::Partial => json!({"type": "object", "description": "The value so far"}),
            StreamEvent::Retry => json!({
                "type": "object",
                "properties": {
                    "attempt": {"type": "integer", "minimum": 1},
                    "errors": {"type": "array", "items": component("AnswerError")}
                },
                "required": ["attempt", "errors"]
            }),
            StreamEvent::ItemError => component("ItemError"),
            StreamEvent::Error => component("ExtractionFailure"),
            StreamEvent::Done => component("StreamDone"),
        }
    }
}

/// A stream's content in both framings, `value` being the schema of the values it carries:
/// NDJSON lines are a bare value or `{event: data}` (every event but `done`); SSE events are
/// described one by one, as schemathesis and OpenAPI 3.2's `itemSchema` read them (each parsed
/// event's `event` and its `data`, a JSON text): a value has no `event:` line (SSE's default,
/// `message`), every other event its name.
fn stream_content(value: &Value, events: &[StreamEvent]) -> Value {
    let sse = |event: &str, data: Value| {
        json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"const": event},
                "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data}
            }
        })
    };
    let mut sse_events = vec![sse("message", value.clone())];
    sse_events.extend(events.iter().map(|e| sse(e.name(), e.schema())));
    let mut lines = vec![value.clone()];
    lines.extend(
        events
            .iter()
            .filter(|e| !matches!(e, StreamEvent::Done))
            .map(|e| {
                json!({
                    "type": "object",
                    "required": [e.name()],
                    "properties": {e.name(): e.schema()},
                    "additionalProperties": false
                })
            }),
    );
    // OpenAPI 3.1 has no `itemSchema` (3.2 does): `schema` is read per event.
    json!({
        "application/x-ndjson": {"schema": {"anyOf": lines}},
        "text/event-stream": {"schema": {"oneOf": sse_events}}
    })
}

/// The error answers every extraction can give.
fn error_responses(many: bool) -> Value {
    let failure = if many {
        json!({"$ref": "#/components/schemas/ManyError"})
    } else {
        json!({"$ref": "#/components/schemas/ExtractionError"})
    };
    let body = |description: &str, schema: &Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    let validation = json!({"$ref": "#/components/schemas/HttpValidationError"});
    json!({
        "401": body("A service key is required (`Authorization: Bearer KEY`)", &json!({"$ref": "#/components/schemas/Message"})),
        "404": body("No such extractor", &json!({"$ref": "#/components/schemas/Message"})),
        "413": {"description": "The request body is larger than the limit"},
        "415": body("The body is declared as something other than JSON", &json!({"$ref": "#/components/schemas/Message"})),
        "422": body("The input does not fit its schema (`loc` is its JSON path), or the answer did not fit the token limit", &validation),
        "502": body("The model failed: upstream error, or no valid answer after the re-asks (kind `ungrounded`: its values are not in the text)", &failure),
        "503": body("The model is busy (`Retry-After` says when to try again)", &failure),
        "504": body("The model did not answer in time", &failure),
    })
}

/// The `spans` query parameter of the one-shot extractions.
fn spans_parameter() -> Value {
    json!({
        "name": "spans",
        "in": "query",
        "required": false,
        "schema": {"type": "boolean", "default": false},
        "description": "Answer `{\"value\": ..., \"spans\": {...}}`: where each grounded value was found in the input, by JSON pointer into the value"
    })
}

/// The `attempts` query parameter of the one-shot extractions.
fn attempts_parameter() -> Value {
    json!({
        "name": "attempts",
        "in": "query",
        "required": false,
        "schema": {"type": "boolean", "default": false},
        "description": "Answer `{\"value\": ..., \"attempts\": [...], \"usage\": {...}, \"cost_usd\": ...}`: every call to the model with its outcome, errors, tokens and cost (USD at the config's `[models.\"NAME\"]` prices, `null` for a model without)"
    })
}

/// The `spans` query parameter of the streams: each element, or the final value, comes as
/// `{"value", "spans"}`.
fn stream_spans_parameter() -> Value {
    json!({
        "name": "spans",
        "in": "query",
        "required": false,
        "schema": {"type": "boolean", "default": false},
        "description": "Send each element (or the final value) as `{\"value\": ..., \"spans\": {...}}`: where each of its grounded values was found in the input, by JSON pointer into it"
    })
}

/// The `attempts` query parameter of the streams: the SSE `done` event carries every call.
fn stream_attempts_parameter() -> Value {
    json!({
        "name": "attempts",
        "in": "query",
        "required": false,
        "schema": {"type": "boolean", "default": false},
        "description": "The final `done` event (SSE) also carries `attempts` (every call with its outcome, errors, tokens and cost) and `cost_usd`"
    })
}

/// Where each grounded value was found, by JSON pointer.
fn spans_schema() -> Value {
    json!({
        "type": "object",
        "description": "Where each grounded value was found, by JSON pointer into `value`",
        "additionalProperties": {"type": "array", "items": {"$ref": "#/components/schemas/Span"}}
    })
}

/// A streamed item: the value, or with `?spans=true` the value and its spans.
fn with_spans(value: &Value) -> Value {
    json!({"anyOf": [
        value,
        {
            "type": "object",
            "description": "With `?spans=true`",
            "properties": {"value": value, "spans": spans_schema()},
            "required": ["value", "spans"]
        }
    ]})
}

/// The 200 body of a one-shot extraction: the value, or with `?spans=true` and
/// `?attempts=true` the value and what they ask for.
fn value_or_spans(value: &Value) -> Value {
    json!({"anyOf": [
        value,
        {
            "type": "object",
            "description": "With `?spans=true` (`spans`) or `?attempts=true` (`attempts`, `usage`, `cost_usd`)",
            "properties": {
                "value": value,
                "spans": spans_schema(),
                "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/PricedAttempt"}},
                "usage": {"$ref": "#/components/schemas/UsageReport"},
                "cost_usd": {"type": ["number", "null"], "minimum": 0, "description": "USD at the configured prices; `null` when a model has none"}
            },
            "required": ["value"]
        }
    ]})
}

fn operations(
    e: &Extractor,
    base: &str,
    paths: &mut serde_json::Map<String, Value>,
    components: &mut Vec<(String, Value)>,
) {
    let name = &e.spec.name;
    let input = format!("{base}Input");
    let output = format!("{base}Output");
    components.extend(schemas::components(&input, e.spec.input.value()));
    components.extend(schemas::components(&output, e.spec.output.value()));
    let input_ref = json!({"$ref": format!("#/components/schemas/{input}")});
    let output_ref = json!({"$ref": format!("#/components/schemas/{output}")});
    let id = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect::<String>();
    let count = |description: &str| json!({"description": description, "schema": {"type": "integer", "minimum": 0}});
    let mut one = error_responses(false);
    one["200"] = json!({
        "description": format!("The {name} extracted, valid against its schema"),
        "headers": {
            "sift-attempts": count("Calls made to the model (1 + re-asks)"),
            "sift-input-tokens": count("Prompt tokens over every attempt"),
            "sift-output-tokens": count("Completion tokens over every attempt"),
            "sift-cached-input-tokens": count("Of the prompt tokens, those the provider had kept (its prompt cache, or the embedded model's kept prompts)"),
        },
        "content": {"application/json": {"schema": value_or_spans(&output_ref)}}
    });
    let description = &e.spec.description;
    paths.insert(format!("/v1/extractors/{name}"), json!({
        "get": {
            "tags": ["extractors"],
            "summary": format!("{name}: its description, input and output schemas, version"),
            "operationId": format!("show_{id}"),
            "responses": {"200": {"description": "The extractor", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExtractorInfo"}}}}}
        },
        "post": {
            "tags": ["extractors"],
            "summary": format!("{name}: {description}"),
            "operationId": format!("extract_{id}"),
            "parameters": [spans_parameter(), attempts_parameter()],
            "requestBody": {"required": true, "content": {"application/json": {"schema": input_ref}}},
            "responses": one
        }
    }));
    let mut many = error_responses(true);
    many["200"] = json!({
        "description": "One result per input, in order",
        "content": {"application/json": {"schema": {"type": "array", "items": output_ref}}}
    });
    paths.insert(
        format!("/v1/extractors/{name}/many"),
        json!({"post": {
            "tags": ["extractors"],
            "summary": format!("{name}, for many inputs at once (concurrently, results in order)"),
            "operationId": format!("extract_{id}_many"),
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"inputs": {"type": "array", "items": input_ref}},
                "required": ["inputs"]
            }}}},
            "responses": many
        }}),
    );
    let (what, line) = if e.spec.output.is_array() {
        (
            "each element of the list as soon as it is complete",
            e.spec
                .output
                .value()
                .get("items")
                .map(|_| json!({"$ref": format!("#/components/schemas/{output}/items")}))
                .unwrap_or_else(|| json!({})),
        )
    } else {
        (
            "`{\"partial\": ...}` snapshots as fields fill in, then the value",
            output_ref.clone(),
        )
    };
    let events: &[StreamEvent] = if e.spec.output.is_array() {
        &[
            StreamEvent::ItemError,
            StreamEvent::Error,
            StreamEvent::Done,
        ]
    } else {
        &[
            StreamEvent::Partial,
            StreamEvent::Retry,
            StreamEvent::Error,
            StreamEvent::Done,
        ]
    };
    let mut stream = error_responses(false);
    stream["200"] = json!({
        "description": format!("NDJSON by default, one line per item: {what}; `{{\"retry\": ...}}`, `{{\"item_error\": ...}}` and `{{\"error\": ...}}` lines report re-asks and failures. With `Accept: text/event-stream`, the same as SSE events (`partial`, `retry`, `item_error`, `error`, `done`)."),
        "content": stream_content(&with_spans(&line), events)
    });
    paths.insert(format!("/v1/extractors/{name}/stream"), json!({"post": {
        "tags": ["extractors"],
        "summary": format!("{name}, streamed"),
        "operationId": format!("stream_{id}"),
        "parameters": [stream_spans_parameter(), stream_attempts_parameter()],
        "requestBody": {"required": true, "content": {"application/json": {"schema": input_ref}}},
        "responses": stream
    }}));
    documents::operations(e, &id, &output_ref, error_responses(false), paths);
}

fn adhoc_operations(paths: &mut serde_json::Map<String, Value>) {
    let body = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object",
        "properties": {
            "schema": {"type": "object", "description": "The JSON Schema the answer must fit (local `$ref`s only)"},
            "text": {"type": "string", "description": "The text to extract from"},
            "prompt": {"type": "string", "description": "Put before the text"},
            "system": {"type": "string", "description": "A system prompt"},
            "model": {"type": "string"},
            "mode": {"enum": ["tools", "json_schema", "json", "md_json"]},
            "grounding": {
                "type": "object",
                "additionalProperties": {"enum": ["verbatim", "normalized", "free"]},
                "description": "Grounding policies by path (`seller.name`, `lines[].amount`, `*` for every leaf), as `[extractors.NAME.grounding]` sets them; `{\"*\": \"free\"}` checks nothing against the text"
            },
            "examples": {
                "type": "array",
                "maxItems": crate::adhoc::MAX_ADHOC_EXAMPLES,
                "description": "Worked examples shown to the model before the text, each a text and the answer it should get (valid against `schema` and found in its text)",
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "output": {"description": "The answer the text should get"}
                    },
                    "required": ["text", "output"]
                }
            }
        },
        "required": ["schema", "text"]
    }}}});
    let mut one = error_responses(false);
    one["200"] = json!({"description": "The value, valid against the schema sent", "content": {"application/json": {"schema": value_or_spans(&json!({}))}}});
    paths.insert("/v1/extract".into(), json!({"post": {
        "tags": ["extractors"],
        "summary": "Extract against a JSON Schema sent with the request (refused with a 422 naming the keyword when the provider cannot enforce it)",
        "operationId": "extract_adhoc",
        "parameters": [spans_parameter(), attempts_parameter()],
        "requestBody": body,
        "responses": one
    }}));
    let mut stream = error_responses(false);
    stream["200"] = json!({
        "description": "As the extractors' `/stream`",
        "content": stream_content(&with_spans(&json!({})), &[
            StreamEvent::Partial,
            StreamEvent::Retry,
            StreamEvent::ItemError,
            StreamEvent::Error,
            StreamEvent::Done,
        ])
    });
    paths.insert(
        "/v1/extract/stream".into(),
        json!({"post": {
            "tags": ["extractors"],
            "summary": "Ad-hoc extraction, streamed",
            "operationId": "stream_adhoc",
            "parameters": [stream_spans_parameter(), stream_attempts_parameter()],
            "requestBody": body,
            "responses": stream
        }}),
    );
}
