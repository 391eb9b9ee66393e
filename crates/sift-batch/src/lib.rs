//! `sift batch`: an extractor over every item of a JSONL file or a folder, the results
//! appended to a JSONL output as they complete.
//!
//! - **Resumable.** Each item is one line of the output, written whole and flushed as it
//!   completes; a rerun skips the ids already there (a torn last line from a crash is dropped
//!   and done again), so nothing is done twice and nothing is lost.
//! - **Paced.** At most `concurrency` items in flight; requests and tokens per minute through
//!   a [`Limiter`] the provider consults before every call (its transport retries too), and a
//!   `429` pauses every worker.
//! - **Stoppable.** The first interrupt stops taking work and lets the calls in flight finish;
//!   a second abandons them. `max_cost` stops taking work once that much is spent.
//! - **Counted.** Progress on stderr and a [`Summary`] at the end: items, tokens, cost.
//!
//! Each item is extracted exactly as the service would (`ExtractorSpec::request`): the same
//! prompt, the same validation against the whole schema, the same re-asks.

mod input;
mod limit;
mod output;
mod progress;
mod remote;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::Value;
use sift_config::{ExtractorSpec, Prices, Pricing};
use sift_core::report::{ExtractionFailure, UsageReport};
use sift_core::{Client, ExtractError, Extraction, Message, ProviderError, Usage};

pub use input::{Format, Item, MAX_LINE, Source, describe_fields, text_field};
pub use limit::{Limiter, Limits};
pub use output::{Done, Output, Record};
pub use progress::{Display, Stopped, Summary};
pub use remote::{BATCH_PRICE_FACTOR, RemoteJob, run_remote};

/// Why a job could not run (items that fail are not errors: they are written to the output).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// A file could not be read or written.
    // The cause is the source, printed after the path by `{:#}` (not twice).
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read: missing, not a regular file (a FIFO, a device), too large.
    #[error(transparent)]
    File(#[from] sift_core::files::FileError),
    /// The input's name does not say its format, and none was given.
    #[error(
        "{}: cannot tell the input's format from its name: name it .jsonl (or .ndjson) or .txt, \
         or pass --format jsonl or --format lines",
        .0.display()
    )]
    UnknownFormat(PathBuf),
    /// The output is not a regular file (a pipe such as `/dev/stdout`, a device).
    #[error(
        "{}: the output must be a regular file ({kind} given): sift batch reads its output \
         back to resume, and appends to it",
        path.display()
    )]
    OutputNotAFile {
        /// The output.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Another run holds the output.
    #[error(
        "{}: another sift batch is writing this output (it holds its lock); wait for it, or \
         choose another output",
        .0.display()
    )]
    Locked(PathBuf),
    /// Plain text input (text lines, a folder) for an extractor whose input has no single
    /// text field.
    #[error(
        "{}: plain text needs an extractor whose input has one text field, and this one takes \
         {fields}; write the input as JSONL instead",
        path.display()
    )]
    NeedsText {
        /// The input.
        path: PathBuf,
        /// The fields the extractor's input takes.
        fields: String,
    },
    /// Ids repeat in the input (resuming goes by id).
    #[error(
        "{}: ids must be unique (resuming goes by id); {count} repeated: {}{}",
        path.display(),
        shown.join(", "),
        if *count > shown.len() { ", ..." } else { "" }
    )]
    DuplicateIds {
        /// The input.
        path: PathBuf,
        /// How many ids repeat.
        count: usize,
        /// The first few, with where they are.
        shown: Vec<String>,
    },
    /// The input could not be counted (its reader stopped).
    #[error("reading the input failed: {0}")]
    Reader(String),
    /// The output exists and is not a sift batch output.
    #[error(
        "{}:{line}: not a line of a sift batch output ({error}); move the file away or choose \
         another output",
        path.display()
    )]
    NotAnOutput {
        /// The output.
        path: PathBuf,
        /// Its line that is not a record.
        line: usize,
        /// Why.
        error: serde_json::Error,
    },
    /// The batch state file beside the output is not one.
    #[error("{}: not a sift batch state: {error}", path.display())]
    NotAState {
        /// The state file.
        path: PathBuf,
        /// Why.
        error: serde_json::Error,
    },
    /// The state file belongs to another extractor or version.
    #[error(
        "{} belongs to batches of extractor `{had}` version {had_version}, not `{name}` version \
         {version}: finish that job with its own extractor, or move the state file away to \
         start over",
        path.display()
    )]
    OtherExtractor {
        /// The state file.
        path: PathBuf,
        /// The extractor it belongs to.
        had: String,
        /// That extractor's version.
        had_version: String,
        /// The extractor asked for.
        name: String,
        /// Its version.
        version: String,
    },
    /// `--retry-failed` while a round of batches still runs.
    #[error(
        "{}: a round of batches is still running; finish it first (the same command without \
         --retry-failed), then retry the failed items",
        path.display()
    )]
    RoundRunning {
        /// The state file.
        path: PathBuf,
    },
    /// One item's request is larger than a batch file may hold.
    #[error("item `{id}`: its request is {bytes} bytes, more than a batch file may hold ({max})")]
    RequestTooLarge {
        /// The item.
        id: String,
        /// Its request's size.
        bytes: usize,
        /// The most a batch file holds.
        max: usize,
    },
    /// A record, request or state could not be encoded.
    #[error("could not encode {what}: {error}")]
    Encode {
        /// What (`a record`, `the batch state`, `a request`).
        what: &'static str,
        /// Why.
        error: serde_json::Error,
    },
    /// The provider's Batch API failed (upload, create, poll or download).
    #[error("{doing}: {error}")]
    Remote {
        /// What was being done.
        doing: String,
        /// The provider's error.
        error: ProviderError,
    },
}

