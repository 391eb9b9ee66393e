//! Choosing and building the model provider, the same way for `serve`, `extract` and
//! `batch`: the flags and variables, the config's `[providers]`, and telemetry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use sift_config::{Config, ExtractorSpec, ProviderSpec};
use sift_core::trace::Recording;
use sift_core::{Admission, Client, Mode};
use sift_openai::{OpenAi, OpenAiConfig};
use sift_telemetry::{Telemetry, TelemetryConfig};

/// Which model backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// Any OpenAI-compatible server (`OPENAI_BASE_URL`, `OPENAI_API_KEY`).
    Openai,
    /// Anthropic's Messages API (`ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY`).
    Anthropic,
    /// Google's Gemini API (`GEMINI_BASE_URL`, `GEMINI_API_KEY`).
    Gemini,
    /// The embedded GGUF model, in-process.
    Local,
}

/// The flags that choose the model and how it is asked; each also reads its variable.
#[derive(Debug, Clone, Args)]
pub struct ProviderArgs {
    /// Model backend [default: openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else
    /// anthropic when ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL is, else gemini when
    /// GEMINI_API_KEY or GEMINI_BASE_URL is, else local].
    #[arg(long, env = "SIFT_PROVIDER", value_enum)]
    pub(crate) provider: Option<ProviderKind>,
    /// Model name sent upstream [default: the provider's, gpt-4o-mini for openai].
    #[arg(long, env = "SIFT_MODEL")]
    pub(crate) model: Option<String>,
    /// GGUF file for the local provider.
    #[arg(long, env = "SIFT_MODEL_PATH")]
    pub(crate) model_path: Option<std::path::PathBuf>,
    /// Generations the local model runs together (continuous batching; 1 to 128)
    /// [default: 8].
    #[arg(long, env = "SIFT_LOCAL_PARALLEL", value_parser = clap::value_parser!(u16).range(1..=128))]
    pub(crate) local_parallel: Option<u16>,
    /// Whether the local model keeps each sequence's last prompt, so that a later prompt
    /// sharing its beginning reads only the rest [default: true].
    #[arg(long, env = "SIFT_LOCAL_KEEP_PROMPTS")]
    pub(crate) local_keep_prompts: Option<bool>,
    /// How structured output is asked for: tools, json_schema, json or md_json.
    #[arg(long, env = "SIFT_MODE", default_value = "tools")]
    pub(crate) mode: Mode,
    /// Re-asks after an invalid answer (0 means one call).
    #[arg(long, env = "SIFT_MAX_RETRIES", default_value_t = sift_core::DEFAULT_MAX_RETRIES)]
    pub(crate) max_retries: u32,
    /// Seconds allowed for one upstream HTTP call.
    #[arg(long, env = "SIFT_TIMEOUT", default_value_t = 120.0)]
    pub(crate) timeout: f64,
    /// Largest upstream answer read, in bytes: a whole body, or one line or event of a stream.
    #[arg(long, env = "SIFT_MAX_UPSTREAM_BODY", default_value_t = sift_openai::DEFAULT_MAX_BODY)]
    pub(crate) max_upstream_body: usize,
    /// Ceiling of the token limit sent on remote calls whose extractor sets no max_tokens
    /// (the limit sent is derived from the schema's and the text's size, at least 1024).
    #[arg(long, env = "SIFT_MAX_ANSWER_TOKENS", default_value_t = sift_openai::DEFAULT_MAX_ANSWER_TOKENS)]
    pub(crate) max_answer_tokens: u32,
    /// The kind of OpenAI-compatible server: how a function call is forced first (and
    /// learned from its answers), and whether requests get temperature 0 (auto, openai,
    /// llamacpp, vllm, ollama; auto decides by the base URL).
    #[arg(long, env = "SIFT_DIALECT", default_value = "auto", value_parser = parse_dialect)]
    pub(crate) dialect: sift_openai::Dialect,
    /// Config file: providers and extractors [default: ./sift.toml when present].
    #[arg(long, env = "SIFT_CONFIG")]
    pub(crate) config: Option<std::path::PathBuf>,
}

