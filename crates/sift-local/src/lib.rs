//! sift's embedded default model: a GGUF model run in-process by llama.cpp, its output
//! constrained token by token to the requested JSON Schema by llguidance, so every answer
//! parses and fits the schema, offline, with no API key.
//!
//! - The model is any GGUF llama.cpp supports; tokenizer, end tokens and chat template come
//!   from the file. With none given, the default SmolLM2-135M-Instruct (Q4_1) is fetched once
//!   into the cache folder and checked (see [`model_file`]).
//! - Inference runs on its own thread, several generations at once in one context (continuous
//!   batching: each step decodes the next token of every running generation together, and a
//!   new request joins at the next step). Prompts are kept in the KV cache and a new prompt
//!   reads only what it does not share with a kept one (the chat-rendered system prompt and
//!   instructions of an extractor, the earlier turns of a re-ask); the tokens reused are
//!   reported as cached input tokens. Requests beyond the running ones wait in a bounded
//!   queue, and only a full queue is refused with [`ProviderError::Busy`] (the service answers
//!   `503` with `Retry-After`). A caller that goes away stops its generation at the next token
//!   and frees its place at once.
//! - Temperature 0 (greedy) by default. An answer cut by the token limit ends with
//!   `finish_reason: length`, as a remote model's does (sift reports it as a token-limit error).
//! - Every mode is constrained to the whole schema, read from the request's
//!   [`Structured`](sift_core::Structured) (never guessed from the prompt): a forced tool call
//!   is answered as the call, `md_json` inside a fence. The grammar is exact where llguidance
//!   compiles the schema as it is, approximate where only its lenient options compile it; a
//!   schema neither compiles is refused up front ([`Provider::check_schema`]) with the keyword
//!   and its JSON pointer, never answered unconstrained.
//!
//! ```no_run
//! let provider = sift_local::LocalProvider::load(sift_local::LocalConfig::default())?;
//! let client = sift_core::Client::new(provider);
//! # Ok::<(), sift_local::LocalError>(())
//! ```

mod engine;
pub use engine::EngineError;
mod bounds;
mod grammar;
mod grounded;
pub mod model_file;
mod prefix;
mod scheduler;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use sift_core::{
    Capabilities, ChatDelta, ChatRequest, ChatResponse, ChatStream, Mode, OutputFormat, Provider,
    ProviderError, Role, SchemaError, ToolCall, Usage, async_trait,
};

use crate::engine::{Engine, EngineConfig, Job, Piece, Rejected};
use crate::grammar::Grammars;

/// How the embedded model enforces a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Enforcement {
    /// Every keyword, by the grammar, while decoding.
    Exact,
    /// Most keywords by the grammar (llguidance's lenient options: keywords it does not
    /// implement are ignored, `oneOf` read as `anyOf`); the rest by validation and re-ask.
    Approximate,
}

/// Whether the embedded model can enforce `schema`, and how, without loading a model (the
/// outcome does not depend on the vocabulary). A refusal names the keyword and its JSON
/// pointer. [`LocalProvider::check_schema`](sift_core::Provider::check_schema) gives the same
/// answer for a loaded model.
pub fn check_schema(schema: &Value) -> Result<Enforcement, SchemaError> {
    grammar::Grammars::offline()
        .check(schema)
        .map(Enforcement::from)
}

impl From<grammar::Fit> for Enforcement {
    fn from(fit: grammar::Fit) -> Self {
        match fit {
            grammar::Fit::Exact => Enforcement::Exact,
            grammar::Fit::Approximate => Enforcement::Approximate,
        }
    }
}

/// Settings of the local provider.
#[derive(Debug, Clone)]
#[must_use]
pub struct LocalConfig {
    model_path: Option<PathBuf>,
    threads: Option<usize>,
    n_ctx: u32,
    parallel: usize,
    keep_prompts: bool,
    queue: usize,
    max_tokens: u32,
    /// Whether the default limit grows with the room the prompt leaves, and up to what.
    stretch_to: Option<u32>,
    whitespace_flexible: bool,
}

/// The most tokens an answer gets when neither the request nor the config sets a limit: the
/// default of 512 grows to what the context has left after the prompt, up to this (the whole
/// default context). Measured on JSONSchemaBench's sample: real-world schemas asked of the
/// 135M model ran past 512 tokens without repeating themselves, and, once free values were
/// bounded, 6 of the 37 answers cut off at 1024 closed valid under 2048 (see the docs'
/// coverage section). An answer that does not close takes twice as long to be cut off.
pub const ANSWER_TOKENS_MOST: u32 = 2048;

