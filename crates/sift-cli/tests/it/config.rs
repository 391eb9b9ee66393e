//! `sift check` and `sift serve --config`, as processes.

use std::path::PathBuf;

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer};

use crate::{serve, sift};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn check_reports_what_a_good_config_serves() {
    let out = sift()
        .args(["check", "--config"])
        .arg(repo("examples/sift.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok, 3 extractor(s)"), "{text}");
    assert!(
        text.contains("POST /v1/extractors/events/stream  (elements as they close)"),
        "{text}"
    );
    assert!(text.contains("POST /v1/extractors/invoice/many"), "{text}");
}

#[test]
fn check_and_serve_refuse_a_bad_config_with_every_problem() {
    let broken = repo("crates/sift-config/tests/it/broken/sift.toml");
    for args in [
        vec!["check", "--config"],
        vec!["serve", "--port", "0", "--config"],
    ] {
        let out = sift()
            .args(&args)
            .arg(&broken)
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("22 problems in the config"), "{args:?}: {err}");
        assert!(
            err.contains("sift.toml:26:1: unknown key `extractors.remote_ref.promt`"),
            "{err}"
        );
    }
    let out = sift()
        .args(["check", "--config", "/nonexistent/sift.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config"));
}

#[tokio::test]
async fn serve_with_a_config_answers_its_extractors() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call(
        "Contact",
        r#"{"name": "Maria Keller", "kind": "person", "email": "maria.keller@alpenlicht.ch"}"#,
    ));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", "sk-cli-test")
        .env("SIFT_API_KEYS", "service-key-1")
        .env("SIFT_CONFIG", repo("examples/sift.toml"));
    let running = serve(cmd);
    let http = sift_test_support::http_client();
    let url = format!("{}/v1/extractors/contact", running.url);
    let refused = http
        .post(&url)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let response = http
        .post(&url)
        .bearer_auth("service-key-1")
        .json(&json!({"text": "Maria Keller, maria.keller@alpenlicht.ch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["sift-attempts"], "1");
    let value: Value = response.json().await.unwrap();
    assert_eq!(value["email"], "maria.keller@alpenlicht.ch");
    let health = http
        .get(format!("{}/healthz", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "healthz needs no key");
}

async fn names(url: &str) -> Vec<String> {
    let list: Value = sift_test_support::http_client()
        .get(format!("{url}/v1/extractors"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

fn config_with(extractors: &[&str]) -> String {
    extractors
        .iter()
        .map(|name| {
            format!(
                "[extractors.{name}]\nschema = {{ title = \"Person\", type = \"object\", properties = {{ name = {{ type = \"string\" }} }}, required = [\"name\"] }}\n\n"
            )
        })
        .collect()
}

#[tokio::test]
async fn sighup_reloads_the_config_atomically_under_load() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| {
        Reply::tool_call("Person", r#"{"name": "Ada"}"#).delay(std::time::Duration::from_millis(20))
    });
    let dir = std::env::temp_dir().join(format!("sift-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sift.toml");
    std::fs::write(&path, config_with(&["a"])).unwrap();
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", "sk-cli-test")
        .env("SIFT_CONFIG", &path)
        .stderr(std::process::Stdio::piped());
    let mut running = crate::serve_with(cmd);
    // Keep what the server says on stderr.
    let stderr = running.child.stderr.take().unwrap();
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = said.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let http = sift_test_support::http_client();

    // Load: four clients calling `a` without pause until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (http, url, stop) = (
            http.clone(),
            format!("{}/v1/extractors/a", running.url),
            stop.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http
                    .post(&url)
                    .json(&json!({"text": "Ada"}))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    let hup = |pid: u32| {
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    let pid = running.child.id();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // A good new config: `b` appears, in the listing and the OpenAPI document.
    std::fs::write(&path, config_with(&["a", "b"])).unwrap();
    hup(pid);
    let mut reloaded = false;
    for _ in 0..100 {
        if names(&running.url).await.contains(&"b".to_owned()) {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "b served after SIGHUP: {}", said.lock().unwrap());
    let doc: Value = http
        .get(format!("{}/openapi.json", running.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/extractors/b"]["post"].is_object());

    // A bad one: refused with the reason, and the old one keeps serving.
    std::fs::write(&path, format!("{}promt = \"typo\"\n", config_with(&["c"]))).unwrap();
    hup(pid);
    for _ in 0..100 {
        if said.lock().unwrap().contains("reload refused") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    {
        let said = said.lock().unwrap();
        assert!(said.contains("reload refused"), "{said}");
        assert!(said.contains("unknown key `extractors.c.promt`"), "{said}");
    }
    assert_eq!(names(&running.url).await, ["user", "a", "b"]);

    // A schema path that is a FIFO: refused by name at once (opening it would wait for a
    // writer forever), while the old config serves.
    let fifo = dir.join("schema.json");
    let _ = std::fs::remove_file(&fifo);
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(
        &path,
        "[extractors.d]\nschema = \"schema.json\"\nprompt = \"{{ text }}\"\n",
    )
    .unwrap();
    hup(pid);
    for _ in 0..100 {
        if said.lock().unwrap().contains("is a FIFO") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    {
        let said = said.lock().unwrap();
        assert!(
            said.contains("cannot read `schema.json` (relative to the config's folder): it is a FIFO, not a regular file"),
            "{said}"
        );
    }
    assert_eq!(names(&running.url).await, ["user", "a", "b"]);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = Vec::new();
    for l in load {
        statuses.extend(l.await.unwrap());
    }
    assert!(statuses.len() > 20, "load ran: {} requests", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no failed request: {statuses:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What an upstream echoes reaches clients only scrubbed as the logs are: the service's own
/// keys masked, Logfire's patterns applied.
#[tokio::test]
async fn client_messages_are_scrubbed_like_telemetry() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::error(
            400,
            "request from svc-secret-key-0001 refused",
        ))
        .push(Reply::error(400, "your password is hunter2"));
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", server.base_url())
        .env("OPENAI_API_KEY", "sk-cli-test")
        .env("SIFT_API_KEYS", "svc-secret-key-0001");
    let running = serve(cmd);
    let http = sift_test_support::http_client();
    for _ in 0..2 {
        let response = http
            .post(format!("{}/user", running.url))
            .bearer_auth("svc-secret-key-0001")
            .json(&json!({"query": "Daniel is 24"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502);
        let body = response.text().await.unwrap();
        assert!(!body.contains("svc-secret-key-0001"), "{body}");
        assert!(!body.contains("hunter2"), "{body}");
        assert!(body.contains("Scrubbed"), "{body}");
    }
}

/// A service-key list with a blank entry stops `serve` at start, saying so, instead of
/// serving without authentication.
#[test]
fn serve_refuses_a_blank_service_key() {
    for keys in [" , ", "key-one,,key-two"] {
        let out = sift()
            .args(["serve", "--port", "0"])
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .env("SIFT_API_KEYS", keys)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{keys:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("$SIFT_API_KEYS holds an empty key"),
            "{keys:?}: {err}"
        );
        assert!(!err.contains("key-one"), "no key is printed: {err}");
    }
}
