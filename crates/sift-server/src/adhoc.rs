//! `POST /v1/extract` and `/v1/extract/stream`: extraction against a schema sent with the
//! request, with its own prompt, system message, model, mode and worked examples.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};
use sift_core::grounding::{Policy, Sources, describes};
use sift_core::{Message, Schema};

use crate::AppState;
use crate::answer::{Answerer, RawQuery, answer, answer_query, stream_response};
use crate::deadline::Deadline;
use crate::error::ApiError;
use crate::handlers::wants_sse;
use crate::request::{Body, ErrorDetail, LocItem};
use crate::v1::RawJson;
use crate::v1::{Target, body_loc, check_input};

/// The body of `POST /v1/extract`.
struct Adhoc {
    schema: Schema,
    text: String,
    prompt: Option<String>,
    system: Option<String>,
    model: Option<String>,
    mode: Option<sift_core::Mode>,
    /// Worked examples: `{"text", "output"}`, the output checked against the schema.
    examples: Vec<(String, Value)>,
    /// Grounding policies by path, as `[extractors.NAME.grounding]` sets them.
    grounding: BTreeMap<String, Policy>,
}

/// The `grounding` of an ad-hoc request: policies by path (`{"*": "free"}` checks nothing,
/// for a request that asks the model to make a record up), each naming a field of `schema`.
fn adhoc_grounding(
    obj: &serde_json::Map<String, Value>,
    schema: Option<&Schema>,
    errors: &mut Vec<ErrorDetail>,
) -> BTreeMap<String, Policy> {
    let loc = |key: Option<&str>| {
        let mut loc = body_loc();
        loc.push(LocItem::Key("grounding".into()));
        loc.extend(key.map(|k| LocItem::Key(k.into())));
        loc
    };
    let mut out = BTreeMap::new();
    match obj.get("grounding") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (path, policy) in map {
                match policy.as_str().map(str::parse::<Policy>) {
                    Some(Ok(p)) => {
                        if schema.is_some_and(|s| !describes(s.value(), path)) {
                            errors.push(ErrorDetail::new(
                                "value_error",
                                loc(Some(path)),
                                format!("`{path}` names no field of the schema"),
                                policy.clone(),
                            ));
                        }
                        out.insert(path.clone(), p);
                    }
                    Some(Err(e)) => errors.push(ErrorDetail::new(
                        "enum",
                        loc(Some(path)),
                        e.to_string(),
                        policy.clone(),
                    )),
                    None => errors.push(ErrorDetail::new(
                        "string_type",
                        loc(Some(path)),
                        "Input should be a valid string: verbatim, normalized or free",
                        policy.clone(),
                    )),
                }
            }
        }
        Some(other) => errors.push(ErrorDetail::new(
            "dict_type",
            loc(None),
            "Input should be a valid dictionary of paths and policies",
            other.clone(),
        )),
    }
    out
}

/// The most worked examples an ad-hoc request may send.
pub(crate) const MAX_ADHOC_EXAMPLES: usize = 32;

