//! schemathesis (PyPI) against a running `sift serve` over its own `/openapi.json`: every
//! check, NDJSON and SSE, the seed's endpoints and the example extractors, with the scripted
//! upstream answering valid values.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use sift_test_support::{Reply, ScriptedServer, split_chars};

use crate::{serve, sift};

const INVOICE: &str = r#"{"number": "2026-0412", "issued": "2026-11-03", "seller": {"name": "Brightwater Tools Ltd"}, "buyer": {"name": "Harbour Café"}, "currency": "GBP", "lines": [{"description": "Espresso grinder burr set", "quantity": 2, "unit_price": 45.0, "amount": 90.0}], "total": 126.5}"#;

/// A valid answer for each function sift asks for.
fn answer(name: &str) -> &'static str {
    match name {
        "UserDetail" => r#"{"name": "Daniel", "age": 24}"#,
        "Array_of_UserDetail" => {
            r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}]}"#
        }
        "Invoice" => INVOICE,
        "Contact" => {
            r#"{"name": "Maria Keller", "kind": "person", "email": "maria.keller@alpenlicht.ch"}"#
        }
        "Events" => r#"{"value": [{"title": "Board meeting", "date": "2027-01-14"}]}"#,
        _ => "{}",
    }
}

fn reply(body: &Value) -> Reply {
    let name = body["tools"][0]["function"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let text = answer(&name);
    if body["stream"] == true {
        Reply::stream_tool_call(&name, split_chars(text, 16)).usage(50, 20)
    } else {
        Reply::tool_call(&name, text).usage(50, 20)
    }
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[tokio::test]
async fn schemathesis_finds_nothing_wrong() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(reply);
    // The example extractors, without ad-hoc schemas (the scripted upstream cannot answer an
    // arbitrary schema; a 502 would be schemathesis' "server error").
    let dir = tempfile::tempdir().unwrap();
    let examples = std::fs::read_to_string(repo("examples/sift.toml"))
        .unwrap()
        .replace(
            "\"schemas/",
            &format!("\"{}/", repo("examples/schemas").display()),
        );
    let config = dir.path().join("sift.toml");
    std::fs::write(&config, format!("[server]\nadhoc = false\n\n{examples}")).unwrap();
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", "sk-schemathesis")
        .env("SIFT_CONFIG", &config);
    let running = serve(cmd);
    let url = running.url.clone();
    let report = dir.path().join("report");
    // Its example database (`.schemathesis/`) goes in the temporary folder, not the repository:
    // every run starts from the same seed.
    let work = dir.path().to_path_buf();
    // The scripted upstream answers the same values whatever the text, and sift holds answers
    // to their text (grounding): a fuzzed text that does not hold them is answered with the
    // documented 502 (kind `ungrounded`), the model's failure. Any other 5xx still fails.
    let settings = work.join("schemathesis.toml");
    std::fs::write(
        &settings,
        concat!(
            "[checks.not_a_server_error]\nexpected-statuses = [\"2xx\", \"3xx\", \"4xx\", \"502\"]\n",
            // The gateway's body carries rules a schema cannot say (a JSON Schema inside it
            // must itself be valid; `tool_choice` must name a declared tool): a request the
            // document admits may still be refused, with a 400 naming the parameter. Every
            // other check runs on it.
            "\n[[operations]]\ninclude-operation-id = \"chat_completions\"\n",
            "checks.positive_data_acceptance.enabled = false\n",
            // A document's bytes must be a real PDF, page or text: fuzzed bytes the schema
            // admits (`format: binary`) are refused with the documented 4xx naming why.
            "\n[[operations]]\ninclude-path-regex = \"/document\"\n",
            "checks.positive_data_acceptance.enabled = false\n",
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let mut outputs = Vec::new();
        for accept in [None, Some("text/event-stream")] {
            let mut st = Command::new("schemathesis");
            st.arg("--config-file")
                .arg(&settings)
                .args(["run", &format!("{url}/openapi.json")])
                .args(["--max-examples", "12", "--seed", "7"])
                .args(["--request-timeout", "10", "--max-response-time", "10"])
                .arg("--report-dir")
                .arg(&report)
                .current_dir(&work)
                .env("NO_COLOR", "1");
            if let Some(a) = accept {
                st.args(["-H", &format!("Accept: {a}")]);
            }
            outputs.push(
                st.output()
                    .expect("schemathesis is installed (scripts/setup.sh)"),
            );
        }
        outputs
    })
    .await
    .unwrap();
    for o in &out {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "schemathesis failed:\n{text}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    drop(running);
}
