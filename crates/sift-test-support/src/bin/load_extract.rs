//! Load benchmark: CPU time the `sift serve` process spends on one `/extract` stream of 1000
//! objects whose tool-call arguments arrive from the upstream in 4-character chunks.
//!
//! ```text
//! cargo build --release -p sift-cli -p sift-test-support
//! target/release/load-extract [--sift target/release/sift] [--objects 1000] [--chunk 4] [--runs 20] [--burst]
//! ```
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

use serde_json::json;
use sift_test_support::bench::{SiftProcess, arg};
use sift_test_support::{Reply, ScriptedServer, http_client, split_chars};

#[tokio::main]
async fn main() {
    let sift = arg("--sift", "target/release/sift");
    let objects: usize = arg("--objects", "1000").parse().expect("--objects");
    let chunk: usize = arg("--chunk", "4").parse().expect("--chunk");
    let runs: usize = arg("--runs", "20").parse().expect("--runs");
    let extra_env = arg("--env", "");
    // --burst: the upstream writes the whole event stream at once, so what is measured is
    // sift's work per event rather than its waking up for each one as it trickles in.
    let burst = std::env::args().any(|a| a == "--burst");

    let people: Vec<_> = (0..objects)
        .map(|i| json!({"name": format!("Person {i}"), "age": i % 100}))
        .collect();
    let arguments = json!({ "value": people }).to_string();
    let pieces = split_chars(&arguments, chunk);
    println!(
        "stream: {objects} objects, {} bytes in {} chunks of {chunk} characters",
        arguments.len(),
        pieces.len()
    );

    let upstream = ScriptedServer::start().await;
    upstream.fallback(move |_| {
        let reply = Reply::stream_tool_call("Array_of_UserDetail", pieces.clone());
        if burst { reply.burst() } else { reply }
    });
    let sift_process = SiftProcess::start(&sift, &upstream.base_url(), &extra_env);
    let url = format!("{}/extract", sift_process.url);
    let client = http_client();
    let run = || async {
        let text = client
            .post(&url)
            .json(&json!({"query": "many people"}))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
        assert_eq!(text.lines().count(), objects, "every object streamed");
    };
    run().await; // warm-up
    let cpu_before = sift_process.cpu_time();
    let started = Instant::now();
    for _ in 0..runs {
        run().await;
    }
    let wall = started.elapsed();
    let cpu = sift_process.cpu_time() - cpu_before;
    println!(
        "runs: {runs}, wall {:.1} ms per stream",
        wall.as_secs_f64() * 1000.0 / runs as f64
    );
    println!(
        "sift CPU: {:.1} ms per {objects}-object stream",
        cpu.as_secs_f64() * 1000.0 / runs as f64
    );
}
