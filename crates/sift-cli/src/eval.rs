//! `sift eval`: an extractor scored against labelled examples (see `sift_eval`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use sift_eval::Report;

use crate::extract::{AdhocArgs, Failed};
use crate::providers::{self, Clients, ProviderArgs};

/// Exit code: the score is under `--min-score`.
pub const EXIT_BELOW: u8 = 6;

/// Flags of `sift eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The extractor's name in the config (with `--schema`: a name for the report, or none),
    /// then the gold: a JSONL file, or a folder of documents with their gold (`X.pdf` and
    /// `X.gold.json`).
    #[arg(num_args = 1..=2, value_name = "NAME GOLD")]
    positional: Vec<String>,
    #[command(flatten)]
    adhoc: AdhocArgs,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write the report as one HTML page to this file (scores, deltas against --baseline,
    /// failures and every miss).
    #[arg(long, value_name = "FILE")]
    report_html: Option<PathBuf>,
    /// An earlier report (`--report`) to compare with: per-field deltas.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Exit with 6 when the exact-match score (0 to 1) is under this.
    #[arg(long, value_name = "SCORE")]
    min_score: Option<f64>,
    /// Examples extracted at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Misses listed on the terminal (all are in the report).
    #[arg(long, default_value_t = 20)]
    misses: usize,
    #[command(flatten)]
    providers: ProviderArgs,
}

/// Runs the evaluation; the table on stdout.
pub async fn run(args: EvalArgs) -> ExitCode {
    let telemetry = match providers::tool_telemetry(&args.providers, false) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let result = eval(args, &telemetry).await;
    providers::finish(telemetry, result).await
}

async fn eval(args: EvalArgs, telemetry: &providers::Observed) -> Result<ExitCode, Failed> {
    let (name, gold, label) = match (&args.adhoc.schema, args.positional.as_slice()) {
        (Some(_), [gold]) => (None, gold.clone(), None),
        (Some(_), [label, gold]) => (None, gold.clone(), Some(label.clone())),
        (None, [name, gold]) => (Some(name.as_str()), gold.clone(), None),
        (Some(_), _) => {
            return Err(anyhow::anyhow!(
                "with --schema, give the gold (a file or a folder), optionally after a name for the report"
            )
            .into());
        }
        (None, _) => {
            return Err(anyhow::anyhow!(
                "give the extractor's name and the gold file (or --schema FILE and the gold file)"
            )
            .into());
        }
    };
    if let Some(s) = args.min_score
        && !(0.0..=1.0).contains(&s)
    {
        return Err(
            anyhow::anyhow!("--min-score is a fraction of examples, 0 to 1, got {s}").into(),
        );
    }
    let baseline: Option<Report> = match &args.baseline {
        None => None,
        Some(path) => {
            let text = sift_core::files::read_text(path, sift_core::files::MAX_DATA_FILE)
                .with_context(|| format!("could not read the baseline {}", path.display()))?;
            Some(serde_json::from_str(&text).with_context(|| {
                format!("{}: not a report of sift eval --report", path.display())
            })?)
        }
    };
    let file = args.providers.config_file()?;
    let mut spec = args.adhoc.extractor(file.as_ref(), name)?;
    if let Some(label) = label {
        spec.name = label;
    }
    let examples = sift_eval::read_gold(std::path::Path::new(&gold), &spec)?;
    let client = Clients::new(&args.providers, telemetry, None)
        .only_for(file.as_ref(), &spec)
        .await
        .map_err(Failed::provider)?;
    let report = sift_eval::evaluate(&spec, &client, &examples, args.concurrency).await;
    print!("{}", report.table(baseline.as_ref(), args.misses));
    if let Some(path) = &args.report_html {
        std::fs::write(path, report.html(baseline.as_ref()))
            .with_context(|| format!("could not write the HTML report to {}", path.display()))?;
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("could not write the report to {}", path.display()))?;
    }
    Ok(match args.min_score {
        Some(min) if report.exact_match < min => {
            eprintln!(
                "exact match {:.3} is under --min-score {min}",
                report.exact_match
            );
            ExitCode::from(EXIT_BELOW)
        }
        _ => ExitCode::SUCCESS,
    })
}