/// Generations run together by default. Measured with `scripts/local-bench.sh` on the default
/// model, 2 threads: `/many-users` with 8 seed queries took 2.16 s at 2, 1.43 s at 4 and 0.93 s
/// at 8 (16 queries: 3.36, 2.99, 2.82 s), for 290, 382 and 562 MB of peak RSS.
pub const DEFAULT_PARALLEL: usize = 8;

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            model_path: None,
            threads: None,
            n_ctx: 2048,
            parallel: DEFAULT_PARALLEL,
            keep_prompts: true,
            queue: 64,
            max_tokens: 512,
            stretch_to: Some(ANSWER_TOKENS_MOST),
            // Measured: with compact JSON the 135M model invented extra people for the seed's
            // Alice-and-Bob query; with flexible whitespace it answered right.
            whitespace_flexible: true,
        }
    }
}

impl LocalConfig {
    /// The GGUF file to run (default: the cached default model, fetched on first use).
    pub fn model_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.model_path = Some(path.into());
        self
    }

    /// Threads for inference (default: one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n.max(1));
        self
    }

    /// Context size in tokens (default 2048): prompt plus answer must fit.
    pub fn context_size(mut self, n: u32) -> Self {
        self.n_ctx = n.max(256);
        self
    }

    /// Requests that may wait for a free place (default 64), besides the running ones;
    /// beyond that they are refused.
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n;
        self
    }

    /// Generations run together in one context (default [`DEFAULT_PARALLEL`], at most 128);
    /// each has the KV cells of a whole context (`context_size`) to itself. Up to 63, a greedy
    /// answer is the same as the request alone would get (64 tokens in one decode are computed
    /// differently by llama.cpp's CPU kernels).
    pub fn parallel(mut self, n: usize) -> Self {
        self.parallel = n.clamp(1, 128);
        self
    }

    /// Whether each of the `parallel` sequences keeps the prompt it read last, so that a later
    /// prompt sharing its beginning reads only the rest (default true).
    pub fn keep_prompts(mut self, on: bool) -> Self {
        self.keep_prompts = on;
        self
    }

    /// Token limit per answer when the request sets none (default: 512, grown to what the
    /// context has left after the prompt up to [`ANSWER_TOKENS_MOST`]; set, it is fixed).
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = n.max(1);
        self.stretch_to = None;
        self
    }

    /// Whether constrained JSON may contain free whitespace (default true, see above).
    pub fn whitespace_flexible(mut self, on: bool) -> Self {
        self.whitespace_flexible = on;
        self
    }
}

/// Why the local provider could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// The model file could not be had.
    #[error(transparent)]
    ModelFile(#[from] model_file::ModelFileError),
    /// No model file where one was named.
    #[error("no model file at {}", .0.display())]
    NoModelFile(PathBuf),
    /// The model could not be loaded.
    #[error(transparent)]
    Load(#[from] engine::EngineError),
}

/// The in-process model. Cheap to clone; clones share the model thread.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    engine: Engine,
    grammars: Grammars,
    model: String,
    model_path: PathBuf,
    max_tokens: u32,
    stretch_to: Option<u32>,
    window: sift_core::Window,
}

/// What the model thread has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalStats {
    /// Generations that ran to their end.
    pub completed: u64,
    /// Generations stopped because their caller went away.
    pub cancelled: u64,
    /// Tokens generated in all.
    pub generated_tokens: u64,
    /// Prompt tokens in all.
    pub prompt_tokens: u64,
    /// Of those, the tokens read from a kept prompt instead of being computed.
    pub cached_prompt_tokens: u64,
    /// Generations running now.
    pub running: usize,
    /// Generations waiting for a place.
    pub waiting: usize,
    /// The most generations given a token by one decode.
    pub peak_running: usize,
    /// Decode steps so far.
    pub steps: u64,
    /// Sequences the steps carried, in all (divided by `steps`: the mean batch).
    pub step_sequences: u64,
}

