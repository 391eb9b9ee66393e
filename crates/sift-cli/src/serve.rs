//! `sift serve`.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use sift_core::{Client, Mode};
use sift_openai::{OpenAi, OpenAiConfig};
use sift_server::ServerConfig;
use sift_telemetry::{Telemetry, TelemetryConfig};

/// Which model backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// Any OpenAI-compatible server (`OPENAI_BASE_URL`, `OPENAI_API_KEY`).
    Openai,
    /// The embedded GGUF model, in-process.
    Local,
}

/// Flags of `sift serve`; each also reads its environment variable.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "SIFT_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to bind (0 picks a free one and prints it).
    #[arg(long, env = "SIFT_PORT", default_value_t = 8000)]
    port: u16,
    /// Model backend [default: openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else local].
    #[arg(long, env = "SIFT_PROVIDER", value_enum)]
    provider: Option<ProviderKind>,
    /// Model name sent upstream [default: the provider's, gpt-4o-mini for openai].
    #[arg(long, env = "SIFT_MODEL")]
    model: Option<String>,
    /// GGUF file for the local provider.
    #[arg(long, env = "SIFT_MODEL_PATH")]
    model_path: Option<std::path::PathBuf>,
    /// Model calls in flight per /many-users request.
    #[arg(long, env = "SIFT_MAX_CONCURRENCY", default_value_t = 16)]
    max_concurrency: usize,
    /// Most queries accepted by one /many-users request.
    #[arg(long, env = "SIFT_MAX_QUERIES", default_value_t = 1000)]
    max_queries: usize,
    /// Largest request body, in bytes.
    #[arg(long, env = "SIFT_BODY_LIMIT", default_value_t = 1024 * 1024)]
    body_limit: usize,
    /// How structured output is asked for: tools, json_schema, json or md_json.
    #[arg(long, env = "SIFT_MODE", default_value = "tools")]
    mode: Mode,
    /// Re-asks after an invalid answer (0 means one call).
    #[arg(long, env = "SIFT_MAX_RETRIES", default_value_t = sift_core::DEFAULT_MAX_RETRIES)]
    max_retries: u32,
    /// Seconds allowed for one upstream HTTP call.
    #[arg(long, env = "SIFT_TIMEOUT", default_value_t = 120.0)]
    timeout: f64,
    /// Seconds in-flight requests (streams included) get to finish after SIGINT or SIGTERM;
    /// then the process exits anyway.
    #[arg(long, env = "SIFT_SHUTDOWN_GRACE", default_value_t = 30.0)]
    shutdown_grace: f64,
    /// Largest upstream answer read, in bytes: a whole body, or one line or event of a stream.
    #[arg(long, env = "SIFT_MAX_UPSTREAM_BODY", default_value_t = sift_openai::DEFAULT_MAX_BODY)]
    max_upstream_body: usize,
    /// Print every span's and log's attributes on the console too.
    #[arg(short, long)]
    verbose: bool,
    /// Record message content (prompts and answers) on model-call spans; also turned off by
    /// OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false.
    #[arg(long, env = "SIFT_RECORD_CONTENT", default_value_t = true, action = clap::ArgAction::Set)]
    record_content: bool,
    /// Config file: providers and extractors [default: ./sift.toml when present].
    #[arg(long, env = "SIFT_CONFIG")]
    pub(crate) config: Option<std::path::PathBuf>,
}

fn init_telemetry(args: &ServeArgs) -> anyhow::Result<Telemetry> {
    let mut config = TelemetryConfig::from_env();
    if args.verbose
        && let Some(console) = &mut config.console
    {
        console.verbose = true;
    }
    let standard_off = std::env::var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("false"));
    let verbose = config.console.as_ref().is_some_and(|c| c.verbose);
    let telemetry = Telemetry::init(config).context("could not set up telemetry")?;
    // Content is written out only where something shows it: an exporter or the verbose
    // console.
    sift_core::trace::set_record_content(
        args.record_content && !standard_off && (verbose || telemetry.is_exporting()),
    );
    for target in telemetry.exporting() {
        tracing::info!(target = target.as_str(), "exporting traces");
    }
    Ok(telemetry)
}

