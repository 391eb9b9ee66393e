//! Extracting a document: its text split into chunks ([`crate::chunk`]), each chunk
//! extracted (several at once) by a caller-given function that runs one ordinary
//! extraction, and the answers merged ([`crate::merge`]) as they complete in document order.
//!
//! A document that fits one chunk is one ordinary extraction of the schema as written. A
//! longer one is extracted chunk by chunk: the first against the schema as written (the
//! beginning is where required facts usually are), the others against the schema with its
//! objects' `required` and arrays' `minItems` relaxed down from the root (a chunk need not
//! hold every field: the parties of a contract are on its first page), and the merged value
//! is validated against the schema as written. A first chunk whose answer to the schema as
//! written fails (cut off by the token limit, invalid after the re-asks: a long schema asked
//! of a small model) is asked again for the relaxed schema, which lets it leave out what it
//! cannot fill. A chunk the model cannot take whole (input too long) is split in two and
//! retried, at most three times over. A chunk that fails is reported, never dropped silently;
//! the others are still merged.

use std::future::Future;
use std::pin::Pin;

use futures::stream::{self, Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use sift_core::grounding::Spans;
use sift_core::{Attempt, ExtractError, Extraction, FieldError, ProviderError, Schema, Usage};

use crate::Document;
use crate::chunk::{Chunk, split};
use crate::merge::{Conflict, Part, merge};

/// How a document is split and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The most characters of text in one chunk.
    pub chunk_chars: usize,
    /// Characters consecutive chunks share.
    pub overlap_chars: usize,
    /// Chunks extracted at once.
    pub concurrency: usize,
}

/// Characters per token assumed when sizing chunks from a token budget: English prose
/// averages about four; tables, numbers and code fewer, so three keeps a chunk inside the
/// budget on most documents (one that is not is split again, see the module's doc).
pub const CHARS_PER_TOKEN: usize = 3;

impl Plan {
    /// Chunks of about `tokens` tokens of text (with a tenth of that shared between
    /// neighbours), `concurrency` at once.
    pub fn for_tokens(tokens: usize, concurrency: usize) -> Self {
        let chunk_chars = tokens.max(8) * CHARS_PER_TOKEN;
        Self {
            chunk_chars,
            overlap_chars: chunk_chars / 10,
            concurrency: concurrency.max(1),
        }
    }
}

/// A chunk's extraction running.
pub type ChunkFuture =
    Pin<Box<dyn Future<Output = Result<Extraction<Value>, ExtractError>> + Send>>;

/// One chunk's extraction, as the caller runs it: the input (the document's field set to
/// the chunk's text) and the schema to extract.
#[derive(Debug, Clone)]
pub struct ChunkCall {
    /// The chunk.
    pub chunk: Chunk,
    /// The extractor's input with the chunk's text in the document's field.
    pub input: Value,
    /// The schema this chunk is extracted against.
    pub schema: Schema,
}

/// A chunk whose extraction failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkFailure {
    /// The chunk's index.
    pub chunk: usize,
    /// Where it starts in the document (characters).
    pub start: usize,
    /// Where it ends.
    pub end: usize,
    /// Its first and last page.
    pub pages: [usize; 2],
    /// What failed (`retries_exhausted`, `ungrounded`, `provider_error`, ...).
    pub kind: String,
    /// The error.
    pub message: String,
}

/// Where a chunk was, for the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkInfo {
    /// Its index.
    pub chunk: usize,
    /// Where it starts in the document (characters).
    pub start: usize,
    /// Where it ends.
    pub end: usize,
    /// Its first and last page.
    pub pages: [usize; 2],
}

/// A document's extraction.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentExtraction {
    /// The merged value, valid against the schema.
    pub value: Value,
    /// Where each grounded value was found, in document offsets (with the page, for a PDF).
    pub spans: Spans,
    /// Fields where chunks grounded different values.
    pub conflicts: Vec<Conflict>,
    /// The chunks read.
    pub chunks: Vec<ChunkInfo>,
    /// The chunks whose extraction failed.
    pub failed: Vec<ChunkFailure>,
    /// Tokens used by every chunk's every attempt.
    #[serde(skip)]
    pub usage: Usage,
    /// Every chunk's attempts, in chunk order.
    #[serde(skip)]
    pub attempts: Vec<Attempt>,
}

