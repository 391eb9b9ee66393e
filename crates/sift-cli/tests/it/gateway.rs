//! The OpenAI-compatible gateway used by real clients: openai-python, instructor,
//! pydantic-ai and LangChain (installed by scripts/setup.sh into virtualenvs of their own:
//! instructor and pydantic-ai need different major versions of openai), against a real
//! `sift serve` on the scripted upstream and on the embedded model.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer, last_user_text};

use crate::{serve, sift};

/// The service key the clients send as their `api_key`.
const KEY: &str = "sk-sift-service";

/// The interpreter of the client virtualenv `name` (scripts/setup.sh makes them).
fn python(name: &str) -> PathBuf {
    let root = std::env::var_os("SIFT_CLIENTS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/sift/clients"),
        PathBuf::from,
    );
    let python = root.join(name).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it makes the client virtualenvs)",
        python.display()
    );
    python
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs a client script; its JSON lines by check name.
async fn run_clients(venv: &str, file: &str, args: &[&str]) -> serde_json::Map<String, Value> {
    let mut cmd = Command::new(python(venv));
    cmd.arg(script(file)).args(args);
    // The clients must reach sift only: no proxy, no key of the machine's own.
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
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
        "{file} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["check"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

/// The value a check returned; fails with its error otherwise.
fn value<'a>(results: &'a serde_json::Map<String, Value>, check: &str) -> &'a Value {
    let result = results
        .get(check)
        .unwrap_or_else(|| panic!("no result for {check}: {results:?}"));
    assert!(result.get("error").is_none(), "{check}: {result}");
    &result["value"]
}

fn jason() -> Value {
    json!({"name": "Jason", "age": 25})
}

/// The schema sift asked the upstream for: the forced tool's parameters, or the response
/// format's schema.
fn asked_schema(body: &Value) -> (Option<String>, Value) {
    if let Some(tool) = body["tools"].get(0) {
        return (
            tool["function"]["name"].as_str().map(str::to_owned),
            tool["function"]["parameters"].clone(),
        );
    }
    (
        None,
        body["response_format"]["json_schema"]["schema"].clone(),
    )
}

/// What a model would answer: the people of the text, shaped as the schema asks (a person,
/// or an object holding a list of them).
fn answer(body: &Value) -> Reply {
    let text = last_user_text(body);
    let mut people = vec![jason()];
    if text.contains("Sarah") {
        people.push(json!({"name": "Sarah", "age": 30}));
    }
    let (tool, schema) = asked_schema(body);
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let value = if props.contains_key("name") {
        people[0].clone()
    } else {
        let list = props
            .iter()
            .find(|(_, s)| {
                s["type"] == "array"
                    || s["type"]
                        .as_array()
                        .is_some_and(|t| t.contains(&json!("array")))
            })
            .map_or("value", |(k, _)| k.as_str());
        json!({ list: people })
    };
    let reply = match tool {
        Some(name) => Reply::tool_call(&name, value.to_string()),
        None => Reply::content(value.to_string()),
    };
    reply.usage(20, 5)
}

fn start_on(upstream: &ScriptedServer) -> crate::Running {
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", "sk-upstream-secret")
        .env("SIFT_API_KEYS", KEY);
    serve(cmd)
}

#[tokio::test]
async fn openai_python_pydantic_ai_and_langchain_get_their_objects() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(answer);
    let running = start_on(&upstream);
    let base = format!("{}/v1", running.url);
    let results = run_clients(
        "sdk",
        "sdk_clients.py",
        &[
            &base,
            "gpt-4o-mini",
            "openai_models",
            "openai_parse",
            "openai_stream",
            "openai_tool",
            "pydantic_ai_agent",
            "langchain_structured",
        ],
    )
    .await;
    assert_eq!(
        value(&results, "openai_models")["ids"],
        json!(["gpt-4o-mini"])
    );
    assert_eq!(value(&results, "openai_parse")["parsed"], jason());
    let streamed = value(&results, "openai_stream");
    assert_eq!(streamed["parsed"], jason());
    assert!(streamed["chunks"].as_u64().unwrap() >= 3, "{streamed}");
    assert_eq!(streamed["total_tokens"], 25);
    let tool = value(&results, "openai_tool");
    assert_eq!(tool["name"], "UserDetail");
    assert_eq!(tool["parsed"], jason());
    assert_eq!(value(&results, "pydantic_ai_agent")["parsed"], jason());
    let langchain = &value(&results, "langchain_structured")["parsed"];
    assert_eq!(langchain["json_schema"], jason());
    assert_eq!(langchain["function_calling"], jason());
    // The upstream key stayed in sift: the upstream saw it, the clients sent only theirs.
    let seen = upstream.requests();
    assert!(!seen.is_empty());
    for r in &seen {
        assert_eq!(r.headers["authorization"], "Bearer sk-upstream-secret");
    }
}

#[tokio::test]
async fn instructor_in_tools_and_json_schema_modes_gets_one_object_and_a_list() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(answer);
    let running = start_on(&upstream);
    let base = format!("{}/v1", running.url);
    let results = run_clients(
        "instructor",
        "instructor_clients.py",
        &[&base, "gpt-4o-mini"],
    )
    .await;
    let sarah = json!({"name": "Sarah", "age": 30});
    for mode in ["tools", "json_schema"] {
        assert_eq!(value(&results, &format!("{mode}_one")), &jason(), "{mode}");
        assert_eq!(
            value(&results, &format!("{mode}_many")),
            &json!([jason(), sarah]),
            "{mode}"
        );
    }
}

#[tokio::test]
async fn an_invalid_first_answer_is_reasked_and_the_client_sees_only_the_valid_one() {
    let upstream = ScriptedServer::start().await;
    upstream.push(
        Reply::tool_call("UserDetail", r#"{"name": "Jason", "age": "twenty-five"}"#).usage(100, 10),
    );
    upstream.fallback(answer);
    let running = start_on(&upstream);
    let base = format!("{}/v1", running.url);
    let results = run_clients(
        "sdk",
        "sdk_clients.py",
        &[&base, "gpt-4o-mini", "openai_parse"],
    )
    .await;
    let parsed = value(&results, "openai_parse");
    assert_eq!(parsed["parsed"], jason());
    // Both calls counted: 110 for the invalid answer, 25 for the valid one.
    assert_eq!(parsed["total_tokens"], 135);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn openai_python_on_the_embedded_model() {
    let mut cmd = sift();
    cmd.env("SIFT_API_KEYS", KEY);
    let running = serve(cmd);
    let http = sift_test_support::http_client();
    let models: Value = http
        .get(format!("{}/v1/models", running.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let model = models["data"][0]["id"].as_str().unwrap().to_owned();
    let base = format!("{}/v1", running.url);
    let results = run_clients(
        "sdk",
        "sdk_clients.py",
        &[
            &base,
            &model,
            "openai_parse",
            "openai_stream",
            "openai_tool",
            "openai_unenforceable",
        ],
    )
    .await;
    assert_eq!(value(&results, "openai_parse")["parsed"], jason());
    assert_eq!(value(&results, "openai_stream")["parsed"], jason());
    assert_eq!(value(&results, "openai_tool")["parsed"], jason());
    // A schema the grammar cannot enforce is refused, naming the keyword: never answered
    // unconstrained.
    let refused = &results["openai_unenforceable"];
    assert_eq!(refused["error"], "BadRequestError", "{refused}");
    assert_eq!(refused["status"], 400);
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("pattern"), "{message}");
}
