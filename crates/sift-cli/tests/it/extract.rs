//! `sift extract` as a process: against the scripted upstream (values, streams, exit codes)
//! and on the real embedded model (each example extractor).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer, last_user_text, split_chars};

use crate::sift;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn person_schema(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("person.json");
    std::fs::write(
        &path,
        json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "maximum": 150}},
            "required": ["name", "age"]
        })
        .to_string(),
    )
    .unwrap();
    path
}

/// Runs `sift extract ARGS` against `server` with `stdin` fed in.
async fn extract(server: &ScriptedServer, args: &[&str], stdin: &str) -> Output {
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", server.base_url())
        .env("OPENAI_API_KEY", "sk-extract-secret-0123456789")
        .arg("extract")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        let _ = pipe.write_all(stdin.as_bytes());
        drop(pipe);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn ndjson(bytes: &[u8]) -> Vec<Value> {
    text(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_schema_file_and_a_text_print_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let schema = person_schema(&dir);
    let server = ScriptedServer::start().await;
    server.push(Reply::tool_call(
        "person",
        r#"{"name": "Daniel", "age": 24}"#,
    ));
    let out = extract(
        &server,
        &[
            "--schema",
            schema.to_str().unwrap(),
            "--prompt",
            "Find the person.",
            "Daniel is a 24 year old man",
        ],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value, json!({"name": "Daniel", "age": 24}));
    let sent = last_user_text(&server.requests()[0].body);
    assert_eq!(sent, "Find the person.\n\nDaniel is a 24 year old man");
}

#[tokio::test]
async fn a_configured_extractor_reads_stdin_and_verbose_shows_the_attempts() {
    let server = ScriptedServer::start().await;
    server.push(Reply::tool_call(
        "Contact",
        r#"{"name": "Ada", "kind": "person", "email": "not an email"}"#,
    ));
    server.fallback(|body| {
        let name = body["tools"][0]["function"]["name"]
            .as_str()
            .unwrap_or("Contact")
            .to_owned();
        Reply::tool_call(
            &name,
            r#"{"name": "Ada Lovelace", "kind": "person", "email": "ada@example.com"}"#,
        )
    });
    let config = repo("examples/sift.toml");
    let out = extract(
        &server,
        &[
            "--config",
            config.to_str().unwrap(),
            "contact",
            "-",
            "--verbose",
        ],
        "Write to Ada Lovelace at ada@example.com",
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["email"], "ada@example.com");
    assert!(stderr.contains("attempt 1: validation_failed"), "{stderr}");
    assert!(stderr.contains("email"), "{stderr}");
    assert!(stderr.contains("attempt 2: success"), "{stderr}");
    // The extractor's prompt was rendered over stdin's text.
    let sent = last_user_text(&server.requests()[0].body);
    assert!(
        sent.starts_with("Extract the contact details from this message:"),
        "{sent}"
    );
    assert!(sent.contains("ada@example.com"), "{sent}");
}

#[tokio::test]
async fn exit_codes_tell_input_provider_and_validation_failures_apart() {
    let dir = tempfile::tempdir().unwrap();
    let schema = person_schema(&dir);
    let schema = schema.to_str().unwrap();
    let server = ScriptedServer::start().await;

    // Input: an unknown extractor, named with the ones there are.
    let config = repo("examples/sift.toml");
    let out = extract(
        &server,
        &["--config", config.to_str().unwrap(), "nope", "x"],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("no extractor `nope` in the config; it has: invoice, contact, events")
    );
    // Input: a schema file that is not JSON.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{").unwrap();
    let out = extract(&server, &["--schema", bad.to_str().unwrap(), "x"], "").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.json: not valid JSON"),
        "{}",
        text(&out.stderr)
    );
    // Input: a year out of the events extractor's input schema.
    let out = extract(
        &server,
        &[
            "--config",
            config.to_str().unwrap(),
            "events",
            "--json",
            r#"{"text": "x", "year": 1}"#,
        ],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("year"), "{}", text(&out.stderr));
    assert!(server.requests().is_empty(), "no model call for bad input");

    // Provider: a 401 (not retried); the key is not echoed.
    server.push(Reply::error(
        401,
        "Incorrect API key provided: sk-extract-secret-0123456789",
    ));
    let out = extract(&server, &["--schema", schema, "Daniel is 24"], "").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("sk-extract-secret"), "{stderr}");

    // Validation: never a valid age, re-asks spent.
    server.fallback(|_| Reply::tool_call("person", r#"{"name": "Daniel", "age": 400}"#));
    let out = extract(
        &server,
        &["--schema", schema, "--max-retries", "1", "Daniel is 24"],
        "",
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("no valid answer after 2 attempts"),
        "{stderr}"
    );
    assert!(stderr.contains("attempt 2: validation_failed"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn stream_prints_elements_and_snapshots_as_ndjson() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("people.json");
    std::fs::write(
        &list,
        json!({"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}).to_string(),
    )
    .unwrap();
    let server = ScriptedServer::start().await;
    let answer = r#"{"value": [{"name": "Ann"}, {"name": "Bob"}, {"name": "Cy"}]}"#;
    server.push(Reply::stream_tool_call("people", split_chars(answer, 5)));
    let out = extract(
        &server,
        &[
            "--schema",
            list.to_str().unwrap(),
            "--stream",
            "Ann, Bob and Cy",
        ],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = ndjson(&out.stdout);
    assert_eq!(
        lines,
        [
            json!({"name": "Ann"}),
            json!({"name": "Bob"}),
            json!({"name": "Cy"})
        ]
    );

    let schema = person_schema(&dir);
    server.push(Reply::stream_tool_call(
        "person",
        split_chars(r#"{"name": "Daniel Smith", "age": 24}"#, 4),
    ));
    let out = extract(
        &server,
        &[
            "--schema",
            schema.to_str().unwrap(),
            "--stream",
            "Daniel Smith, 24",
        ],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = ndjson(&out.stdout);
    assert!(lines.len() >= 3, "{lines:?}");
    assert_eq!(
        lines.last().unwrap(),
        &json!({"name": "Daniel Smith", "age": 24})
    );
    assert!(
        lines.iter().any(|l| l.get("age").is_none()),
        "a snapshot before the age: {lines:?}"
    );
}

/// Each example extractor on the real embedded model: an answer that fits its schema, every
/// grounded value of it found in the text (decoded under the grounded grammar), with spans
/// that read back.
#[test]
fn each_example_extractor_runs_on_the_embedded_model() {
    let config = repo("examples/sift.toml");
    let dir = tempfile::tempdir().unwrap();
    for name in ["invoice", "contact", "events"] {
        let source = std::fs::read_to_string(repo(&format!("examples/texts/{name}.txt"))).unwrap();
        // The events text writes no year; the extractor takes it as an input.
        let input = dir.path().join(format!("{name}.json"));
        let mut fields = json!({ "text": source });
        if name == "events" {
            fields["year"] = json!(2027);
        }
        std::fs::write(&input, fields.to_string()).unwrap();
        let out = sift()
            .args([
                "extract",
                "--config",
                config.to_str().unwrap(),
                name,
                "--json",
                "--spans",
                "--file",
            ])
            .arg(&input)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        let answer: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", text(&out.stdout)));
        let value = answer["value"].clone();
        let spans = answer["spans"].as_object().expect("spans");
        assert!(!spans.is_empty(), "{name}: {answer}");
        let chars: Vec<char> = source.chars().collect();
        for (pointer, found) in spans {
            let got = value
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{name}: {pointer}"));
            for span in found.as_array().unwrap() {
                let (start, end) = (
                    span["start"].as_u64().unwrap() as usize,
                    span["end"].as_u64().unwrap() as usize,
                );
                assert!(start < end && end <= chars.len(), "{name}: {span}");
                if span["field"] == "text"
                    && let Some(s) = got.as_str()
                    // A date is found in another spelling (`3 November 2026`).
                    && !(s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-')
                {
                    let read: String = chars[start..end].iter().collect();
                    assert_eq!(
                        read.to_lowercase().split_whitespace().collect::<Vec<_>>(),
                        s.to_lowercase().split_whitespace().collect::<Vec<_>>(),
                        "{name}: {pointer}"
                    );
                }
            }
        }
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(repo(&format!("examples/schemas/{name}.json"))).unwrap(),
        )
        .unwrap();
        let compiled = sift_core::Schema::compile(name, schema).unwrap();
        assert_eq!(compiled.errors(&value), [], "{name}: {value}");
    }
}

#[tokio::test]
async fn a_fallback_chain_asks_the_next_provider_when_the_first_is_down() {
    let main = ScriptedServer::start().await;
    main.fallback(|_| Reply::error(503, "overloaded"));
    let backup = ScriptedServer::start().await;
    // The scripted server names the model it was asked for in its answer.
    backup.fallback(|_| Reply::tool_call("Person", r#"{"name": "Ada", "age": 36}"#).usage(10, 5));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sift.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[providers.main]
kind = "openai"
base_url = "{}"
model = "main-model"

[providers.backup]
kind = "openai"
base_url = "{}"
model = "backup-model"

[extractors.person]
provider = ["main", "backup"]
schema = {{ type = "object", title = "Person", properties = {{ name = {{ type = "string" }}, age = {{ type = "integer" }} }}, required = ["name", "age"] }}
"#,
            main.base_url(),
            backup.base_url()
        ),
    )
    .unwrap();
    let out = extract(
        &main,
        &[
            "--config",
            config.to_str().unwrap(),
            "person",
            "-",
            "--verbose",
        ],
        "Ada is 36",
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value, json!({"name": "Ada", "age": 36}));
    // The first was tried (with its own retries), then the backup with its own model.
    assert!(!main.requests().is_empty());
    assert_eq!(main.requests()[0].body["model"], "main-model");
    assert_eq!(backup.requests().len(), 1);
    assert_eq!(backup.requests()[0].body["model"], "backup-model");
    assert!(
        stderr.contains("attempt 1: success by backup-model"),
        "{stderr}"
    );

    // A request the first refuses (a 400) is not a reason to ask another.
    let refusing = ScriptedServer::start().await;
    refusing.fallback(|_| Reply::error(400, "bad request"));
    let config_text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&main.base_url(), &refusing.base_url());
    std::fs::write(&config, config_text).unwrap();
    let out = extract(
        &main,
        &["--config", config.to_str().unwrap(), "person", "Ada is 36"],
        "",
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        backup.requests().len(),
        1,
        "the backup was asked after a 400"
    );
}

#[tokio::test]
async fn a_chain_with_the_embedded_model_or_an_unknown_provider_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sift.toml");
    std::fs::write(
        &config,
        "[providers.box]\nkind = \"local\"\n\n[providers.api]\nkind = \"openai\"\n\n[extractors.x]\nschema = { type = \"object\" }\nprovider = [\"api\", \"box\", \"nope\", \"api\"]\n",
    )
    .unwrap();
    let out = sift()
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("sift.toml:9:20: `extractors.x.provider`: `box` is the embedded model"),
        "{err}"
    );
    assert!(
        err.contains("sift.toml:9:27: `extractors.x.provider` names `nope`"),
        "{err}"
    );
    assert!(err.contains("lists `api` twice"), "{err}");
}
