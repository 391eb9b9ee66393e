//! `sift batch`: an extractor over a JSONL file or a folder (see `sift_batch`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sift_batch::{Display, Job, Limiter, Limits, Stopped};

use crate::extract::{AdhocArgs, Failed};
use crate::providers::{self, Clients, ProviderArgs};

/// Where the calls go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// Sift makes each call itself (any provider).
    Direct,
    /// OpenAI's Batch API: uploaded, run by the provider within a day at half the price,
    /// polled, validated, re-asked in further batches.
    OpenaiBatch,
    /// Anthropic's Message Batches, the same way.
    AnthropicBatch,
    /// Gemini's batch mode (inline requests), the same way.
    GeminiBatch,
}

/// Flags of `sift batch`.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The extractor's name in the config (or give --schema).
    name: Option<String>,
    #[command(flatten)]
    adhoc: AdhocArgs,
    /// The input: JSONL (`{"id", ...input}` per line), plain text lines, or a folder of
    /// documents (PDF, HTML, Markdown and text files; each file one item, named by its file
    /// name, long ones split into chunks and merged).
    #[arg(short, long, value_name = "IN")]
    input: PathBuf,
    /// The input file's format, `jsonl` or `lines` (default: the one its name says,
    /// `.jsonl`/`.ndjson` or `.txt`; never guessed from its content).
    #[arg(long, value_name = "FORMAT")]
    format: Option<sift_batch::Format>,
    /// The output JSONL; rerunning with the same one resumes.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Items in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Requests per minute, over every worker (transport retries count).
    #[arg(long)]
    rpm: Option<u32>,
    /// Tokens per minute, prompt and completion (estimated before each call, corrected by
    /// its usage after).
    #[arg(long)]
    tpm: Option<u64>,
    /// Stop taking new items once this many USD are spent (prices from the config's
    /// `[models]`).
    #[arg(long, value_name = "USD")]
    max_cost: Option<f64>,
    /// Do again the items whose output lines hold an error.
    #[arg(long)]
    retry_failed: bool,
    /// Write in each line `spans`: where each grounded value was found in the item's input
    /// (by JSON pointer into the value; offsets in Unicode scalar values).
    #[arg(long)]
    spans: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Seconds between progress lines when stderr is not a terminal (0: none).
    #[arg(long, default_value_t = 10.0)]
    progress_every: f64,
    /// How the calls are made.
    #[arg(long, value_enum, default_value = "direct")]
    via: Via,
    /// With `--via *-batch`: seconds between polls of a batch.
    #[arg(long, default_value_t = 30.0)]
    poll_every: f64,
    /// With `--via *-batch`: most requests per batch [default: the API's limit: 50,000 for
    /// OpenAI, 100,000 for Anthropic and Gemini].
    #[arg(long)]
    batch_max_requests: Option<usize>,
    /// With `--via *-batch`: most bytes of one batch's requests [default: the API's limit:
    /// 200 MB for OpenAI, 256 MB for Anthropic, 20 MB for Gemini].
    #[arg(long)]
    batch_max_bytes: Option<usize>,
    /// Show the model calls on stderr.
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    providers: ProviderArgs,
}

/// Exit code: every item is done, some failed (their errors are in the output).
pub const EXIT_SOME_FAILED: u8 = 1;
/// Exit code: stopped before the end (interrupted, or `--max-cost`); rerun to finish.
pub const EXIT_STOPPED: u8 = 5;

/// Runs the job; the summary on stderr.
pub async fn run(args: BatchArgs) -> ExitCode {
    let telemetry = match providers::tool_telemetry(&args.providers, args.verbose) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let result = batch(args, &telemetry).await;
    providers::finish(telemetry, result).await
}

