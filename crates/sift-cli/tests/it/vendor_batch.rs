//! `sift batch --via anthropic-batch` and `--via gemini-batch` as processes, against the
//! scripted server's Message Batches and Gemini batch mode: the same driver as
//! `--via openai-batch` (rounds, re-asks, the state file), each API's own requests and ids.

use std::process::Command;

use serde_json::{Value, json};
use sift_test_support::{BatchEnd, Reply, ScriptedServer, Wire};

use crate::batch::{Scratch, assert_each_once, spawn, wait_for};
use crate::sift;

/// The prompt's text in a request of either format.
fn prompt(wire: Wire, body: &Value) -> String {
    let first = match wire {
        Wire::Gemini => &body["contents"][0]["parts"][0]["text"],
        _ => &body["messages"][0]["content"][0]["text"],
    };
    first.as_str().unwrap_or_default().to_owned()
}

/// Answers item N with a valid person, except items divisible by 10 on their first ask (an
/// age that is not a number, fixed when re-asked) and item 7 (a 500 every time).
fn answer(wire: Wire, body: &Value) -> Reply {
    let text = prompt(wire, body);
    let n: u64 = text
        .split("item ")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let reasked = match wire {
        Wire::Gemini => body["contents"].as_array().is_some_and(|c| c.len() > 1),
        _ => body["messages"].as_array().is_some_and(|m| m.len() > 1),
    };
    if n == 7 {
        return Reply::error(500, "internal error");
    }
    let age = if n.is_multiple_of(10) && !reasked {
        json!("unknown")
    } else {
        json!(n)
    };
    let name = wire.tool_name(body).unwrap_or_else(|| "person".into());
    Reply::tool_call(
        &name,
        json!({"name": format!("Person {n}"), "age": age}).to_string(),
    )
    .usage(1000, 100)
}

fn command(scratch: &Scratch, server: &ScriptedServer, wire: Wire) -> Command {
    let mut cmd = sift();
    let (base, key, via) = match wire {
        Wire::Gemini => ("GEMINI_BASE_URL", "GEMINI_API_KEY", "gemini-batch"),
        _ => ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "anthropic-batch"),
    };
    cmd.env(base, server.gemini_base_url())
        .env(key, "vendor-batch-secret-key")
        .args(["batch", "person", "--config"])
        .arg(scratch.path("sift.toml"))
        .arg("-i")
        .arg(scratch.path("in.jsonl"))
        .arg("-o")
        .arg(scratch.path("out.jsonl"))
        .args([
            "--via",
            via,
            "--poll-every",
            "0.05",
            "--progress-every",
            "0",
        ]);
    cmd
}