/// The `examples` of an ad-hoc request: a list of `{"text": string, "output": value}` whose
/// outputs fit `schema` (when it compiled); every problem is reported with its place.
fn adhoc_examples(
    obj: &serde_json::Map<String, Value>,
    schema: Option<&Schema>,
    grounding: &BTreeMap<String, Policy>,
    errors: &mut Vec<ErrorDetail>,
) -> Vec<(String, Value)> {
    let loc = |rest: &[LocItem]| {
        let mut loc = body_loc();
        loc.push(LocItem::Key("examples".into()));
        loc.extend_from_slice(rest);
        loc
    };
    let items = match obj.get("examples") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_ADHOC_EXAMPLES => items,
        Some(Value::Array(items)) => {
            errors.push(ErrorDetail::new(
                "too_long",
                loc(&[]),
                format!(
                    "List should have at most {MAX_ADHOC_EXAMPLES} items after validation, not {}",
                    items.len()
                ),
                Value::Null,
            ));
            return Vec::new();
        }
        Some(other) => {
            errors.push(ErrorDetail::new(
                "list_type",
                loc(&[]),
                "Input should be a valid list",
                other.clone(),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |k: &str| loc(&[LocItem::Index(i), LocItem::Key(k.into())]);
        let Some(example) = item.as_object() else {
            errors.push(ErrorDetail::new(
                "dict_type",
                loc(&[LocItem::Index(i)]),
                "Input should be a valid dictionary with `text` and `output`",
                item.clone(),
            ));
            continue;
        };
        let text = match example.get("text") {
            Some(Value::String(t)) => Some(t.clone()),
            None => {
                errors.push(ErrorDetail::new(
                    "missing",
                    at("text"),
                    "Field required",
                    item.clone(),
                ));
                None
            }
            Some(other) => {
                errors.push(ErrorDetail::new(
                    "string_type",
                    at("text"),
                    "Input should be a valid string",
                    other.clone(),
                ));
                None
            }
        };
        let output = match example.get("output") {
            Some(o) => {
                let before = errors.len();
                if let Some(schema) = schema {
                    errors.extend(check_input(schema, o, &at("output")));
                    // Grounded as the answers will be: an example that invents teaches the
                    // model to invent.
                    if let (true, Some(text)) = (errors.len() == before, &text) {
                        let sources = Sources::new()
                            .with_input("text", text.clone())
                            .with_policies(grounding);
                        for u in sources.ground(o, schema.value()).ungrounded {
                            let mut loc = at("output");
                            loc.extend(
                                sift_core::pointer_segments(&u.pointer, o)
                                    .into_iter()
                                    .map(LocItem::from),
                            );
                            errors.push(ErrorDetail::new(
                                "ungrounded",
                                loc,
                                u.message_for("the example's text"),
                                u.value.clone(),
                            ));
                        }
                    }
                }
                (errors.len() == before).then(|| o.clone())
            }
            None => {
                errors.push(ErrorDetail::new(
                    "missing",
                    at("output"),
                    "Field required",
                    item.clone(),
                ));
                None
            }
        };
        if let (Some(text), Some(output)) = (text, output) {
            out.push((text, output));
        }
    }
    out
}

async fn adhoc_body(state: &AppState, body: &Value) -> Result<Adhoc, ApiError> {
    if !state.adhoc_enabled {
        return Err(ApiError::NotFound(
            "ad-hoc extraction is switched off (`[server] adhoc = false` in the config)".into(),
        ));
    }
    let obj = crate::request::object(body).map_err(ApiError::Validation)?;
    let mut errors = Vec::new();
    let field = |k: &str| {
        let mut loc = body_loc();
        loc.push(LocItem::Key(k.into()));
        loc
    };
    let text = crate::request::string_field(obj, body, "text", &mut errors);
    let optional = |k: &str, errors: &mut Vec<ErrorDetail>| match obj.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(ErrorDetail::new(
                "string_type",
                field(k),
                "Input should be a valid string",
                other.clone(),
            ));
            None
        }
    };
    let prompt = optional("prompt", &mut errors);
    let system = optional("system", &mut errors);
    let model = optional("model", &mut errors);
    let mode = optional("mode", &mut errors).and_then(|m| match m.parse::<sift_core::Mode>() {
        Ok(mode) => Some(mode),
        Err(e) => {
            errors.push(ErrorDetail::new("enum", field("mode"), e, Value::String(m)));
            None
        }
    });
    let schema = match obj.get("schema") {
        None => {
            errors.push(ErrorDetail::new(
                "missing",
                field("schema"),
                "Field required",
                body.clone(),
            ));
            None
        }
        // Compiled and checked by the provider once, then cached: a schema the embedded
        // model's grammar cannot take is refused here, naming the keyword and where it is.
        Some(s) => match state
            .schema_cache
            .get("Output", state.client.provider().name(), s, {
                let client = state.client.clone();
                move |schema| client.provider().check_schema(schema.constrained_schema())
            })
            .await
        {
            Ok(schema) => Some(schema),
            Err(e) => {
                let mut loc = field("schema");
                if let Some(pointer) = e.pointer() {
                    loc.extend(pointer.split('/').skip(1).map(|p| {
                        let p = p.replace("~1", "/").replace("~0", "~");
                        p.parse::<usize>().map_or(LocItem::Key(p), LocItem::Index)
                    }));
                }
                errors.push(ErrorDetail::new(
                    &format!("schema_{}", e.kind()),
                    loc,
                    e.to_string(),
                    s.clone(),
                ));
                None
            }
        },
    };
    let grounding = adhoc_grounding(obj, schema.as_ref(), &mut errors);
    let examples = adhoc_examples(obj, schema.as_ref(), &grounding, &mut errors);
    match (schema, text) {
        (Some(schema), Some(text)) if errors.is_empty() => Ok(Adhoc {
            schema,
            text,
            prompt,
            system,
            model,
            mode,
            examples,
            grounding,
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// The client and messages of an ad-hoc request: the server's client with the request's
/// model and mode, and the prompt and text as the user message (no template: a client cannot
/// make the server evaluate one).
fn adhoc_call(state: &AppState, body: &Adhoc) -> (sift_core::Client, Vec<Message>) {
    let mut client = state.client.clone();
    if let Some(m) = &body.model {
        client = client.with_model(m);
    }
    if let Some(mode) = body.mode {
        client = client.with_mode(mode);
    }
    let mut messages = Vec::new();
    if let Some(system) = &body.system {
        messages.push(Message::system(system.clone()));
    }
    messages.push(Message::user(adhoc_prompt(body, &body.text)));
    (client, messages)
}

/// The user turn for `text`: the request's prompt, then the text.
fn adhoc_prompt(body: &Adhoc, text: &str) -> String {
    match &body.prompt {
        Some(p) => format!("{p}\n\n{text}"),
        None => text.to_owned(),
    }
}

/// The examples of an ad-hoc request, their texts put the way the request's own is.
fn adhoc_shown_examples(body: &Adhoc) -> Vec<sift_core::Example> {
    body.examples
        .iter()
        .map(|(text, output)| sift_core::Example::new(adhoc_prompt(body, text), output.clone()))
        .collect()
}

fn adhoc_target<'a>(
    client: &'a sift_core::Client,
    body: &'a Adhoc,
    examples: &'a [sift_core::Example],
) -> Target<'a> {
    Target {
        client,
        output: &body.schema,
        spec: None,
        examples,
        grounding: &body.grounding,
    }
}

pub(crate) async fn adhoc(
    State(state): State<Arc<AppState>>,
    query: RawQuery,
    Body(RawJson(body)): Body<RawJson>,
) -> Result<Response, ApiError> {
    let query = answer_query(query)?;
    let request = adhoc_body(&state, &body).await?;
    let (client, messages) = adhoc_call(&state, &request);
    let examples = adhoc_shown_examples(&request);
    let by = Answerer::of(&client, &state.config.prices);
    adhoc_target(&client, &request, &examples)
        .builder(&adhoc_input(&request), messages)
        .send()
        .await
        .map(|out| answer(out, &query, &by))
        .map_err(|e| ApiError::extraction(e, &client))
}

/// What an ad-hoc answer is grounded in: the text (not the prompt or system message).
fn adhoc_input(request: &Adhoc) -> Value {
    json!({"text": request.text})
}

pub(crate) async fn adhoc_stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    deadline: Option<Extension<Deadline>>,
    query: RawQuery,
    Body(RawJson(body)): Body<RawJson>,
) -> Result<Response, ApiError> {
    let query = answer_query(query)?;
    let request = adhoc_body(&state, &body).await?;
    let (client, messages) = adhoc_call(&state, &request);
    let examples = adhoc_shown_examples(&request);
    let events = adhoc_target(&client, &request, &examples)
        .builder(&adhoc_input(&request), messages)
        .stream();
    let deadline = deadline.map(|Extension(d)| d);
    let by = Answerer::of(&client, &state.config.prices);
    stream_response(events, by, query, wants_sse(&headers), deadline).await
}
