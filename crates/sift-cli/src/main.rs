//! `sift`: typed, validated extraction from free text with language models.

mod batch;
mod check;
mod document;
mod eval;
mod extract;
mod providers;
mod serve;

// glibc's allocator is slow when memory allocated on one thread is freed on another, which is
// what telemetry does (spans built on the workers, exported on their own thread); mimalloc
// is made for that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sift",
    version,
    about = "Typed, validated extraction from free text with language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (POST /user, /many-users, /extract; GET /docs, /openapi.json, /healthz).
    Serve(serve::ServeArgs),
    /// Check a config file without serving: every problem with its place, or what it serves.
    Check(check::CheckArgs),
    /// Extract once: print the value as JSON (exit 2: bad input, 3: model call failed,
    /// 4: no valid answer).
    Extract(extract::ExtractArgs),
    /// Run an extractor over a JSONL file or a folder, resumably (exit 1: some items failed,
    /// 5: stopped before the end).
    Batch(batch::BatchArgs),
    /// Score an extractor against labelled examples, field by field (exit 6 under
    /// --min-score).
    Eval(eval::EvalArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Check(args) = &cli.command {
        return match check::run(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => match serve::run(args).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::from(2)
                }
            },
            Command::Extract(args) => extract::run(args).await,
            Command::Batch(args) => batch::run(args).await,
            Command::Eval(args) => eval::run(args).await,
            Command::Check(_) => std::process::ExitCode::SUCCESS,
        }
    });
    // Whatever is still running (a blocking task, a worker busy past the shutdown grace)
    // gets a moment, then the process exits anyway: dropping the runtime would wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}