fn provider_kind(args: &ServeArgs) -> ProviderKind {
    args.provider.unwrap_or_else(default_kind)
}

/// The provider used when none is named: OpenAI-compatible when `OPENAI_API_KEY` or
/// `OPENAI_BASE_URL` is set, else the embedded model.
pub(crate) fn default_kind() -> ProviderKind {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    if set("OPENAI_API_KEY") || set("OPENAI_BASE_URL") {
        ProviderKind::Openai
    } else {
        ProviderKind::Local
    }
}

#[cfg(feature = "local")]
async fn local_client(args: &ServeArgs) -> anyhow::Result<Client> {
    let mut config = sift_local::LocalConfig::default();
    if let Some(path) = &args.model_path {
        config = config.model_path(path);
    }
    tracing::info!("provider: local (embedded model)");
    let provider = tokio::task::spawn_blocking(move || sift_local::LocalProvider::load(config))
        .await
        .context("the model loader stopped")?
        .context("could not start the embedded model")?;
    Ok(Client::new(provider))
}

#[cfg(not(feature = "local"))]
async fn local_client(_: &ServeArgs) -> anyhow::Result<Client> {
    bail!(
        "this sift was built without the embedded model (feature `local`); \
         point it at an OpenAI-compatible server with OPENAI_BASE_URL (and OPENAI_API_KEY), \
         or pass --provider openai"
    )
}

/// `--timeout` as a duration: a positive, finite number of seconds.
fn upstream_timeout(args: &ServeArgs) -> anyhow::Result<Duration> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!(
            "--timeout must be a positive number of seconds, got {}",
            args.timeout
        );
    }
    Ok(Duration::from_secs_f64(args.timeout))
}

async fn client(args: &ServeArgs, telemetry: &Telemetry) -> anyhow::Result<Client> {
    let client = match provider_kind(args) {
        ProviderKind::Openai => {
            let mut config = OpenAiConfig::from_env()
                .timeout(upstream_timeout(args)?)
                .max_body(args.max_upstream_body);
            if let Some(hook) = telemetry.trace_propagation() {
                config = config.header_hook(hook);
            }
            tracing::info!(base_url = config.base_url(), "provider: openai-compatible");
            Client::new(OpenAi::new(config).context("could not set up the OpenAI provider")?)
        }
        ProviderKind::Local => local_client(args).await?,
    };
    let client = match (&args.model, provider_kind(args)) {
        (Some(m), ProviderKind::Openai) => client.with_model(m),
        _ => client,
    };
    Ok(client
        .with_mode(args.mode)
        .with_max_retries(args.max_retries))
}

async fn provider_client(
    name: &str,
    spec: &sift_config::ProviderSpec,
    args: &ServeArgs,
    telemetry: &Telemetry,
) -> anyhow::Result<Client> {
    match spec {
        sift_config::ProviderSpec::OpenAi {
            base_url,
            api_key_env,
            model,
        } => {
            let mut config = match base_url {
                None => OpenAiConfig::from_env(),
                Some(url) => {
                    let config = OpenAiConfig::new(url.clone());
                    match std::env::var("OPENAI_API_KEY") {
                        Ok(key) => config.api_key(key),
                        Err(_) => config,
                    }
                }
            }
            .timeout(upstream_timeout(args)?)
            .max_body(args.max_upstream_body);
            if let Some(var) = api_key_env {
                let key = std::env::var(var).with_context(|| {
                    format!("provider `{name}` reads its key from {var}, which is not set")
                })?;
                config = config.api_key(key);
            }
            if let Some(hook) = telemetry.trace_propagation() {
                config = config.header_hook(hook);
            }
            tracing::info!(
                provider = name,
                base_url = config.base_url(),
                "provider: openai-compatible"
            );
            let client = Client::new(
                OpenAi::new(config)
                    .with_context(|| format!("could not set up provider `{name}`"))?,
            );
            Ok(match model {
                Some(m) => client.with_model(m),
                None => client,
            })
        }
        sift_config::ProviderSpec::Local { model_path } => {
            let mut local = ServeArgs {
                model_path: model_path.clone(),
                ..args.clone()
            };
            local.provider = Some(ProviderKind::Local);
            local_client(&local).await
        }
        _ => bail!("provider `{name}`: this kind is not supported by this sift"),
    }
}