fn parse_dialect(s: &str) -> Result<sift_openai::Dialect, String> {
    s.parse()
}

impl ProviderArgs {
    pub(crate) fn kind(&self) -> ProviderKind {
        self.provider.unwrap_or_else(default_kind)
    }

    /// The config file, when there is one (`--config`, `SIFT_CONFIG`, `./sift.toml`).
    pub(crate) fn config_file(&self) -> anyhow::Result<Option<Config>> {
        Config::discover(self.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// The provider used when none is named: OpenAI-compatible when `OPENAI_API_KEY` or
/// `OPENAI_BASE_URL` is set, else Anthropic when `ANTHROPIC_API_KEY` or `ANTHROPIC_BASE_URL`
/// is, else Gemini when `GEMINI_API_KEY` or `GEMINI_BASE_URL` is, else the embedded model.
pub(crate) fn default_kind() -> ProviderKind {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    if set("OPENAI_API_KEY") || set("OPENAI_BASE_URL") {
        ProviderKind::Openai
    } else if set("ANTHROPIC_API_KEY") || set("ANTHROPIC_BASE_URL") {
        ProviderKind::Anthropic
    } else if set("GEMINI_API_KEY") || set("GEMINI_BASE_URL") {
        ProviderKind::Gemini
    } else {
        ProviderKind::Local
    }
}

/// Sets up telemetry: the console (on stderr), exporters from the environment. `quiet` keeps
/// the console to errors unless `SIFT_LOG` or `RUST_LOG` says otherwise (the command-line
/// tools, whose output is their answer); `verbose` shows attributes too.
pub(crate) fn telemetry(
    args: &ProviderArgs,
    verbose: bool,
    quiet: bool,
    record_content: bool,
) -> anyhow::Result<Observed> {
    telemetry_keeping(args, verbose, quiet, record_content, None)
}

/// [`telemetry`], keeping the recent traces within `keep_traces` (`sift serve`).
pub(crate) fn telemetry_keeping(
    args: &ProviderArgs,
    verbose: bool,
    quiet: bool,
    record_content: bool,
    keep_traces: Option<sift_telemetry::traces::TraceLimits>,
) -> anyhow::Result<Observed> {
    let mut config = TelemetryConfig::from_env();
    config.keep_traces = keep_traces;
    config.scrub.secrets.extend(secrets(args));
    let filter_set = ["SIFT_LOG", "RUST_LOG"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()));
    if quiet && !verbose && !filter_set {
        config.console_filter = "error".into();
    }
    if verbose
        && !quiet
        && let Some(console) = &mut config.console
    {
        console.verbose = true;
        if !filter_set {
            // llama.cpp's warnings too.
            config.console_filter = sift_telemetry::VERBOSE_FILTER.into();
        }
    }
    let standard_off = std::env::var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("false"));
    let console_verbose = config.console.as_ref().is_some_and(|c| c.verbose);
    let telemetry = Telemetry::init(config).context("could not set up telemetry")?;
    for target in telemetry.exporting() {
        tracing::info!(target = target.as_str(), "exporting traces");
    }
    let allowed = record_content && !standard_off;
    // What every client built from this telemetry records: content where it is allowed, on
    // spans only where something shows it (an exporter, the kept traces or the verbose
    // console); and what
    // clients are shown (error bodies, batch output) scrubbed as the logs are.
    let scrubber = telemetry.scrubber();
    let recording = Recording::default()
        .with_log_content(allowed)
        .with_span_content(
            allowed
                && (console_verbose
                    || telemetry.is_exporting()
                    || telemetry.trace_store().is_some()),
        )
        .with_scrubber(Arc::new(move |text: &str| scrubber.scrub_text(text)));
    Ok(Observed {
        telemetry,
        recording,
    })
}

/// Telemetry, and what the clients built under it record of their content.
pub(crate) struct Observed {
    pub(crate) telemetry: Telemetry,
    pub(crate) recording: Recording,
}

impl std::ops::Deref for Observed {
    type Target = Telemetry;
    fn deref(&self) -> &Telemetry {
        &self.telemetry
    }
}

/// Telemetry for a command-line tool (`extract`, `batch`, `eval`): quiet unless `verbose`;
/// `Err` is the exit code after the problem is printed.
pub(crate) fn tool_telemetry(
    args: &ProviderArgs,
    verbose: bool,
) -> Result<Observed, std::process::ExitCode> {
    telemetry(args, false, !verbose, true).map_err(|e| {
        eprintln!("error: {e:#}");
        std::process::ExitCode::from(crate::extract::EXIT_INPUT)
    })
}

/// Flushes `telemetry` (blocking, so off the async workers), then turns a tool's result into
/// its exit code, printing a failure.
pub(crate) async fn finish(
    Observed { telemetry, .. }: Observed,
    result: Result<std::process::ExitCode, crate::extract::Failed>,
) -> std::process::ExitCode {
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            std::process::ExitCode::from(f.code)
        }
    }
}

