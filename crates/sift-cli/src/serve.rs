//! `sift serve`.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use sift_core::Client;
use sift_server::ServerConfig;

use crate::providers::{self, Clients, ProviderArgs};

/// Flags of `sift serve`; each also reads its environment variable.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "SIFT_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to bind (0 picks a free one and prints it).
    #[arg(long, env = "SIFT_PORT", default_value_t = 8000)]
    port: u16,
    #[command(flatten)]
    pub(crate) providers: ProviderArgs,
    /// Model calls in flight per /many-users request.
    #[arg(long, env = "SIFT_MAX_CONCURRENCY", default_value_t = 16)]
    max_concurrency: usize,
    /// Most queries accepted by one /many-users request.
    #[arg(long, env = "SIFT_MAX_QUERIES", default_value_t = 1000)]
    max_queries: usize,
    /// Largest request body, in bytes.
    #[arg(long, env = "SIFT_BODY_LIMIT", default_value_t = 1024 * 1024)]
    body_limit: usize,
    /// Largest document `/v1/extractors/{name}/document` reads, in bytes (413 beyond).
    #[arg(long, env = "SIFT_MAX_DOCUMENT_BYTES", default_value_t = sift_documents::DEFAULT_MAX_BYTES)]
    max_document_bytes: usize,
    /// Most pages of a PDF `/v1/extractors/{name}/document` reads (413 beyond).
    #[arg(long, env = "SIFT_MAX_DOCUMENT_PAGES", default_value_t = sift_documents::DEFAULT_MAX_PAGES)]
    max_document_pages: usize,
    /// Bytes all request bodies still arriving may hold at once; a body past it is refused
    /// with 503 and Retry-After.
    #[arg(long, env = "SIFT_BODY_MEMORY", default_value_t = 128 * 1024 * 1024)]
    body_memory: usize,
    /// Bytes compiled ad-hoc schemas may hold (estimated from their size); the least
    /// recently used go first.
    #[arg(long, env = "SIFT_ADHOC_CACHE_BYTES", default_value_t = 256 * 1024 * 1024)]
    adhoc_cache_bytes: usize,
    /// Ad-hoc schemas compiled at once, off the threads that answer requests; more wait.
    #[arg(long, env = "SIFT_SCHEMA_COMPILES", default_value_t = 1)]
    schema_compiles: usize,
    /// Model calls in flight across every request; more wait in a queue.
    #[arg(long, env = "SIFT_MAX_MODEL_CALLS", default_value_t = 64)]
    max_model_calls: usize,
    /// Model calls waiting for a place; past it a request is refused with 503 and
    /// Retry-After.
    #[arg(long, env = "SIFT_MODEL_QUEUE", default_value_t = 1024)]
    model_queue: usize,
    /// Seconds a request is given in all (0: no deadline): past it a plain request answers
    /// 504, a batch its results so far, a stream an error event.
    #[arg(long, env = "SIFT_REQUEST_DEADLINE", default_value_t = 300.0)]
    request_deadline: f64,
    /// Client connections open at once; more wait until one closes.
    #[arg(long, env = "SIFT_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (an idle keep-alive connection
    /// included); then it is disconnected.
    #[arg(long, env = "SIFT_HEADER_TIMEOUT", default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds a client has to send a request's whole body; then it gets 408.
    #[arg(long, env = "SIFT_BODY_TIMEOUT", default_value_t = 30.0)]
    body_timeout: f64,
    /// Seconds in-flight requests (streams included) get to finish after SIGINT or SIGTERM;
    /// then the process exits anyway.
    #[arg(long, env = "SIFT_SHUTDOWN_GRACE", default_value_t = 30.0)]
    shutdown_grace: f64,
    /// Print every span's and log's attributes on the console too.
    #[arg(short, long)]
    verbose: bool,
    /// Record message content (prompts and answers) on model-call spans; also turned off by
    /// OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false.
    #[arg(long, env = "SIFT_RECORD_CONTENT", default_value_t = true, action = clap::ArgAction::Set)]
    record_content: bool,
    /// Requests whose traces are kept in process for GET /v1/traces and the trace viewer at
    /// GET /traces (the newest; 0: none). Their spans are what the OTLP export sends; at most
    /// 64 MiB are kept in all. The span pipeline costs about 0.05-0.1 ms of CPU per request:
    /// 0 saves it where only throughput on a fast upstream matters.
    #[arg(long, env = "SIFT_TRACES", default_value_t = 100)]
    traces: usize,
    /// Serve the playground at GET / (a page to try the extractors in a browser).
    #[arg(long, env = "SIFT_PLAYGROUND", default_value_t = true, action = clap::ArgAction::Set)]
    playground: bool,
    /// An evaluation report (`sift eval --report FILE`) to show at GET /evals, read anew for
    /// each request (and compared with --eval-baseline when given).
    #[arg(long, env = "SIFT_EVAL_REPORT", value_name = "FILE")]
    eval_report: Option<std::path::PathBuf>,
    /// An earlier report to show the deltas against on GET /evals.
    #[arg(long, env = "SIFT_EVAL_BASELINE", value_name = "FILE")]
    eval_baseline: Option<std::path::PathBuf>,
}

