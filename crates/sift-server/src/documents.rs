//! `POST /v1/extractors/{name}/document` (and `/document/stream`): a document uploaded whole,
//! as `multipart/form-data` (one file part, other parts the input's other fields) or as the
//! raw file with its `Content-Type`; read into text (`sift-documents`), split, extracted
//! chunk by chunk and merged (the extractor's one way, `ExtractorSpec::document_run`).
//!
//! The answer is `{"value", "document", "conflicts", "failed_chunks"}` (with
//! `?spans=true`, also `spans` in document offsets with their pages, and the document's
//! `text` they index).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sift_documents::extract::{ChunkFailure, DocumentError, DocumentEvent};
use sift_documents::{Document, DocumentExtraction, Kind, ReadError};

use crate::AppState;
use crate::answer::{
    AnswerQuery, Answerer, RawQuery, StreamDone, answer_query, priced, usage_headers,
};
use crate::deadline::{Deadline, next_before};
use crate::error::ApiError;
use crate::extractors::Extractor;
use crate::handlers::{frame, stream_body, wants_sse};
use crate::request::{ErrorDetail, LocItem, read_raw};
use crate::v1::{body_loc, check_input, find};

/// A document and the rest of the input, read from the request.
struct Upload {
    bytes: Vec<u8>,
    kind: Kind,
    fields: Map<String, Value>,
}

/// The kind of a file declared as `declared` (a media type), named `name`, holding `bytes`.
fn kind_of(declared: Option<&str>, name: Option<&str>, bytes: &[u8]) -> Result<Kind, ReadError> {
    let generic = |t: &str| {
        let t = t.split(';').next().unwrap_or_default().trim();
        t.is_empty() || t.eq_ignore_ascii_case("application/octet-stream")
    };
    match declared {
        Some(t) if !generic(t) => {
            Kind::from_content_type(t).ok_or_else(|| ReadError::unsupported(t))
        }
        _ => name
            .and_then(|n| Kind::from_path(std::path::Path::new(n)))
            .or_else(|| Kind::sniff(bytes))
            .ok_or_else(|| {
                ReadError::unsupported(declared.unwrap_or("a body with no Content-Type"))
            }),
    }
}

/// Reads the upload: multipart (one file part; text parts are input fields, read as JSON
/// where the input schema's field is not a string) or a raw file.
async fn upload(req: Request, state: &AppState, extractor: &Extractor) -> Result<Upload, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limit = state.config.document_limits.max_bytes;
    let bytes = read_raw(req, limit).await.map_err(|e| match e {
        ApiError::PayloadTooLarge => ApiError::Document(ReadError::TooLarge {
            bytes: limit.saturating_add(1),
            limit,
        }),
        other => other,
    })?;
    let boundary = declared
        .as_deref()
        .and_then(|t| multer::parse_boundary(t).ok());
    let Some(boundary) = boundary else {
        let kind = kind_of(declared.as_deref(), None, &bytes).map_err(ApiError::Document)?;
        return Ok(Upload {
            bytes,
            kind,
            fields: Map::new(),
        });
    };
    let body = futures::stream::once(async move {
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(bytes))
    });
    let mut form = multer::Multipart::new(body, boundary);
    let bad = |e: multer::Error| ApiError::BadBody(format!("the multipart body is malformed: {e}"));
    let mut file: Option<(Vec<u8>, Kind)> = None;
    let mut fields = Map::new();
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let part_type = field.content_type().map(ToString::to_string);
        if file_name.is_some() || name == "file" {
            if file.is_some() {
                return Err(field_error(
                    &name,
                    "send one document per request (a second file part was found)",
                ));
            }
            let data = field.bytes().await.map_err(bad)?.to_vec();
            let kind = kind_of(part_type.as_deref(), file_name.as_deref(), &data)
                .map_err(ApiError::Document)?;
            file = Some((data, kind));
        } else {
            let text = field.text().await.map_err(bad)?;
            let is_string = extractor
                .spec
                .input
                .value()
                .pointer(&format!("/properties/{name}/type"))
                .and_then(Value::as_str)
                .is_none_or(|t| t == "string");
            let value = if is_string {
                Value::String(text)
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            fields.insert(name, value);
        }
    }
    let Some((bytes, kind)) = file else {
        return Err(field_error(
            "file",
            "the multipart body has no file part (send the document as a part with a filename, or named `file`)",
        ));
    };
    Ok(Upload {
        bytes,
        kind,
        fields,
    })
}