/// The keys sift holds besides `OPENAI_API_KEY` (which telemetry already masks): Anthropic's
/// and Gemini's,
/// the config's providers' keys and the service keys, so that none is ever shown.
fn secrets(args: &ProviderArgs) -> Vec<String> {
    // Whatever a list holds, so that none is shown (a blank entry is refused by `serve`).
    let listed = |var: &str| -> Vec<String> {
        std::env::var(var)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = listed("SIFT_API_KEYS");
    out.extend(listed("ANTHROPIC_API_KEY"));
    out.extend(listed("GEMINI_API_KEY"));
    // A config that does not load is reported by the command itself.
    if let Ok(Some(file)) = args.config_file() {
        out.extend(file.server.api_keys.iter().cloned());
        out.extend(listed(&file.server.api_keys_env));
        for provider in file.providers.values() {
            let var = match provider {
                ProviderSpec::OpenAi { api_key_env, .. }
                | ProviderSpec::Anthropic { api_key_env, .. }
                | ProviderSpec::Gemini { api_key_env, .. } => api_key_env.as_deref(),
                _ => None,
            };
            if let Some(var) = var
                && let Ok(key) = std::env::var(var)
                && !key.is_empty()
            {
                out.push(key);
            }
        }
    }
    out
}

/// Builds clients: the default one and those of the config's providers, each built once by
/// name and settings (and kept across reloads while they stay the same, so a reload does not
/// load the embedded model again).
pub(crate) struct Clients<'a> {
    args: &'a ProviderArgs,
    telemetry: &'a Observed,
    /// Given to every OpenAI-compatible provider built (`sift batch`'s rate limits).
    admission: Option<Arc<dyn Admission>>,
    built: HashMap<(String, String), Client>,
}

impl<'a> Clients<'a> {
    pub(crate) fn new(
        args: &'a ProviderArgs,
        telemetry: &'a Observed,
        admission: Option<Arc<dyn Admission>>,
    ) -> Self {
        Self {
            args,
            telemetry,
            admission,
            built: HashMap::new(),
        }
    }

    /// The client used when an extractor names no provider: from the flags and variables.
    pub(crate) async fn default_client(&self) -> anyhow::Result<Client> {
        let args = self.args;
        let client = match self.remote_default()? {
            Some(remote) => remote.client(),
            None => local_client(args.model_path.as_deref(), args).await?,
        };
        let client = match (&args.model, args.kind()) {
            (Some(m), ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::Gemini) => {
                client.with_model(m)
            }
            _ => client,
        };
        Ok(client
            .with_mode(args.mode)
            .with_max_retries(args.max_retries)
            .with_recording(self.telemetry.recording.clone()))
    }

    /// The client of `spec` (the default one when it names no provider), its model, mode
    /// and re-asks applied over the flags'.
    pub(crate) async fn for_extractor(
        &mut self,
        file: Option<&Config>,
        spec: &ExtractorSpec,
        default: &Client,
    ) -> anyhow::Result<Client> {
        let client = match (&spec.provider, file) {
            (Some(name), Some(file)) => self.chain(file, name, &spec.fallbacks).await?,
            _ => default.clone(),
        };
        Ok(spec.client(client))
    }

