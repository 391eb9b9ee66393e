//! `sift eval` as a process: a known score against the scripted upstream (report, exit code
//! under `--min-score`, baseline deltas), and the evaluation sets on the real embedded model
//! with floors a little under the measured scores.

use std::path::PathBuf;
use std::process::Output;

use serde_json::{Value, json};
use sift_test_support::{Reply, ScriptedServer, last_user_text};

use crate::sift;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn eval(server: &ScriptedServer, args: Vec<String>) -> Output {
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", server.base_url())
        .env("OPENAI_API_KEY", "sk-eval")
        .arg("eval")
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_known_score_its_report_its_floor_and_its_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let gold = dir.path().join("gold.jsonl");
    let lines = [
        json!({"id": "a", "query": "ANN. is 31", "expected": {"name": "Ann", "age": 31}}),
        json!({"id": "b", "query": "Bo is 40", "expected": {"name": "Bo", "age": 40}}),
        json!({"id": "c", "query": "Dr. Cy Lee is 20", "expected": {"name": "Cy Lee", "age": 20}}),
        json!({"id": "d", "query": "Dee is 55", "expected": {"name": "Dee", "age": 55}}),
    ];
    std::fs::write(
        &gold,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let server = ScriptedServer::start().await;
    // Right for a, b and d (in any case and punctuation); the title kept for c.
    server.fallback(|body| {
        let text = last_user_text(body);
        let answer = if text.contains("ANN") {
            r#"{"name": "ANN.", "age": 31}"#
        } else if text.contains("Bo ") {
            r#"{"name": "Bo", "age": 40}"#
        } else if text.contains("Cy") {
            r#"{"name": "Dr. Cy Lee", "age": 20}"#
        } else {
            r#"{"name": "Dee", "age": 55}"#
        };
        Reply::tool_call("UserDetail", answer)
    });
    let report = dir.path().join("report.json");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["user".to_owned(), gold.display().to_string()];
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let out = eval(
        &server,
        args(&["--report", report.to_str().unwrap(), "--min-score", "0.7"]),
    )
    .await;
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", text(&out.stderr));
    assert!(
        table.contains("4 examples, exact match 3/4 (75.0%)"),
        "{table}"
    );
    assert!(
        table.contains(r#"c name (mismatch): expected "Cy Lee", got "Dr. Cy Lee""#),
        "{table}"
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(saved["exact"], 3);
    assert_eq!(saved["fields"]["name"]["true_positives"], 3);
    assert_eq!(saved["fields"]["age"]["f1"], 1.0);

    // Under the floor: exit 6.
    let out = eval(&server, args(&["--min-score", "0.8"])).await;
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("under --min-score 0.8"));

    // Against a baseline that did worse on names.
    let mut baseline = saved.clone();
    baseline["exact_match"] = json!(0.5);
    baseline["fields"]["name"]["f1"] = json!(0.5);
    let earlier = dir.path().join("earlier.json");
    std::fs::write(&earlier, baseline.to_string()).unwrap();
    let page = dir.path().join("report.html");
    let out = eval(
        &server,
        args(&[
            "--baseline",
            earlier.to_str().unwrap(),
            "--report-html",
            page.to_str().unwrap(),
        ]),
    )
    .await;
    let table = text(&out.stdout);
    assert!(table.contains("(75.0%) +0.250"), "{table}");
    assert!(table.contains("+0.250"), "{table}");
    let name_row = table.lines().find(|l| l.starts_with("name")).unwrap();
    assert!(name_row.ends_with("+0.250"), "{name_row}");
    // The same as one page: the scores with their deltas, and the miss with both values.
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("exact match 3/4 (<b>75.0%</b>) <span class=\"up\">+0.250</span>"),
        "{html}"
    );
    assert_eq!(
        html.matches("data-testid=\"eval-field\"").count(),
        3,
        "name, age, all"
    );
    assert!(
        html.contains("<td>c</td><td>name</td><td>mismatch</td><td><code>&quot;Cy Lee&quot;</code></td><td><code>&quot;Dr. Cy Lee&quot;</code></td>"),
        "{html}"
    );

    // Served at /evals by `sift serve --eval-report`, behind the service key.
    let mut cmd = sift();
    cmd.env("OPENAI_BASE_URL", server.base_url())
        .env("SIFT_API_KEYS", "eval-key")
        .env("SIFT_EVAL_REPORT", &report)
        .env("SIFT_EVAL_BASELINE", &earlier);
    let running = crate::serve(cmd);
    let http = sift_test_support::http_client();
    let refused = http
        .get(format!("{}/evals", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let served = http
        .get(format!("{}/evals", running.url))
        .bearer_auth("eval-key")
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert!(
        served.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(served.text().await.unwrap(), html, "the same page");

    // A gold line that does not fit is refused with its place.
    std::fs::write(
        &gold,
        "{\"id\": 1, \"query\": \"x\", \"expected\": {\"name\": \"X\"}}\n",
    )
    .unwrap();
    let out = eval(&server, args(&[])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 1: `expected` does not fit the output schema"),
        "{}",
        text(&out.stderr)
    );

    // An empty gold set (or one of blank lines) is an error, not a perfect score.
    std::fs::write(&gold, "\n  \n").unwrap();
    let out = eval(&server, args(&[])).await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no examples"), "{err}");
    assert!(
        !text(&out.stdout).contains("1.000"),
        "{}",
        text(&out.stdout)
    );
}

/// The evaluation sets on the real embedded model, each with a floor a little under the
/// measured exact-match score (see docs/eval.md): a change that makes the default worse
/// fails here.
#[test]
fn the_embedded_default_keeps_its_scores() {
    let config = repo("evals/sift.toml");
    for (name, gold, floor) in [
        ("user", "evals/seed.jsonl", "1.0"),
        ("user", "evals/people-one.jsonl", "0.7"),
    ] {
        let out = sift()
            .args(["eval", "--config"])
            .arg(&config)
            .arg(name)
            .arg(repo(gold))
            .args(["--min-score", floor])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{gold} under {floor}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}
