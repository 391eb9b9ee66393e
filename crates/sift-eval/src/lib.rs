//! `sift eval`: an extractor run over labelled examples and scored field by field.
//!
//! A gold file is JSONL: each line an object with an `id`, the extractor's input fields and
//! the `expected` value, or a `file` (a document, relative to the gold file's folder) in
//! place of the input. A folder of documents with their gold (`X.pdf` and `X.gold.json`,
//! ExtractBench's layout) is read as a gold set too. Documents are read, split, extracted
//! and merged as the service does. Every example is extracted as the service would (same prompt, same
//! validation and re-asks), at most `concurrency` at once, and compared with what was
//! expected ([`score`]): per-field precision, recall and F1, exact match per example, and
//! every miss ([`Report`]).

pub mod html;
pub mod report;
pub mod score;

use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde_json::{Map, Value};
use sift_config::ExtractorSpec;
use sift_core::report::ExtractionFailure;
use sift_core::{Client, ExtractError};

pub use report::{FieldScore, Miss, Report};
pub use score::{Rules, Verdict, compare};

/// One labelled example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Its id (the line number when the line has none).
    pub id: String,
    /// The extractor's input.
    pub input: Value,
    /// The value expected.
    pub expected: Value,
    /// A document whose text is the input (PDF, HTML, Markdown or text).
    pub document: Option<PathBuf>,
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The gold file could not be read (missing, not a regular file, too large, not text).
    #[error(transparent)]
    File(#[from] sift_core::files::FileError),
    /// A line of the gold file is not an example, or does not fit the extractor.
    #[error("{0}")]
    Gold(String),
}

/// Reads a gold file (or a folder of documents with their gold): every problem with its
/// line (or file), all at once.
pub fn read_gold(path: &Path, extractor: &ExtractorSpec) -> Result<Vec<Example>, EvalError> {
    if path.is_dir() {
        return read_gold_folder(path, extractor);
    }
    let text = sift_core::files::read_text(path, sift_core::files::MAX_DATA_FILE)?;
    let mut examples = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut object: Map<String, Value> = match serde_json::from_str(line) {
            Ok(o) => o,
            Err(e) => {
                problems.push(format!("line {n}: not a JSON object: {e}"));
                continue;
            }
        };
        let id = match object.remove("id") {
            None => n.to_string(),
            Some(Value::String(s)) => s,
            Some(Value::Number(x)) => x.to_string(),
            Some(_) => {
                problems.push(format!("line {n}: `id` must be a string or a number"));
                continue;
            }
        };
        let Some(expected) = object.remove("expected") else {
            problems.push(format!("line {n}: no `expected` value"));
            continue;
        };
        let document = match object.remove("file") {
            None => None,
            Some(Value::String(f)) => {
                let file = path.parent().unwrap_or(Path::new(".")).join(&f);
                if !file.is_file() {
                    problems.push(format!(
                        "line {n}: `file` {f} is not a file (relative to the gold file's folder)"
                    ));
                    continue;
                }
                Some(file)
            }
            Some(_) => {
                problems.push(format!("line {n}: `file` must be a path"));
                continue;
            }
        };
        let input = Value::Object(object);
        if document.is_some() {
            if let Err(e) = extractor.document_field() {
                problems.push(format!("line {n}: {e}"));
                continue;
            }
            if let Some(errors) = check_expected(extractor, &expected) {
                problems.push(format!("line {n}: {errors}"));
                continue;
            }
            examples.push(Example {
                id,
                input,
                expected,
                document,
            });
            continue;
        }
        let errors = extractor.input.errors(&input);
        if !errors.is_empty() {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            problems.push(format!(
                "line {n}: the input does not fit extractor `{}`: {}",
                extractor.name,
                list.join("; ")
            ));
            continue;
        }
        let errors = extractor.output.errors(&expected);
        if !errors.is_empty() {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            problems.push(format!(
                "line {n}: `expected` does not fit the output schema: {}",
                list.join("; ")
            ));
            continue;
        }
        examples.push(Example {
            id,
            input,
            expected,
            document: None,
        });
    }
    finish(path, examples, problems)
}

/// `expected`'s problems against the output schema, if any.
fn check_expected(extractor: &ExtractorSpec, expected: &Value) -> Option<String> {
    let errors = extractor.output.errors(expected);
    (!errors.is_empty()).then(|| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(
            "`expected` does not fit the output schema: {}",
            list.join("; ")
        )
    })
}

