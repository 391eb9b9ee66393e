//! `sift extract NAME --file F`: a document (PDF, HTML, Markdown, text) read, split into
//! chunks, extracted and merged as the service does (`ExtractorSpec::document_run`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use futures::StreamExt;
use serde_json::Value;
use sift_config::ExtractorSpec;
use sift_core::Client;
use sift_core::trace::Recording;
use sift_documents::extract::{DocumentError, DocumentEvent};
use sift_documents::{Document, Limits};

use crate::extract::{EXIT_INPUT, EXIT_INVALID, EXIT_PROVIDER, Failed};

/// Chunks extracted at once from the command line on a remote model (the embedded model
/// takes half its parallel generations).
const CONCURRENCY: usize = 4;

/// How to print a document's extraction.
pub(crate) struct Printing {
    /// Print `{"value", "document", "conflicts", "failed_chunks", "spans", "text"}`.
    pub(crate) spans: bool,
    /// Print elements or snapshots as chunks complete.
    pub(crate) stream: bool,
    /// Show every attempt on stderr.
    pub(crate) verbose: bool,
}

/// Reads `path` as a document, refusing what cannot be read with the reason.
pub(crate) fn read(path: &Path) -> Result<Document, Failed> {
    sift_documents::read_path(path, &Limits::default())
        .with_context(|| format!("could not read {}", path.display()))
        .map_err(Failed::from)
}

/// The input for a document: no other fields, checked with the first chunk's text in the
/// document field, and the prompt rendered once.
fn input_for(spec: &ExtractorSpec, client: &Client, document: &Document) -> Result<Value, Failed> {
    let input = Value::Object(serde_json::Map::new());
    let probe = spec.first_chunk_input(client, &input, document)?;
    let errors = spec.input.errors(&probe);
    if let Some(e) = errors.first() {
        return Err(anyhow::anyhow!(
            "extractor `{}` needs more than a document's text: {}{}",
            spec.name,
            if e.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.path)
            },
            e.message
        )
        .into());
    }
    spec.messages(&probe)?;
    Ok(input)
}

/// Extracts `document` with `spec`, printing as `how` says.
pub(crate) async fn extract(
    spec: &ExtractorSpec,
    client: &Client,
    document: Document,
    how: Printing,
) -> Result<(), Failed> {
    let input = input_for(spec, client, &document)?;
    let document = Arc::new(document);
    let recording = client.recording().clone();
    let mut stdout = std::io::stdout().lock();
    if !how.stream {
        let out = spec
            .extract_document(client, document.clone(), input, CONCURRENCY)
            .await?
            .map_err(|e| failed(e, &recording))?;
        if how.verbose {
            crate::extract::show_attempts(&out.attempts);
        }
        warn(&out.conflicts, &out.failed);
        let answer = out.answer(&document, how.spans);
        let shown = if how.spans {
            serde_json::to_value(&answer).map_err(anyhow::Error::from)?
        } else {
            answer.value
        };
        return crate::extract::line(&mut stdout, &shown).map_err(Failed::from);
    }
    let mut events =
        Box::pin(spec.document_events(client, document.clone(), input, CONCURRENCY)?);
    while let Some(event) = events.next().await {
        match event {
            DocumentEvent::Element(v) | DocumentEvent::Snapshot(v) => {
                crate::extract::line(&mut stdout, &v)?;
            }
            DocumentEvent::ChunkFailed(f) => eprintln!(
                "chunk {} (pages {}-{}) failed, left out: {}",
                f.chunk,
                f.pages[0],
                f.pages[1],
                recording.scrub(f.message)
            ),
            DocumentEvent::Done(done) => {
                let out = (*done).map_err(|e| failed(e, &recording))?;
                if how.verbose {
                    crate::extract::show_attempts(&out.attempts);
                }
                warn(&out.conflicts, &[]);
                if !spec.output.is_array() {
                    crate::extract::line(&mut stdout, &out.value)?;
                }
            }
            _ => {}
        }
    }
    stdout.flush().context("could not write to stdout")?;
    Ok(())
}

/// Conflicts and failed chunks, named on stderr (never dropped unsaid).
fn warn(conflicts: &[sift_documents::Conflict], failed: &[sift_documents::ChunkFailure]) {
    for c in conflicts {
        let values: Vec<String> = c
            .candidates
            .iter()
            .map(|x| format!("{} (chunk {})", x.value, x.chunk))
            .collect();
        eprintln!(
            "chunks disagree on {}: {}; the first is taken",
            c.pointer,
            values.join(", ")
        );
    }
    for f in failed {
        eprintln!(
            "chunk {} (pages {}-{}) failed, left out: {} ({})",
            f.chunk, f.pages[0], f.pages[1], f.message, f.kind
        );
    }
}

/// A failed document, with the exit code of its kind.
fn failed(e: DocumentError, recording: &Recording) -> Failed {
    match e {
        DocumentError::Extraction(e) => crate::extract::failed(e, recording),
        other => {
            crate::extract::show_attempts(other.attempts());
            let code = match &other {
                DocumentError::AllChunksFailed { failed, .. }
                    if failed.iter().all(|f| f.kind == "provider_error") =>
                {
                    EXIT_PROVIDER
                }
                DocumentError::AllChunksFailed { .. } | DocumentError::Invalid(_) => EXIT_INVALID,
                _ => EXIT_INPUT,
            };
            if let DocumentError::AllChunksFailed { failed, .. } = &other {
                warn(&[], failed);
            }
            Failed {
                code,
                error: anyhow::anyhow!("{} ({})", recording.scrub(other.to_string()), other.kind()),
            }
        }
    }
}
