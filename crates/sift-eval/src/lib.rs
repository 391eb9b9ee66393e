//! `sift eval`: an extractor run over labelled examples and scored field by field.
//!
//! A gold file is JSONL: each line an object with an `id`, the extractor's input fields and
//! the `expected` value. Every example is extracted as the service would (same prompt, same
//! validation and re-asks), at most `concurrency` at once, and compared with what was
//! expected ([`score`]): per-field precision, recall and F1, exact match per example, and
//! every miss ([`Report`]).

pub mod html;
pub mod report;
pub mod score;

use std::path::Path;

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

/// Reads a gold file: every problem with its line, all at once.
pub fn read_gold(path: &Path, extractor: &ExtractorSpec) -> Result<Vec<Example>, EvalError> {
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
        let input = Value::Object(object);
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
        });
    }
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
                let got = match extractor.messages(&example.input) {
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
