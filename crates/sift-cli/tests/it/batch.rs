//! `sift batch` as a process, against the scripted upstream: every id answered exactly once,
//! across crashes, interrupts, rate limits and cost limits.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer};

use crate::sift;

/// A scratch folder with a person schema, a config with prices, and an input of `n` items.
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("person.json"),
            json!({
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
                "required": ["name", "age"]
            })
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sift.toml"),
            r#"
[models."gpt-4o-mini"]
input = 1.0
cached_input = 0.5
output = 2.0

[extractors.person]
schema = "person.json"
prompt = "Extract the person: {{ text }}"
"#,
        )
        .unwrap();
        let lines: String = (1..=n)
            .map(|i| json!({"id": format!("p{i}"), "text": format!("item {i}: Person {i} is {} years old", 20 + i % 50)}).to_string() + "\n")
            .collect();
        std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
        Self { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `sift batch person -i in.jsonl -o out.jsonl` against `server`, with `extra` flags.
    pub(crate) fn command(&self, server: &ScriptedServer, extra: &[&str]) -> Command {
        let mut cmd = sift();
        cmd.env("OPENAI_BASE_URL", server.base_url())
            .env("OPENAI_API_KEY", "sk-batch-test")
            .args(["batch", "person", "--config"])
            .arg(self.path("sift.toml"))
            .arg("-i")
            .arg(self.path("in.jsonl"))
            .arg("-o")
            .arg(self.path("out.jsonl"))
            .args(extra);
        cmd
    }

    pub(crate) fn records(&self) -> Vec<Value> {
        read_records(&self.path("out.jsonl"))
    }
}

pub(crate) fn read_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the output ends with a whole line"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// The number in `item N` of a request's prompt.
pub(crate) fn item_of(body: &Value) -> usize {
    let text = body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let after = text.split("item ").nth(1).unwrap_or_default();
    after
        .split(':')
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or(0)
}

pub(crate) fn tool_name(body: &Value) -> String {
    body["tools"][0]["function"]["name"]
        .as_str()
        .unwrap_or("person")
        .to_owned()
}

/// Answers item N with a valid person, except every 20th item, which always gets an invalid
/// age (so it fails after its re-asks).
pub(crate) fn answer(body: &Value, delay: Duration) -> Reply {
    let n = item_of(body);
    let args = if n.is_multiple_of(20) {
        json!({"name": format!("Person {n}"), "age": "unknown"})
    } else {
        json!({"name": format!("Person {n}"), "age": 20 + n % 50})
    };
    Reply::tool_call(&tool_name(body), args.to_string())
        .usage(1000, 100)
        .delay(delay)
}

pub(crate) fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Checks that `records` hold each of `p1..=pn` exactly once.
pub(crate) fn assert_each_once(records: &[Value], n: usize) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for id in ids(records) {
        *count.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "ids written twice: {twice:?}");
    let missing: Vec<String> = (1..=n)
        .map(|i| format!("p{i}"))
        .filter(|id| !count.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "ids missing: {missing:?}");
    assert_eq!(records.len(), n);
}

