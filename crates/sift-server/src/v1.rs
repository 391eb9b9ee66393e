//! `/v1`: every extractor of the config (and the built-in `user`), and ad-hoc extraction
//! against a schema sent with the request.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use sift_core::json_stream::PathSegment;
use sift_core::{ExtractBuilder, Extraction, Message, Schema};

use crate::AppState;
use crate::answer::{Answerer, RawQuery, answer, answer_query, stream_response};
use crate::batch::{Batch, failure_message, run_batch};
use crate::deadline::Deadline;
use crate::error::{ApiError, InputFailure, ManyFailureDetail};
use crate::extractors::Extractor;
use crate::handlers::wants_sse;
use crate::request::{Body, ErrorDetail, FromBody, LocItem};

/// Any JSON body; checked against a schema by the handler.
#[derive(Debug)]
pub(crate) struct RawJson(pub(crate) Value);

impl FromBody for RawJson {
    fn from_body(body: &Value) -> Result<Self, Vec<ErrorDetail>> {
        Ok(Self(body.clone()))
    }

    fn from_value(body: Value) -> Result<Self, Vec<ErrorDetail>> {
        Ok(Self(body))
    }
}

/// What `GET /v1/extractors` lists.
#[derive(Debug, Serialize)]
pub(crate) struct ExtractorInfo {
    name: String,
    description: String,
    input_schema: Value,
    output_schema: Value,
    version: String,
}

fn info(e: &Extractor) -> ExtractorInfo {
    ExtractorInfo {
        name: e.spec.name.clone(),
        description: e.spec.description.clone(),
        input_schema: e.spec.input.value().clone(),
        output_schema: e.spec.output.value().clone(),
        version: e.spec.version.clone(),
    }
}

pub(crate) async fn list(State(state): State<Arc<AppState>>) -> Json<Vec<ExtractorInfo>> {
    Json(state.served().extractors.iter().map(|e| info(e)).collect())
}

pub(crate) fn find(state: &AppState, name: &str) -> Result<Arc<Extractor>, ApiError> {
    let served = state.served();
    served.extractors.get(name).cloned().ok_or_else(|| {
        let known: Vec<&str> = served
            .extractors
            .iter()
            .map(|e| e.spec.name.as_str())
            .collect();
        ApiError::NotFound(format!(
            "no extractor named `{name}` (there are: {})",
            known.join(", ")
        ))
    })
}

pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<ExtractorInfo>, ApiError> {
    let extractor = find(&state, &name)?;
    Ok(Json(info(&extractor)))
}

/// The input's violations of its schema, as FastAPI errors under `prefix`.
pub(crate) fn check_input(schema: &Schema, input: &Value, prefix: &[LocItem]) -> Vec<ErrorDetail> {
    schema
        .violations(input)
        .into_iter()
        .map(|v| {
            let mut loc = prefix.to_vec();
            let mut at = Some(input);
            for segment in &v.location {
                loc.push(match segment {
                    PathSegment::Key(k) => {
                        at = at.and_then(|x| x.get(k));
                        LocItem::Key(k.clone())
                    }
                    PathSegment::Index(i) => {
                        at = at.and_then(|x| x.get(i));
                        LocItem::Index(*i)
                    }
                });
            }
            let kind = if v.keyword == "required" {
                "missing"
            } else {
                v.keyword.as_str()
            };
            let msg = if kind == "missing" {
                "Field required".to_owned()
            } else {
                v.message
            };
            ErrorDetail::new(kind, loc, msg, at.cloned().unwrap_or_else(|| input.clone()))
        })
        .collect()
}

pub(crate) fn body_loc() -> Vec<LocItem> {
    vec![LocItem::Key("body".into())]
}

/// What one extraction runs with: a configured extractor (its settings applied by
/// `ExtractorSpec::request`, as the command line does), or an ad-hoc request.
pub(crate) struct Target<'a> {
    pub(crate) client: &'a sift_core::Client,
    pub(crate) output: &'a Schema,
    /// The configured extractor, if any.
    pub(crate) spec: Option<&'a sift_config::ExtractorSpec>,
    /// An ad-hoc request's worked examples (a configured extractor has its own).
    pub(crate) examples: &'a [sift_core::Example],
    /// An ad-hoc request's grounding policies (a configured extractor has its own).
    pub(crate) grounding: &'a std::collections::BTreeMap<String, sift_core::grounding::Policy>,
}

/// No policies: what a configured extractor's [`Target`] carries (its spec has its own).
static NO_POLICIES: std::collections::BTreeMap<String, sift_core::grounding::Policy> =
    std::collections::BTreeMap::new();

impl<'a> Target<'a> {
    pub(crate) fn of(extractor: &'a Extractor) -> Self {
        Self {
            client: &extractor.client,
            output: &extractor.spec.output,
            spec: Some(&extractor.spec),
            examples: &[],
            grounding: &NO_POLICIES,
        }
    }

