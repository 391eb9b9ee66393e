//! The trace viewer (`GET /traces`) in a real browser: headless Chromium driven by Selenium
//! (`tests/browser/*.py`, in the `browser` virtualenv scripts/setup.sh makes, with Debian's
//! chromium and chromium-driver) against a running `sift serve` on the scripted upstream.
//! Screenshots of each step are saved under the target dir's `browser-screenshots/`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer};

use crate::{serve, sift};

/// One browser at a time: each Chromium takes most of a small machine's cores, and the other
/// tests of this binary run beside them.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `script` with `args` in the browser virtualenv; the JSON line it prints.
async fn drive(script: &str, args: Vec<String>) -> Value {
    let _one = ONE_BROWSER.lock().await;
    let root = std::env::var_os("SIFT_CLIENTS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/sift/clients"),
        PathBuf::from,
    );
    let python = root.join("browser/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs chromium and the browser virtualenv)",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/browser")
            .join(script),
    )
    .args(args);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        cmd.env_remove(var);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

fn screenshots(name: &str) -> String {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("browser-screenshots")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

async fn a_user_request(url: &str, key: Option<&str>) {
    let http = sift_test_support::http_client();
    let mut request = http
        .post(format!("{url}/user"))
        .json(&json!({"query": "Daniel is a 24 year man living in New York City"}));
    if let Some(k) = key {
        request = request.bearer_auth(k);
    }
    let user: Value = request.send().await.unwrap().json().await.unwrap();
    assert_eq!(user, json!({"name": "Daniel", "age": 24}));
}

#[tokio::test]
async fn the_trace_viewer_shows_a_request_with_its_failed_and_fixed_attempts() {
    let upstream = ScriptedServer::start().await;
    upstream
        .push(Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 240}"#).usage(50, 10))
        .push(Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#).usage(70, 10));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", "sk-browser-secret")
        .env("SIFT_TRACES", "20");
    let running = serve(cmd);
    a_user_request(&running.url, None).await;
    let seen = drive(
        "traces.py",
        vec![running.url.clone(), screenshots("traces")],
    )
    .await;
    let rows = seen["rows"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r.as_str().unwrap().contains("/user")),
        "{seen}"
    );
    // The pages' own requests (the viewer, its script, its JSON) are not listed.
    assert!(
        !rows.iter().any(|r| {
            let r = r.as_str().unwrap();
            r.contains("/assets/") || r.contains("/traces")
        }),
        "{seen}"
    );
    let spans: Vec<&str> = seen["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(spans[0], "POST /user", "{spans:?}");
    assert!(spans.contains(&"extract UserDetail"), "{spans:?}");
    assert_eq!(
        spans.iter().filter(|s| s.starts_with("chat ")).count(),
        2,
        "both attempts: {spans:?}"
    );
    // Each answer's validation: the failed one, then the one that passed.
    let validations: Vec<&&str> = spans
        .iter()
        .filter(|s| s.starts_with("validate "))
        .collect();
    assert_eq!(
        validations,
        [
            &"validate UserDetail failed",
            &"validate UserDetail succeeded"
        ],
        "{spans:?}"
    );
    // The first chat span's attributes, shown on a click: the messages sift sent.
    let details = seen["details"].as_str().unwrap();
    assert!(details.contains("gen_ai.input.messages"), "{details}");
    assert_eq!(seen["external"], json!([]), "nothing leaves the server");
    eprintln!(
        "trace viewer: {} bytes, first row after {} ms",
        seen["page_bytes"], seen["first_row_ms"]
    );
}

#[tokio::test]
async fn with_service_keys_the_page_asks_for_one_and_uses_it() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("SIFT_API_KEYS", "browser-key-7")
        .env("SIFT_TRACES", "20");
    let running = serve(cmd);
    a_user_request(&running.url, Some("browser-key-7")).await;
    let seen = drive(
        "traces.py",
        vec![
            running.url.clone(),
            screenshots("traces-keyed"),
            "browser-key-7".into(),
        ],
    )
    .await;
    assert!(
        seen["asked_for_key"]
            .as_str()
            .unwrap_or_default()
            .contains("service key"),
        "{seen}"
    );
    assert!(!seen["spans"].as_array().unwrap().is_empty(), "{seen}");
    // Without the key the JSON behind the page is refused.
    let refused = sift_test_support::http_client()
        .get(format!("{}/v1/traces", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

/// The playground of `cmd`'s `sift serve`, driven through one run: what the page showed.
async fn play(
    cmd: Command,
    shots: &str,
    extractor: &str,
    field: &str,
    text: &str,
    stream: bool,
) -> Value {
    play_with(cmd, shots, extractor, field, text, stream, &[]).await
}

/// [`play`], with `more` typed in first: `("schema", JSON)` into an ad-hoc run's schema
/// field, `(NAME, VALUE)` into the input field NAME.
async fn play_with(
    cmd: Command,
    shots: &str,
    extractor: &str,
    field: &str,
    text: &str,
    stream: bool,
    more: &[(&str, &str)],
) -> Value {
    let running = serve(cmd);
    let mut args = vec![
        running.url.clone(),
        screenshots(shots),
        extractor.into(),
        field.into(),
        text.into(),
    ];
    if stream {
        args.push("stream".into());
    }
    for (name, value) in more {
        args.push(if *name == "schema" {
            format!("schema={value}")
        } else {
            format!("set:{name}={value}")
        });
    }
    let seen = drive("playground.py", args).await;
    assert_eq!(
        seen["external"],
        json!([]),
        "nothing leaves the server: {seen}"
    );
    eprintln!(
        "playground ({shots}): {} bytes, interactive after {} ms",
        seen["page_bytes"], seen["interactive_ms"]
    );
    seen
}

const SEED: &str = "Daniel is a 24 year man living in New York City";

#[tokio::test]
async fn the_playground_runs_the_seed_query_and_marks_where_each_value_was_found() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| {
        Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#).usage(60, 12)
    });
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url());
    let seen = play(cmd, "playground-seed", "user", "query", SEED, false).await;
    // The configured extractors, then the ad-hoc schema.
    assert_eq!(seen["extractors"], json!(["user", ""]), "{seen}");
    let result: Value = serde_json::from_str(seen["result"].as_str().unwrap()).unwrap();
    assert_eq!(result, json!({"name": "Daniel", "age": 24}), "{seen}");
    assert_eq!(seen["attempts"].as_array().unwrap().len(), 1, "{seen}");
    // No prices configured: the cost is said to be unknown, not zero.
    assert!(
        seen["cost"]
            .to_string()
            .contains("cost unknown: no price for gpt-4o-mini"),
        "{seen}"
    );
    // "Daniel" is marked in the text as /name; hovering it lights up its row.
    let spans = seen["spans"].as_array().unwrap();
    assert!(
        spans.contains(&json!({"text": "Daniel", "pointer": "/name"})),
        "{seen}"
    );
    assert!(seen["hovered_row"].to_string().contains("Daniel"), "{seen}");
}

/// A config pricing the model the scripted upstream answers as (USD per million tokens).
fn priced_config(dir: &std::path::Path) -> PathBuf {
    let config = dir.join("sift.toml");
    std::fs::write(
        &config,
        "[models.\"gpt-4o-mini\"]\ninput = 0.15\noutput = 0.60\n",
    )
    .unwrap();
    config
}

#[tokio::test]
async fn a_failed_attempt_then_a_fixed_one_both_show_with_the_errors_and_costs() {
    for stream in [true, false] {
        let upstream = ScriptedServer::start().await;
        let answers = [
            r#"{"name": "Daniel", "age": 240}"#,
            r#"{"name": "Daniel", "age": 24}"#,
        ];
        for (answer, tokens) in answers.into_iter().zip([1000, 3000]) {
            upstream.push(
                if stream {
                    Reply::stream_tool_call("UserDetail", sift_test_support::split_chars(answer, 6))
                } else {
                    Reply::tool_call("UserDetail", answer)
                }
                .usage(tokens, 100),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = sift();
        cmd.env("OPENAI_BASE_URL", upstream.base_url())
            .env("SIFT_CONFIG", priced_config(dir.path()));
        let shots = if stream {
            "playground-reask-streamed"
        } else {
            "playground-reask"
        };
        let seen = play(cmd, shots, "user", "query", SEED, stream).await;
        let attempts: Vec<&str> = seen["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(attempts.len(), 2, "{seen}");
        // Each call: its outcome, the error sent back, its tokens and cost.
        assert!(
            attempts[0].contains("validation_failed")
                && attempts[0].contains("150")
                && attempts[0].contains("1000 in / 100 out tokens")
                && attempts[0].contains("$0.00021"),
            "the first attempt: {attempts:?}"
        );
        assert!(
            attempts[1].contains("success") && attempts[1].contains("$0.00051"),
            "{attempts:?}"
        );
        assert!(
            seen["cost"]
                .to_string()
                .contains("2 calls · 4000 in / 200 out tokens · cost $0.00072"),
            "{seen}"
        );
        let result: Value = serde_json::from_str(seen["result"].as_str().unwrap()).unwrap();
        assert_eq!(result["age"], 24, "{seen}");
    }
}

#[tokio::test]
async fn an_adhoc_schema_written_in_the_playground_is_extracted_and_marked() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|body| {
        let name = body["tools"][0]["function"]["name"]
            .as_str()
            .unwrap_or("f")
            .to_owned();
        Reply::tool_call(&name, r#"{"name": "Daniel", "city": "New York City"}"#)
    });
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url());
    let schema = r#"{"type": "object", "properties": {"name": {"type": "string"}, "city": {"type": "string"}}, "required": ["name", "city"]}"#;
    let seen = play_with(
        cmd,
        "playground-adhoc",
        "",
        "text",
        SEED,
        false,
        &[("schema", schema)],
    )
    .await;
    let result: Value = serde_json::from_str(seen["result"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("no JSON result ({e}): {seen}"));
    assert_eq!(
        result,
        json!({"name": "Daniel", "city": "New York City"}),
        "{seen}"
    );
    let spans = seen["spans"].as_array().unwrap();
    assert!(
        spans.contains(&json!({"text": "New York City", "pointer": "/city"})),
        "{seen}"
    );
    // The schema written was the one sent.
    let sent = &upstream.requests()[0].body;
    assert!(
        sent["tools"][0]["function"]["parameters"]["properties"]
            .get("city")
            .is_some(),
        "{sent}"
    );
}

#[tokio::test]
async fn the_events_example_streamed_shows_its_elements_one_by_one_with_their_spans() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|body| {
        let name = body["tools"][0]["function"]["name"]
            .as_str()
            .unwrap_or("Events")
            .to_owned();
        let answer = r#"{"value": [{"title": "The board meets", "date": "2027-01-14"}, {"title": "The spring fair opens", "date": "2027-04-02", "place": "Old Market Hall"}, {"title": "the summer party", "date": "2027-06-21", "place": "the garden"}]}"#;
        Reply::stream_tool_call(&name, sift_test_support::split_chars(answer, 12))
            .chunk_delay(std::time::Duration::from_millis(100))
    });
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let text = std::fs::read_to_string(examples.join("texts/events.txt")).unwrap();
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("SIFT_CONFIG", examples.join("sift.toml"));
    // The year the dates are in (as the example's prompt says).
    let year = [("year", "2027")];
    let seen = play_with(
        cmd,
        "playground-events",
        "events",
        "text",
        &text,
        true,
        &year,
    )
    .await;
    // Seen with one, then two, then three elements: each shown as it closed.
    let counts = seen["element_counts"].as_array().unwrap();
    for n in 1..=3 {
        assert!(counts.contains(&json!(n)), "{seen}");
    }
    let result: Value = serde_json::from_str(seen["result"].as_str().unwrap()).unwrap();
    assert_eq!(result.as_array().map(Vec::len), Some(3), "{seen}");
    // Each element's spans, under its place in the list: the words it was copied from, and
    // the words a date stands for.
    let spans = seen["spans"].as_array().unwrap();
    for (pointer, words) in [
        ("/0/title", "The board meets"),
        ("/1/place", "Old Market Hall"),
        ("/2/date", "21 June"),
    ] {
        assert!(
            spans.contains(&json!({"text": words, "pointer": pointer})),
            "{pointer}: {seen}"
        );
    }
}

#[tokio::test]
async fn the_playground_runs_the_seed_query_on_the_embedded_model() {
    let seen = play(sift(), "playground-embedded", "user", "query", SEED, false).await;
    let result: Value = serde_json::from_str(seen["result"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("no JSON result ({e}): {seen}"));
    assert_eq!(result, json!({"name": "Daniel", "age": 24}), "{seen}");
    // The embedded model runs in the process: its calls cost nothing.
    assert!(seen["cost"].to_string().contains("cost $0"), "{seen}");
}

#[tokio::test]
async fn the_playground_can_be_turned_off() {
    let upstream = ScriptedServer::start().await;
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("SIFT_PLAYGROUND", "false");
    let running = serve(cmd);
    let page = sift_test_support::http_client()
        .get(format!("{}/", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
}

#[tokio::test]
async fn a_pdf_chosen_in_the_playground_is_read_and_its_values_marked_in_its_text() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|body| {
        let text = sift_test_support::last_user_text(body);
        // The chunk holding the name answers with it; the others with nobody.
        let answer = if text.contains("Ann Lee") {
            r#"{"value": [{"name": "Ann Lee", "city": "Leeds"}]}"#
        } else {
            r#"{"value": []}"#
        };
        Reply::tool_call(
            body["tools"][0]["function"]["name"].as_str().unwrap_or("f"),
            answer,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sift.toml");
    std::fs::write(
        &config,
        r#"
[extractors.people]
description = "The people of a document"
schema = { type = "array", items = { type = "object", properties = { name = { type = "string" }, city = { type = "string" } }, required = ["name", "city"] } }
"#,
    )
    .unwrap();
    use sift_test_support::pdf::{Line, Page};
    let pdf = dir.path().join("people.pdf");
    std::fs::write(
        &pdf,
        sift_test_support::pdf::document(&[
            Page::Text(vec![Line::text(780, "A list of visitors.")]),
            Page::Text(vec![Line::text(780, "Ann Lee came from Leeds.")]),
        ]),
    )
    .unwrap();
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("SIFT_CONFIG", &config);
    let file = format!("@{}", pdf.display());
    let seen = play(cmd, "playground-document", "people", "text", &file, false).await;
    let result: Value = serde_json::from_str(seen["result"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("no JSON result ({e}): {seen}"));
    assert_eq!(
        result,
        json!([{"name": "Ann Lee", "city": "Leeds"}]),
        "{seen}"
    );
    assert!(
        seen["document"].to_string().contains("pdf, 2 pages"),
        "{seen}"
    );
    let spans = seen["spans"].as_array().unwrap();
    assert!(
        spans.contains(&json!({"text": "Ann Lee", "pointer": "/0/name"})),
        "{seen}"
    );
}
