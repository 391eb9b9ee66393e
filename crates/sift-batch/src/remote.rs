//! `sift batch --via openai-batch|anthropic-batch|gemini-batch`: the same job through a
//! provider's batch API ([`BatchApi`]: OpenAI's Batch API, Anthropic's Message Batches,
//! Gemini's batch mode), one driver for all three.
//!
//! Each round makes the pending items' requests (the body sift would send itself) into the
//! API's batch lines, split within its limits, creates a batch per part, polls them to their
//! end, collects their answers as JSONL files, and judges every answer with
//! [`Turns`] (the attempt loop's rules): valid answers and failures are written to the output;
//! answers that fail validation are asked again, the conversation extended by the errors, in
//! the next round, until the re-asks are spent.
//!
//! **Resuming.** A state file beside the output (`OUT.batch.json`) records each round's
//! batches as they are created, and their files, downloaded into `OUT.batch/`, once they end.
//! A rerun replays the downloaded rounds (deterministically: the same answers lead to the same
//! re-asks) and goes on polling the round in progress: no batch is created, and paid for,
//! twice. An interrupt leaves the batches running at the provider; the next run picks them
//! up.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sift_config::{ExtractorSpec, Prices};
use sift_core::batch::{BatchApi, BatchState};
use sift_core::{ChatResponse, Client, ProviderError, Turn, Turns, Usage};

use crate::output::Output;
use crate::progress::{Display, Stopped, Summary, Tally};
use crate::{BatchError, Interrupts, conversation, prepare, record};
use sift_config::Pricing;

/// The Batch API's discount on every token (half the price).
pub const BATCH_PRICE_FACTOR: f64 = 0.5;

/// A job run through a provider's batch API.
#[derive(Debug)]
pub struct RemoteJob {
    /// What each item is extracted with.
    pub extractor: ExtractorSpec,
    /// Whose mode, model and re-asks shape the requests.
    pub client: Client,
    /// The provider's batch API that runs them.
    pub api: std::sync::Arc<dyn BatchApi>,
    /// The input: JSONL, plain text lines, or a folder of `.txt` files.
    pub input: PathBuf,
    /// The input file's format (`None`: the one its name says).
    pub format: Option<crate::Format>,
    /// The output (appended to; created when missing).
    pub output: PathBuf,
    /// Prices by model name (the batch discount is applied to them).
    pub prices: BTreeMap<String, Prices>,
    /// Do the items whose lines hold an error again.
    pub retry_failed: bool,
    /// How progress is shown.
    pub display: Display,
    /// Time between polls of a batch.
    pub poll_every: Duration,
    /// Most requests in one batch (at most the API's own limit).
    pub max_requests: usize,
    /// Most bytes of one batch's requests (at most the API's own limit).
    pub max_bytes: usize,
    /// Largest output or error file downloaded, in bytes.
    pub max_download: u64,
    /// Write each value's spans in its line.
    pub spans: bool,
}

/// What the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The extractor's name and version the batches were made for.
    extractor: String,
    version: String,
    rounds: Vec<Round>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Round {
    parts: Vec<Part>,
    /// Every part ended and its files are downloaded.
    collected: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Part {
    requests: usize,
    /// The items asked, in order.
    ids: Vec<String>,
    /// The input file, for APIs that take one.
    #[serde(default)]
    input_file_id: String,
    batch_id: String,
    status: String,
    /// The downloaded files, relative to the downloads folder.
    output: Option<String>,
    errors: Option<String>,
    /// Why the batch ended without answering all (failed, expired, cancelled).
    ended_because: Option<String>,
    /// It ended having run every request, and its answers are collected.
    #[serde(default)]
    done: bool,
}

struct Paths {
    state: PathBuf,
    downloads: PathBuf,
}

impl Paths {
    fn of(output: &Path) -> Self {
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        Self {
            state: output.with_file_name(format!("{name}.batch.json")),
            downloads: output.with_file_name(format!("{name}.batch")),
        }
    }
}

fn save(path: &Path, state: &State) -> Result<(), BatchError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(state).map_err(|error| BatchError::Encode {
        what: "the batch state",
        error,
    })?;
    std::fs::write(&tmp, text).map_err(|e| BatchError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| BatchError::io(path, e))
}

