//! The scripted server's batch APIs, enough of each for sift's `--via ...-batch`:
//! - OpenAI's Files and Batches: upload (`POST /v1/files`, multipart), create
//!   (`POST /v1/batches`), retrieve (`GET /v1/batches/{id}`), download
//!   (`GET /v1/files/{id}/content`);
//! - Anthropic's Message Batches: create (`POST /v1/messages/batches`), retrieve
//!   (`GET /v1/messages/batches/{id}`), results (`GET /v1/messages/batches/{id}/results`);
//! - Gemini's batch mode: create (`POST /v1beta/models/{model}:batchGenerateContent`, inline
//!   requests), retrieve the operation (`GET /v1beta/batches/{id}`), responses inline.
//!
//! A batch moves one status per retrieve: `validating` → `in_progress` → `finalizing` →
//! `completed`, or ends as the test scripted ([`BatchEnd`]): `failed` (input refused, no
//! answers), `expired` (half of the requests answered), `cancelled` (a third). Each request
//! a batch answers is answered like a chat request (the queue, then the fallback), and
//! recorded with them; answers with an error status go to the error file.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{Shared, Wire, take_reply};

/// How a scripted batch ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchEnd {
    /// Every request answered.
    Completed,
    /// The input refused with this message: nothing answered.
    Failed(String),
    /// The window ran out with half of the requests answered.
    Expired,
    /// Cancelled with a third of the requests answered.
    Cancelled,
}

#[derive(Debug)]
struct Job {
    /// Whose API made it (OpenAI's jobs read their requests from the input file).
    wire: Wire,
    /// Inline requests (Anthropic's and Gemini's).
    inline: Vec<Value>,
    /// Gemini's model, from the create URL.
    model: String,
    /// Anthropic's results, Gemini's responses, once ended.
    answers: Option<Vec<Value>>,
    input_file_id: String,
    end: BatchEnd,
    /// Statuses shown so far.
    step: usize,
    status: String,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    counts: (usize, usize, usize),
    metadata: Value,
}

/// The Batch API's state.
#[derive(Debug, Default)]
pub(crate) struct BatchState {
    files: HashMap<String, Vec<u8>>,
    batches: HashMap<String, Job>,
    ends: VecDeque<BatchEnd>,
    created: Vec<Value>,
    polls: usize,
    next_id: usize,
}

impl BatchState {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }
}

fn state(shared: &Shared) -> std::sync::MutexGuard<'_, BatchState> {
    match shared.batch.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
        .into_response()
}

pub(crate) async fn upload(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let boundary = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok());
    let Some(boundary) = boundary else {
        return error(StatusCode::BAD_REQUEST, "expected multipart/form-data");
    };
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let (mut purpose, mut file) = (None, None);
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("purpose") => purpose = field.text().await.ok(),
            Some("file") => file = field.bytes().await.ok(),
            _ => {}
        }
    }
    if purpose.as_deref() != Some("batch") {
        return error(StatusCode::BAD_REQUEST, "purpose must be `batch`");
    }
    let Some(file) = file else {
        return error(StatusCode::BAD_REQUEST, "no `file` part");
    };
    let mut s = state(&shared);
    let id = s.id("file");
    let bytes = file.len();
    s.files.insert(id.clone(), file.to_vec());
    Json(json!({"id": id, "object": "file", "bytes": bytes, "purpose": "batch"})).into_response()
}

pub(crate) async fn create(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let mut s = state(&shared);
    let Some(input) = body["input_file_id"].as_str().map(str::to_owned) else {
        return error(StatusCode::BAD_REQUEST, "no input_file_id");
    };
    if !s.files.contains_key(&input) {
        return error(StatusCode::NOT_FOUND, "no such file");
    }
    if body["endpoint"] != "/v1/chat/completions" || body["completion_window"] != "24h" {
        return error(
            StatusCode::BAD_REQUEST,
            "endpoint must be /v1/chat/completions and completion_window 24h",
        );
    }
    s.created.push(body.clone());
    let id = s.id("batch");
    let end = s.ends.pop_front().unwrap_or(BatchEnd::Completed);
    s.batches.insert(
        id.clone(),
        Job {
            wire: Wire::OpenAi,
            inline: Vec::new(),
            model: String::new(),
            answers: None,
            input_file_id: input,
            end,
            step: 0,
            status: "validating".into(),
            output_file_id: None,
            error_file_id: None,
            counts: (0, 0, 0),
            metadata: body["metadata"].clone(),
        },
    );
    Json(describe(&id, &s.batches[&id])).into_response()
}