    /// The client of provider `first`, or with `fallbacks`, of the chain asking them in
    /// order (its mode, re-asks and recording the first's).
    async fn chain(
        &mut self,
        file: &Config,
        first: &str,
        fallbacks: &[String],
    ) -> anyhow::Result<Client> {
        let head = self.configured(file, first).await?;
        if fallbacks.is_empty() {
            return Ok(head);
        }
        let mut members = vec![head.clone()];
        for name in fallbacks {
            members.push(self.configured(file, name).await?);
        }
        let chain = sift_core::Fallback::of(&members).context("an empty fallback chain")?;
        Ok(head.with_provider(Arc::new(chain)))
    }

    /// The client of `spec` alone (`extract`, `batch`): the default one is built only when
    /// `spec` names no provider.
    pub(crate) async fn only_for(
        &mut self,
        file: Option<&Config>,
        spec: &ExtractorSpec,
    ) -> anyhow::Result<Client> {
        let client = match (&spec.provider, file) {
            (Some(name), Some(file)) => self.chain(file, name, &spec.fallbacks).await?,
            _ => self.default_client().await?,
        };
        Ok(spec.client(client))
    }

    /// The client of the config's provider `name`, built once per settings.
    pub(crate) async fn configured(&mut self, file: &Config, name: &str) -> anyhow::Result<Client> {
        let provider = file
            .providers
            .get(name)
            .with_context(|| format!("no provider `{name}`"))?;
        let key = (name.to_owned(), format!("{provider:?}"));
        let client = match self.built.get(&key) {
            Some(c) => c.clone(),
            None => {
                let c = self.named(name, provider).await?;
                self.built.insert(key, c.clone());
                c
            }
        };
        Ok(client
            .with_mode(self.args.mode)
            .with_max_retries(self.args.max_retries)
            .with_recording(self.telemetry.recording.clone()))
    }

    /// The flags' timeout and body limit, telemetry's header hook and the admission, over
    /// `config`.
    fn openai(&self, config: OpenAiConfig) -> anyhow::Result<OpenAiConfig> {
        let mut config = config
            .dialect(self.args.dialect)
            .timeout(upstream_timeout(self.args.timeout)?)
            .max_body(self.args.max_upstream_body)
            .max_answer_tokens(self.args.max_answer_tokens);
        if let Some(hook) = self.telemetry.trace_propagation() {
            config = config.header_hook(hook);
        }
        if let Some(a) = &self.admission {
            config = config.admission(a.clone());
        }
        Ok(config)
    }

    /// The flags' timeout, body limit and token ceiling, telemetry's header hook and the
    /// admission, over an Anthropic `config`.
    fn anthropic(
        &self,
        config: sift_anthropic::AnthropicConfig,
    ) -> anyhow::Result<sift_anthropic::AnthropicConfig> {
        let mut config = config
            .timeout(upstream_timeout(self.args.timeout)?)
            .max_body(self.args.max_upstream_body)
            .max_answer_tokens(self.args.max_answer_tokens);
        if let Some(hook) = self.telemetry.trace_propagation() {
            config = config.header_hook(hook);
        }
        if let Some(a) = &self.admission {
            config = config.admission(a.clone());
        }
        Ok(config)
    }

    /// The flags' timeout, body limit and token ceiling, telemetry's header hook and the
    /// admission, over a Gemini `config`.
    fn gemini(
        &self,
        config: sift_gemini::GeminiConfig,
    ) -> anyhow::Result<sift_gemini::GeminiConfig> {
        let mut config = config
            .timeout(upstream_timeout(self.args.timeout)?)
            .max_body(self.args.max_upstream_body)
            .max_answer_tokens(self.args.max_answer_tokens);
        if let Some(hook) = self.telemetry.trace_propagation() {
            config = config.header_hook(hook);
        }
        if let Some(a) = &self.admission {
            config = config.admission(a.clone());
        }
        Ok(config)
    }