/// The config's extractors, each with the client of its provider (the default one when it
/// names none). Fails, with every schema refused, when a provider cannot enforce a schema.
async fn extractors(
    file: &sift_config::Config,
    default: &Client,
    clients: &mut Clients<'_>,
) -> anyhow::Result<Vec<sift_server::Extractor>> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for spec in &file.extractors {
        let client = clients.for_extractor(Some(file), spec, default).await?;
        // A schema the provider cannot enforce stops the start (never served unconstrained).
        // A grammar compile can take a while: the worker is handed over meanwhile (sift
        // serve runs on the multi-threaded runtime).
        let checked = tokio::task::block_in_place(|| {
            client
                .provider()
                .check_schema(spec.output.constrained_schema())
        });
        if let Err(e) = checked {
            refused.push(format!("extractor `{}`: {e}", spec.name));
        }
        out.push(sift_server::Extractor::new(spec.clone(), client));
    }
    crate::check::refused(file, &refused)?;
    Ok(out)
}

/// The models `/v1/chat/completions` answers with: the default client's, listed by its
/// model's name (`PROVIDER/MODEL` as `default/...`), then each configured provider's, listed
/// as `NAME/MODEL`. `NAME/OTHER` names any model of an OpenAI-compatible provider.
async fn models(
    file: Option<&sift_config::Config>,
    default: &Client,
    default_remote: bool,
    clients: &mut Clients<'_>,
) -> anyhow::Result<Vec<sift_server::ModelRoute>> {
    let mut out = vec![
        sift_server::ModelRoute::new(default.model(), "default", default.clone())
            .any_model(default_remote),
    ];
    for (name, spec) in file.map(|f| &f.providers).into_iter().flatten() {
        let Some(file) = file else { break };
        let client = clients.configured(file, name).await?;
        let remote = !matches!(spec, sift_config::ProviderSpec::Local { .. });
        out.push(
            sift_server::ModelRoute::new(format!("{name}/{}", client.model()), name, client)
                .any_model(remote),
        );
    }
    Ok(out)
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let telemetry = providers::telemetry_keeping(
        &args.providers,
        args.verbose,
        false,
        args.record_content,
        (args.traces > 0).then(|| sift_telemetry::traces::TraceLimits {
            traces: args.traces,
            ..Default::default()
        }),
    )?;
    let result = serve(&args, &telemetry).await;
    // Flush what is buffered: blocking (at most a few seconds for a slow backend), so off the
    // async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

async fn serve(args: &ServeArgs, telemetry: &providers::Observed) -> anyhow::Result<()> {
    // The config first: a bad one stops the start before any model is loaded.
    let file = args.providers.config_file()?;
    let mut clients = Clients::new(&args.providers, telemetry, None);
    let client = clients.default_client().await?;
    if !(args.request_deadline.is_finite() && args.request_deadline >= 0.0) {
        bail!(
            "--request-deadline must be a number of seconds, 0 or more, got {}",
            args.request_deadline
        );
    }
    let deadline = (args.request_deadline > 0.0)
        .then(|| Duration::from_secs_f64(args.request_deadline.min(86_400.0 * 365.0)));
    let mut config = ServerConfig::default()
        .body_timeout(seconds("--body-timeout", args.body_timeout)?)
        .model_calls(args.max_model_calls, args.model_queue)
        .request_deadline(deadline)
        .max_concurrency(args.max_concurrency)
        .max_queries(args.max_queries)
        .body_limit(args.body_limit)
        .body_memory(args.body_memory)
        .document_limits(sift_documents::Limits {
            max_bytes: args.max_document_bytes,
            max_pages: args.max_document_pages,
        })
        .adhoc_cache(args.adhoc_cache_bytes, args.schema_compiles)
        .metrics(telemetry.metrics_renderer());
    config = config.models(
        models(
            file.as_ref(),
            &client,
            args.providers.kind() != providers::ProviderKind::Local,
            &mut clients,
        )
        .await?,
    );
    if let Some(file) = &file {
        let extractors = extractors(file, &client, &mut clients).await?;
        tracing::info!(
            config = %file.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            extractors = extractors.len(),
            "config loaded"
        );
        config = config
            .extractors(extractors)
            .adhoc(file.server.adhoc)
            .api_keys(file.server.keys()?);
        config.prices = sift_config::Pricing::new(file.prices.clone());
    } else {
        // No file: the default section's keys, those of `SIFT_API_KEYS`.
        config = config.api_keys(sift_config::ServerSection::default().keys()?);
    }
    let mut config = match telemetry.trace_continuation() {
        Some(hook) => config.request_hook(hook),
        None => config,
    };
    config.playground = args.playground;
    if let Some(report) = args.eval_report.clone() {
        let baseline = args.eval_baseline.clone();
        config.evals = Some(sift_server::EvalsPage(std::sync::Arc::new(move || {
            let read = |path: &std::path::Path| -> Result<sift_eval::Report, String> {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("could not read {}: {e}", path.display()))?;
                serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{} is not a report of sift eval --report: {e}",
                        path.display()
                    )
                })
            };
            let now = read(&report)?;
            let then = baseline.as_deref().map(read).transpose()?;
            Ok(now.html(then.as_ref()))
        })));
    }
    if let Some(store) = telemetry.trace_store() {
        config.traces = Some(std::sync::Arc::new(store.clone()));
    }
    let (app, reload) = sift_server::router_with_reload(client.clone(), config);
    let config_path = file.as_ref().and_then(|f| f.path.clone());
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("could not bind {}:{}", args.host, args.port))?;
    let addr = listener.local_addr().context("no local address")?;
    // Signal handlers first: a signal sent once `listening on` is out is ours to handle.
    let stop = shutdown_signal();
    #[cfg(unix)]
    let hangups = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP: the config will not reload"))
            .ok()
    };
    #[cfg(not(unix))]
    let hangups = ();
    println!("listening on http://{addr}");
    if !(args.shutdown_grace.is_finite() && args.shutdown_grace >= 0.0) {
        bail!(
            "--shutdown-grace must be a number of seconds, 0 or more, got {}",
            args.shutdown_grace
        );
    }
    let grace = Duration::from_secs_f64(args.shutdown_grace.min(86_400.0));
    let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
    let told = stopping.clone();
    let limits = sift_server::Listen::default()
        .max_connections(args.max_connections)
        .header_timeout(seconds("--header-timeout", args.header_timeout)?);
    // The accept loop on a task of its own: a reload (parsing, checking and swapping a large
    // config) never holds up new connections; the old config serves until the new is ready.
    let mut server = tokio::spawn(sift_server::serve(listener, app, limits, async move {
        stop.await;
        told.notify_one();
    }));
    tokio::select! {
        result = &mut server => result.context("the server task stopped")?.context("server error")?,
        () = reloads(hangups, config_path, &client, clients, &reload) => {}
        // Requests in flight get `grace` to finish; a stream that never ends does not keep
        // the process alive.
        () = async {
            stopping.notified().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "shutdown grace period over: closing the requests still open");
            eprintln!("sift: the shutdown grace period ({}s) is over; closing the requests still open", grace.as_secs_f64());
        }
    }
    tracing::info!("stopped; flushing telemetry");
    Ok(())
}