fn describe(id: &str, job: &Job) -> Value {
    let errors = match &job.end {
        BatchEnd::Failed(message) if job.status == "failed" => {
            json!({"object": "list", "data": [{"code": "invalid_request", "message": message, "line": 1}]})
        }
        _ => Value::Null,
    };
    json!({
        "id": id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": job.input_file_id,
        "completion_window": "24h",
        "status": job.status,
        "output_file_id": job.output_file_id,
        "error_file_id": job.error_file_id,
        "request_counts": {"total": job.counts.0, "completed": job.counts.1, "failed": job.counts.2},
        "errors": errors,
        "metadata": job.metadata,
    })
}

pub(crate) async fn retrieve(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let (input, end, step) = {
        let mut s = state(&shared);
        s.polls += 1;
        let Some(job) = s.batches.get_mut(&id) else {
            return error(StatusCode::NOT_FOUND, "no such batch");
        };
        job.step += 1;
        let path: &[&str] = match job.end {
            BatchEnd::Completed => &["validating", "in_progress", "finalizing", "completed"],
            BatchEnd::Failed(_) => &["validating", "failed"],
            BatchEnd::Expired => &["validating", "in_progress", "expired"],
            BatchEnd::Cancelled => &["validating", "in_progress", "cancelling", "cancelled"],
        };
        let before = job.status.clone();
        job.status = path[job.step.min(path.len() - 1)].to_owned();
        let terminal = matches!(
            job.status.as_str(),
            "completed" | "expired" | "cancelled" | "failed"
        );
        if !terminal || before == job.status {
            return Json(describe(&id, job)).into_response();
        }
        let input = s
            .files
            .get(&s.batches[&id].input_file_id)
            .cloned()
            .unwrap_or_default();
        let job = &s.batches[&id];
        (input, job.end.clone(), job.step)
    };
    let _ = step;
    // The batch just ended: answer the share of its requests its end allows.
    let lines: Vec<Value> = String::from_utf8_lossy(&input)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let answered = match end {
        BatchEnd::Completed => lines.len(),
        BatchEnd::Failed(_) => 0,
        BatchEnd::Expired => lines.len() / 2,
        BatchEnd::Cancelled => lines.len() / 3,
    };
    let (mut output, mut errors) = (String::new(), String::new());
    let mut failed = 0;
    for line in lines.iter().take(answered) {
        let body = &line["body"];
        let (reply, n) = take_reply(&shared, body, HeaderMap::new());
        let model = body["model"].as_str().unwrap_or("scripted-model");
        let rendered: Value = serde_json::from_str(&reply.render(n, model)).unwrap_or(Value::Null);
        let entry = json!({
            "id": format!("batch_req_{n}"),
            "custom_id": line["custom_id"],
            "response": {"status_code": reply.status, "request_id": format!("req_{n}"), "body": rendered},
            "error": null,
        });
        let target = if reply.status < 300 {
            &mut output
        } else {
            failed += 1;
            &mut errors
        };
        target.push_str(&entry.to_string());
        target.push('\n');
    }
    let mut s = state(&shared);
    let output_id = (!output.is_empty()).then(|| s.id("file"));
    let error_id = (!errors.is_empty()).then(|| s.id("file"));
    if let Some(oid) = &output_id {
        s.files.insert(oid.clone(), output.into_bytes());
    }
    if let Some(eid) = &error_id {
        s.files.insert(eid.clone(), errors.into_bytes());
    }
    let Some(job) = s.batches.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "no such batch");
    };
    job.output_file_id = output_id;
    job.error_file_id = error_id;
    job.counts = (lines.len(), answered - failed, failed);
    Json(describe(&id, job)).into_response()
}

pub(crate) async fn content(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let s = state(&shared);
    match s.files.get(&id) {
        Some(bytes) => (
            [(http::header::CONTENT_TYPE, "application/octet-stream")],
            bytes.clone(),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "no such file"),
    }
}

/// Registers an inline job of `wire` (ending as the next scripted end); its id.
fn create_inline(
    shared: &Shared,
    wire: Wire,
    inline: Vec<Value>,
    model: &str,
    body: Value,
) -> String {
    let mut s = state(shared);
    s.created.push(body.clone());
    let id = match wire {
        Wire::Gemini => s.id("batches/gb"),
        _ => s.id("msgbatch"),
    };
    let end = s.ends.pop_front().unwrap_or(BatchEnd::Completed);
    s.batches.insert(
        id.clone(),
        Job {
            wire,
            inline,
            model: model.to_owned(),
            answers: None,
            input_file_id: String::new(),
            end,
            step: 0,
            status: String::new(),
            output_file_id: None,
            error_file_id: None,
            counts: (0, 0, 0),
            metadata: body,
        },
    );
    id
}

