//! `/v1/extractors/{name}/document`: uploads (raw and multipart, too big, wrong type, scanned),
//! documents split into chunks each answered by the scripted upstream over HTTP, and the
//! merge (duplicates from overlaps dropped, conflicts reported, spans in document offsets
//! and pages).

use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sift_config::Config;
use sift_server::ServerConfig;
use sift_test_support::pdf::{self, Line, Page};
use sift_test_support::{Reply, ScriptedServer, last_user_text};
use tower::ServiceExt;

use crate::json;

const CONFIG: &str = r#"
[extractors.people]
schema = { type = "array", items = { type = "object", properties = { name = { type = "string" }, city = { type = "string" } }, required = ["name", "city"] } }
prompt = "People: {{ text }}"
max_retries = 0
[extractors.people.document]
chunk_tokens = 40
overlap_tokens = 10

[extractors.paper]
schema = { type = "object", properties = { title = { type = "string" }, year = { type = "integer" }, authors = { type = "array", items = { type = "string" } } }, required = ["title", "year"] }
prompt = "Paper: {{ text }}"
max_retries = 0
[extractors.paper.document]
chunk_tokens = 40
overlap_tokens = 5
"#;

/// A model that reads what the chunk says: every `NAME lives in CITY.` for `people`; for
/// `paper`, `Title: ...`, `Year NNNN`, `by NAME` lines. A chunk holding `FAIL` gets a 400.
fn reader(body: &Value) -> Reply {
    let text = last_user_text(body);
    if text.contains("FAIL") {
        return Reply::error(400, "this chunk is refused");
    }
    if text.starts_with("People:") {
        return sift_test_support::readers::people(body);
    }
    let tool = body["tools"][0]["function"]["name"]
        .as_str()
        .unwrap_or("f")
        .to_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut paper = serde_json::Map::new();
    let mut authors = Vec::new();
    for w in words.windows(2) {
        match w[0] {
            "Title:" => {
                paper.insert("title".into(), json!(w[1].trim_end_matches('.')));
            }
            "Year" => {
                if let Ok(y) = w[1].trim_end_matches('.').parse::<i64>() {
                    paper.insert("year".into(), json!(y));
                }
            }
            "by" => authors.push(json!(w[1].trim_end_matches('.'))),
            _ => {}
        }
    }
    if !authors.is_empty() {
        paper.insert("authors".into(), Value::Array(authors));
    }
    Reply::tool_call(&tool, Value::Object(paper).to_string())
}

fn app(upstream: &ScriptedServer, config: ServerConfig) -> Router {
    upstream.fallback(reader);
    crate::v1::serving(
        upstream,
        Config::parse(CONFIG, Path::new("sift.toml")).unwrap(),
        config,
    )
}

