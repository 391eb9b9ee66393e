//! The scripted server's Files and Batches endpoints, enough of OpenAI's Batch API for sift's
//! `--via openai-batch`: upload (`POST /v1/files`, multipart), create (`POST /v1/batches`),
//! retrieve (`GET /v1/batches/{id}`), download (`GET /v1/files/{id}/content`).
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

use crate::{Shared, take_reply};

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