    /// The settings of an OpenAI-compatible provider: the config's `name` (`base_url`,
    /// `api_key_env`), or the environment's.
    fn openai_settings(
        &self,
        name: &str,
        base_url: Option<&String>,
        api_key_env: Option<&String>,
        dialect: Option<&String>,
    ) -> anyhow::Result<OpenAiConfig> {
        let config = match base_url {
            None => OpenAiConfig::from_env(),
            Some(url) => {
                let config = OpenAiConfig::new(url.clone());
                match std::env::var("OPENAI_API_KEY") {
                    Ok(key) => config.api_key(key),
                    Err(_) => config,
                }
            }
        };
        let mut config = self.openai(config)?;
        if let Some(var) = api_key_env {
            let key = std::env::var(var).with_context(|| {
                format!("provider `{name}` reads its key from {var}, which is not set")
            })?;
            config = config.api_key(key);
        }
        if let Some(d) = dialect {
            config = config.dialect(
                d.parse()
                    .map_err(|e: String| anyhow::anyhow!("provider `{name}`: {e}"))?,
            );
        }
        Ok(config)
    }

    /// The provider whose batch API `via` names that answers `spec`, and the client made of
    /// it with the model, mode and re-asks the direct path would use: the config's provider
    /// the extractor names (which must be of that kind), or the environment's.
    pub(crate) fn batch_api_for(
        &self,
        file: Option<&Config>,
        spec: &ExtractorSpec,
        via: crate::batch::Via,
    ) -> anyhow::Result<(Arc<dyn sift_core::batch::BatchApi>, Client)> {
        use crate::batch::Via;
        let (kind, flag) = match via {
            Via::AnthropicBatch => (ProviderKind::Anthropic, "anthropic-batch"),
            Via::GeminiBatch => (ProviderKind::Gemini, "gemini-batch"),
            _ => (ProviderKind::Openai, "openai-batch"),
        };
        let wanted = match kind {
            ProviderKind::Anthropic => "an Anthropic provider",
            ProviderKind::Gemini => "a Gemini provider",
            _ => "an OpenAI-compatible provider",
        };
        let (remote, model) = match (&spec.provider, file) {
            (Some(name), Some(file)) => {
                let Some(provider) = file.providers.get(name) else {
                    bail!("no provider `{name}`");
                };
                let fits = matches!(
                    (provider, kind),
                    (ProviderSpec::OpenAi { .. }, ProviderKind::Openai)
                        | (ProviderSpec::Anthropic { .. }, ProviderKind::Anthropic)
                        | (ProviderSpec::Gemini { .. }, ProviderKind::Gemini)
                );
                if !fits {
                    bail!(
                        "--via {flag} needs {wanted}, and extractor `{}` uses `{name}`, which is \
                         not one",
                        spec.name
                    );
                }
                self.remote(name, provider)?
                    .ok_or_else(|| anyhow::anyhow!("provider `{name}` is not remote"))?
            }
            _ => {
                if self.args.kind() != kind {
                    let vars = match kind {
                        ProviderKind::Anthropic => "ANTHROPIC_API_KEY (or --provider anthropic)",
                        ProviderKind::Gemini => "GEMINI_API_KEY (or --provider gemini)",
                        _ => {
                            "OPENAI_API_KEY (and OPENAI_BASE_URL for another server than OpenAI's)"
                        }
                    };
                    bail!("--via {flag} needs {wanted}: set {vars}");
                }
                let remote = self
                    .remote_default()?
                    .ok_or_else(|| anyhow::anyhow!("--via {flag} needs {wanted}"))?;
                (remote, self.args.model.clone())
            }
        };
        let api = remote.batch_api();
        let mut client = remote
            .client()
            .with_mode(self.args.mode)
            .with_max_retries(self.args.max_retries)
            .with_recording(self.telemetry.recording.clone());
        if let Some(m) = model {
            client = client.with_model(m);
        }
        Ok((api, spec.client(client)))
    }