/// What was read of a document, for an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentInfo {
    /// `pdf`, `html`, `markdown` or `text`.
    pub kind: crate::Kind,
    /// Its pages (1 for anything but a PDF).
    pub pages: usize,
    /// Its text's length in characters.
    pub chars: usize,
    /// The chunks it was split into.
    pub chunks: Vec<ChunkInfo>,
    /// What could not be read (a PDF page), named.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl DocumentInfo {
    /// What was read of `document`, split into `chunks`.
    pub fn of(document: &Document, chunks: Vec<ChunkInfo>) -> Self {
        Self {
            kind: document.kind,
            pages: document.page_count(),
            chars: document.chars(),
            chunks,
            warnings: document.warnings.clone(),
        }
    }
}

/// A document's answer, as the service sends it and `sift extract --file` prints it:
/// `{"value", "document", "conflicts", "failed_chunks"}`, and with spans asked for, the
/// spans in document offsets and the text they index.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The merged value, valid against the output schema.
    pub value: Value,
    /// The document read.
    pub document: DocumentInfo,
    /// Fields where chunks grounded different values (the first taken).
    pub conflicts: Vec<Conflict>,
    /// Chunks whose extraction failed (the value merges the others).
    pub failed_chunks: Vec<ChunkFailure>,
    /// Where each grounded value was found, in document offsets (when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans: Option<Spans>,
    /// The document's text, which the spans index (when spans are asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl DocumentExtraction {
    /// The answer for `document` (read into this extraction), with spans and text when
    /// `spans`.
    pub fn answer(self, document: &Document, spans: bool) -> Answer {
        Answer {
            value: self.value,
            document: DocumentInfo::of(document, self.chunks),
            conflicts: self.conflicts,
            failed_chunks: self.failed,
            spans: spans.then_some(self.spans),
            text: spans.then(|| document.text.clone()),
        }
    }
}

/// Why a document's extraction failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The document was one chunk and its extraction failed: the error as any extraction's.
    #[error(transparent)]
    Extraction(ExtractError),
    /// Every chunk failed.
    #[error("every chunk of the document failed ({} chunks); the first: {}", failed.len(), failed.first().map(|f| f.message.as_str()).unwrap_or_default())]
    AllChunksFailed {
        /// Each chunk's failure.
        failed: Vec<ChunkFailure>,
        /// Tokens spent.
        usage: Usage,
        /// Every attempt.
        attempts: Vec<Attempt>,
    },
    /// The chunks' merged answers do not fit the schema (a required field found in no
    /// chunk, say).
    #[error("the document's merged answer does not fit the schema: {}", .0.errors.iter().map(|e| if e.path.is_empty() { e.message.clone() } else { format!("{}: {}", e.path, e.message) }).collect::<Vec<_>>().join("; "))]
    Invalid(Box<InvalidDocument>),
}

/// A merged answer that does not fit the schema.
#[derive(Debug)]
pub struct InvalidDocument {
    /// What is wrong.
    pub errors: Vec<FieldError>,
    /// The merged value.
    pub value: Value,
    /// The chunks that failed.
    pub failed: Vec<ChunkFailure>,
    /// Tokens spent.
    pub usage: Usage,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
}

impl DocumentError {
    /// A short name for the failure: the extraction's kind, `all_chunks_failed`, or
    /// `document_invalid`.
    pub fn kind(&self) -> &'static str {
        match self {
            DocumentError::Extraction(e) => e.kind(),
            DocumentError::AllChunksFailed { .. } => "all_chunks_failed",
            DocumentError::Invalid(_) => "document_invalid",
        }
    }

    /// Tokens spent.
    pub fn usage(&self) -> Usage {
        match self {
            DocumentError::Extraction(e) => e.usage(),
            DocumentError::AllChunksFailed { usage, .. } => *usage,
            DocumentError::Invalid(invalid) => invalid.usage,
        }
    }

    /// The attempts made.
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            DocumentError::Extraction(e) => e.attempts(),
            DocumentError::AllChunksFailed { attempts, .. } => attempts,
            DocumentError::Invalid(invalid) => &invalid.attempts,
        }
    }
}

/// What a document's extraction reports as it goes.
#[derive(Debug)]
#[non_exhaustive]
pub enum DocumentEvent {
    /// An element of the merged list (an array schema), once every chunk before its own is
    /// done, in document order.
    Element(Value),
    /// The merged object so far (an object schema), after each chunk in document order.
    Snapshot(Value),
    /// A chunk failed (the rest go on).
    ChunkFailed(ChunkFailure),
    /// The end: the merged, validated value, or why there is none.
    Done(Box<Result<DocumentExtraction, DocumentError>>),
}