    /// The extraction of `schema` for one input, its settings applied, grounded in the
    /// input's strings.
    pub(crate) fn builder_as(
        &self,
        schema: &Schema,
        input: &Value,
        messages: Vec<Message>,
    ) -> ExtractBuilder<Value> {
        match self.spec {
            Some(spec) => spec.request_as(self.client, schema, input, messages),
            // The name telemetry sees for inline schemas.
            None => self
                .client
                .extract_value(schema)
                .examples(self.examples.iter().cloned())
                .messages(messages)
                .extractor("adhoc")
                .grounding(
                    sift_core::grounding::Sources::of_input(input).with_policies(self.grounding),
                ),
        }
    }

    /// The extraction of the output for one input, its settings applied.
    pub(crate) fn builder(&self, input: &Value, messages: Vec<Message>) -> ExtractBuilder<Value> {
        self.builder_as(self.output, input, messages)
    }
}

/// The conversation `extractor`'s prompt renders for `input`, rendered on the blocking pool:
/// a template's render is bounded (its fuel and output size) but may still take a while,
/// and the async workers keep answering meanwhile.
pub(crate) async fn messages(
    extractor: &Arc<Extractor>,
    input: &Value,
) -> Result<Vec<Message>, ApiError> {
    let (e, owned) = (extractor.clone(), input.clone());
    let rendered = tokio::task::spawn_blocking(move || e.spec.messages(&owned))
        .await
        .map_err(|e| ApiError::BadBody(format!("the prompt could not be rendered: {e}")))?;
    rendered.map_err(|e| {
        ApiError::Validation(vec![ErrorDetail::new(
            e.kind(),
            body_loc(),
            e.to_string(),
            input.clone(),
        )])
    })
}

pub(crate) async fn run(
    extractor: &Arc<Extractor>,
    input: &Value,
) -> Result<Extraction<Value>, ApiError> {
    run_messages(extractor, input, messages(extractor, input).await?).await
}

/// The extraction of `extractor` for `input`, whose conversation is `messages`.
pub(crate) async fn run_messages(
    extractor: &Extractor,
    input: &Value,
    messages: Vec<Message>,
) -> Result<Extraction<Value>, ApiError> {
    Target::of(extractor)
        .builder(input, messages)
        .send()
        .await
        .map_err(|e| ApiError::extraction(e, &extractor.client))
}

/// The extractor called `name`, once `input` fits its input schema.
fn find_for(state: &AppState, name: &str, input: &Value) -> Result<Arc<Extractor>, ApiError> {
    let extractor = find(state, name)?;
    let errors = check_input(&extractor.spec.input, input, &body_loc());
    if errors.is_empty() {
        Ok(extractor)
    } else {
        Err(ApiError::Validation(errors))
    }
}

pub(crate) async fn run_one(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    query: RawQuery,
    Body(RawJson(input)): Body<RawJson>,
) -> Result<Response, ApiError> {
    let query = answer_query(query)?;
    let extractor = find_for(&state, &name, &input)?;
    let by = Answerer::of(&extractor.client, &state.config.prices);
    run(&extractor, &input)
        .await
        .map(|out| answer(out, &query, &by))
}

pub(crate) async fn run_many(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    deadline: Option<Extension<Deadline>>,
    Body(RawJson(body)): Body<RawJson>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let deadline = deadline.map(|Extension(d)| d);
    let extractor = find(&state, &name)?;
    let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
        let (kind, msg) = match body.get("inputs") {
            None => ("missing", "Field required"),
            Some(_) => ("list_type", "Input should be a valid list"),
        };
        let mut loc = body_loc();
        loc.push(LocItem::Key("inputs".into()));
        return Err(ApiError::Validation(vec![ErrorDetail::new(
            kind,
            loc,
            msg,
            body.clone(),
        )]));
    };
    if inputs.len() > state.config.max_queries {
        return Err(ApiError::Validation(vec![ErrorDetail::too_many(
            "inputs",
            inputs.len(),
            state.config.max_queries,
        )]));
    }
    let mut errors = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let prefix = [
            LocItem::Key("body".into()),
            LocItem::Key("inputs".into()),
            LocItem::Index(i),
        ];
        errors.extend(check_input(&extractor.spec.input, input, &prefix));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let batch = run_batch(
        inputs,
        state.config.max_concurrency,
        deadline,
        |input| {
            let extractor = extractor.clone();
            async move { run(&extractor, &input).await.map(|out| out.value) }
        },
        |index, input, error| InputFailure {
            index,
            input: input.clone(),
            error,
        },
    )
    .await?;
    match batch {
        Batch::All(values) => Ok(Json(values)),
        Batch::Failed {
            failed,
            results,
            status,
            cut_off,
        } => Err(ApiError::Many(
            ManyFailureDetail {
                message: failure_message(failed.len(), cut_off, inputs.len(), "inputs", deadline),
                failed,
                results,
            },
            status,
        )),
    }
}

pub(crate) async fn run_stream(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    deadline: Option<Extension<Deadline>>,
    query: RawQuery,
    Body(RawJson(input)): Body<RawJson>,
) -> Result<Response, ApiError> {
    let query = answer_query(query)?;
    let extractor = find_for(&state, &name, &input)?;
    let messages = messages(&extractor, &input).await?;
    let deadline = deadline.map(|Extension(d)| d);
    let events = Target::of(&extractor).builder(&input, messages).stream();
    let by = Answerer::of(&extractor.client, &state.config.prices);
    stream_response(events, by, query, wants_sse(&headers), deadline).await
}
