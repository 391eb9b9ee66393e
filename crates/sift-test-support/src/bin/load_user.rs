//! Load benchmark: CPU time the `sift serve` process spends per `POST /user`.
//!
//! Starts the scripted upstream in this process (instant tool-call answers), runs the `sift`
//! binary as a child pointed at it, drives `/user` from 16 concurrent connections, and reads
//! the child's CPU time (user + system) from `/proc/PID/stat` before and after.
//!
//! ```text
//! cargo build --release -p sift-cli -p sift-test-support
//! target/release/load-user [--sift target/release/sift] [--requests 20000] [--connections 16]
//!     [--telemetry default|off|console|otlp|on] [--path /user]
//! ```
//!
//! `--path` drives another endpoint taking the same body: `/v1/extractors/user` (the built-in
//! extractor) measures the dynamic path against the seed's typed one.
//!
//! `--telemetry` (the telemetry benchmark): `off` has no console and no export; `console`
//! writes the console to a file; `otlp` exports spans and metrics to an OTLP/HTTP receiver in
//! this process; `on` does both. `default` (the default) is the binary's defaults, with the
//! console discarded.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sift_test_support::bench::{SiftProcess, arg};
use sift_test_support::otlp::OtlpReceiver;
use sift_test_support::{Reply, ScriptedServer, http_client};

async fn drive(url: &str, total: usize, connections: usize) -> Vec<Duration> {
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
                    .body(r#"{"query": "Daniel is a 24 year man living in New York City"}"#)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 200);
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
        "off" => extra_env.push_str(",SIFT_CONSOLE=off"),
        "console" => log = Some(console_log.as_str()),
        "otlp" => {
            extra_env.push_str(&format!(
                ",SIFT_CONSOLE=off,OTEL_EXPORTER_OTLP_ENDPOINT={}",
                receiver.endpoint()
            ));
        }
        "on" => {
            log = Some(console_log.as_str());
            extra_env.push_str(&format!(
                ",OTEL_EXPORTER_OTLP_ENDPOINT={}",
                receiver.endpoint()
            ));
        }
        other => panic!("--telemetry must be default, off, console, otlp or on, not {other}"),
    }

    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| {
        Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#).usage(60, 12)
    });
    let sift_process = SiftProcess::start_logged(&sift, &upstream.base_url(), &extra_env, log);
    let path = arg("--path", "/user");
    let url = format!("{}{path}", sift_process.url);

    drive(&url, 1000.min(total), connections).await; // warm-up
    let (user_before, system_before) = sift_process.cpu_times();
    let cpu_before = user_before + system_before;
    let started = Instant::now();
    let latencies = drive(&url, total, connections).await;
    let wall = started.elapsed();
    let (user_after, system_after) = sift_process.cpu_times();
    let cpu = user_after + system_after - cpu_before;
    let (user, system) = (user_after - user_before, system_after - system_before);
    drop(sift_process);

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
    println!("requests: {total} to {path} over {connections} connections in {wall:.2?}");
    println!("throughput: {:.0} req/s", total as f64 / wall.as_secs_f64());
    println!("latency: p50 {:.2?}  p99 {:.2?}", pct(0.5), pct(0.99));
    println!(
        "sift CPU split: user {:.3} ms, system {:.3} ms per request",
        user.as_secs_f64() * 1000.0 / total as f64,
        system.as_secs_f64() * 1000.0 / total as f64
    );
    println!(
        "sift CPU: {:.0} ms total, {:.3} ms per request",
        cpu.as_secs_f64() * 1000.0,
        cpu.as_secs_f64() * 1000.0 / total as f64
    );
}