/// Moves an inline job one status on; at its end, answers the share of its requests the
/// end allows, each like a chat request in the job's wire format.
fn advance_inline(shared: &Shared, id: &str) -> Option<()> {
    let (wire, inline, model, end) = {
        let mut s = state(shared);
        s.polls += 1;
        let job = s.batches.get_mut(id)?;
        job.step += 1;
        let path: &[&str] = match (job.wire, &job.end) {
            (Wire::Gemini, BatchEnd::Completed) => &[
                "BATCH_STATE_PENDING",
                "BATCH_STATE_RUNNING",
                "BATCH_STATE_SUCCEEDED",
            ],
            (Wire::Gemini, BatchEnd::Failed(_)) => &["BATCH_STATE_PENDING", "BATCH_STATE_FAILED"],
            (Wire::Gemini, BatchEnd::Expired) => &[
                "BATCH_STATE_PENDING",
                "BATCH_STATE_RUNNING",
                "BATCH_STATE_EXPIRED",
            ],
            (Wire::Gemini, BatchEnd::Cancelled) => &[
                "BATCH_STATE_PENDING",
                "BATCH_STATE_RUNNING",
                "BATCH_STATE_CANCELLED",
            ],
            (_, BatchEnd::Cancelled) => &["in_progress", "in_progress", "canceling", "ended"],
            _ => &["in_progress", "in_progress", "ended"],
        };
        let before = job.status.clone();
        job.status = path[job.step.min(path.len() - 1)].to_owned();
        let ended = job.step >= path.len() - 1;
        if !ended || before == job.status {
            return Some(());
        }
        (
            job.wire,
            job.inline.clone(),
            job.model.clone(),
            job.end.clone(),
        )
    };
    let answered = match (&end, wire) {
        (BatchEnd::Completed, _) => inline.len(),
        (BatchEnd::Expired, Wire::Anthropic) => inline.len() / 2,
        (BatchEnd::Cancelled, Wire::Anthropic) => inline.len() / 3,
        _ => 0,
    };
    let mut answers = Vec::new();
    let mut failed = 0;
    for (i, line) in inline.iter().enumerate() {
        let entry = match wire {
            Wire::Anthropic => {
                let id = line["custom_id"].clone();
                if i >= answered {
                    let result = match &end {
                        BatchEnd::Failed(message) => {
                            json!({"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error", "message": message}}})
                        }
                        BatchEnd::Cancelled => json!({"type": "canceled"}),
                        _ => json!({"type": "expired"}),
                    };
                    failed += 1;
                    json!({"custom_id": id, "result": result})
                } else {
                    let params = &line["params"];
                    let (reply, n) = take_reply(shared, params, HeaderMap::new());
                    let model = params["model"].as_str().unwrap_or("scripted-model");
                    let rendered: Value =
                        serde_json::from_str(&crate::anthropic::render(&reply, n, model))
                            .unwrap_or(Value::Null);
                    if reply.status < 300 {
                        json!({"custom_id": id, "result": {"type": "succeeded", "message": rendered}})
                    } else {
                        failed += 1;
                        json!({"custom_id": id, "result": {"type": "errored", "error": {"type": "error", "error": rendered["error"]}}})
                    }
                }
            }
            _ => {
                if i >= answered {
                    continue;
                }
                let mut request = line["request"].clone();
                request["model"] = json!(model);
                let (reply, n) = take_reply(shared, &request, HeaderMap::new());
                let rendered: Value =
                    serde_json::from_str(&crate::gemini::render(&reply, n, &model))
                        .unwrap_or(Value::Null);
                if reply.status < 300 {
                    json!({"response": rendered, "metadata": line["metadata"]})
                } else {
                    failed += 1;
                    json!({"error": {"code": reply.status, "message": rendered["error"]["message"]}, "metadata": line["metadata"]})
                }
            }
        };
        answers.push(entry);
    }
    let mut s = state(shared);
    let job = s.batches.get_mut(id)?;
    job.counts = (
        inline.len(),
        answered.min(inline.len()) - failed.min(answered),
        failed,
    );
    job.answers = Some(answers);
    Some(())
}

