//! Load benchmark: CPU time the `sift serve` process spends per `POST /user`.
//!
//! Starts the scripted upstream in this process (instant tool-call answers), runs the `sift`
//! binary as a child pointed at it, drives `/user` from 16 concurrent connections, and reads
//! the child's CPU time (user + system) from `/proc/PID/stat` before and after.
//!
//! ```text
//! cargo build --release -p sift-cli -p sift-test-support
//! target/release/load-user [--sift target/release/sift] [--requests 20000] [--connections 16]
//! ```
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sift_test_support::{Reply, ScriptedServer, http_client};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// User + system CPU time of a process, from /proc/PID/stat (fields 14 and 15, in ticks).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

async fn drive(url: &str, total: usize, connections: usize) -> Vec<Duration> {
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
    let extra_env = arg("--env", "");

    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| {
        Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#).usage(60, 12)
    });
    let mut cmd = Command::new(&sift);
    cmd.args(["serve", "--port", "0"])
        .env("OPENAI_BASE_URL", upstream.base_url())
        .env("OPENAI_API_KEY", "sk-bench")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for pair in extra_env.split(',').filter(|p| p.contains('=')) {
        let (k, v) = pair.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {sift}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().trim_start_matches("listening on ").to_owned();
    let url = format!("{base}/user");

    drive(&url, 1000.min(total), connections).await; // warm-up
    let cpu_before = cpu_time(child.id());
    let started = Instant::now();
    let latencies = drive(&url, total, connections).await;
    let wall = started.elapsed();
    let cpu = cpu_time(child.id()) - cpu_before;
    let _ = child.kill();
    let _ = child.wait();

    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("requests: {total} over {connections} connections in {wall:.2?}");
    println!("throughput: {:.0} req/s", total as f64 / wall.as_secs_f64());
    println!("latency: p50 {:.2?}  p99 {:.2?}", pct(0.5), pct(0.99));
    println!(
        "sift CPU: {:.0} ms total, {:.3} ms per request",
        cpu.as_secs_f64() * 1000.0,
        cpu.as_secs_f64() * 1000.0 / total as f64
    );
}