/// A document to extract.
#[derive(Debug, Clone)]
pub struct DocumentRun {
    /// The document.
    pub document: std::sync::Arc<Document>,
    /// The input field its text goes into.
    pub field: String,
    /// The rest of the input (an object; the field is set on it per chunk).
    pub input: Value,
    /// The output schema.
    pub schema: Schema,
    /// How it is split and run.
    pub plan: Plan,
}

/// Times a chunk too long for the model is split again.
const MAX_SPLITS: u32 = 3;

type ChunkResult = (Chunk, Result<Extraction<Value>, ExtractError>);

impl DocumentRun {
    /// The chunks the document is split into.
    pub fn chunks(&self) -> Vec<Chunk> {
        split(
            &self.document.text,
            self.plan.chunk_chars,
            self.plan.overlap_chars,
        )
    }

    /// Runs the extraction, `extract` running each chunk's, and returns the merged value.
    pub async fn run<F, Fut>(self, extract: F) -> Result<DocumentExtraction, DocumentError>
    where
        F: Fn(ChunkCall) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<Extraction<Value>, ExtractError>> + Send + 'static,
    {
        let mut events = std::pin::pin!(self.events(extract));
        while let Some(event) = events.next().await {
            if let DocumentEvent::Done(done) = event {
                return *done;
            }
        }
        unreachable_done()
    }

    /// Runs the extraction as a stream of [`DocumentEvent`]s, ending with `Done`.
    pub fn events<F, Fut>(self, extract: F) -> impl Stream<Item = DocumentEvent> + Send
    where
        F: Fn(ChunkCall) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<Extraction<Value>, ExtractError>> + Send + 'static,
    {
        let chunks = self.chunks();
        let whole = chunks.len() == 1;
        let schema = if whole {
            Ok(self.schema.clone())
        } else {
            Schema::compile(self.schema.name(), relax(self.schema.value().clone(), 0))
        };
        let this = std::sync::Arc::new(self);
        async_stream_events(this, chunks, schema, whole, extract)
    }

    fn call(&self, chunk: &Chunk, schema: &Schema) -> ChunkCall {
        let mut input = self.input.clone();
        if let Some(object) = input.as_object_mut() {
            object.insert(self.field.clone(), Value::String(chunk.text.clone()));
        }
        ChunkCall {
            chunk: chunk.clone(),
            input,
            schema: schema.clone(),
        }
    }

    fn pages(&self, chunk: &Chunk) -> [usize; 2] {
        [
            self.document.page_of(chunk.start),
            self.document
                .page_of(chunk.end.saturating_sub(1).max(chunk.start)),
        ]
    }

    /// A chunk's spans shifted to document offsets, with their pages.
    fn shift(&self, chunk: &Chunk, spans: Option<Spans>) -> Spans {
        let mut spans = spans.unwrap_or_default();
        for list in spans.values_mut() {
            for s in list.iter_mut() {
                if s.field == self.field {
                    s.start += chunk.start;
                    s.end += chunk.start;
                    if self.document.kind == crate::Kind::Pdf {
                        s.page = Some(self.document.page_of(s.start));
                    }
                }
            }
        }
        spans
    }

    fn failure(&self, chunk: &Chunk, error: &ExtractError) -> ChunkFailure {
        let mut message = error.to_string();
        if let ExtractError::Provider { source, .. } = error {
            message = format!("{message}: {source}");
        }
        ChunkFailure {
            chunk: chunk.index,
            start: chunk.start,
            end: chunk.end,
            pages: self.pages(chunk),
            kind: error.kind().to_owned(),
            message,
        }
    }
}

/// Whether `error` is the model's answer failing (cut off, invalid or ungrounded after the
/// re-asks), which a laxer schema may mend; not a provider's failure or a schema's.
fn answer_failed(error: &ExtractError) -> bool {
    matches!(
        error,
        ExtractError::TokenLimit { .. }
            | ExtractError::RetriesExhausted { .. }
            | ExtractError::Ungrounded { .. }
            | ExtractError::Incomplete { .. }
    )
}

fn unreachable_done() -> Result<DocumentExtraction, DocumentError> {
    Err(DocumentError::AllChunksFailed {
        failed: Vec::new(),
        usage: Usage::default(),
        attempts: Vec::new(),
    })
}