/// An Anthropic Message Batch as the API describes it.
fn describe_anthropic(id: &str, job: &Job, host: &str) -> Value {
    let ended = job.status == "ended";
    json!({
        "id": id,
        "type": "message_batch",
        "processing_status": job.status,
        "request_counts": {"processing": if ended { 0 } else { job.inline.len() },
            "succeeded": job.counts.1, "errored": job.counts.2, "canceled": 0, "expired": 0},
        "results_url": if ended { json!(format!("http://{host}/v1/messages/batches/{id}/results")) } else { Value::Null },
    })
}

/// A Gemini batch operation as the API describes it.
fn describe_gemini(id: &str, job: &Job) -> Value {
    let done = job.answers.is_some();
    let mut op = json!({
        "name": id,
        "metadata": {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": format!("models/{}", job.model), "state": job.status,
            "batchStats": {"requestCount": job.inline.len().to_string(),
                "successfulRequestCount": job.counts.1.to_string(), "failedRequestCount": job.counts.2.to_string()}},
        "done": done,
    });
    if done {
        match &job.end {
            BatchEnd::Failed(message) => op["error"] = json!({"code": 3, "message": message}),
            _ if job.status == "BATCH_STATE_SUCCEEDED" => {
                op["response"] = json!({"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
                    "inlinedResponses": {"inlinedResponses": job.answers}});
            }
            _ => {}
        }
    }
    op
}

pub(crate) async fn anthropic_create(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Value>,
) -> Response {
    let Some(requests) = body["requests"].as_array().cloned() else {
        return error(StatusCode::BAD_REQUEST, "no `requests`");
    };
    let bad = requests.iter().any(|r| {
        let id = r["custom_id"].as_str().unwrap_or("");
        id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if bad {
        return error(
            StatusCode::BAD_REQUEST,
            "each custom_id must match ^[a-zA-Z0-9_-]{1,64}$",
        );
    }
    let id = create_inline(&shared, Wire::Anthropic, requests, "", body);
    let s = state(&shared);
    Json(describe_anthropic(&id, &s.batches[&id], "")).into_response()
}

pub(crate) async fn anthropic_retrieve(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if advance_inline(&shared, &id).is_none() {
        return error(StatusCode::NOT_FOUND, "no such batch");
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let s = state(&shared);
    Json(describe_anthropic(&id, &s.batches[&id], host)).into_response()
}

pub(crate) async fn anthropic_results(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let s = state(&shared);
    match s.batches.get(&id).and_then(|j| j.answers.as_ref()) {
        Some(answers) => {
            let mut text = String::new();
            for a in answers {
                text.push_str(&a.to_string());
                text.push('\n');
            }
            ([(http::header::CONTENT_TYPE, "application/binary")], text).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "no results for this batch (yet)"),
    }
}

pub(crate) fn gemini_create(shared: &Shared, model: &str, body: &[u8]) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "not JSON");
    };
    let Some(requests) = body
        .pointer("/batch/input_config/requests/requests")
        .and_then(Value::as_array)
        .cloned()
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "no `batch.input_config.requests.requests`",
        );
    };
    let id = create_inline(shared, Wire::Gemini, requests, model, body);
    let mut s = state(shared);
    if let Some(job) = s.batches.get_mut(&id) {
        job.status = "BATCH_STATE_PENDING".into();
    }
    Json(describe_gemini(&id, &s.batches[&id])).into_response()
}

pub(crate) async fn gemini_retrieve(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let id = format!("batches/{id}");
    if advance_inline(&shared, &id).is_none() {
        return error(StatusCode::NOT_FOUND, "no such batch");
    }
    let s = state(&shared);
    Json(describe_gemini(&id, &s.batches[&id])).into_response()
}

impl crate::ScriptedServer {
    /// How the next batch created ends (by default: completed).
    pub fn push_batch_end(&self, end: BatchEnd) -> &Self {
        state(&self.shared).ends.push_back(end);
        self
    }

    /// The bodies of every batch created.
    pub fn batches_created(&self) -> Vec<Value> {
        state(&self.shared).created.clone()
    }

    /// Retrieves of batches so far.
    pub fn batch_polls(&self) -> usize {
        state(&self.shared).polls
    }

    /// The content of file `id`, uploaded or produced.
    pub fn file(&self, id: &str) -> Option<Vec<u8>> {
        state(&self.shared).files.get(id).cloned()
    }
}