impl LocalProvider {
    /// Resolves the model file (fetching the default one if needed), loads it and starts the
    /// inference thread. Blocks until the model is ready.
    pub fn load(config: LocalConfig) -> Result<Self, LocalError> {
        let model_path = match &config.model_path {
            Some(p) => p.clone(),
            // Once: on the console when one listens, else on stderr.
            None => model_file::default_model(&|msg| {
                if tracing::enabled!(tracing::Level::INFO) {
                    tracing::info!("{msg}");
                } else {
                    eprintln!("sift: {msg}");
                }
            })?,
        };
        if !model_path.is_file() {
            return Err(LocalError::NoModelFile(model_path));
        }
        let threads = config.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(2)
        });
        let (engine, loaded) = Engine::start(EngineConfig {
            model_path: model_path.clone(),
            threads: i32::try_from(threads).unwrap_or(2),
            n_ctx: config.n_ctx,
            parallel: config.parallel,
            queue: config.queue,
            keep_prompts: config.keep_prompts,
            whitespace_flexible: config.whitespace_flexible,
        })?;
        tracing::info!(model = %loaded.name, path = %model_path.display(), n_ctx = loaded.n_ctx, threads, parallel = config.parallel, "local model loaded");
        Ok(Self {
            engine,
            grammars: loaded.grammars,
            model: loaded.name,
            model_path,
            max_tokens: config.max_tokens,
            stretch_to: config.stretch_to,
            window: sift_core::Window {
                context_tokens: loaded.n_ctx,
                answer_tokens: config.max_tokens,
                parallel: config.parallel,
            },
        })
    }

    /// The GGUF file loaded.
    pub fn model_path(&self) -> &std::path::Path {
        &self.model_path
    }

    /// What the model thread has done so far.
    pub fn stats(&self) -> LocalStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.engine.counters;
        let running = c.running.load(Relaxed);
        LocalStats {
            completed: c.completed.load(Relaxed),
            cancelled: c.cancelled.load(Relaxed),
            generated_tokens: c.generated_tokens.load(Relaxed),
            prompt_tokens: c.prompt_tokens.load(Relaxed),
            cached_prompt_tokens: c.cached_prompt_tokens.load(Relaxed),
            running,
            waiting: c.admitted.load(Relaxed).saturating_sub(running),
            peak_running: c.peak_running.load(Relaxed),
            steps: c.steps.load(Relaxed),
            step_sequences: c.step_sequences.load(Relaxed),
        }
    }
}

/// What a request asks of the output.
#[derive(Debug, Default)]
struct Constraint {
    /// The schema to enforce.
    schema: Option<Value>,
    /// The tool to answer as, for a forced tool call.
    tool: Option<String>,
    /// Whether the answer goes in a ```` ```json ```` fence (`md_json`).
    fenced: bool,
    /// Whether the system prompt already shows the schema (`json`, `md_json`).
    schema_in_prompt: bool,
    /// What the answer's grounded values must come from.
    grounding: Option<std::sync::Arc<sift_core::grounding::Sources>>,
}

/// The constraint of `request`: from its [`Structured`](sift_core::Structured) part, else
/// (a request built by hand) from its output format.
fn constraint(request: &ChatRequest) -> Constraint {
    if let Some(s) = &request.structured {
        return Constraint {
            schema: Some(s.schema.clone()),
            tool: (s.mode == Mode::Tools).then(|| s.name.clone()),
            fenced: s.mode == Mode::MdJson,
            schema_in_prompt: matches!(s.mode, Mode::Json | Mode::MdJson),
            grounding: s.grounding.clone(),
        };
    }
    match &request.output {
        OutputFormat::Tool {
            name, parameters, ..
        } => Constraint {
            schema: Some(parameters.clone()),
            tool: Some(name.clone()),
            ..Constraint::default()
        },
        OutputFormat::JsonSchema { schema, .. } => Constraint {
            schema: Some(schema.clone()),
            ..Constraint::default()
        },
        OutputFormat::JsonObject => Constraint {
            schema: Some(json!({"type": "object"})),
            schema_in_prompt: true,
            ..Constraint::default()
        },
        _ => Constraint::default(),
    }
}

/// The system prompt added to structured requests.
const INSTRUCTION: &str =
    "Extract the information from the user's text. Reply in JSON, using only what the text says.";