/// A folder of documents and their gold: each `X.gold.json` with a document `X.pdf` (or
/// `.html`, `.md`, `.txt`, ...) beside it. A gold without its document is a problem named by
/// file.
fn read_gold_folder(folder: &Path, extractor: &ExtractorSpec) -> Result<Vec<Example>, EvalError> {
    let io = |e: std::io::Error| EvalError::Gold(format!("{}: {e}", folder.display()));
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    if let Err(e) = extractor.document_field() {
        return Err(EvalError::Gold(e.to_string()));
    }
    let mut examples = Vec::new();
    let mut problems = Vec::new();
    for gold in entries
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".gold.json"))
    {
        let name = gold
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id = name.trim_end_matches(".gold.json").to_owned();
        let document = entries.iter().find(|p| {
            p.file_stem().is_some_and(|s| s.to_string_lossy() == id)
                && sift_documents::Kind::from_path(p).is_some()
        });
        let Some(document) = document else {
            problems.push(format!(
                "{name}: no document `{id}.pdf` (or .html, .md, .txt) beside it"
            ));
            continue;
        };
        let expected: Value =
            match sift_core::files::read_text(gold, sift_core::files::MAX_DATA_FILE)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("not JSON: {e}")))
            {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{name}: {e}"));
                    continue;
                }
            };
        // Not checked against the output schema: a published benchmark's gold need not fit
        // its own schema exactly (one of ExtractBench's resumes does not), and the scores show
        // any difference field by field.
        examples.push(Example {
            id,
            input: Value::Object(Map::new()),
            expected,
            document: Some(document.clone()),
        });
    }
    finish(folder, examples, problems)
}

fn finish(
    path: &Path,
    examples: Vec<Example>,
    problems: Vec<String>,
) -> Result<Vec<Example>, EvalError> {
    if problems.is_empty() && examples.is_empty() {
        // Scoring nothing would report a perfect score.
        Err(EvalError::Gold(format!(
            "{}: no examples (an empty gold set scores nothing)",
            path.display()
        )))
    } else if problems.is_empty() {
        Ok(examples)
    } else {
        Err(EvalError::Gold(format!(
            "{}: {} problem(s):\n  {}",
            path.display(),
            problems.len(),
            problems.join("\n  ")
        )))
    }
}

/// Extracts every example (at most `concurrency` at once) and scores them.
pub async fn evaluate(
    extractor: &ExtractorSpec,
    client: &Client,
    examples: &[Example],
    concurrency: usize,
) -> Report {
    let rules = Rules::new(extractor.eval.clone());
    let outcomes: Vec<report::Scored> = futures::stream::iter(examples.iter())
        .map(|example| {
            let rules = rules.clone();
            async move {
                // Of the answer's values that grounding checks: those found, those checked.
                let mut tally = (0, 0);
                let got = if let Some(path) = &example.document {
                    document(extractor, client, path, &example.input, &mut tally).await
                } else {
                    match extractor.messages(&example.input) {
                        Ok(messages) => {
                            let result = extractor
                                .request(client, &example.input, messages)
                                .send()
                                .await;
                            match result {
                                Ok(out) => {
                                    // The attempt loop grounded it: every checked value was found.
                                    let n = out.spans.as_ref().map_or(0, |s| s.len());
                                    tally = (n, n);
                                    Ok(out.value)
                                }
                                Err(e) => {
                                    // An answer that fitted the schema but not the text still
                                    // counts in the grounded share.
                                    if let ExtractError::Ungrounded { value, .. } = &e {
                                        let g = extractor
                                            .sources(&example.input)
                                            .ground(value, extractor.output.value());
                                        tally = (g.spans.len(), g.spans.len() + g.ungrounded.len());
                                    }
                                    let f = ExtractionFailure::from_error(&e, client.recording());
                                    Err((f.kind, f.message))
                                }
                            }
                        }
                        Err(e) => Err(("template".to_owned(), e.to_string())),
                    }
                };
                let (value, failure) = match got {
                    Ok(v) => (Some(v), None),
                    Err((kind, message)) => (
                        None,
                        Some(report::Failure {
                            id: example.id.clone(),
                            kind,
                            message,
                        }),
                    ),
                };
                report::Scored {
                    id: example.id.clone(),
                    leaves: compare(&example.expected, value.as_ref(), &rules),
                    failure,
                    grounded: tally.0,
                    checked: tally.1,
                }
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    Report::new(&extractor.name, client.model(), outcomes)
}

/// A document example: read (on the blocking pool), extracted and merged as the service
/// does; `tally` gets the merged value's grounded spans.
async fn document(
    extractor: &ExtractorSpec,
    client: &Client,
    path: &Path,
    input: &Value,
    tally: &mut (usize, usize),
) -> Result<Value, (String, String)> {
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        sift_documents::read_path(&owned, &sift_documents::Limits::default())
    })
    .await
    .map_err(|e| ("io".to_owned(), e.to_string()))?;
    let document = read.map_err(|e| (e.kind().to_owned(), e.to_string()))?;
    let out = extractor
        .extract_document(client, std::sync::Arc::new(document), input.clone(), 4)
        .await
        .map_err(|e| ("invalid_input".to_owned(), e.to_string()))?;
    match out {
        Ok(out) => {
            let n = out.spans.len();
            *tally = (n, n);
            Ok(out.value)
        }
        Err(e) => Err((e.kind().to_owned(), client.recording().scrub(e.to_string()))),
    }
}