impl BatchError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        BatchError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// One job.
#[derive(Debug)]
pub struct Job {
    /// What each item is extracted with.
    pub extractor: ExtractorSpec,
    /// Who answers (the extractor's model, mode and re-asks already applied).
    pub client: Client,
    /// The input: JSONL, plain text lines, or a folder of `.txt` files.
    pub input: PathBuf,
    /// The input file's format (`None`: the one its name says).
    pub format: Option<Format>,
    /// The output (appended to; created when missing).
    pub output: PathBuf,
    /// Items in flight at once (at least 1).
    pub concurrency: usize,
    /// The limiter the provider was given, for its counts.
    pub limiter: Option<Arc<Limiter>>,
    /// Prices by model name (a model matches its own name, or the longest name it starts
    /// with: `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`).
    pub prices: BTreeMap<String, Prices>,
    /// Stop taking work once this much (USD) is spent.
    pub max_cost: Option<f64>,
    /// Do the items whose lines hold an error again (their lines are replaced).
    pub retry_failed: bool,
    /// How progress is shown.
    pub display: Display,
    /// Write each value's spans (where its grounded values are in the input) in its line.
    pub spans: bool,
}

/// Interrupts so far (the command line counts its `SIGINT`s into one).
pub type Interrupts = tokio::sync::watch::Receiver<u32>;

/// How often the plain progress line and the rate-limit count are looked at.
const TICK: Duration = Duration::from_millis(250);

/// Runs `job` until every item has a line in the output, or it is stopped.
pub async fn run(job: Job, mut interrupts: Interrupts) -> Result<Summary, BatchError> {
    let (source, mut output, done, mut tally) = prepare(
        &job.input,
        job.format,
        &job.output,
        &job.extractor,
        job.retry_failed,
        job.display,
    )
    .await?;

    // The input is read on its own thread, item by item, the ids already done skipped.
    let concurrency = job.concurrency.max(1);
    let (tx, mut rx) = tokio::sync::mpsc::channel(concurrency * 2);
    let reading = source.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let items = match reading.items() {
            Ok(i) => i,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for (_, item) in items {
            if item.as_ref().is_ok_and(|i| done.ids.contains(&i.id)) {
                continue;
            }
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    });

    let ctx = Arc::new(Ctx {
        extractor: job.extractor,
        client: job.client,
        prices: Pricing::new(job.prices),
        spans: job.spans,
        chunks_at_once: concurrency,
    });
    let pauses = || job.limiter.as_ref().map_or(0, |l| l.pauses());
    let mut in_flight = FuturesUnordered::new();
    let mut input_done = false;
    let mut stopped = None;
    let mut interrupts_open = true;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if (input_done || stopped.is_some()) && in_flight.is_empty() {
            break;
        }
        let taking = stopped.is_none() && !input_done && in_flight.len() < concurrency;
        tokio::select! {
            biased;
            changed = interrupts.changed(), if interrupts_open => {
                if changed.is_err() {
                    interrupts_open = false;
                    continue;
                }
                let count = *interrupts.borrow_and_update();
                if count >= 2 {
                    stopped = Some(Stopped::Abandoned);
                    break;
                }
                if count == 1 && stopped.is_none() {
                    stopped = Some(Stopped::Interrupted);
                }
            }
            Some((record, usage, cost)) = in_flight.next(), if !in_flight.is_empty() => {
                let record: Record = record;
                output.write(&record)?;
                tally.add(record.error.is_none(), usage, cost);
                if let Some(max) = job.max_cost
                    && tally.spent() >= max
                    && stopped.is_none()
                {
                    stopped = Some(Stopped::MaxCost);
                }
            }
            item = rx.recv(), if taking => match item {
                Some(Ok(item)) => in_flight.push(process(ctx.clone(), item)),
                Some(Err(e)) => return Err(e),
                None => input_done = true,
            },
            _ = tick.tick() => tally.tick(pauses()),
        }
    }
    // Abandoned calls are dropped here (their HTTP requests with them); the reader stops at
    // its next send.
    drop(in_flight);
    drop(rx);
    reader.abort();
    let stopped = match stopped {
        Some(Stopped::Interrupted | Stopped::MaxCost) if input_done_and_empty(&tally) => None,
        s => s,
    };
    Ok(tally.finish(stopped, pauses()))
}