/// A flag's positive, finite number of seconds.
fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{flag} must be a positive number of seconds, got {value}");
    }
    Ok(Duration::from_secs_f64(value.min(86_400.0)))
}

/// On each `SIGHUP`, reads the config at `path` again and, when it is good, serves its
/// extractors (atomically: requests in flight finish on the old ones). A bad one is refused
/// with the reason logged, and the old one keeps serving. Only the extractors (and the
/// providers they use) are reloaded; `[server]` settings need a restart. Never ends.
#[cfg(unix)]
async fn reloads(
    hangups: Option<tokio::signal::unix::Signal>,
    path: Option<std::path::PathBuf>,
    default: &Client,
    mut clients: Clients<'_>,
    reload: &sift_server::Reload,
) {
    let Some(mut hangups) = hangups else {
        return std::future::pending().await;
    };
    while hangups.recv().await.is_some() {
        let Some(path) = &path else {
            tracing::warn!(
                "SIGHUP: sift serve was started without a config file, so there is none to reload"
            );
            continue;
        };
        let config = path.display().to_string();
        // Read and checked off the async workers (a large config takes seconds).
        let reading = path.clone();
        let parsed = tokio::task::spawn_blocking(move || sift_config::Config::load(&reading))
            .await
            .map_err(|e| anyhow::anyhow!("the config reader stopped: {e}"));
        let loaded = match parsed {
            Ok(Ok(file)) => extractors(&file, default, &mut clients).await,
            Ok(Err(e)) => Err(anyhow::anyhow!("{e}")),
            Err(e) => Err(e),
        };
        match loaded {
            Ok(list) => {
                let count = list.len();
                let swapping = reload.clone();
                // The new OpenAPI document is built there too, then swapped in at once.
                if let Err(e) = tokio::task::spawn_blocking(move || swapping.replace(list)).await {
                    tracing::error!(config, error = %e, "config reload failed; the previous one keeps serving");
                    continue;
                }
                tracing::info!(config, extractors = count, "config reloaded");
                eprintln!("sift: {config} reloaded: {}", reload.names().join(", "));
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(
                    config,
                    error,
                    "config reload refused; the previous one keeps serving"
                );
                eprintln!("sift: reload refused, the previous config keeps serving: {error}");
            }
        }
    }
    std::future::pending().await
}

/// Without SIGHUP there is nothing to reload on.
#[cfg(not(unix))]
async fn reloads(
    _: (),
    _: Option<std::path::PathBuf>,
    _: &Client,
    _: Clients<'_>,
    _: &sift_server::Reload,
) {
    std::future::pending().await
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal sent as soon as `listening on` is printed is
/// handled (not the default action, which kills the process mid-request).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        tokio::select! {
            () = next(interrupt) => {},
            () = next(terminate) => {},
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

/// The next delivery of `signal` (never, when it could not be listened for).
#[cfg(unix)]
async fn next(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
