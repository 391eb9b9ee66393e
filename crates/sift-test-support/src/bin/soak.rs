//! Soak: mixed load against `sift serve` for a while, reporting its resources before, at peak
//! and after.
//!
//! Starts the scripted upstream in this process (answers after a few milliseconds, streams in
//! small chunks), runs the `sift` binary as a child, and drives `/user`, `/many-users` and
//! `/extract` (NDJSON and SSE) from `--clients` connections; 30% of the streaming clients hang
//! up mid-stream. Every second it samples the child's RSS, threads, open descriptors and
//! connections to the upstream (from `/proc`); after the load stops it waits for things to
//! settle and samples again.
//!
//! ```text
//! cargo build --release -p sift-cli -p sift-test-support
//! target/release/soak [--sift target/release/sift] [--seconds 120] [--clients 32]
//! ```
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use sift_test_support::bench::{SiftProcess, arg};
use sift_test_support::{Reply, ScriptedServer, http_client, split_chars};

const PEOPLE: &str = r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}, {"name": "Carol", "age": 51}, {"name": "Dan", "age": 27}]}"#;

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rss_kib: u64,
    threads: u64,
    fds: u64,
    upstream: u64,
}

fn sample(pid: u32, upstream_port: u16) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    // Established connections whose remote end is the upstream's port: sift's side.
    let port = format!("{upstream_port:04X}");
    let upstream = ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).ok())
        .map(|t| {
            t.lines()
                .skip(1)
                .filter(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.len() > 3
                        && cols[3] == "01"
                        && cols[2].rsplit(':').next() == Some(port.as_str())
                })
                .count()
        })
        .sum::<usize>() as u64;
    Sample {
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds,
        upstream,
    }
}

fn show(label: &str, s: Sample) {
    println!(
        "{label:>7}: RSS {:.1} MB, {} threads, {} descriptors, {} upstream connections",
        s.rss_kib as f64 / 1024.0,
        s.threads,
        s.fds,
        s.upstream
    );
}

#[tokio::main]
async fn main() {
    let sift = arg("--sift", "target/release/sift");
    let seconds: u64 = arg("--seconds", "120").parse().expect("--seconds");
    let clients: usize = arg("--clients", "32").parse().expect("--clients");

    let upstream = ScriptedServer::start().await;
    upstream.fallback(|body| {
        let name = body["tools"][0]["function"]["name"]
            .as_str()
            .unwrap_or("UserDetail")
            .to_owned();
        if body["stream"] == true {
            Reply::stream_tool_call(&name, split_chars(PEOPLE, 6))
                .chunk_delay(Duration::from_millis(2))
        } else {
            Reply::tool_call(&name, r#"{"name": "Daniel", "age": 24}"#)
                .delay(Duration::from_millis(5))
        }
    });
    let process = SiftProcess::start(&sift, &upstream.base_url(), "SIFT_CONSOLE=off");
    let pid = process.pid();
    let port = upstream.addr().port();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = sample(pid, port);
    show("before", before);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (stop, done, dropped, errors) =
            (stop.clone(), done.clone(), dropped.clone(), errors.clone());
        let base = process.url.clone();
        tasks.push(tokio::spawn(async move {
            let http = http_client();
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                n += clients;
                let ok = match n % 4 {
                    0 => http
                        .post(format!("{base}/user"))
                        .json(&json!({"query": "Daniel is 24"}))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200),
                    1 => http
                        .post(format!("{base}/many-users"))
                        .json(&json!({"queries": ["Ann is 31", "Bob is 43", "Cy is 20"]}))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200),
                    _ => {
                        let mut request = http
                            .post(format!("{base}/extract"))
                            .json(&json!({"query": "Alice, Bob, Carol and Dan"}));
                        if n % 4 == 3 {
                            request = request.header("accept", "text/event-stream");
                        }
                        match request.send().await {
                            Ok(r) if r.status() == 200 => {
                                let mut body = r.bytes_stream();
                                // 30% hang up after the first chunk.
                                if n % 10 < 3 {
                                    let _ = body.next().await;
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                    drop(body);
                                    true
                                } else {
                                    let mut fine = true;
                                    while let Some(chunk) = body.next().await {
                                        fine &= chunk.is_ok();
                                    }
                                    fine
                                }
                            }
                            _ => false,
                        }
                    }
                };
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    let mut peak = Sample::default();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = sample(pid, port);
        peak = Sample {
            rss_kib: peak.rss_kib.max(s.rss_kib),
            threads: peak.threads.max(s.threads),
            fds: peak.fds.max(s.fds),
            upstream: peak.upstream.max(s.upstream),
        };
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    show("peak", peak);
    // Idle keep-alive connections to the upstream are closed by the pool after its timeout.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = sample(pid, port);
    show("after", after);
    println!(
        "{} requests in {seconds} s ({:.0}/s), {} streams hung up mid-way, {} errors",
        done.load(Ordering::Relaxed),
        done.load(Ordering::Relaxed) as f64 / seconds as f64,
        dropped.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
}