    /// The remote provider the config's `name` declares (`None` for the embedded model), and
    /// its model.
    fn remote(
        &self,
        name: &str,
        spec: &ProviderSpec,
    ) -> anyhow::Result<Option<(Remote, Option<String>)>> {
        let built = match spec {
            ProviderSpec::OpenAi {
                base_url,
                api_key_env,
                model,
                dialect,
                ..
            } => {
                let config = self.openai_settings(
                    name,
                    base_url.as_ref(),
                    api_key_env.as_ref(),
                    dialect.as_ref(),
                )?;
                tracing::info!(
                    provider = name,
                    base_url = config.base_url(),
                    "provider: openai-compatible"
                );
                let api = OpenAi::new(config)
                    .with_context(|| format!("could not set up provider `{name}`"))?;
                (Remote::OpenAi(Arc::new(api)), model.clone())
            }
            ProviderSpec::Anthropic {
                base_url,
                api_key_env,
                model,
                version,
                beta_output_format,
                ..
            } => {
                let mut config = match base_url {
                    Some(url) => sift_anthropic::AnthropicConfig::new(url.clone()),
                    None => sift_anthropic::AnthropicConfig::from_env(),
                };
                if let Some(key) = provider_key(name, api_key_env.as_deref(), "ANTHROPIC_API_KEY")?
                {
                    config = config.api_key(key);
                }
                if let Some(v) = version {
                    config = config.version(v.clone());
                }
                let config = self.anthropic(config.beta_output_format(*beta_output_format))?;
                tracing::info!(
                    provider = name,
                    base_url = config.base_url(),
                    "provider: anthropic"
                );
                let api = sift_anthropic::Anthropic::new(config)
                    .with_context(|| format!("could not set up provider `{name}`"))?;
                (Remote::Anthropic(Arc::new(api)), model.clone())
            }
            ProviderSpec::Gemini {
                base_url,
                api_key_env,
                model,
                version,
                schema_dialect,
                ..
            } => {
                let mut config = match base_url {
                    Some(url) => sift_gemini::GeminiConfig::new(url.clone()),
                    None => sift_gemini::GeminiConfig::from_env(),
                };
                if let Some(key) = provider_key(name, api_key_env.as_deref(), "GEMINI_API_KEY")? {
                    config = config.api_key(key);
                }
                if let Some(v) = version {
                    config = config.version(v.clone());
                }
                match schema_dialect.as_deref() {
                    Some("openapi") => {
                        config = config.schema_dialect(sift_gemini::SchemaDialect::OpenApi);
                    }
                    Some("json_schema") => {
                        config = config.schema_dialect(sift_gemini::SchemaDialect::JsonSchema);
                    }
                    _ => {}
                }
                let config = self.gemini(config)?;
                tracing::info!(
                    provider = name,
                    base_url = config.base_url(),
                    "provider: gemini"
                );
                let api = sift_gemini::Gemini::new(config)
                    .with_context(|| format!("could not set up provider `{name}`"))?;
                (Remote::Gemini(Arc::new(api)), model.clone())
            }
            _ => return Ok(None),
        };
        Ok(Some(built))
    }

    /// The remote provider the flags and variables choose (`None` for the embedded model).
    fn remote_default(&self) -> anyhow::Result<Option<Remote>> {
        Ok(Some(match self.args.kind() {
            ProviderKind::Openai => {
                let config = self.openai(OpenAiConfig::from_env())?;
                tracing::info!(base_url = config.base_url(), "provider: openai-compatible");
                Remote::OpenAi(Arc::new(
                    OpenAi::new(config).context("could not set up the OpenAI provider")?,
                ))
            }
            ProviderKind::Anthropic => {
                let config = self.anthropic(sift_anthropic::AnthropicConfig::from_env())?;
                tracing::info!(base_url = config.base_url(), "provider: anthropic");
                Remote::Anthropic(Arc::new(
                    sift_anthropic::Anthropic::new(config)
                        .context("could not set up the Anthropic provider")?,
                ))
            }
            ProviderKind::Gemini => {
                let config = self.gemini(sift_gemini::GeminiConfig::from_env())?;
                tracing::info!(base_url = config.base_url(), "provider: gemini");
                Remote::Gemini(Arc::new(
                    sift_gemini::Gemini::new(config)
                        .context("could not set up the Gemini provider")?,
                ))
            }
            ProviderKind::Local => return Ok(None),
        }))
    }