async fn batch(args: BatchArgs, telemetry: &providers::Observed) -> Result<ExitCode, Failed> {
    if args.concurrency == 0 {
        return Err(anyhow::anyhow!("--concurrency must be at least 1").into());
    }
    if args.rpm == Some(0) || args.tpm == Some(0) {
        return Err(anyhow::anyhow!(
            "--rpm and --tpm must be at least 1 (leave them out for no limit)"
        )
        .into());
    }
    if let Some(c) = args.max_cost
        && !(c.is_finite() && c >= 0.0)
    {
        return Err(
            anyhow::anyhow!("--max-cost must be a number of USD, 0 or more, got {c}").into(),
        );
    }
    if !(args.progress_every.is_finite() && args.progress_every >= 0.0) {
        return Err(
            anyhow::anyhow!("--progress-every must be a number of seconds, 0 or more").into(),
        );
    }
    let file = args.providers.config_file()?;
    let spec = args.adhoc.extractor(file.as_ref(), args.name.as_deref())?;
    let prices = file.as_ref().map(|f| f.prices.clone()).unwrap_or_default();
    if args.max_cost.is_some() && prices.is_empty() {
        return Err(anyhow::anyhow!(
            "--max-cost needs the models' prices: add [models.\"NAME\"] with input, cached_input \
             and output (USD per million tokens) to the config"
        )
        .into());
    }
    let display = if std::io::stderr().is_terminal() {
        Display::Bar
    } else if args.progress_every > 0.0 {
        Display::Lines(Duration::from_secs_f64(args.progress_every.min(86_400.0)))
    } else {
        Display::Off
    };
    let summary = match args.via {
        Via::Direct => {
            let limiter = Arc::new(Limiter::new(Limits {
                rpm: args.rpm,
                tpm: args.tpm,
            }));
            let client = Clients::new(
                &args.providers,
                telemetry,
                Some(limiter.clone() as Arc<dyn sift_core::Admission>),
            )
            .only_for(file.as_ref(), &spec)
            .await
            .map_err(Failed::provider)?;
            // Refused before any item: a schema the provider cannot enforce.
            client
                .provider()
                .check_schema(spec.output.constrained_schema())
                .with_context(|| format!("extractor `{}`", spec.name))?;
            let job = Job {
                extractor: spec,
                client,
                input: args.input.clone(),
                format: args.format,
                output: args.output.clone(),
                concurrency: args.concurrency,
                limiter: Some(limiter),
                prices,
                max_cost: args.max_cost,
                retry_failed: args.retry_failed,
                display,
                spans: args.spans,
            };
            sift_batch::run(job, interrupts()).await?
        }
        Via::OpenaiBatch | Via::AnthropicBatch | Via::GeminiBatch => {
            if args.max_cost.is_some() || args.rpm.is_some() || args.tpm.is_some() {
                return Err(anyhow::anyhow!(
                    "--max-cost, --rpm and --tpm apply to direct calls; the Batch API paces and \
                     bills a batch as a whole"
                )
                .into());
            }
            if !(args.poll_every.is_finite() && args.poll_every > 0.0) {
                return Err(
                    anyhow::anyhow!("--poll-every must be a positive number of seconds").into(),
                );
            }
            let clients = Clients::new(&args.providers, telemetry, None);
            let (api, client) = clients
                .batch_api_for(file.as_ref(), &spec, args.via)
                .map_err(Failed::provider)?;
            let job = sift_batch::RemoteJob {
                extractor: spec,
                client,
                api,
                input: args.input.clone(),
                format: args.format,
                output: args.output.clone(),
                prices,
                retry_failed: args.retry_failed,
                display,
                spans: args.spans,
                poll_every: Duration::from_secs_f64(args.poll_every.min(86_400.0)),
                max_requests: args.batch_max_requests.unwrap_or(usize::MAX),
                max_bytes: args.batch_max_bytes.unwrap_or(usize::MAX),
                max_download: 4 * 1024 * 1024 * 1024,
            };
            sift_batch::run_remote(job, interrupts()).await?
        }
    };
    eprintln!("{}", summary.human());
    if let Some(path) = &args.summary {
        let json = serde_json::to_string_pretty(&summary).context("encoding the summary")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("could not write the summary to {}", path.display()))?;
    }
    Ok(match summary.stopped {
        Some(Stopped::Interrupted | Stopped::Abandoned | Stopped::MaxCost) => {
            ExitCode::from(EXIT_STOPPED)
        }
        None if summary.failed > 0 => ExitCode::from(EXIT_SOME_FAILED),
        None => ExitCode::SUCCESS,
    })
}

/// Counts `SIGINT`s (and `SIGTERM`s) into a watch: the first stops taking work, the second
/// abandons the calls in flight.
fn interrupts() -> sift_batch::Interrupts {
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        tokio::spawn(async move {
            let (mut interrupt, mut terminate) = (interrupt, terminate);
            loop {
                let got = tokio::select! {
                    s = async { match &mut interrupt { Some(s) => s.recv().await, None => std::future::pending().await } } => s,
                    s = async { match &mut terminate { Some(s) => s.recv().await, None => std::future::pending().await } } => s,
                };
                if got.is_none() {
                    return;
                }
                let n = *tx.borrow() + 1;
                if n == 1 {
                    eprintln!(
                        "sift batch: stopping: no new items; waiting for the calls in flight \
                         (interrupt again to abandon them)"
                    );
                }
                if tx.send(n).is_err() {
                    return;
                }
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            let n = *tx.borrow() + 1;
            if tx.send(n).is_err() {
                return;
            }
        }
    });
    rx
}
