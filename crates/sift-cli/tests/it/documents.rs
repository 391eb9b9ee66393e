//! Documents from the command line, against the scripted upstream: `sift extract NAME --file`
//! on a PDF (chunked, spans with pages), a scanned PDF refused by name, and `sift batch` over
//! a folder of mixed files, resumed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use sift_test_support::ScriptedServer;
use sift_test_support::pdf::{self, Line, Page};

use crate::sift;

const CONFIG: &str = r#"
[extractors.people]
schema = { type = "array", items = { type = "object", properties = { name = { type = "string" }, city = { type = "string" } }, required = ["name", "city"] } }
prompt = "People: {{ text }}"
max_retries = 0
[extractors.people.document]
chunk_tokens = 20
overlap_tokens = 5
"#;

use sift_test_support::readers::people as reader;

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sift.toml"), CONFIG).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, server: &ScriptedServer, args: &[&str]) -> Command {
        let mut cmd = sift();
        cmd.env("OPENAI_BASE_URL", server.base_url())
            .env("OPENAI_API_KEY", "sk-documents-test")
            .args(args)
            .arg("--config")
            .arg(self.path("sift.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn two_pages() -> Vec<u8> {
    pdf::document(&[
        Page::Text(vec![
            Line::text(780, "Ann lives in Leeds."),
            Line::text(760, "Bob lives in York."),
            Line::text(740, "Cy lives in Bath."),
        ]),
        Page::Text(vec![
            Line::text(780, "Dee lives in Hull."),
            Line::text(760, "Eve lives in Ely."),
            Line::text(740, "Fay lives in Rye."),
        ]),
    ])
}

fn names(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn extract_file_reads_a_pdf_in_chunks_and_spans_carry_pages() {
    let scratch = Scratch::new();
    std::fs::write(scratch.path("people.pdf"), two_pages()).unwrap();
    let server = ScriptedServer::start().await;
    server.fallback(reader);
    let file = scratch.path("people.pdf");
    let file = file.to_str().unwrap();
    let out = run(scratch.command(&server, &["extract", "people", "--file", file])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        names(&value),
        ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay"],
        "{stderr}"
    );
    let chunks = server.requests().len();
    assert!(chunks >= 2, "the document was read in {chunks} chunk(s)");

    let out =
        run(scratch.command(&server, &["extract", "people", "--file", file, "--spans"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["document"]["kind"], "pdf");
    assert_eq!(answer["document"]["pages"], 2);
    let text = answer["text"].as_str().unwrap();
    for (i, page) in [(0, 1), (2, 1), (3, 2), (5, 2)] {
        let span = &answer["spans"][format!("/{i}/name")][0];
        assert_eq!(span["page"], page, "{answer}");
        let (start, end) = (
            span["start"].as_u64().unwrap() as usize,
            span["end"].as_u64().unwrap() as usize,
        );
        let words: String = text.chars().skip(start).take(end - start).collect();
        assert_eq!(words, answer["value"][i]["name"].as_str().unwrap());
    }

    let out =
        run(scratch.command(&server, &["extract", "people", "--file", file, "--stream"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let streamed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        names(&Value::Array(streamed)),
        ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay"]
    );
}

#[tokio::test]
async fn a_scanned_or_missing_file_is_refused_with_the_reason() {
    let scratch = Scratch::new();
    std::fs::write(scratch.path("scan.pdf"), pdf::document(&[Page::Scanned])).unwrap();
    let server = ScriptedServer::start().await;
    server.fallback(reader);
    let scan = scratch.path("scan.pdf");
    let out = run(scratch.command(
        &server,
        &["extract", "people", "--file", scan.to_str().unwrap()],
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("scan.pdf") && stderr.contains("no text layer"),
        "{stderr}"
    );
    let out = run(scratch.command(
        &server,
        &["extract", "people", "--file", "/nonexistent/x.pdf"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(server.requests().is_empty());
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn batch_over_a_folder_of_mixed_documents_resumes_by_file_name() {
    let scratch = Scratch::new();
    let folder = scratch.path("docs");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.pdf"), two_pages()).unwrap();
    std::fs::write(
        folder.join("b.html"),
        "<html><head><script>var x = 'Zed lives in Nowhere.';</script></head><body><p>Gil lives in Kent.</p><div>Hap lives in Deal.</div></body></html>",
    )
    .unwrap();
    std::fs::write(
        folder.join("c.md"),
        "# People\n\n**Ida** lives in Hove.\n\n- Jo lives in Bude.",
    )
    .unwrap();
    std::fs::write(folder.join("d.txt"), "Kit lives in Looe.").unwrap();
    std::fs::write(folder.join("e.png"), "not a document").unwrap();
    std::fs::write(folder.join("f.pdf"), pdf::malformed()).unwrap();
    let server = ScriptedServer::start().await;
    server.fallback(reader);
    let args = |out: &str| {
        vec![
            "batch".to_owned(),
            "people".into(),
            "-i".into(),
            folder.to_str().unwrap().to_owned(),
            "-o".into(),
            scratch.path(out).to_str().unwrap().to_owned(),
        ]
    };
    let a: Vec<String> = args("out.jsonl");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let _ = run(scratch.command(&server, &a)).await;
    let recs = records(&scratch.path("out.jsonl"));
    let by_id = |id: &str| {
        recs.iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {recs:?}"))
    };
    assert_eq!(recs.len(), 5, "{recs:?}");
    assert_eq!(
        names(&by_id("a.pdf")["value"]),
        ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay"]
    );
    assert_eq!(by_id("a.pdf")["document"]["document"]["pages"], 2);
    // The HTML's script is not text; its blocks are.
    assert_eq!(names(&by_id("b.html")["value"]), ["Gil", "Hap"]);
    assert_eq!(names(&by_id("c.md")["value"]), ["Ida", "Jo"]);
    assert_eq!(names(&by_id("d.txt")["value"]), ["Kit"]);
    assert_eq!(by_id("f.pdf")["error"]["kind"], "malformed");
    let asked = server.requests().len();

    // Run again: every file has its line, nothing is asked again.
    let out = run(scratch.command(&server, &a)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already done before"), "{stderr}");
    assert_eq!(records(&scratch.path("out.jsonl")).len(), 5);
    assert_eq!(server.requests().len(), asked);

    // A new file in the folder is the only one done.
    std::fs::write(folder.join("g.txt"), "Lou lives in Wick.").unwrap();
    let _ = run(scratch.command(&server, &a)).await;
    let recs = records(&scratch.path("out.jsonl"));
    assert_eq!(recs.len(), 6);
    assert_eq!(names(&recs[5]["value"]), ["Lou"]);
    assert_eq!(server.requests().len(), asked + 1);
}

#[tokio::test]
async fn eval_scores_a_folder_of_documents_and_gold_lines_naming_files() {
    let scratch = Scratch::new();
    let folder = scratch.path("gold");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.pdf"), two_pages()).unwrap();
    let six = json!([
        {"name": "Ann", "city": "Leeds"}, {"name": "Bob", "city": "York"}, {"name": "Cy", "city": "Bath"},
        {"name": "Dee", "city": "Hull"}, {"name": "Eve", "city": "Ely"}, {"name": "Fay", "city": "Rye"}
    ]);
    std::fs::write(folder.join("a.gold.json"), six.to_string()).unwrap();
    std::fs::write(
        folder.join("b.md"),
        "**Ida** lives in Hove.\n\n- Jo lives in Bude.",
    )
    .unwrap();
    // One expected city is wrong: a miss the report must show.
    std::fs::write(
        folder.join("b.gold.json"),
        json!([{"name": "Ida", "city": "Hove"}, {"name": "Jo", "city": "Truro"}]).to_string(),
    )
    .unwrap();
    let server = ScriptedServer::start().await;
    server.fallback(reader);
    let report = scratch.path("report.json");
    let out = run(scratch.command(
        &server,
        &[
            "eval",
            "people",
            folder.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    ))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["examples"], 2, "{report}");
    assert_eq!(report["exact"], 1, "{report}");
    assert!(
        report["failures"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let misses = report["misses"].as_array().unwrap();
    assert!(
        misses
            .iter()
            .any(|m| m["id"] == "b" && m.to_string().contains("Truro")),
        "{report}"
    );

    // A JSONL gold naming the same files.
    let lines = [
        json!({"id": "pdf", "file": "a.pdf", "expected": six}),
        json!({"id": "md", "file": "b.md", "expected": [{"name": "Ida", "city": "Hove"}, {"name": "Jo", "city": "Bude"}]}),
    ];
    let gold = folder.join("set.jsonl");
    std::fs::write(
        &gold,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let out = run(scratch.command(
        &server,
        &["eval", "people", gold.to_str().unwrap(), "--min-score", "1"],
    ))
    .await;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A gold with no document beside it is named.
    std::fs::write(folder.join("c.gold.json"), "[]").unwrap();
    let out = run(scratch.command(&server, &["eval", "people", folder.to_str().unwrap()])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("c.gold.json: no document"), "{stderr}");
}

/// One ExtractBench resume (7 pages, a PDF with a text layer) on the real embedded model:
/// read, chunked to the model's context, extracted and merged into output valid against the
/// benchmark's own schema.
#[test]
fn an_extractbench_resume_on_the_embedded_model_fits_its_schema() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/extractbench");
    let schema = data.join("resume-schema.json");
    let out = sift()
        .args(["extract", "--schema"])
        .arg(&schema)
        .arg("--file")
        .arg(data.join("Resume-Academic01.pdf"))
        .arg("--spans")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["document"]["kind"], "pdf");
    assert_eq!(answer["document"]["pages"], 7);
    let chunks = answer["document"]["chunks"].as_array().unwrap();
    assert!(
        chunks.len() > 1,
        "7 pages do not fit the embedded model's context in one chunk"
    );
    // Valid against the schema inside ExtractBench's wrapper, checked here on its own.
    let wrapped: Value = serde_json::from_str(&std::fs::read_to_string(&schema).unwrap()).unwrap();
    let compiled =
        sift_core::Schema::compile("resume", wrapped["schema_definition"].clone()).unwrap();
    let errors = compiled.errors(&answer["value"]);
    assert!(errors.is_empty(), "{errors:?}: {}", answer["value"]);
    // Every span reads back a grounded value from the document's text, on a real page.
    let text: Vec<char> = answer["text"].as_str().unwrap().chars().collect();
    let spans = answer["spans"].as_object().unwrap();
    assert!(!spans.is_empty(), "{answer}");
    for (pointer, found) in spans {
        for span in found.as_array().unwrap() {
            let (start, end) = (
                span["start"].as_u64().unwrap() as usize,
                span["end"].as_u64().unwrap() as usize,
            );
            assert!(start < end && end <= text.len(), "{pointer}: {span}");
            let page = span["page"].as_u64().unwrap();
            assert!((1..=7).contains(&page), "{pointer}: {span}");
        }
    }
}