/// Opens a job's input (counted, ids checked) and output (resumed), and starts its tally.
pub(crate) async fn prepare(
    input: &Path,
    format: Option<Format>,
    output: &Path,
    extractor: &ExtractorSpec,
    retry_failed: bool,
    display: Display,
) -> Result<(Source, Output, Done, progress::Tally), BatchError> {
    let source = Source::open(input, extractor.input.value(), format)?;
    let counting = source.clone();
    let total = tokio::task::spawn_blocking(move || counting.count())
        .await
        .map_err(|e| BatchError::Reader(e.to_string()))??;
    let (out, done) = Output::open(output, retry_failed)?;
    if done.dropped_torn_line {
        tracing::warn!(output = %output.display(), "the output's last line was cut off by a crash; its item is done again");
    }
    let tally = progress::Tally::new(output.display().to_string(), total, done.ids.len(), display);
    Ok((source, out, done, tally))
}

/// Whether every item got its line (a stop that came after the last item took nothing away).
fn input_done_and_empty(tally: &progress::Tally) -> bool {
    tally.summary.remaining == 0
}

struct Ctx {
    extractor: ExtractorSpec,
    client: Client,
    prices: Pricing,
    spans: bool,
    /// A document's chunks extracted at once.
    chunks_at_once: usize,
}

/// An item's id, input and conversation, or (its input does not fit, its prompt does not
/// render) the record of its failure.
pub(crate) fn conversation(
    extractor: &ExtractorSpec,
    model: &str,
    item: Item,
) -> Result<(String, Value, Vec<Message>), Box<Record>> {
    let input = match item.input {
        Ok(v) => v,
        Err(message) => return Err(Box::new(failure(item.id, model, "invalid_input", message))),
    };
    let errors = extractor.input.errors(&input);
    if !errors.is_empty() {
        let list: Vec<String> = errors
            .iter()
            .map(|e| {
                if e.path.is_empty() {
                    e.message.clone()
                } else {
                    format!("{}: {}", e.path, e.message)
                }
            })
            .collect();
        let message = format!(
            "the input does not fit extractor `{}`'s input schema: {}",
            extractor.name,
            list.join("; ")
        );
        return Err(Box::new(failure(item.id, model, "invalid_input", message)));
    }
    match extractor.messages(&input) {
        Ok(m) => Ok((item.id, input, m)),
        Err(e) => Err(Box::new(failure(item.id, model, "template", e.to_string()))),
    }
}

/// The record of a finished extraction, with its usage (and its spans when `spans`); `asked`
/// is the model asked (the one that answered is preferred).
pub(crate) fn record(
    id: String,
    asked: &str,
    result: Result<Extraction<Value>, ExtractError>,
    recording: &sift_core::trace::Recording,
    spans: bool,
) -> (Record, Usage) {
    match result {
        Ok(out) => {
            let model = out
                .response
                .model
                .clone()
                .unwrap_or_else(|| asked.to_owned());
            let record = Record {
                id,
                value: Some(out.value),
                error: None,
                usage: out.usage.into(),
                attempts: out.attempts.len(),
                model,
                spans: if spans { out.spans } else { None },
                document: None,
            };
            (record, out.usage)
        }
        Err(e) => {
            let usage = e.usage();
            let record = Record {
                id,
                value: None,
                error: Some(ExtractionFailure::from_error(&e, recording)),
                usage: usage.into(),
                attempts: e.attempts().len(),
                model: asked.to_owned(),
                spans: None,
                document: None,
            };
            (record, usage)
        }
    }
}

