//! Documents for an extractor: which input field a document's text goes into, how it is
//! split (`[extractors.NAME.document]`), and the one way the service, `sift extract --file`,
//! `sift batch` over a folder and `sift eval` run a document through the extractor.

use std::sync::Arc;

use serde_json::Value;
use sift_core::Client;
use sift_documents::extract::{ChunkCall, ChunkFuture, DocumentError, DocumentEvent, DocumentRun};
use sift_documents::{Document, DocumentExtraction, Plan};

use crate::ExtractorSpec;
use crate::toml_walk::{Problems, Section};

/// `[extractors.NAME.document]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentSpec {
    /// The input field a document's text goes into (default: `text` when the input has it,
    /// else its only string field).
    pub field: Option<String>,
    /// Tokens of text per chunk (default: what fits the embedded model's context beside the
    /// prompt and the answer; [`REMOTE_CHUNK_TOKENS`] for remote models).
    pub chunk_tokens: Option<u32>,
    /// Tokens shared by neighbouring chunks (default a tenth of a chunk).
    pub overlap_tokens: Option<u32>,
}

/// Tokens of text per chunk for a remote model when the extractor sets none: well inside
/// every current model's window, and short enough that a model reads all of it closely.
pub const REMOTE_CHUNK_TOKENS: u32 = 8_000;

/// Tokens kept free beside the prompt and the answer in the embedded model's context (the
/// chat template's own tokens, and the estimate's error).
const CONTEXT_MARGIN: usize = 96;

/// Reads `[extractors.NAME.document]` from the extractor's section.
pub(crate) fn read(
    s: &mut Section<'_, '_>,
    path: &str,
    input: Option<&sift_core::Schema>,
    problems: &mut Problems,
) -> DocumentSpec {
    let mut spec = DocumentSpec::default();
    let Some(mut d) = s.table("document", problems) else {
        return spec;
    };
    if let Some(field) = d.string("field", problems) {
        let is_string = input.is_none_or(|i| {
            i.value()
                .pointer(&format!("/properties/{}/type", field.get_ref()))
                .and_then(Value::as_str)
                == Some("string")
        });
        if !is_string {
            problems.at(
                field.span(),
                format!(
                    "`{path}.document.field`: the input has no string field `{}`",
                    field.get_ref()
                ),
            );
        }
        spec.field = Some(field.into_inner());
    }
    spec.chunk_tokens = d.count("chunk_tokens", problems);
    spec.overlap_tokens = d.count("overlap_tokens", problems);
    if let (Some(c), Some(o)) = (spec.chunk_tokens, spec.overlap_tokens)
        && o * 2 > c
    {
        problems.push(
            Some(d.span.clone()),
            format!("`{path}.document.overlap_tokens` ({o}) must be at most half of `chunk_tokens` ({c})"),
        );
    }
    if spec.chunk_tokens == Some(0) {
        problems.push(
            Some(d.span.clone()),
            format!("`{path}.document.chunk_tokens` must be at least 1"),
        );
    }
    d.finish(problems);
    spec
}

/// Why a document cannot go through an extractor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "extractor `{extractor}` takes no documents: its input has no string field for the text (set `[extractors.{extractor}.document] field`)"
)]
pub struct NoDocumentField {
    /// The extractor.
    pub extractor: String,
}

impl ExtractorSpec {
    /// The input field a document's text goes into.
    pub fn document_field(&self) -> Result<String, NoDocumentField> {
        if let Some(field) = &self.document.field {
            return Ok(field.clone());
        }
        let properties = self
            .input
            .value()
            .get("properties")
            .and_then(Value::as_object);
        let strings: Vec<&String> = properties
            .into_iter()
            .flatten()
            .filter(|(_, p)| p.get("type").and_then(Value::as_str) == Some("string"))
            .map(|(k, _)| k)
            .collect();
        match strings.as_slice() {
            _ if strings.iter().any(|k| *k == "text") => Ok("text".into()),
            [only] => Ok((*only).clone()),
            _ => Err(NoDocumentField {
                extractor: self.name.clone(),
            }),
        }
    }