fn field_error(field: &str, msg: &str) -> ApiError {
    let mut loc = body_loc();
    loc.push(LocItem::Key(field.into()));
    ApiError::Validation(vec![ErrorDetail::new("document", loc, msg, Value::Null)])
}

/// What every document request does before the extraction: the extractor found, the upload
/// read and the document read from it (on the blocking pool), the input checked and its
/// prompt rendered once.
async fn prepare(
    state: &Arc<AppState>,
    name: &str,
    req: Request,
) -> Result<(Arc<Extractor>, Arc<Document>, Value), ApiError> {
    let extractor = find(state, name)?;
    let no_field = |e: sift_config::NoDocumentField| ApiError::BadBody(e.to_string());
    extractor.spec.document_field().map_err(no_field)?;
    let upload = upload(req, state, &extractor).await?;
    let limits = state.config.document_limits;
    let Upload {
        bytes,
        kind,
        fields,
    } = upload;
    let document = tokio::task::spawn_blocking(move || sift_documents::read(&bytes, kind, &limits))
        .await
        .map_err(|e| ApiError::BadBody(format!("the document could not be read: {e}")))?
        .map_err(ApiError::Document)?;
    let input = Value::Object(fields);
    // The input is checked with the document's first chunk in its field, as the model
    // will see it.
    let probe = extractor
        .spec
        .first_chunk_input(&extractor.client, &input, &document)
        .map_err(no_field)?;
    let errors = check_input(&extractor.spec.input, &probe, &body_loc());
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    crate::v1::messages(&extractor, &probe).await?;
    Ok((extractor, Arc::new(document), input))
}

/// Runs a document through an extractor.
pub(crate) async fn run_document(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    query: RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let query = answer_query(query)?;
    let (extractor, document, input) = prepare(&state, &name, req).await?;
    let out = extractor
        .spec
        .extract_document(
            &extractor.client,
            document.clone(),
            input,
            state.config.max_concurrency,
        )
        .await
        .map_err(|e| ApiError::BadBody(e.to_string()))?
        .map_err(|e| ApiError::DocumentFailed(Box::new(e), extractor.client.recording().clone()))?;
    let by = Answerer::of(&extractor.client, &state.config.prices);
    Ok(answer(out, &document, &query, &by))
}

/// The document's answer; with `?attempts=true` also every chunk's calls priced, the usage
/// and the cost.
fn answer(
    out: DocumentExtraction,
    document: &Document,
    query: &AnswerQuery,
    by: &Answerer,
) -> Response {
    let (usage, calls) = (out.usage, out.attempts.len());
    let priced = query.attempts.then(|| priced(&out.attempts, by));
    let mut body = serde_json::to_value(out.answer(document, query.spans)).unwrap_or_default();
    if let (Some((attempts, cost)), Some(object)) = (priced, body.as_object_mut()) {
        object.insert("attempts".into(), json!(attempts));
        object.insert(
            "usage".into(),
            json!(sift_core::report::UsageReport::from(usage)),
        );
        object.insert("cost_usd".into(), json!(cost));
    }
    let mut response = Json(body).into_response();
    usage_headers(response.headers_mut(), calls, usage);
    response
}