/// The conversation as (role, content) pairs a chat template takes. Tool calls become the
/// assistant's text and tool answers user turns, since small models' templates know neither.
fn conversation(request: &ChatRequest, constraint: &Constraint) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    if constraint.schema.is_some() && !constraint.schema_in_prompt {
        // The grammar enforces the schema, so the prompt need not spell it out. Measured on the
        // seed's five queries with SmolLM2-135M: this prompt got all five right (and in half
        // the time, the prompt being short); with the schema in the prompt, two ages were wrong.
        out.push(("system".into(), INSTRUCTION.into()));
    }
    for m in &request.messages {
        let (role, content) = match m.role {
            Role::System => ("system", m.content.clone().unwrap_or_default()),
            Role::User | Role::Tool => ("user", m.content.clone().unwrap_or_default()),
            Role::Assistant => (
                "assistant",
                match (&m.content, m.tool_calls.first()) {
                    (_, Some(call)) => call.arguments.clone(),
                    (Some(text), None) => text.clone(),
                    (None, None) => String::new(),
                },
            ),
        };
        match out.last_mut() {
            // Templates expect one system message, first.
            Some((r, c)) if r == "system" && role == "system" => {
                c.push_str("\n\n");
                c.push_str(&content);
            }
            _ => out.push((role.into(), content)),
        }
    }
    out
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    fn default_model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_streaming(true)
            .with_constrained(true)
            .with_window(self.window)
            .with_in_process(true)
    }

    fn check_schema(&self, schema: &Value) -> Result<(), SchemaError> {
        self.grammars.check(schema).map(|_| ())
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        use futures::StreamExt;
        let mut stream = self.chat_stream(request).await?;
        let mut content = String::new();
        let mut call: Option<ToolCall> = None;
        let mut finish = None;
        let mut usage = Usage::default();
        while let Some(delta) = stream.next().await {
            match delta? {
                ChatDelta::Content(t) => content.push_str(&t),
                ChatDelta::ToolCall {
                    id,
                    name,
                    arguments,
                    ..
                } => {
                    let c = call.get_or_insert_with(|| ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                    if let Some(id) = id {
                        c.id = id;
                    }
                    if let Some(name) = name {
                        c.name = name;
                    }
                    c.arguments.push_str(&arguments);
                }
                ChatDelta::Finish(r) => finish = Some(r),
                ChatDelta::Usage(u) => usage = u,
                _ => {}
            }
        }
        Ok(ChatResponse {
            id: None,
            model: Some(self.model.clone()),
            content: (call.is_none()).then_some(content),
            tool_calls: call.into_iter().collect(),
            finish_reason: finish,
            usage,
            raw: Value::Null,
        })
    }

    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let constraint = constraint(request);
        if let Some(schema) = &constraint.schema {
            self.check_schema(schema)
                .map_err(|e| ProviderError::Schema(Box::new(e)))?;
        }
        let messages = conversation(request, &constraint);
        let max_tokens = request.max_tokens.unwrap_or(self.max_tokens);
        let stretch_to = self
            .stretch_to
            .filter(|most| request.max_tokens.is_none() && *most > max_tokens);
        let busy = |e| match e {
            Rejected::Full => ProviderError::Busy {
                retry_after: Some(Duration::from_secs(1)),
            },
            Rejected::Stopped => ProviderError::Stream("the local model thread has stopped".into()),
        };
        let ticket = self.engine.ticket().map_err(busy)?;
        let (tx, mut rx) =
            tokio::sync::mpsc::channel(engine::pieces(stretch_to.unwrap_or(max_tokens)));
        let Constraint {
            schema,
            tool,
            fenced,
            grounding,
            ..
        } = constraint;
        let job = Job {
            messages,
            constraint: schema.map(|s| self.grammars.constraint(s, grounding.as_deref())),
            max_tokens,
            stretch_to,
            temperature: request.temperature.unwrap_or(0.0),
            seed: request.seed,
            out: tx,
            ticket,
        };
        self.engine.submit(job).map_err(busy)?;
        let model = self.model.clone();
        Ok(Box::pin(async_stream::stream! {
            yield Ok(ChatDelta::Meta { id: None, model: Some(model) });
            if fenced {
                yield Ok(ChatDelta::Content("```json\n".into()));
            }
            let mut started_call = false;
            while let Some(piece) = rx.recv().await {
                match piece {
                    Piece::Text(text) => {
                        match &tool {
                            Some(name) => {
                                let first = !started_call;
                                started_call = true;
                                yield Ok(ChatDelta::ToolCall {
                                    index: 0,
                                    id: first.then(|| "call_local_0".to_owned()),
                                    name: first.then(|| name.clone()),
                                    arguments: text,
                                });
                            }
                            None => yield Ok(ChatDelta::Content(text)),
                        }
                    }
                    Piece::Done { finish, usage, prefill_s, decode_s } => {
                        tracing::debug!(
                            prompt_tokens = usage.input_tokens,
                            output_tokens = usage.output_tokens,
                            prefill_tokens_per_s = usage.input_tokens as f64 / prefill_s.max(1e-9),
                            decode_tokens_per_s = usage.output_tokens as f64 / decode_s.max(1e-9),
                            "local generation finished"
                        );
                        if fenced && finish == "stop" {
                            yield Ok(ChatDelta::Content("\n```".into()));
                        }
                        yield Ok(ChatDelta::Finish(finish.into()));
                        yield Ok(ChatDelta::Usage(usage));
                        return;
                    }
                    Piece::Failed(e) => {
                        yield Err(ProviderError::Stream(e));
                        return;
                    }
                    Piece::TooLong(e) => {
                        yield Err(ProviderError::InputTooLong(e));
                        return;
                    }
                    Piece::Schema(e) => {
                        yield Err(ProviderError::Schema(Box::new(e)));
                        return;
                    }
                }
            }
        }))
    }
}