/// One item: checked against the input schema, rendered, extracted; always a record.
async fn process(ctx: Arc<Ctx>, item: Item) -> (Record, Usage, Option<f64>) {
    let asked = ctx.client.model().to_owned();
    if let Some(path) = item.document.clone() {
        let (record, usage) = document(&ctx, item.id, &path, &asked).await;
        let cost = ctx.prices.cost(&asked, &record.model, &usage, 1.0);
        return (record, usage, cost);
    }
    let (id, input, messages) = match conversation(&ctx.extractor, &asked, item) {
        Ok(c) => c,
        Err(record) => return (*record, Usage::default(), Some(0.0)),
    };
    let result = ctx
        .extractor
        .request(&ctx.client, &input, messages)
        .send()
        .await;
    let (record, usage) = record(id, &asked, result, ctx.client.recording(), ctx.spans);
    let cost = ctx.prices.cost(&asked, &record.model, &usage, 1.0);
    (record, usage, cost)
}

/// A folder's file: read as a document (on the blocking pool), split, extracted and merged
/// as the service does; always a record.
async fn document(ctx: &Ctx, id: String, path: &Path, asked: &str) -> (Record, Usage) {
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        sift_documents::read_path(&owned, &sift_documents::Limits::default())
    })
    .await;
    let document = match read {
        Ok(Ok(d)) => Arc::new(d),
        Ok(Err(e)) => {
            return (
                failure(id, asked, e.kind(), e.to_string()),
                Usage::default(),
            );
        }
        Err(e) => return (failure(id, asked, "io", e.to_string()), Usage::default()),
    };
    let input = Value::Object(serde_json::Map::new());
    let result = ctx
        .extractor
        .extract_document(&ctx.client, document.clone(), input, ctx.chunks_at_once)
        .await;
    let recording = ctx.client.recording();
    match result {
        Err(e) => (
            failure(id, asked, "invalid_input", e.to_string()),
            Usage::default(),
        ),
        Ok(Ok(out)) => {
            let usage = out.usage;
            let attempts = out.attempts.len();
            let model = out
                .attempts
                .iter()
                .rev()
                .find_map(|a| a.model.clone())
                .unwrap_or_else(|| asked.to_owned());
            // With spans, the text they index goes in the line too (a PDF's or a page's text
            // is not the file's bytes).
            let answer = out.answer(&document, ctx.spans);
            let record = Record {
                id,
                value: Some(answer.value),
                error: None,
                usage: usage.into(),
                attempts,
                model,
                spans: answer.spans,
                document: Some(serde_json::json!({
                    "document": answer.document,
                    "conflicts": answer.conflicts,
                    "failed_chunks": answer.failed_chunks,
                    "text": answer.text,
                })),
            };
            (record, usage)
        }
        Ok(Err(sift_documents::extract::DocumentError::Extraction(e))) => {
            let (mut record, usage) = record(id, asked, Err(e), recording, false);
            record.document = Some(
                serde_json::json!({"document": sift_documents::DocumentInfo::of(&document, Vec::new())}),
            );
            (record, usage)
        }
        Ok(Err(e)) => {
            let usage = e.usage();
            let mut record = failure(id, asked, e.kind(), recording.scrub(e.to_string()));
            record.usage = usage.into();
            record.attempts = e.attempts().len();
            if let sift_documents::extract::DocumentError::AllChunksFailed { failed, .. } = &e {
                record.document = Some(serde_json::json!({"failed_chunks": failed}));
            }
            (record, usage)
        }
    }
}

/// The record of an item that failed before any model call.
fn failure(id: String, model: &str, kind: &str, message: String) -> Record {
    Record {
        id,
        value: None,
        error: Some(ExtractionFailure {
            message,
            kind: kind.into(),
            upstream_status: None,
            attempts: Vec::new(),
            usage: UsageReport::from(Usage::default()),
        }),
        usage: Usage::default().into(),
        attempts: 0,
        model: model.to_owned(),
        spans: None,
        document: None,
    }
}