    /// How a document is split for `client`: chunks of the configured size, else what fits
    /// the embedded model's context beside this extractor's prompt, examples and answer, else
    /// [`REMOTE_CHUNK_TOKENS`]; `concurrency` chunks at once on a remote model, and on the
    /// embedded model half its parallel generations, so other requests always find a place.
    pub fn document_plan(&self, client: &Client, input: &Value, concurrency: usize) -> Plan {
        let window = client.provider().capabilities().window;
        let tokens = match (self.document.chunk_tokens, window) {
            (Some(t), _) => t as usize,
            (None, Some(w)) => {
                let context = w.context_tokens as usize;
                let answer = self.max_tokens.unwrap_or(w.answer_tokens) as usize;
                context
                    .saturating_sub(answer)
                    .saturating_sub(self.prompt_tokens(input))
                    .saturating_sub(CONTEXT_MARGIN)
                    .max(64)
            }
            (None, None) => REMOTE_CHUNK_TOKENS as usize,
        };
        let concurrency = match window {
            Some(w) => (w.parallel / 2).max(1),
            None => concurrency.max(1),
        };
        let mut plan = Plan::for_tokens(tokens, concurrency);
        if let Some(o) = self.document.overlap_tokens {
            plan.overlap_chars = o as usize * sift_documents::extract::CHARS_PER_TOKEN;
        }
        plan
    }

    /// An estimate of the tokens the prompt takes around a document's text: the system
    /// prompt, the template rendered with an empty text, and the examples.
    fn prompt_tokens(&self, input: &Value) -> usize {
        let field = self.document_field().unwrap_or_default();
        let mut empty = input.clone();
        if let Some(o) = empty.as_object_mut() {
            o.insert(field, Value::String(String::new()));
        }
        let rendered: usize = self
            .messages(&empty)
            .map(|m| {
                m.iter()
                    .map(|m| m.content.as_deref().unwrap_or_default().chars().count())
                    .sum()
            })
            .unwrap_or(0);
        let examples: usize = self
            .examples
            .iter()
            .map(|e| e.prompt.chars().count() + e.output.to_string().chars().count())
            .sum();
        (rendered + examples) / sift_documents::extract::CHARS_PER_TOKEN
    }

    /// `input` with the document's first chunk in the document field: the input the model is
    /// first asked with, which the service and the command line check (against the input
    /// schema, and by rendering the prompt) before anything runs.
    pub fn first_chunk_input(
        &self,
        client: &Client,
        input: &Value,
        document: &Document,
    ) -> Result<Value, NoDocumentField> {
        let field = self.document_field()?;
        let plan = self.document_plan(client, input, 1);
        let mut probe = input.clone();
        if let Some(o) = probe.as_object_mut() {
            let first: String = document.text.chars().take(plan.chunk_chars).collect();
            o.insert(field, Value::String(first));
        }
        Ok(probe)
    }

    /// The document's run through this extractor: its text in the document field of `input`
    /// (the other fields as given).
    pub fn document_run(
        &self,
        client: &Client,
        document: Arc<Document>,
        input: Value,
        concurrency: usize,
    ) -> Result<DocumentRun, NoDocumentField> {
        let field = self.document_field()?;
        let plan = self.document_plan(client, &input, concurrency);
        Ok(DocumentRun {
            document,
            field,
            input,
            schema: self.output.clone(),
            plan,
        })
    }

    /// Extracts one chunk: the prompt rendered for its input, the extractor's settings
    /// applied. What every caller of [`DocumentRun::run`] and [`DocumentRun::events`] runs.
    pub fn chunk_extractor(
        &self,
        client: &Client,
    ) -> impl Fn(ChunkCall) -> ChunkFuture + Send + Sync + Clone + 'static + use<> {
        let spec = Arc::new(self.clone());
        let client = client.clone();
        move |call: ChunkCall| {
            let spec = spec.clone();
            let client = client.clone();
            Box::pin(async move {
                // The template was rendered for the first chunk before the run began; a
                // chunk's text cannot make it fail where that one did not (the render's
                // bounds are far above a chunk), but if it did the text alone is asked.
                let messages = spec
                    .messages(&call.input)
                    .unwrap_or_else(|_| vec![sift_core::Message::user(call.chunk.text.clone())]);
                spec.request_as(&client, &call.schema, &call.input, messages)
                    .send()
                    .await
            })
        }
    }

    /// Runs `document` through this extractor (see [`document_run`](Self::document_run)).
    pub async fn extract_document(
        &self,
        client: &Client,
        document: Arc<Document>,
        input: Value,
        concurrency: usize,
    ) -> Result<Result<DocumentExtraction, DocumentError>, NoDocumentField> {
        let run = self.document_run(client, document, input, concurrency)?;
        Ok(run.run(self.chunk_extractor(client)).await)
    }

    /// The events of `document`'s run through this extractor (elements or snapshots as
    /// chunks complete, then the end).
    pub fn document_events(
        &self,
        client: &Client,
        document: Arc<Document>,
        input: Value,
        concurrency: usize,
    ) -> Result<impl futures::Stream<Item = DocumentEvent> + Send + use<>, NoDocumentField> {
        let run = self.document_run(client, document, input, concurrency)?;
        Ok(run.events(self.chunk_extractor(client)))
    }
}