fn provider(e: ProviderError, doing: &str) -> BatchError {
    BatchError::Remote {
        doing: doing.to_owned(),
        error: e,
    }
}

/// Runs `job` until every item has a line in the output, or it is interrupted (the batches
/// keep running at the provider; a rerun resumes them).
pub async fn run_remote(job: RemoteJob, mut interrupts: Interrupts) -> Result<Summary, BatchError> {
    let (source, mut output, done, mut tally) = prepare(
        &job.input,
        job.format,
        &job.output,
        &job.extractor,
        job.retry_failed,
        job.display,
    )
    .await?;
    let paths = Paths::of(&job.output);
    let mut state = match std::fs::read(&paths.state) {
        Ok(bytes) => {
            serde_json::from_slice::<State>(&bytes).map_err(|error| BatchError::NotAState {
                path: paths.state.clone(),
                error,
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
            extractor: job.extractor.name.clone(),
            version: job.extractor.version.clone(),
            rounds: Vec::new(),
        },
        Err(e) => return Err(BatchError::io(&paths.state, e)),
    };
    if state.version != job.extractor.version || state.extractor != job.extractor.name {
        return Err(BatchError::OtherExtractor {
            path: paths.state.clone(),
            had: state.extractor,
            had_version: state.version,
            name: job.extractor.name.clone(),
            version: job.extractor.version.clone(),
        });
    }
    // Items done again start their conversations afresh: the rounds they were in are
    // forgotten (once they are all over).
    if job.retry_failed && !state.rounds.is_empty() {
        if state.rounds.last().is_some_and(|r| !r.collected) {
            return Err(BatchError::RoundRunning {
                path: paths.state.clone(),
            });
        }
        state.rounds.clear();
    }
    std::fs::create_dir_all(&paths.downloads).map_err(|e| BatchError::io(&paths.downloads, e))?;
    let pricing = Pricing::new(job.prices.clone());
    let asked = job.client.model().to_owned();

    // Every item not yet in the output, as a conversation to run.
    let mut pending: BTreeMap<String, Turns<Value>> = BTreeMap::new();
    let items = source.items()?;
    for (_, item) in items {
        let item = item?;
        if done.ids.contains(&item.id) {
            continue;
        }
        let field = job.extractor.document_field().unwrap_or_default();
        match conversation(&job.extractor, &asked, item.with_document_text(&field)) {
            Err(record) => {
                output.write(&record)?;
                tally.add(false, Usage::default(), Some(0.0));
            }
            Ok((id, input, messages)) => {
                let turns = job.extractor.request(&job.client, &input, messages).turns();
                match turns {
                    Ok(t) => {
                        pending.insert(id, t);
                    }
                    Err(e) => {
                        let (record, usage) =
                            record(id, &asked, Err(e), job.client.recording(), false);
                        output.write(&record)?;
                        tally.add(false, usage, Some(0.0));
                    }
                }
            }
        }
    }

    let mut judge = Judge {
        api: job.api.as_ref(),
        pending,
        output: &mut output,
        tally: &mut tally,
        pricing: &pricing,
        asked: &asked,
        recording: job.client.recording(),
        spans: job.spans,
    };
    // Replay the rounds already downloaded.
    for round in state.rounds.iter().filter(|r| r.collected) {
        judge.round(round, &paths.downloads)?;
    }
    let mut stopped = None;
    let mut interrupts_open = true;
    while !judge.pending.is_empty() {
        if state.rounds.last().is_none_or(|r| r.collected) {
            let round = submit(&job, &judge.pending, state.rounds.len() + 1).await?;
            state.rounds.push(Round {
                parts: Vec::new(),
                collected: false,
            });
            // Saved batch by batch: a crash after a create never loses its id.
            for part in round {
                let part = part?;
                if let Some(r) = state.rounds.last_mut() {
                    r.parts.push(part);
                }
                save(&paths.state, &state)?;
            }
        }
        let number = state.rounds.len();
        let current = number - 1;
        // Poll until every part has ended, or an interrupt.
        loop {
            let mut open = 0;
            let parts = state.rounds[current].parts.len();
            for i in 0..parts {
                let part = &mut state.rounds[current].parts[i];
                // (`completed`: a state file of an older sift, whose parts have no `done`.)
                if part.ended_because.is_some() || part.done || part.status == "completed" {
                    continue;
                }
                let status = job
                    .api
                    .state(&part.batch_id)
                    .await
                    .map_err(|e| provider(e, &format!("polling batch {}", part.batch_id)))?;
                if status.status != part.status && job.display != Display::Off {
                    eprintln!(
                        "sift batch: round {number}, batch {} (part {}/{parts}, {} requests): {} ({} done, {} failed)",
                        part.batch_id,
                        i + 1,
                        part.requests,
                        status.status,
                        status.succeeded,
                        status.failed
                    );
                }
                part.status = status.status.clone();
                if status.terminal {
                    collect(&job, part, &status, &paths.downloads, number, i + 1).await?;
                } else {
                    open += 1;
                }
            }
            save(&paths.state, &state)?;
            if open == 0 {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(job.poll_every) => {}
                changed = interrupts.changed(), if interrupts_open => {
                    if changed.is_err() {
                        interrupts_open = false;
                    } else {
                        stopped = Some(Stopped::Interrupted);
                        break;
                    }
                }
            }
        }
        if stopped.is_some() {
            break;
        }
        state.rounds[current].collected = true;
        save(&paths.state, &state)?;
        judge.round(&state.rounds[current], &paths.downloads)?;
    }
    drop(judge);
    Ok(tally.finish(stopped, 0))
}

/// Makes the requests of `pending` into batch lines, split within the limits, and creates a
/// batch of each part: the parts, in order, as they are created.
async fn submit(
    job: &RemoteJob,
    pending: &BTreeMap<String, Turns<Value>>,
    round: usize,
) -> Result<Vec<Result<Part, BatchError>>, BatchError> {
    let (api_requests, api_bytes) = job.api.limits();
    let max_requests = job.max_requests.clamp(1, api_requests);
    let max_bytes = job.max_bytes.clamp(1024, api_bytes);
    // Each part: its items, their lines, and the lines' size (one newline each, as a JSONL
    // file holds them).
    let mut files: Vec<(Vec<String>, Vec<Value>, usize)> = Vec::new();
    let mut current: (Vec<String>, Vec<Value>, usize) = (Vec::new(), Vec::new(), 0);
    for (id, turns) in pending {
        let line = job
            .api
            .request_line(id, turns.request())
            .map_err(|e| provider(e, &format!("making the request of {id}")))?;
        let size = serde_json::to_vec(&line)
            .map_err(|error| BatchError::Encode {
                what: "a request",
                error,
            })?
            .len()
            + 1;
        if size > max_bytes {
            return Err(BatchError::RequestTooLarge {
                id: id.clone(),
                bytes: size,
                max: max_bytes,
            });
        }
        if current.0.len() == max_requests || current.2 + size > max_bytes {
            files.push(std::mem::take(&mut current));
        }
        current.0.push(id.clone());
        current.1.push(line);
        current.2 += size;
    }
    if !current.0.is_empty() {
        files.push(current);
    }
    let output_name = job
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = Vec::new();
    let count = files.len();
    for (i, (ids, lines, _)) in files.into_iter().enumerate() {
        let requests = ids.len();
        let name = format!("sift-{output_name}-round{round}-part{}.jsonl", i + 1);
        let result = async {
            let metadata = json!({
                "sift_output": output_name,
                "sift_round": round.to_string(),
                "sift_part": format!("{}/{count}", i + 1),
            });
            let batch = job
                .api
                .create(&name, lines, &metadata)
                .await
                .map_err(|e| provider(e, &format!("creating the batch of {name}")))?;
            if job.display != Display::Off {
                eprintln!(
                    "sift batch: round {round}, part {}/{count}: batch {} created ({requests} requests)",
                    i + 1,
                    batch.id
                );
            }
            Ok(Part {
                requests,
                ids,
                input_file_id: batch.input_file_id.unwrap_or_default(),
                batch_id: batch.id,
                status: batch.status,
                ..Part::default()
            })
        }
        .await;
        let failed = result.is_err();
        parts.push(result);
        if failed {
            break;
        }
    }
    Ok(parts)
}

/// Collects the answers of an ended batch and notes why it ended short, if it did.
async fn collect(
    job: &RemoteJob,
    part: &mut Part,
    status: &BatchState,
    downloads: &Path,
    round: usize,
    index: usize,
) -> Result<(), BatchError> {
    let files = job
        .api
        .collect(
            status,
            downloads,
            &format!("round{round}-part{index}"),
            job.max_download,
        )
        .await
        .map_err(|e| provider(e, &format!("collecting the answers of batch {}", status.id)))?;
    part.output = files.output;
    part.errors = files.errors;
    if status.complete {
        part.done = true;
    } else {
        part.ended_because = Some(format!("batch {}: {}", status.id, status.why));
    }
    Ok(())
}

/// Applies a round's answers to the pending conversations.
struct Judge<'a> {
    api: &'a dyn BatchApi,
    pending: BTreeMap<String, Turns<Value>>,
    output: &'a mut Output,
    tally: &'a mut Tally,
    pricing: &'a Pricing,
    asked: &'a str,
    recording: &'a sift_core::trace::Recording,
    spans: bool,
}

impl Judge<'_> {
    fn round(&mut self, round: &Round, downloads: &Path) -> Result<(), BatchError> {
        let mut answers: HashMap<String, Result<ChatResponse, ProviderError>> = HashMap::new();
        let mut unanswered_because = Vec::new();
        for part in &round.parts {
            for file in [&part.output, &part.errors].into_iter().flatten() {
                let path = downloads.join(file);
                let reader = std::io::BufReader::new(
                    std::fs::File::open(&path).map_err(|e| BatchError::io(&path, e))?,
                );
                for (n, line) in reader.lines().enumerate() {
                    let line = line.map_err(|e| BatchError::io(&path, e))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match self.api.answer_line(&line) {
                        Ok((id, answer)) => {
                            answers.insert(id, answer);
                        }
                        Err(e) => tracing::warn!(
                            file = %path.display(),
                            line = n + 1,
                            error = e,
                            "unreadable line in a batch file, skipped"
                        ),
                    }
                }
            }
            if let Some(why) = &part.ended_because {
                unanswered_because.push(why.clone());
            }
        }
        let why = if unanswered_because.is_empty() {
            "the batch returned no answer for it".to_owned()
        } else {
            unanswered_because.join("; ")
        };
        // The conversations this round asked, each answered, failed, or asked again.
        for id in round.parts.iter().flat_map(|p| &p.ids) {
            let Some(mut turns) = self.pending.remove(id) else {
                continue;
            };
            let result = match answers.remove(&self.api.line_id(id)) {
                Some(Ok(response)) => match turns.answer(response, Duration::ZERO) {
                    Turn::Done(out) => Ok(out),
                    Turn::Failed(e) => Err(e),
                    Turn::Again => {
                        self.pending.insert(id.clone(), turns);
                        continue;
                    }
                },
                Some(Err(e)) => Err(turns.fail(e, Duration::ZERO)),
                None => Err(turns.fail(ProviderError::Batch(why.clone()), Duration::ZERO)),
            };
            let (record, usage) =
                record(id.clone(), self.asked, result, self.recording, self.spans);
            let cost = self
                .pricing
                .cost(self.asked, &record.model, &usage, BATCH_PRICE_FACTOR);
            self.output.write(&record)?;
            self.tally.add(record.error.is_none(), usage, cost);
        }
        Ok(())
    }
}