/// Runs one chunk; a chunk too long for the model is split in two and each half run, up to
/// [`MAX_SPLITS`] times over. The results come back in document order. With a `fallback`
/// schema (the first chunk's, relaxed), an answer that fails against `schema` is asked again
/// for the fallback: a success then carries the failed attempts too; a second failure is
/// reported beside the first.
fn run_chunk<F, Fut>(
    run: std::sync::Arc<DocumentRun>,
    chunk: Chunk,
    schema: Schema,
    fallback: Option<Schema>,
    extract: F,
    depth: u32,
) -> Pin<Box<dyn Future<Output = Vec<ChunkResult>> + Send>>
where
    F: Fn(ChunkCall) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Extraction<Value>, ExtractError>> + Send + 'static,
{
    Box::pin(async move {
        let result = extract(run.call(&chunk, &schema)).await;
        let too_long = matches!(
            result.as_ref().err().and_then(ExtractError::provider_error),
            Some(ProviderError::InputTooLong(_))
        );
        let length = chunk.end - chunk.start;
        if !too_long || depth >= MAX_SPLITS || length < 64 {
            return match (result, fallback) {
                (Err(first), Some(relaxed)) if answer_failed(&first) => {
                    match extract(run.call(&chunk, &relaxed)).await {
                        Ok(mut out) => {
                            out.usage += first.usage();
                            let mut attempts = first.attempts().to_vec();
                            attempts.append(&mut out.attempts);
                            out.attempts = attempts;
                            vec![(chunk, Ok(out))]
                        }
                        Err(second) => vec![(chunk.clone(), Err(first)), (chunk, Err(second))],
                    }
                }
                (result, _) => vec![(chunk, result)],
            };
        }
        let halves = split(&chunk.text, length / 2 + length / 20, length / 20);
        let mut out = Vec::new();
        for mut half in halves {
            half.start += chunk.start;
            half.end += chunk.start;
            half.index = chunk.index;
            out.extend(
                run_chunk(
                    run.clone(),
                    half,
                    schema.clone(),
                    fallback.clone(),
                    extract.clone(),
                    depth + 1,
                )
                .await,
            );
        }
        out
    })
}

fn async_stream_events<F, Fut>(
    run: std::sync::Arc<DocumentRun>,
    chunks: Vec<Chunk>,
    schema: Result<Schema, sift_core::SchemaError>,
    whole: bool,
    extract: F,
) -> impl Stream<Item = DocumentEvent> + Send
where
    F: Fn(ChunkCall) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Extraction<Value>, ExtractError>> + Send + 'static,
{
    let is_array = run.schema.is_array();
    let infos: Vec<ChunkInfo> = chunks
        .iter()
        .map(|c| ChunkInfo {
            chunk: c.index,
            start: c.start,
            end: c.end,
            pages: run.pages(c),
        })
        .collect();
    let schema = match schema {
        Ok(schema) => schema,
        Err(e) => {
            let done = Err(DocumentError::Extraction(ExtractError::Schema(e)));
            return stream::iter(vec![DocumentEvent::Done(Box::new(done))]).left_stream();
        }
    };
    let concurrency = run.plan.concurrency.max(1);
    let results = stream::iter(chunks)
        .map({
            let run = run.clone();
            // The first chunk is asked for the schema as written: a document's beginning is
            // where its required facts usually are (a resume's name, a contract's parties), and
            // a model told they may be left out leaves them out (the embedded model answered
            // `{}` for every chunk of a resume). The others may leave out what they lack, and
            // so may the first when its answer to the whole schema fails.
            let full = run.schema.clone();
            move |chunk: Chunk| {
                let fallback = (chunk.index == 0 && !whole).then(|| schema.clone());
                let schema = if chunk.index == 0 {
                    full.clone()
                } else {
                    schema.clone()
                };
                run_chunk(run.clone(), chunk, schema, fallback, extract.clone(), 0)
            }
        })
        .buffered(concurrency);
    let state = Merging {
        run,
        whole,
        is_array,
        infos,
        parts: Vec::new(),
        failed: Vec::new(),
        usage: Usage::default(),
        attempts: Vec::new(),
        emitted: 0,
        previous_end: 0,
        whole_error: None,
    };
    stream::unfold(
        (Box::pin(results), Some(state), Vec::<DocumentEvent>::new()),
        |(mut results, mut state, mut pending)| async move {
            loop {
                if let Some(event) = pending.pop() {
                    return Some((event, (results, state, pending)));
                }
                let merging = state.as_mut()?;
                match results.next().await {
                    Some(batch) => {
                        let mut events = merging.take(batch);
                        events.reverse();
                        pending = events;
                    }
                    None => {
                        let done = state.take().map(Merging::finish)?;
                        return Some((
                            DocumentEvent::Done(Box::new(done)),
                            (results, None, pending),
                        ));
                    }
                }
            }
        },
    )
    .right_stream()
}