/// Ids as users write them (a path, spaces) beside plain ones: Anthropic's `custom_id` takes
/// only `[A-Za-z0-9_-]{1,64}`, so such ids travel hashed and come back mapped.
fn odd_ids(scratch: &Scratch, n: usize) {
    let lines: String = (1..=n)
        .map(|i| {
            let id = if i.is_multiple_of(3) {
                format!("docs/person {i}.txt")
            } else {
                format!("p{i}")
            };
            json!({"id": id, "text": format!("item {i}: Person {i} is {i} years old")}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(scratch.path("in.jsonl"), lines).unwrap();
}

async fn runs_a_job_with_a_reask_round(wire: Wire) {
    let scratch = Scratch::new(0);
    odd_ids(&scratch, 24);
    let server = ScriptedServer::start().await;
    server.fallback(move |body| answer(wire, body));
    let out = wait_for(spawn(command(&scratch, &server, wire))).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "item 7 failed: {stderr}");
    assert!(!stderr.contains("vendor-batch-secret-key"), "{stderr}");
    let records = scratch.records();
    assert_eq!(records.len(), 24, "{records:?}");
    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {records:?}"))
            .clone()
    };
    // A hashed id mapped back; a re-asked item fixed in round 2.
    let odd = by_id("docs/person 3.txt");
    assert_eq!(odd["value"], json!({"name": "Person 3", "age": 3}), "{odd}");
    let reasked = by_id("p10");
    assert_eq!(reasked["value"]["age"], 10, "{reasked}");
    assert_eq!(reasked["attempts"], 2, "{reasked}");
    assert_eq!(
        reasked["usage"],
        json!({"input_tokens": 2000, "output_tokens": 200})
    );
    let failed = by_id("p7");
    assert_eq!(failed["error"]["kind"], "provider_error", "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("internal error"),
        "{failed}"
    );
    // Round 1 holds every item; round 2 the re-asks (10 and 20), in the API's own format.
    let created = server.batches_created();
    assert_eq!(created.len(), 2, "{created:?}");
    let (first, second) = match wire {
        Wire::Gemini => (
            created[0].pointer("/batch/input_config/requests/requests"),
            created[1].pointer("/batch/input_config/requests/requests"),
        ),
        _ => (created[0].get("requests"), created[1].get("requests")),
    };
    assert_eq!(first.and_then(Value::as_array).map(Vec::len), Some(24));
    let second = second
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert_eq!(second.len(), 2, "{second:?}");
    match wire {
        Wire::Gemini => {
            assert_eq!(second[0]["metadata"]["key"], "p10");
            let turns = second[0]["request"]["contents"].as_array().unwrap();
            let report = &turns.last().unwrap()["parts"][0]["functionResponse"];
            assert!(report["response"]["error"].is_string(), "{report}");
        }
        _ => {
            assert_eq!(second[0]["custom_id"], "p10");
            let turns = second[0]["params"]["messages"].as_array().unwrap();
            let report = &turns.last().unwrap()["content"][0];
            assert_eq!(report["type"], "tool_result", "{report}");
            assert_eq!(report["is_error"], true, "{report}");
        }
    }
    let ids: Vec<&str> = created[0]["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["custom_id"].as_str())
        .collect();
    if wire == Wire::Anthropic {
        assert!(ids.iter().all(|id| !id.contains(['/', ' '])), "{ids:?}");
    }
    assert!(scratch.path("out.jsonl.batch.json").exists());
}

#[tokio::test]
async fn anthropic_message_batches_run_a_job_with_a_reask_round() {
    runs_a_job_with_a_reask_round(Wire::Anthropic).await;
}

#[tokio::test]
async fn gemini_batch_mode_runs_a_job_with_a_reask_round() {
    runs_a_job_with_a_reask_round(Wire::Gemini).await;
}

/// A batch that ends short (expired, failed) fails only the items it left unanswered, each
/// saying why; the rest are kept.
#[tokio::test]
async fn batches_that_end_short_fail_their_unanswered_items_with_the_reason() {
    for (wire, end, why) in [
        (
            Wire::Anthropic,
            BatchEnd::Expired,
            "expired before this request ran",
        ),
        (
            Wire::Gemini,
            BatchEnd::Failed("the input is malformed".into()),
            "the input is malformed",
        ),
    ] {
        let scratch = Scratch::new(6);
        let server = ScriptedServer::start().await;
        server.push_batch_end(end);
        server.fallback(move |body| answer(wire, body));
        let out = wait_for(spawn(command(&scratch, &server, wire))).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let records = scratch.records();
        assert_each_once(&records, 6);
        let failed: Vec<&Value> = records.iter().filter(|r| !r["error"].is_null()).collect();
        assert!(!failed.is_empty(), "{records:?}");
        assert!(
            failed.iter().any(|r| r["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(why)),
            "{wire:?}: {failed:?}"
        );
    }
}

/// The direct path (`sift batch` without `--via`) with each native provider: every item
/// asked by sift itself, re-asks in the provider's own turns.
#[tokio::test]
async fn direct_batches_run_with_each_native_provider() {
    for wire in [Wire::Anthropic, Wire::Gemini] {
        let scratch = Scratch::new(0);
        odd_ids(&scratch, 12);
        let server = ScriptedServer::start().await;
        server.fallback(move |body| answer(wire, body));
        let cmd = command(&scratch, &server, wire);
        // The same command without `--via ...-batch` and its poll interval: the direct path.
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let cut = args.iter().position(|a| a == "--via").unwrap();
        let mut direct = sift();
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                direct.env(k, v);
            }
        }
        direct.args(&args[..cut]).args(["--progress-every", "0"]);
        let out = wait_for(spawn(direct)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{wire:?}: item 7 failed: {stderr}"
        );
        let records = scratch.records();
        assert_eq!(records.len(), 12, "{wire:?}: {records:?}");
        let reasked = records.iter().find(|r| r["id"] == "p10").unwrap();
        assert_eq!(reasked["value"]["age"], 10, "{wire:?}: {reasked}");
        assert_eq!(reasked["attempts"], 2, "{wire:?}: {reasked}");
        // Every call went to the provider's own endpoint, none to a batch.
        assert!(server.batches_created().is_empty(), "{wire:?}");
        let sent = server.requests();
        assert!(sent.len() > 12, "{wire:?}: {}", sent.len());
        match wire {
            Wire::Gemini => assert!(sent.iter().all(|r| r.body["method"] == "generateContent")),
            _ => assert!(sent.iter().all(|r| r.body["tool_choice"]["type"] == "tool")),
        }
    }
}
