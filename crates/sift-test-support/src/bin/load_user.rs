//! Load benchmark: CPU time the `sift serve` process spends per `POST /user`.
//!
//! Starts the scripted upstream in this process (instant tool-call answers), runs the `sift`
//! binary as a child pointed at it, drives `/user` from 16 concurrent connections, and reads
//! the child's CPU time (user + system) from `/proc/PID/stat` before and after.
//!
//! ```text
//! cargo build --release -p sift-cli -p sift-test-support
//! target/release/load-user [--sift target/release/sift] [--requests 20000] [--connections 16]
//!     [--telemetry default|off|console|traces|otlp|on] [--path /user]
//! ```
//!
//! `--path` drives another endpoint taking the same body: `/v1/extractors/user` (the built-in
//! extractor) measures the dynamic path against the seed's typed one. `/v1/chat/completions`
//! is sent the same query as an OpenAI Chat Completions request (`response_format` with the
//! `UserDetail` schema).
//!
//! `--litellm BIN` measures LiteLLM's proxy (`BIN` is its `litellm` command) instead of sift:
//! in front of the same scripted upstream, sent the same Chat Completions request, its
//! process tree's CPU time read the same way.
//!
//! `--telemetry` (the telemetry benchmark): `off` has no console, no export and no kept
//! traces; `console` writes the console to a file; `otlp` exports spans and metrics to an
//! OTLP/HTTP receiver in this process; `on` does both (these four keep no traces); `traces`
//! keeps the last 100 requests' traces in process (`GET /v1/traces`), with no console and no
//! export. `default` (the default) is the binary's defaults (console and kept traces), with
//! the console discarded.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sift_test_support::bench::{SiftProcess, arg, tree_cpu_times};
use sift_test_support::otlp::OtlpReceiver;
use sift_test_support::{Reply, ScriptedServer, http_client};

/// The seed's query as an OpenAI Chat Completions request.
const CHAT_BODY: &str = r#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Daniel is a 24 year man living in New York City"}], "response_format": {"type": "json_schema", "json_schema": {"name": "UserDetail", "strict": true, "schema": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150}}, "required": ["name", "age"], "additionalProperties": false}}}}"#;

/// The seed's query as `/user` takes it.
const USER_BODY: &str = r#"{"query": "Daniel is a 24 year man living in New York City"}"#;

async fn drive(url: &str, body: &'static str, total: usize, connections: usize) -> Vec<Duration> {
    assert!(total > 0, "--requests must be at least 1");
    let client = http_client();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = client.clone();
        let next = next.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 200, "{:?}", response.text().await);
                let _ = response.bytes().await.expect("body");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort();
    all
}