/// The clients of the config's providers, by name and settings: built once each, and kept
/// across reloads while a provider's settings stay the same (a reload does not load the
/// embedded model again).
type Providers = std::collections::HashMap<(String, String), Client>;

/// The config's extractors, each with the client of its provider (the default one when it
/// names none). Fails, with every schema refused, when a provider cannot enforce a schema.
async fn extractors(
    file: &sift_config::Config,
    default: &Client,
    args: &ServeArgs,
    telemetry: &Telemetry,
    providers: &mut Providers,
) -> anyhow::Result<Vec<sift_server::Extractor>> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for spec in &file.extractors {
        let client = match &spec.provider {
            None => default.clone(),
            Some(name) => {
                let provider = file
                    .providers
                    .get(name)
                    .with_context(|| format!("no provider `{name}`"))?;
                let key = (name.clone(), format!("{provider:?}"));
                match providers.get(&key) {
                    Some(c) => c.clone(),
                    None => {
                        let c = provider_client(name, provider, args, telemetry).await?;
                        providers.insert(key, c.clone());
                        c
                    }
                }
            }
        };
        let client = client
            .with_mode(args.mode)
            .with_max_retries(args.max_retries);
        // A schema the provider cannot enforce stops the start (never served unconstrained).
        if let Err(e) = client
            .provider()
            .check_schema(spec.output.constrained_schema())
        {
            refused.push(format!("extractor `{}`: {e}", spec.name));
        }
        out.push(sift_server::Extractor::new(spec.clone(), client));
    }
    crate::check::refused(file, &refused)?;
    Ok(out)
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let telemetry = init_telemetry(&args)?;
    let result = serve(&args, &telemetry).await;
    // Flush what is buffered: blocking (at most a few seconds for a slow backend), so off the
    // async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

async fn serve(args: &ServeArgs, telemetry: &Telemetry) -> anyhow::Result<()> {
    // The config first: a bad one stops the start before any model is loaded.
    let file = sift_config::Config::discover(args.config.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = client(args, telemetry).await?;
    let mut config = ServerConfig::default()
        .max_concurrency(args.max_concurrency)
        .max_queries(args.max_queries)
        .body_limit(args.body_limit)
        .metrics(telemetry.metrics_renderer());
    let mut providers = Providers::new();
    if let Some(file) = &file {
        let extractors = extractors(file, &client, args, telemetry, &mut providers).await?;
        tracing::info!(
            config = %file.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            extractors = extractors.len(),
            "config loaded"
        );
        config = config
            .extractors(extractors)
            .adhoc(file.server.adhoc)
            .api_keys(file.server.keys());
    } else if let Ok(keys) = std::env::var("SIFT_API_KEYS") {
        config = config.api_keys(
            keys.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect(),
        );
    }
    let config = match telemetry.trace_continuation() {
        Some(hook) => config.request_hook(hook),
        None => config,
    };
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
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop.await;
        told.notify_one();
    });
    tokio::select! {
        result = server => result.context("server error")?,
        () = reloads(hangups, config_path, &client, args, telemetry, providers, &reload) => {}
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

/// On each `SIGHUP`, reads the config at `path` again and, when it is good, serves its
/// extractors (atomically: requests in flight finish on the old ones). A bad one is refused
/// with the reason logged, and the old one keeps serving. Only the extractors (and the
/// providers they use) are reloaded; `[server]` settings need a restart. Never ends.
#[cfg(unix)]
async fn reloads(
    hangups: Option<tokio::signal::unix::Signal>,
    path: Option<std::path::PathBuf>,
    default: &Client,
    args: &ServeArgs,
    telemetry: &Telemetry,
    mut providers: Providers,
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
        let loaded = match sift_config::Config::load(path) {
            Ok(file) => extractors(&file, default, args, telemetry, &mut providers).await,
            Err(e) => Err(anyhow::anyhow!("{e}")),
        };
        match loaded {
            Ok(list) => {
                let count = list.len();
                reload.replace(list);
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
    _: &ServeArgs,
    _: &Telemetry,
    _: Providers,
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