    async fn named(&self, name: &str, spec: &ProviderSpec) -> anyhow::Result<Client> {
        if let Some((remote, model)) = self.remote(name, spec)? {
            let client = remote.client();
            return Ok(match model {
                Some(m) => client.with_model(m),
                None => client,
            });
        }
        match spec {
            ProviderSpec::Local { model_path } => {
                local_client(
                    model_path.as_deref().or(self.args.model_path.as_deref()),
                    self.args,
                )
                .await
            }
            _ => bail!("provider `{name}`: this kind is not supported by this sift"),
        }
    }
}

/// A remote provider, kept as its type as well as a client's: its batch API is used too.
#[derive(Debug, Clone)]
enum Remote {
    OpenAi(Arc<OpenAi>),
    Anthropic(Arc<sift_anthropic::Anthropic>),
    Gemini(Arc<sift_gemini::Gemini>),
}

impl Remote {
    fn client(&self) -> Client {
        match self {
            Remote::OpenAi(p) => Client::from_arc(p.clone()),
            Remote::Anthropic(p) => Client::from_arc(p.clone()),
            Remote::Gemini(p) => Client::from_arc(p.clone()),
        }
    }

    fn batch_api(&self) -> Arc<dyn sift_core::batch::BatchApi> {
        match self {
            Remote::OpenAi(p) => p.clone(),
            Remote::Anthropic(p) => p.clone(),
            Remote::Gemini(p) => p.clone(),
        }
    }
}

/// The key of provider `name`: from its `api_key_env` (which must then be set), else from
/// the vendor's variable `default_var` when set.
fn provider_key(
    name: &str,
    api_key_env: Option<&str>,
    default_var: &str,
) -> anyhow::Result<Option<String>> {
    let var = api_key_env.unwrap_or(default_var);
    match std::env::var(var) {
        Ok(key) if !key.is_empty() => Ok(Some(key)),
        _ if api_key_env.is_some() => {
            bail!("provider `{name}` reads its key from {var}, which is not set")
        }
        _ => Ok(None),
    }
}

#[cfg(feature = "local")]
async fn local_client(
    path: Option<&std::path::Path>,
    args: &ProviderArgs,
) -> anyhow::Result<Client> {
    let mut config = sift_local::LocalConfig::default();
    if let Some(path) = path {
        config = config.model_path(path);
    }
    if let Some(n) = args.local_parallel {
        config = config.parallel(usize::from(n));
    }
    if let Some(on) = args.local_keep_prompts {
        config = config.keep_prompts(on);
    }
    tracing::info!("provider: local (embedded model)");
    let provider = tokio::task::spawn_blocking(move || sift_local::LocalProvider::load(config))
        .await
        .context("the model loader stopped")?
        .context("could not start the embedded model")?;
    Ok(Client::new(provider))
}

#[cfg(not(feature = "local"))]
async fn local_client(_: Option<&std::path::Path>, _: &ProviderArgs) -> anyhow::Result<Client> {
    bail!(
        "this sift was built without the embedded model (feature `local`); \
         point it at an OpenAI-compatible server with OPENAI_BASE_URL (and OPENAI_API_KEY), \
         or pass --provider openai"
    )
}

/// `--timeout` as a duration: a positive, finite number of seconds.
fn upstream_timeout(seconds: f64) -> anyhow::Result<Duration> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--timeout must be a positive number of seconds, got {seconds}");
    }
    Ok(Duration::from_secs_f64(seconds.min(86_400.0 * 365.0)))
}