#[tokio::main]
async fn main() {
    let sift = arg("--sift", "target/release/sift");
    let total: usize = arg("--requests", "20000").parse().expect("--requests");
    let connections: usize = arg("--connections", "16").parse().expect("--connections");
    let mut extra_env = arg("--env", "");
    let telemetry = arg("--telemetry", "default");
    let receiver = OtlpReceiver::start_counting().await;
    let console_log =
        std::env::temp_dir().join(format!("sift-load-console-{}.log", std::process::id()));
    let console_log = console_log.to_string_lossy().into_owned();
    let mut log = None;
    match telemetry.as_str() {
        "default" => {}
        "off" => extra_env.push_str(",SIFT_CONSOLE=off,SIFT_TRACES=0"),
        "console" => {
            log = Some(console_log.as_str());
            extra_env.push_str(",SIFT_TRACES=0");
        }
        // The recent traces kept in process (GET /v1/traces), nothing else.
        "traces" => extra_env.push_str(",SIFT_CONSOLE=off,SIFT_TRACES=100"),
        "otlp" => {
            extra_env.push_str(&format!(
                ",SIFT_CONSOLE=off,SIFT_TRACES=0,OTEL_EXPORTER_OTLP_ENDPOINT={}",
                receiver.endpoint()
            ));
        }
        "on" => {
            log = Some(console_log.as_str());
            extra_env.push_str(&format!(
                ",SIFT_TRACES=0,OTEL_EXPORTER_OTLP_ENDPOINT={}",
                receiver.endpoint()
            ));
        }
        other => {
            panic!("--telemetry must be default, off, console, traces, otlp or on, not {other}")
        }
    }

    let upstream = ScriptedServer::start().await;
    // A forced call when asked for one (sift's default mode), else the JSON as content (what
    // a proxy passing `response_format` on gets).
    upstream.fallback(|body| {
        let answer = r#"{"name": "Daniel", "age": 24}"#;
        if body.get("tools").is_some() {
            Reply::tool_call("UserDetail", answer).usage(60, 12)
        } else {
            Reply::content(answer).usage(60, 12)
        }
    });
    let litellm = arg("--litellm", "");
    let (server, base) = if litellm.is_empty() {
        let sift_process = SiftProcess::start_logged(&sift, &upstream.base_url(), &extra_env, log);
        let url = sift_process.url.clone();
        (Server::Sift(sift_process), url)
    } else {
        Server::litellm(&litellm, &upstream.base_url()).await
    };
    let path = arg(
        "--path",
        if litellm.is_empty() {
            "/user"
        } else {
            "/v1/chat/completions"
        },
    );
    let body = if path.starts_with("/v1/chat/") {
        CHAT_BODY
    } else {
        USER_BODY
    };
    let url = format!("{base}{path}");

    drive(&url, body, 1000.min(total), connections).await; // warm-up
    let (user_before, system_before) = server.cpu_times();
    let cpu_before = user_before + system_before;
    let started = Instant::now();
    let latencies = drive(&url, body, total, connections).await;
    let wall = started.elapsed();
    let (user_after, system_after) = server.cpu_times();
    let cpu = user_after + system_after - cpu_before;
    let (user, system) = (user_after - user_before, system_after - system_before);
    drop(server);

    if log.is_some() {
        let lines = std::fs::read_to_string(&console_log)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        println!("console: {lines} lines");
        let _ = std::fs::remove_file(&console_log);
    }
    if telemetry == "otlp" || telemetry == "on" {
        let (posts, bytes) = receiver.trace_posts();
        println!(
            "OTLP receiver: {posts} exports, {} KiB (at kill; the last batch may be unsent)",
            bytes / 1024
        );
    }

    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let who = if litellm.is_empty() {
        "sift"
    } else {
        "litellm"
    };
    println!("server: {who}");
    println!("requests: {total} to {path} over {connections} connections in {wall:.2?}");
    println!("throughput: {:.0} req/s", total as f64 / wall.as_secs_f64());
    println!("latency: p50 {:.2?}  p99 {:.2?}", pct(0.5), pct(0.99));
    println!(
        "{who} CPU split: user {:.3} ms, system {:.3} ms per request",
        user.as_secs_f64() * 1000.0 / total as f64,
        system.as_secs_f64() * 1000.0 / total as f64
    );
    println!(
        "{who} CPU: {:.0} ms total, {:.3} ms per request",
        cpu.as_secs_f64() * 1000.0,
        cpu.as_secs_f64() * 1000.0 / total as f64
    );
}

/// The server measured.
enum Server {
    Sift(SiftProcess),
    LiteLlm(std::process::Child),
}

impl Server {
    /// LiteLLM's proxy on a free port, its one model the scripted upstream's, once it answers.
    async fn litellm(bin: &str, upstream: &str) -> (Self, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = std::env::temp_dir().join(format!("sift-litellm-{}.yaml", std::process::id()));
        std::fs::write(
            &config,
            format!(
                "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: {upstream}\n      api_key: sk-bench\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new(bin)
            .args([
                "--config",
                &config.to_string_lossy(),
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--num_workers",
                "1",
            ])
            .env("LITELLM_LOG", "ERROR")
            // As sift is run: no service key (so none is checked), and offline (the bundled
            // cost map, not a download).
            .env(
                "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY",
                "true",
            )
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {bin}: {e}"));
        // Killed and waited for when dropped, a failed start included.
        let server = Server::LiteLlm(child);
        let url = format!("http://127.0.0.1:{port}");
        let client = http_client();
        for _ in 0..600 {
            if let Ok(r) = client.get(format!("{url}/health/liveliness")).send().await
                && r.status().is_success()
            {
                return (server, url);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("LiteLLM did not answer /health/liveliness within 120 s");
    }

    fn cpu_times(&self) -> (Duration, Duration) {
        match self {
            Server::Sift(s) => s.cpu_times(),
            Server::LiteLlm(c) => tree_cpu_times(c.id()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::LiteLlm(c) = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