/// The merge as chunks complete, in document order.
struct Merging {
    run: std::sync::Arc<DocumentRun>,
    whole: bool,
    is_array: bool,
    infos: Vec<ChunkInfo>,
    parts: Vec<Part>,
    failed: Vec<ChunkFailure>,
    usage: Usage,
    attempts: Vec<Attempt>,
    /// Elements of the merged list already reported.
    emitted: usize,
    previous_end: usize,
    /// The one chunk's error, for a document read whole.
    whole_error: Option<ExtractError>,
}

impl Merging {
    /// Takes one chunk's results (several when it was split), reporting what is new.
    fn take(&mut self, batch: Vec<ChunkResult>) -> Vec<DocumentEvent> {
        let mut events = Vec::new();
        for (chunk, result) in batch {
            match result {
                Ok(out) => {
                    self.usage += out.usage;
                    self.attempts.extend(out.attempts);
                    self.parts.push(Part {
                        chunk: self.parts.len(),
                        start: chunk.start,
                        previous_end: self.previous_end,
                        value: out.value,
                        spans: self.run.shift(&chunk, out.spans),
                    });
                }
                Err(e) => {
                    self.usage += e.usage();
                    self.attempts.extend(e.attempts().iter().cloned());
                    let failure = self.run.failure(&chunk, &e);
                    events.push(DocumentEvent::ChunkFailed(failure.clone()));
                    self.failed.push(failure);
                    if self.whole {
                        self.whole_error = Some(e);
                    }
                }
            }
            self.previous_end = chunk.end;
        }
        if self.whole || self.parts.is_empty() {
            return events;
        }
        let merged = merge(&self.parts).value;
        if self.is_array {
            let elements = merged.as_array().map(Vec::as_slice).unwrap_or_default();
            for element in elements.iter().skip(self.emitted) {
                events.push(DocumentEvent::Element(element.clone()));
            }
            self.emitted = elements.len().max(self.emitted);
        } else {
            events.push(DocumentEvent::Snapshot(merged));
        }
        events
    }

    fn finish(self) -> Result<DocumentExtraction, DocumentError> {
        if let Some(e) = self.whole_error {
            return Err(DocumentError::Extraction(e));
        }
        if self.parts.is_empty() {
            return Err(DocumentError::AllChunksFailed {
                failed: self.failed,
                usage: self.usage,
                attempts: self.attempts,
            });
        }
        let merged = merge(&self.parts);
        let errors = self.run.schema.errors(&merged.value);
        if !errors.is_empty() {
            return Err(DocumentError::Invalid(Box::new(InvalidDocument {
                errors,
                value: merged.value,
                failed: self.failed,
                usage: self.usage,
                attempts: self.attempts,
            })));
        }
        Ok(DocumentExtraction {
            value: merged.value,
            spans: merged.spans,
            conflicts: merged.conflicts,
            chunks: self.infos,
            failed: self.failed,
            usage: self.usage,
            attempts: self.attempts,
        })
    }
}

/// `schema` with `required` and `minItems` dropped from the root down through objects'
/// properties and `anyOf`/`oneOf`/`allOf` branches (a chunk need not hold every field); an
/// array's elements, read whole from one chunk, keep their rules, and `$defs` are left as they
/// are, so elements referred to keep their rules.
fn relax(mut schema: Value, depth: usize) -> Value {
    if depth > 32 {
        return schema;
    }
    if let Some(object) = schema.as_object_mut() {
        object.remove("required");
        object.remove("minItems");
        object.remove("minProperties");
        if let Some(Value::Object(properties)) = object.get_mut("properties") {
            for (_, sub) in properties.iter_mut() {
                *sub = relax(sub.take(), depth + 1);
            }
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(subs)) = object.get_mut(key) {
                for sub in subs.iter_mut() {
                    *sub = relax(sub.take(), depth + 1);
                }
            }
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::relax;
    use serde_json::json;

    #[test]
    fn relaxing_drops_required_down_the_object_path() {
        let schema = json!({
            "type": "object", "required": ["title", "authors"],
            "properties": {
                "title": {"type": "string"},
                "authors": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
                "venue": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
            }
        });
        let relaxed = relax(schema, 0);
        assert!(relaxed.get("required").is_none());
        assert!(relaxed["properties"]["authors"].get("minItems").is_none());
        // An element is read whole from one chunk: its own rules stay.
        assert_eq!(
            relaxed["properties"]["authors"]["items"]["required"],
            json!(["name"])
        );
        assert!(relaxed["properties"]["venue"].get("required").is_none());
    }
}