async fn send(
    app: &Router,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri(path)
                .header("content-type", content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// A part of a form: its name, file name, content type and bytes.
type FormPart<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart body of `parts`.
fn multipart(parts: &[FormPart<'_>]) -> (String, Vec<u8>) {
    let boundary = "sift-test-boundary-7d3a";
    let mut body = Vec::new();
    for (name, file, ct, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = file {
            disposition.push_str(&format!("; filename=\"{f}\""));
        }
        body.extend_from_slice(format!("{disposition}\r\n").as_bytes());
        if let Some(ct) = ct {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

const TOWNS: &str = "Ann lives in Leeds. Bob lives in York. Cy lives in Bath. Dee lives in Hull. \
                     Eve lives in Ely. Fay lives in Rye. Gus lives in Wells. Hal lives in Ripon.";

/// The `name` of each person of a list answer.
fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

/// The text at a span of `text`.
fn at(text: &str, span: &Value) -> String {
    let start = span["start"].as_u64().unwrap() as usize;
    let end = span["end"].as_u64().unwrap() as usize;
    text.chars().skip(start).take(end - start).collect()
}

#[tokio::test]
async fn a_long_text_is_chunked_merged_without_overlap_duplicates_with_document_spans() {
    let upstream = ScriptedServer::start().await;
    let app = app(&upstream, ServerConfig::default());
    let (status, headers, body) = send(
        &app,
        "/v1/extractors/people/document?spans=true",
        "text/plain",
        TOWNS.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = json(&body);
    let names = names(&out["value"]);
    assert_eq!(
        names,
        ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal"]
    );
    let chunks = out["document"]["chunks"].as_array().unwrap();
    assert!(chunks.len() >= 2, "{out}");
    // The chunks overlap, so some sentence was read twice and dropped once.
    assert!(
        chunks
            .windows(2)
            .any(|w| w[1]["start"].as_u64() < w[0]["end"].as_u64())
    );
    let calls = upstream.requests().len();
    assert_eq!(calls, chunks.len());
    assert_eq!(headers["sift-attempts"], calls.to_string().as_str());
    // Spans index the document's text, not the chunk's.
    let text = out["text"].as_str().unwrap();
    assert_eq!(text, TOWNS);
    for (i, name) in names.iter().enumerate() {
        let span = &out["spans"][format!("/{i}/name")][0];
        assert_eq!(at(text, span), *name, "{span}");
        assert!(span.get("page").is_none(), "plain text has no pages");
    }
    assert_eq!(out["document"]["kind"], "text");
    assert!(out["failed_chunks"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_pdf_uploaded_as_multipart_gets_page_numbers_on_its_spans() {
    let upstream = ScriptedServer::start().await;
    let app = app(&upstream, ServerConfig::default());
    let file = pdf::document(&[
        Page::Text(vec![
            Line::text(780, "Ann lives in Leeds."),
            Line::text(760, "Bob lives in York."),
        ]),
        Page::Text(vec![
            Line::text(780, "Cy lives in Bath."),
            Line::text(760, "Dee lives in Hull."),
        ]),
    ]);
    let (ct, body) = multipart(&[("file", Some("people.pdf"), Some("application/pdf"), &file)]);
    let (status, _, text) =
        send(&app, "/v1/extractors/people/document?spans=true", &ct, body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let out = json(&text);
    assert_eq!(out["document"]["kind"], "pdf");
    assert_eq!(out["document"]["pages"], 2);
    let names = names(&out["value"]);
    assert_eq!(names, ["Ann", "Bob", "Cy", "Dee"]);
    let doc_text = out["text"].as_str().unwrap();
    for (i, page) in [(0, 1), (1, 1), (2, 2), (3, 2)] {
        let span = &out["spans"][format!("/{i}/city")][0];
        assert_eq!(span["page"], page, "{out}");
        assert_eq!(
            at(doc_text, span),
            out["value"][i]["city"].as_str().unwrap()
        );
    }
    // Named by its extension when the part is typed generically.
    let (ct, body) = multipart(&[(
        "doc",
        Some("people.pdf"),
        Some("application/octet-stream"),
        &file,
    )]);
    let (status, _, text) = send(&app, "/v1/extractors/people/document", &ct, body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

#[tokio::test]
async fn object_fields_merge_and_conflicting_chunks_are_reported() {
    let upstream = ScriptedServer::start().await;
    let app = app(&upstream, ServerConfig::default());
    let text = "Title: Backprop. Year 1989. Written by LeCun and by Denker.\n\n\
                Some words in between that say nothing at all, to make a chunk.\n\n\
                Reprinted Year 1990 with notes by Henderson.";
    let (status, _, body) = send(
        &app,
        "/v1/extractors/paper/document?spans=true",
        "text/markdown",
        text.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = json(&body);
    assert_eq!(out["value"]["title"], "Backprop");
    // The first chunk grounding a year wins; the other is reported, not dropped.
    assert_eq!(out["value"]["year"], 1989);
    let conflicts = out["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{out}");
    assert_eq!(conflicts[0]["pointer"], "/year");
    let years: Vec<&Value> = conflicts[0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["value"])
        .collect();
    assert_eq!(years, [&json!(1989), &json!(1990)]);
    assert_eq!(
        out["value"]["authors"],
        json!(["LeCun", "Denker", "Henderson"])
    );
}

#[tokio::test]
async fn a_required_field_no_chunk_holds_fails_by_name_and_failed_chunks_are_reported() {
    let upstream = ScriptedServer::start().await;
    let app = app(&upstream, ServerConfig::default());
    // Long enough for two chunks (a one-chunk document is one ordinary extraction, whose
    // answer without a title is re-asked like any invalid answer).
    let text = "Year 2001 was when it appeared.\n\nNothing else here, only filler text to fill a chunk.\n\nAnd more filler text, and then some more of it.";
    let (status, _, body) = send(
        &app,
        "/v1/extractors/paper/document",
        "text/plain",
        text.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let detail = &json(&body)["detail"];
    assert_eq!(detail["kind"], "document_invalid");
    assert!(
        detail["message"].as_str().unwrap().contains("title"),
        "{detail}"
    );

    // One chunk refused: the others still merge, and the refused one is named.
    let text = TOWNS.replace("Hal lives in Ripon.", "FAIL FAIL FAIL FAIL.");
    let fail_at = text.find("FAIL").unwrap() as u64;
    let (status, _, body) = send(
        &app,
        "/v1/extractors/people/document",
        "text/plain",
        text.into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = json(&body);
    let failed = out["failed_chunks"].as_array().unwrap();
    assert!(!failed.is_empty(), "{out}");
    assert_eq!(failed[0]["kind"], "provider_error");
    assert!(
        failed[0]["start"].as_u64().unwrap() <= fail_at
            && fail_at < failed[0]["end"].as_u64().unwrap()
    );
    let names = names(&out["value"]);
    assert_eq!(names[..4], ["Ann", "Bob", "Cy", "Dee"], "{out}");
}

#[tokio::test]
async fn a_first_chunk_failing_the_whole_schema_is_asked_again_relaxed() {
    let upstream = ScriptedServer::start().await;
    let app = app(&upstream, ServerConfig::default());
    // The first chunk holds the title but not the (required) year: its answer to the schema
    // as written is invalid, and with no re-asks left it fails. Asked again with `required`
    // relaxed, its title is kept, and the year comes from a later chunk.
    let text = "Title: Backprop. Nothing about when it appeared, only words.\n\n\
                Filler text that says nothing at all, to make a chunk of it.\n\n\
                It appeared in Year 1989 at last.";
    let (status, _, body) = send(
        &app,
        "/v1/extractors/paper/document?attempts=true",
        "text/plain",
        text.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = json(&body);
    assert_eq!(out["value"]["title"], "Backprop", "{out}");
    assert_eq!(out["value"]["year"], 1989, "{out}");
    assert_eq!(out["failed_chunks"], json!([]), "{out}");

    // The first chunk was asked twice: for the schema as written, then relaxed; both calls
    // are counted.
    let first: Vec<Value> = upstream
        .requests()
        .into_iter()
        .filter(|r| last_user_text(&r.body).contains("Title: Backprop"))
        .map(|r| r.body["tools"][0]["function"]["parameters"].clone())
        .collect();
    assert_eq!(first.len(), 2, "{first:?}");
    // Strict tools list every property as required: a field the schema lets be left out is
    // nullable instead.
    assert_eq!(first[0]["properties"]["year"]["type"], "integer");
    assert_eq!(
        first[1]["properties"]["year"]["type"],
        json!(["integer", "null"])
    );
    let outcomes: Vec<&Value> = out["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["outcome"])
        .collect();
    assert_eq!(outcomes.len(), upstream.requests().len(), "{out}");
    assert_eq!(
        outcomes.iter().filter(|o| **o != "success").count(),
        1,
        "{out}"
    );
}

#[tokio::test]
async fn uploads_are_refused_by_size_type_and_content_with_the_reason() {
    let upstream = ScriptedServer::start().await;
    let config = ServerConfig::default().document_limits(sift_documents::Limits {
        max_bytes: 1000,
        max_pages: 1,
    });
    let app = app(&upstream, config);
    let path = "/v1/extractors/people/document";
    let (status, _, body) = send(&app, path, "text/plain", vec![b'a'; 1001]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(json(&body)["type"], "too_large");
    assert!(
        json(&body)["detail"].as_str().unwrap().contains("1000"),
        "{body}"
    );

    let two_pages = pdf::document(&[
        Page::Text(vec![Line::text(700, "a")]),
        Page::Text(vec![Line::text(700, "b")]),
    ]);
    let (status, _, body) = send(&app, path, "application/pdf", two_pages).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(json(&body)["type"], "too_many_pages");

    let (status, _, body) = send(&app, path, "image/png", b"\x89PNG....".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(
        json(&body)["detail"]
            .as_str()
            .unwrap()
            .contains("application/pdf"),
        "{body}"
    );

    let (status, _, body) = send(
        &app,
        path,
        "application/pdf",
        pdf::document(&[Page::Scanned]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(json(&body)["type"], "no_text");

    let (status, _, body) = send(&app, path, "application/pdf", pdf::malformed()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(json(&body)["type"], "malformed");

    let (ct, form) = multipart(&[("note", None, None, b"no file here")]);
    let (status, _, body) = send(&app, path, &ct, form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(json(&body)["detail"][0]["loc"], json!(["body", "file"]));

    let (status, _, body) = send(
        &app,
        "/v1/extractors/nobody/document",
        "text/plain",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        upstream.requests().is_empty(),
        "nothing refused reached the model"
    );
}

#[tokio::test]
async fn a_streamed_document_sends_elements_as_chunks_complete_then_the_answer() {
    let upstream = ScriptedServer::start().await;
    let app = app(&upstream, ServerConfig::default());
    let (status, _, body) = send(
        &app,
        "/v1/extractors/people/document/stream",
        "text/plain",
        TOWNS.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lines: Vec<Value> = body.lines().map(json).collect();
    let (last, elements) = lines.split_last().unwrap();
    let names: Vec<&str> = elements
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal"]
    );
    assert_eq!(last["document"]["value"].as_array().unwrap().len(), 8);
    assert!(
        last["document"]["document"]["chunks"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );
}

#[tokio::test]
async fn openapi_describes_the_uploads_and_the_answer() {
    let upstream = ScriptedServer::start().await;
    let app = app(&upstream, ServerConfig::default());
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let op = &doc["paths"]["/v1/extractors/people/document"]["post"];
    let content = op["requestBody"]["content"].as_object().unwrap();
    for mime in [
        "multipart/form-data",
        "application/pdf",
        "text/html",
        "text/markdown",
        "text/plain",
    ] {
        assert!(content.contains_key(mime), "{mime}: {op}");
    }
    assert_eq!(
        content["multipart/form-data"]["schema"]["properties"]["file"]["format"],
        "binary"
    );
    let answer = &op["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(
        answer["required"],
        json!(["value", "document", "conflicts", "failed_chunks"])
    );
    assert!(
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "spans")
    );
    assert!(doc["paths"]["/v1/extractors/people/document/stream"]["post"].is_object());
    // The built-in `user` takes `query`, its only string field: it takes documents too.
    assert!(doc["paths"]["/v1/extractors/user/document"]["post"].is_object());
    // The kept traces are described too (404 when none are kept).
    assert_eq!(
        doc["paths"]["/v1/traces"]["get"]["operationId"],
        "list_traces"
    );
    assert!(doc["paths"]["/v1/traces/{id}"]["get"]["responses"]["404"].is_object());
}