/// Runs a document through an extractor, streaming: for an array output each element as
/// its chunk (and every chunk before it) completes, for an object the merged value so far
/// after each chunk (`partial`); a failed chunk as `chunk_error`; then the final answer
/// (`document`, the same object `/document` answers, without spans) and, in SSE, `done`.
pub(crate) async fn stream_document(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    deadline: Option<Extension<Deadline>>,
    query: RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let query = answer_query(query)?;
    let deadline = deadline.map(|Extension(d)| d);
    let sse = wants_sse(&headers);
    let (extractor, document, input) = prepare(&state, &name, req).await?;
    let recording = extractor.client.recording().clone();
    let by = Answerer::of(&extractor.client, &state.config.prices);
    let mut events = Box::pin(
        extractor
            .spec
            .document_events(
                &extractor.client,
                document.clone(),
                input,
                state.config.max_concurrency,
            )
            .map_err(|e| ApiError::BadBody(e.to_string()))?,
    );
    let body = async_stream::stream! {
        loop {
            let event = match next_before(&mut events, deadline).await {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(d) => {
                    let detail = d.failure("the document");
                    yield Ok(frame(sse, Some("error"), Some("error"), &serde_json::to_string(&detail).unwrap_or_default()));
                    break;
                }
            };
            let chunk = match event {
                DocumentEvent::Element(v) => frame(sse, None, None, &v.to_string()),
                DocumentEvent::Snapshot(v) => frame(sse, Some("partial"), Some("partial"), &v.to_string()),
                DocumentEvent::ChunkFailed(f) => {
                    let mut f = f;
                    f.message = recording.scrub(f.message);
                    frame(sse, Some("chunk_error"), Some("chunk_error"), &serde_json::to_string(&f).unwrap_or_default())
                }
                DocumentEvent::Done(done) => {
                    match *done {
                        Ok(out) => {
                            let usage = out.usage;
                            let done = StreamDone::new(usage, &out.attempts, &query, &by);
                            let body = out.answer(&document, false);
                            yield Ok(frame(sse, Some("document"), Some("document"), &serde_json::to_string(&body).unwrap_or_default()));
                            if sse {
                                yield Ok(frame(true, Some("done"), None, &serde_json::to_string(&done).unwrap_or_default()));
                            }
                        }
                        Err(e) => {
                            let detail = failure_detail(&e, &recording);
                            yield Ok(frame(sse, Some("error"), Some("error"), &detail.to_string()));
                        }
                    }
                    break;
                }
                _ => continue,
            };
            yield Ok::<_, std::convert::Infallible>(chunk);
        }
    };
    Ok(stream_body(sse, body))
}

/// The `detail` of a failed document: an extraction's report when the document was one
/// chunk, else what failed chunk by chunk (and for a merged answer that does not fit, its
/// errors, and the value itself where content may be shown).
pub(crate) fn failure_detail(e: &DocumentError, recording: &sift_core::trace::Recording) -> Value {
    let scrub_failures = |failed: &[ChunkFailure]| -> Vec<ChunkFailure> {
        failed
            .iter()
            .map(|f| ChunkFailure {
                message: recording.scrub(f.message.clone()),
                ..f.clone()
            })
            .collect()
    };
    let usage = sift_core::report::UsageReport::from(e.usage());
    match e {
        DocumentError::Extraction(inner) => {
            json!(crate::error::ExtractionFailure::from_error(
                inner, recording
            ))
        }
        DocumentError::AllChunksFailed { failed, .. } => json!({
            "message": recording.scrub(e.to_string()),
            "kind": e.kind(),
            "failed_chunks": scrub_failures(failed),
            "attempts": e.attempts().len(),
            "usage": usage,
        }),
        DocumentError::Invalid(invalid) => {
            let mut detail = json!({
                "message": recording.scrub(e.to_string()),
                "kind": e.kind(),
                "errors": invalid.errors.iter().map(|f| json!({"path": f.path, "message": recording.scrub(f.message.clone())})).collect::<Vec<_>>(),
                "failed_chunks": scrub_failures(&invalid.failed),
                "attempts": e.attempts().len(),
                "usage": usage,
            });
            if recording.log_content() {
                detail["value"] = invalid.value.clone();
            }
            detail
        }
        _ => json!({"message": recording.scrub(e.to_string()), "kind": e.kind()}),
    }
}

/// The status a failed document answers with: an extraction's own when it was one chunk,
/// else `502` (the model's failure, as for any answer that stayed invalid).
pub(crate) fn failure_status(e: &DocumentError) -> axum::http::StatusCode {
    match e {
        DocumentError::Extraction(inner) => crate::error::extraction_status(inner),
        _ => axum::http::StatusCode::BAD_GATEWAY,
    }
}
