//! Load benchmark: `sift batch` throughput and CPU per line.
//!
//! Starts the scripted upstream in this process (tool-call answers after `--latency` ms),
//! writes an input of `--lines` JSONL lines, runs `sift batch --concurrency N` against it as
//! a child, and reports lines per second (wall time of the child) and the child's CPU time
//! (user + system, read from `/proc/PID/stat` once it has exited and before it is reaped).
//!
//! ```text
//! cargo build --release -p sift-cli -p sift-test-support
//! target/release/load-batch [--sift target/release/sift] [--lines 10000] [--concurrency 64]
//!     [--latency 200]
//! ```
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sift_test_support::bench::arg;
use sift_test_support::{Reply, ScriptedServer};

/// User + system CPU of process `pid` from /proc (ticks of 1/100 s), and whether it has
/// exited (a zombie, not yet reaped).
fn cpu_and_state(pid: u32) -> (Duration, bool) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| Duration::from_millis(fields[i].parse::<u64>().unwrap() * 10);
    (ticks(11) + ticks(12), fields[0] == "Z")
}

#[tokio::main]
async fn main() {
    let sift = arg("--sift", "target/release/sift");
    let lines: usize = arg("--lines", "10000").parse().expect("--lines");
    let concurrency: usize = arg("--concurrency", "64").parse().expect("--concurrency");
    let latency = Duration::from_millis(arg("--latency", "200").parse().expect("--latency"));

    let server = ScriptedServer::start().await;
    server.fallback(move |body| {
        let name = body["tools"][0]["function"]["name"]
            .as_str()
            .unwrap_or("person")
            .to_owned();
        Reply::tool_call(&name, r#"{"name": "Daniel", "age": 24}"#)
            .usage(60, 12)
            .delay(latency)
    });
    let dir = std::env::temp_dir().join(format!("sift-load-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = dir.join("person.json");
    std::fs::write(
        &schema,
        json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}).to_string(),
    )
    .unwrap();
    let input = dir.join("in.jsonl");
    let text: String = (0..lines)
        .map(|i| {
            json!({"id": i, "text": "Daniel is a 24 year man living in New York City"}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let output = dir.join("out.jsonl");

    let started = Instant::now();
    let child = Command::new(&sift)
        .args(["batch", "--schema"])
        .arg(&schema)
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .args([
            "--concurrency",
            &concurrency.to_string(),
            "--progress-every",
            "0",
        ])
        .env("OPENAI_BASE_URL", server.base_url())
        .env("OPENAI_API_KEY", "sk-load")
        .env("SIFT_CONSOLE", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sift batch");
    let pid = child.id();
    let cpu = loop {
        let (cpu, exited) = cpu_and_state(pid);
        if exited {
            break cpu;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let wall = started.elapsed();
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "sift batch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&output).unwrap().lines().count();
    assert_eq!(written, lines, "every line answered");
    let ideal = concurrency as f64 / latency.as_secs_f64();
    let rate = lines as f64 / wall.as_secs_f64();
    println!(
        "sift batch: {lines} lines in {:.2} s: {rate:.0} lines/s ({:.0}% of {ideal:.0}, the ideal for \
         {concurrency} in flight at {} ms); CPU {:.2} s, {:.3} ms per line",
        wall.as_secs_f64(),
        rate / ideal * 100.0,
        latency.as_millis(),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / lines as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