pub(crate) async fn wait_for(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

pub(crate) fn spawn(mut cmd: impl std::borrow::BorrowMut<Command>) -> Child {
    let cmd = cmd.borrow_mut();
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub(crate) fn signal(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn a_thousand_items_with_failures_and_a_429_burst_each_answered_once() {
    let scratch = Scratch::new(1000);
    let server = ScriptedServer::start().await;
    // The first calls of items 1, 2 and 3 are refused with a one-second Retry-After (once
    // each, whenever they come: a busy machine staggers the workers, and a burst of queued
    // refusals could then hit one item's retries three times); the others answer after
    // 100 ms.
    let refused = std::sync::Mutex::new(std::collections::HashSet::new());
    server.fallback(move |body| {
        let n = crate::batch::item_of(body);
        if (1..=3).contains(&n) && refused.lock().unwrap().insert(n) {
            return Reply::error(429, "rate limited").header("retry-after", "1");
        }
        answer(body, Duration::from_millis(100))
    });
    let out = wait_for(spawn(
        scratch
            .command(&server, &["--concurrency", "16", "--summary"])
            .arg(scratch.path("summary.json")),
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "some failed: {stderr}");

    let records = scratch.records();
    assert_each_once(&records, 1000);
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    let unexpected: Vec<&&Value> = failed
        .iter()
        .filter(|r| r["error"]["kind"] != "retries_exhausted")
        .collect();
    assert_eq!(
        failed.len(),
        50,
        "every 20th item fails; the others that did: {unexpected:?}"
    );
    for r in &failed {
        assert_eq!(r["error"]["kind"], "retries_exhausted", "{r}");
        assert_eq!(r["attempts"], 3, "{r}");
        let errors = &r["error"]["attempts"][0]["errors"];
        assert!(errors.to_string().contains("age"), "{r}");
    }
    let ok = records.iter().find(|r| r["id"] == "p7").unwrap();
    assert_eq!(ok["value"], json!({"name": "Person 7", "age": 27}));
    assert_eq!(
        ok["usage"],
        json!({"input_tokens": 1000, "output_tokens": 100})
    );
    assert_eq!(ok["attempts"], 1);

    // The 429s paused every worker: after the first wave (sent at once), nothing reached the
    // upstream until the second was over.
    let requests = server.requests();
    let start = requests[0].at;
    let early: Vec<Duration> = requests
        .iter()
        .map(|r| r.at - start)
        .filter(|d| *d > Duration::from_millis(60) && *d < Duration::from_millis(900))
        .collect();
    assert!(
        early.is_empty(),
        "requests sent during the Retry-After pause: {early:?}"
    );
    // 950 items once, 50 items three times, 3 refused calls tried again.
    assert_eq!(requests.len(), 950 + 150 + 3);

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["done"], 1000);
    assert_eq!(summary["failed"], 50);
    assert_eq!(summary["succeeded"], 950);
    assert!(
        summary["rate_limit_pauses"].as_u64().unwrap() >= 3,
        "{summary}"
    );
    // 1,100 calls of 1,000 + 100 tokens at $1 and $2 per million.
    let cost = summary["cost_usd"].as_f64().unwrap();
    assert!((cost - 1100.0 * 0.0012).abs() < 1e-6, "{cost}");
    assert!(stderr.contains("950 succeeded, 50 failed"), "{stderr}");

    // Rerun: everything is done, nothing is called again.
    let before = server.requests().len();
    let again = wait_for(spawn(scratch.command(&server, &[]))).await;
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(server.requests().len(), before);
    assert_eq!(scratch.records().len(), 1000);

    // --retry-failed does the 50 again (now answered well), replacing their lines.
    server.fallback(|body| {
        let n = item_of(body);
        Reply::tool_call(
            &tool_name(body),
            // The item's number is written in its text too.
            json!({"name": format!("Person {n}"), "age": n}).to_string(),
        )
    });
    let retried = wait_for(spawn(scratch.command(&server, &["--retry-failed"]))).await;
    assert_eq!(
        retried.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    assert_eq!(server.requests().len(), before + 50);
    let records = scratch.records();
    assert_each_once(&records, 1000);
    assert!(records.iter().all(|r| r.get("value").is_some()));
}

#[tokio::test]
async fn a_job_killed_halfway_resumes_without_doing_anything_twice() {
    let scratch = Scratch::new(400);
    let server = ScriptedServer::start().await;
    server.fallback(|body| answer(body, Duration::from_millis(20)));
    let child = spawn(scratch.command(&server, &["--concurrency", "8"]));
    let started = Instant::now();
    loop {
        let lines = std::fs::read_to_string(scratch.path("out.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 150 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "too slow: {lines} lines"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&child, "-KILL");
    let killed = wait_for(child).await;
    assert!(!killed.status.success());
    let partial = std::fs::read_to_string(scratch.path("out.jsonl")).unwrap();
    let whole = partial
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .count();
    assert!((150..400).contains(&whole), "{whole}");

    let out = wait_for(spawn(scratch.command(&server, &["--concurrency", "8"]))).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already done before"), "{stderr}");
    assert_each_once(&scratch.records(), 400);
}

#[tokio::test]
async fn one_interrupt_lets_calls_in_flight_finish_and_two_abandon_them() {
    let scratch = Scratch::new(50);
    let server = ScriptedServer::start().await;
    server.fallback(|body| answer(body, Duration::from_millis(800)));
    let child = spawn(scratch.command(&server, &["--concurrency", "4"]));
    while server.requests().len() < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&child, "-INT");
    let out = wait_for(child).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("interrupted: 46 items remain"), "{stderr}");
    // The four in flight finished and were written; nothing new was started.
    assert_eq!(scratch.records().len(), 4);
    assert_eq!(server.requests().len(), 4);

    // Twice: the calls in flight (which never answer) are abandoned at once.
    server.fallback(|_| Reply::hang());
    let child = spawn(scratch.command(&server, &["--concurrency", "4"]));
    while server.requests().len() < 8 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&child, "-INT");
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child, "-INT");
    let started = Instant::now();
    let out = wait_for(child).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("abandoned"), "{stderr}");
    assert_eq!(scratch.records().len(), 4, "the output is still valid");
}

#[tokio::test]
async fn rpm_holds_the_request_rate() {
    let scratch = Scratch::new(200);
    let server = ScriptedServer::start().await;
    server.fallback(|body| answer(body, Duration::from_millis(10)));
    let child = spawn(scratch.command(&server, &["--concurrency", "16", "--rpm", "300"]));
    // 300 a minute is 5 a second: 100 in a 20-second window.
    tokio::time::sleep(Duration::from_secs(22)).await;
    signal(&child, "-KILL");
    let _ = wait_for(child).await;
    let requests = server.requests();
    let start = requests[0].at;
    let in_window = requests
        .iter()
        .filter(|r| r.at - start < Duration::from_secs(20))
        .count();
    assert!(
        (90..=110).contains(&in_window),
        "{in_window} requests in 20 s at --rpm 300"
    );
}

#[tokio::test]
async fn max_cost_stops_taking_work_once_spent() {
    let scratch = Scratch::new(100);
    let server = ScriptedServer::start().await;
    server.fallback(|body| answer(body, Duration::from_millis(10)));
    // Each item costs 1,000 * $1/M + 100 * $2/M = $0.0012: $0.006 is five items.
    let out = wait_for(spawn(
        scratch
            .command(
                &server,
                &["--concurrency", "2", "--max-cost", "0.006", "--summary"],
            )
            .arg(scratch.path("summary.json")),
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("--max-cost reached"), "{stderr}");
    let done = scratch.records().len();
    assert!((5..=7).contains(&done), "{done} items for $0.006");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["stopped"], "max_cost");
    assert_eq!(summary["remaining"], 100 - done);

    // Without prices, --max-cost is refused up front.
    let no_prices = scratch.path("bare.toml");
    std::fs::write(
        &no_prices,
        "[extractors.person]\nschema = \"person.json\"\n",
    )
    .unwrap();
    let out = wait_for(spawn({
        let mut cmd = sift();
        cmd.env("OPENAI_BASE_URL", server.base_url())
            .args(["batch", "person", "--max-cost", "1", "--config"])
            .arg(&no_prices)
            .arg("-i")
            .arg(scratch.path("in.jsonl"))
            .arg("-o")
            .arg(scratch.path("other.jsonl"));
        cmd
    }))
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-cost needs the models' prices"));
}

#[tokio::test]
async fn progress_lines_when_not_a_terminal_and_bad_lines_recorded() {
    let scratch = Scratch::new(30);
    // A line that is not JSON and one that does not fit the input schema.
    let mut input = std::fs::read_to_string(scratch.path("in.jsonl")).unwrap();
    input.push_str("{not json\n{\"id\": \"bad\", \"txt\": \"typo\"}\n");
    std::fs::write(scratch.path("in.jsonl"), input).unwrap();
    let server = ScriptedServer::start().await;
    server.fallback(|body| answer(body, Duration::from_millis(100)));
    let out = wait_for(spawn(
        scratch.command(&server, &["--concurrency", "2", "--progress-every", "0.3"]),
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("sift batch: "))
        .collect();
    assert!(progress.len() >= 3, "{stderr}");
    assert!(
        progress
            .iter()
            .any(|l| l.contains("/32 done") && l.contains("tokens") && l.contains('$')),
        "{stderr}"
    );
    let records = scratch.records();
    let by_id: HashMap<&str, &Value> = records
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    let not_json = by_id["31"];
    assert_eq!(not_json["error"]["kind"], "invalid_input");
    assert!(
        not_json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 31: not valid JSON")
    );
    let misfit = by_id["bad"];
    assert_eq!(misfit["error"]["kind"], "invalid_input");
    assert!(
        misfit["error"]["message"]
            .as_str()
            .unwrap()
            .contains("text"),
        "{misfit}"
    );
    let ids: HashSet<String> = ids(&records).into_iter().collect();
    assert_eq!(ids.len(), 32);
}
