//! Probes of the server's memory and time bounds (benchmarks, not tests), against the
//! release `sift serve` and the scripted upstream in this process:
//!
//! - `slow-body`: `--connections` clients (16) each send a `/user` body as one-byte chunks,
//!   one every millisecond, for `--seconds` (25), then finish it; RSS before, at peak, after.
//! - `cache`: `--schemas` (120) distinct ~900 KB schemas (a 100,000-value enum, one value
//!   changed each time) sent to `/v1/extract`; RSS before, at peak, after.
//! - `healthz`: four clients send distinct large schemas to `/v1/extract` without pause
//!   while `/healthz` is timed every 50 ms for `--seconds`; its median and max.
//!
//! ```text
//! cargo build --release -p sift-cli -p sift-test-support
//! target/release/probe-bounds slow-body [--sift target/release/sift]
//! target/release/probe-bounds cache
//! target/release/probe-bounds healthz
//! ```
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sift_test_support::bench::{SiftProcess, arg};
use sift_test_support::{Reply, ScriptedServer, http_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Samples the RSS of `pid` every 100 ms until `stop`; the peak.
fn watch(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}

fn big_schema(n: usize) -> serde_json::Value {
    let mut values: Vec<String> = (0..100_000).map(|i| format!("v{i}")).collect();
    let len = values.len();
    values[n % len] = format!("c{n}");
    serde_json::json!({
        "type": "object",
        "properties": {"v": {"type": "string", "enum": values}},
        "required": ["v"]
    })
}

#[tokio::main]
async fn main() {
    let probe = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "slow-body".into());
    let binary = arg("--sift", "target/release/sift");
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|request| {
        let tool = request["tools"][0]["function"]["name"]
            .as_str()
            .unwrap_or("Output");
        if tool == "UserDetail" {
            Reply::tool_call(tool, r#"{"name": "Ann", "age": 30}"#.to_owned())
        } else {
            Reply::tool_call(tool, r#"{"v": "v1"}"#.to_owned())
        }
    });
    let sift = SiftProcess::start(&binary, &upstream.base_url(), "SIFT_CONSOLE=off");
    let pid = sift.pid();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch(pid, stop.clone());
    match probe.as_str() {
        "slow-body" => slow_bodies(&sift.url).await,
        "cache" => cache(&sift.url).await,
        "healthz" => healthz(&sift.url).await,
        other => panic!("unknown probe {other}: slow-body, cache or healthz"),
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.join().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    println!(
        "{probe}: RSS before {}, at peak {}, after {}",
        mb(before),
        mb(peak),
        mb(after)
    );
}

async fn slow_bodies(url: &str) {
    let connections: usize = arg("--connections", "16").parse().unwrap();
    let seconds: f64 = arg("--seconds", "25").parse().unwrap();
    let addr = url.trim_start_matches("http://").to_owned();
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (addr, sent) = (addr.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            s.write_all(b"POST /user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            s.write_all(b"c\r\n{\"query\": \"a\r\n").await.unwrap();
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < until {
                if s.write_all(b"1\r\na\r\n").await.is_err() {
                    return String::from("(closed by the server)");
                }
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            s.write_all(b"2\r\n\"}\r\n0\r\n\r\n").await.unwrap();
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
            String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        }));
    }
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_default() += 1;
    }
    println!(
        "slow-body: {connections} connections sent {} one-byte chunks; answers: {statuses:?}",
        sent.load(Ordering::Relaxed)
    );
}

async fn cache(url: &str) {
    let schemas: usize = arg("--schemas", "120").parse().unwrap();
    let http = http_client();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let started = Instant::now();
    for n in 0..schemas {
        let body = serde_json::json!({"schema": big_schema(n), "text": "v1"});
        let r = http
            .post(format!("{url}/v1/extract"))
            .json(&body)
            .send()
            .await
            .unwrap();
        *statuses.entry(r.status().as_u16()).or_default() += 1;
    }
    println!(
        "cache: {schemas} distinct schemas of {} bytes in {:.1} s; statuses {statuses:?}",
        big_schema(0).to_string().len(),
        started.elapsed().as_secs_f64()
    );
}

async fn healthz(url: &str) {
    let seconds: f64 = arg("--seconds", "20").parse().unwrap();
    let http = http_client();
    let stop = Arc::new(AtomicBool::new(false));
    let compiled = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for client in 0..4 {
        let (http, url, stop, compiled) =
            (http.clone(), url.to_owned(), stop.clone(), compiled.clone());
        load.push(tokio::spawn(async move {
            let mut n = client * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = serde_json::json!({"schema": big_schema(n), "text": "v1"});
                let _ = http
                    .post(format!("{url}/v1/extract"))
                    .json(&body)
                    .send()
                    .await;
                compiled.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut times = Vec::new();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < until {
        let t = Instant::now();
        let r = http.get(format!("{url}/healthz")).send().await.unwrap();
        assert!(r.status().is_success());
        times.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        let _ = l.await;
    }
    times.sort();
    println!(
        "healthz: {} probes while {} large schemas compiled: median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        times.len(),
        compiled.load(Ordering::Relaxed),
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[times.len() * 9 / 10].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0
    );
}
