//! `sift batch --via openai-batch` as a process, against the scripted Files and Batches API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sift_test_support::{BatchEnd, Reply, ScriptedServer};

use crate::batch::{
    Scratch, answer, assert_each_once, item_of, signal, spawn, tool_name, wait_for,
};

fn via(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--via", "openai-batch", "--progress-every", "0.2"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A re-ask (the conversation holds the errors) is answered well; a first ask as `answer`
/// does, except item 7, which the batch answers with a 500.
fn batch_answer(body: &Value) -> Reply {
    let reasked = body["messages"].as_array().is_some_and(|m| m.len() > 2);
    let n = item_of(body);
    if n == 7 {
        return Reply::error(500, "internal error");
    }
    if reasked {
        return Reply::tool_call(
            &tool_name(body),
            // The item's number is written in its text too.
            json!({"name": format!("Person {n}"), "age": n}).to_string(),
        )
        .usage(1000, 100);
    }
    answer(body, Duration::ZERO)
}

#[tokio::test]
async fn a_job_runs_through_the_batch_api_with_split_parts_and_a_reask_round() {
    let scratch = Scratch::new(120);
    let server = ScriptedServer::start().await;
    server.fallback(batch_answer);
    let extra = via(&[
        "--poll-every",
        "0.05",
        "--batch-max-requests",
        "50",
        "--summary",
    ]);
    let mut cmd = scratch.command(&server, &args(&extra));
    cmd.arg(scratch.path("summary.json"));
    let out = wait_for(spawn(cmd)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "item 7 failed: {stderr}");
    assert!(stderr.contains("round 1, part 3/3: batch"), "{stderr}");
    assert!(stderr.contains("completed"), "{stderr}");

    let records = scratch.records();
    assert_each_once(&records, 120);
    let by_id = |id: &str| records.iter().find(|r| r["id"] == id).unwrap().clone();
    // Every 20th item was invalid in round 1 and fixed by its re-ask in round 2.
    let reasked = by_id("p40");
    assert_eq!(
        reasked["value"],
        json!({"name": "Person 40", "age": 40}),
        "{reasked}"
    );
    assert_eq!(reasked["attempts"], 2);
    assert_eq!(
        reasked["usage"],
        json!({"input_tokens": 2000, "output_tokens": 200})
    );
    let plain = by_id("p3");
    assert_eq!(plain["value"], json!({"name": "Person 3", "age": 23}));
    assert_eq!(plain["attempts"], 1);
    // The batch's error file: item 7's 500, recorded with the upstream's status.
    let failed = by_id("p7");
    assert_eq!(failed["error"]["kind"], "provider_error", "{failed}");
    assert_eq!(failed["error"]["upstream_status"], 500, "{failed}");

    // Round 1 in three parts within 50 requests each, round 2 the six re-asks.
    let created = server.batches_created();
    assert_eq!(created.len(), 4, "{created:?}");
    assert_eq!(created[0]["endpoint"], "/v1/chat/completions");
    assert_eq!(created[0]["metadata"]["sift_round"], "1");
    assert_eq!(created[3]["metadata"]["sift_round"], "2");
    let round2 = String::from_utf8(
        server
            .file(created[3]["input_file_id"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let lines: Vec<Value> = round2
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    // The same body sift sends itself: the forced tool call, then the errors fed back.
    let body = &lines[0]["body"];
    assert_eq!(lines[0]["url"], "/v1/chat/completions");
    assert_eq!(body["tool_choice"]["function"]["name"], tool_name(body));
    let last = body["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "tool", "{body}");
    assert!(last["content"].as_str().unwrap().contains("age"), "{last}");

    // Half price: 1,120 calls of 1,000 + 100 tokens at $1 and $2 per million, halved (item
    // 7's failed call used none).
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path("summary.json")).unwrap())
            .unwrap();
    let cost = summary["cost_usd"].as_f64().unwrap();
    let calls = 119.0 + 6.0;
    assert!((cost - calls * 0.0012 * 0.5).abs() < 1e-9, "{cost}");
    assert!(scratch.path("out.jsonl.batch.json").exists());
}

#[tokio::test]
async fn a_kill_while_polling_resumes_the_same_batches() {
    let scratch = Scratch::new(30);
    let server = ScriptedServer::start().await;
    server.fallback(|body| answer(body, Duration::ZERO));
    // Slow polls: the process is killed while its batch is still in progress.
    let extra = via(&["--poll-every", "5"]);
    let child = spawn(scratch.command(&server, &args(&extra)));
    let started = Instant::now();
    let state = scratch.path("out.jsonl.batch.json");
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("batch-")) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no batch created"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "-KILL");
    let _ = wait_for(child).await;
    assert_eq!(server.batches_created().len(), 1);
    assert!(scratch.records().is_empty());

    let extra = via(&["--poll-every", "0.05"]);
    let out = wait_for(spawn(scratch.command(&server, &args(&extra)))).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Item 20 is answered invalid in every round, so it fails.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{stderr}");
    assert_each_once(&scratch.records(), 30);
    // The batch created before the kill was polled to its end, not created again; only the
    // re-ask rounds of item 20 added batches.
    let created = server.batches_created();
    assert_eq!(created[0]["metadata"]["sift_round"], "1");
    assert!(
        created
            .iter()
            .filter(|b| b["metadata"]["sift_round"] == "1")
            .count()
            == 1,
        "{created:?}"
    );
    let item20 = scratch
        .records()
        .into_iter()
        .find(|r| r["id"] == "p20")
        .unwrap();
    assert_eq!(item20["error"]["kind"], "retries_exhausted", "{item20}");
    assert_eq!(item20["attempts"], 3, "one attempt per round: {item20}");
    assert_eq!(created.len(), 3, "rounds 2 and 3 for item 20's re-asks");
}

#[tokio::test]
async fn batches_that_fail_expire_or_are_cancelled_record_their_items() {
    let scratch = Scratch::new(10);
    let server = ScriptedServer::start().await;
    server.fallback(|body| {
        let n = item_of(body);
        Reply::tool_call(
            &tool_name(body),
            json!({"name": format!("Person {n}"), "age": n}).to_string(),
        )
    });
    server.push_batch_end(BatchEnd::Failed("line 1: unknown model".into()));
    let extra = via(&["--poll-every", "0.05"]);
    let out = wait_for(spawn(scratch.command(&server, &args(&extra)))).await;
    assert_eq!(out.status.code(), Some(1));
    let records = scratch.records();
    assert_each_once(&records, 10);
    for r in &records {
        assert_eq!(r["error"]["kind"], "provider_error", "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown model"),
            "{r}"
        );
    }

    // Again the failed ones: the batch expires with half of them answered.
    server.push_batch_end(BatchEnd::Expired);
    let extra = via(&["--poll-every", "0.05", "--retry-failed"]);
    let out = wait_for(spawn(scratch.command(&server, &args(&extra)))).await;
    assert_eq!(out.status.code(), Some(1));
    let records = scratch.records();
    assert_each_once(&records, 10);
    let answered = records.iter().filter(|r| r.get("value").is_some()).count();
    assert_eq!(answered, 5);
    let expired = records.iter().find(|r| r.get("error").is_some()).unwrap();
    assert!(
        expired["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{expired}"
    );

    // And once more: cancelled with a third answered; then completed.
    server.push_batch_end(BatchEnd::Cancelled);
    let out = wait_for(spawn(scratch.command(&server, &args(&extra)))).await;
    assert_eq!(out.status.code(), Some(1));
    let answered = scratch
        .records()
        .iter()
        .filter(|r| r.get("value").is_some())
        .count();
    assert_eq!(answered, 5 + 5 / 3);
    let out = wait_for(spawn(scratch.command(&server, &args(&extra)))).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(scratch.records().iter().all(|r| r.get("value").is_some()));
}
