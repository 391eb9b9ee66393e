//! The inference thread: owns the model and its context, runs one generation at a time.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llguidance::ParserFactory;
use serde_json::Value;
use sift_core::Usage;

use crate::grammar::Grammars;

/// One generation request.
pub(crate) struct Job {
    /// (role, content) pairs, roles as the chat template knows them.
    pub(crate) messages: Vec<(String, String)>,
    /// JSON Schema the output must match, if any.
    pub(crate) schema: Option<Value>,
    pub(crate) max_tokens: u32,
    pub(crate) temperature: f32,
    /// Where pieces go; closing the receiver cancels the generation.
    pub(crate) out: tokio::sync::mpsc::Sender<Piece>,
}

/// What a generation produces, in order.
#[derive(Debug)]
pub(crate) enum Piece {
    /// Text generated (whole UTF-8 characters).
    Text(String),
    /// The end, with why and how many tokens.
    Done {
        /// `stop` or `length`.
        finish: &'static str,
        usage: Usage,
        /// Seconds spent on the prompt and on generation.
        prefill_s: f64,
        decode_s: f64,
    },
    /// The generation failed.
    Failed(String),
    /// The prompt and the answer's token budget do not fit the context.
    TooLong(String),
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub(crate) model_path: PathBuf,
    pub(crate) threads: i32,
    pub(crate) n_ctx: u32,
    pub(crate) queue: usize,
    pub(crate) whitespace_flexible: bool,
}

/// What the engine reports once the model is loaded.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) name: String,
    pub(crate) n_ctx: u32,
    /// The schema compiler for this model's vocabulary.
    pub(crate) grammars: Grammars,
}

/// Counters of the engine's work.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) completed: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) generated_tokens: AtomicU64,
}

/// The sending side of the job queue.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    jobs: SyncSender<Job>,
    pub(crate) counters: Arc<Counters>,
}

/// Why a job was not queued.
pub(crate) enum Rejected {
    Full,
    Stopped,
}

impl Engine {
    /// Starts the inference thread and waits for the model to load.
    pub(crate) fn start(config: EngineConfig) -> Result<(Engine, Loaded), String> {
        let (jobs, queue) = std::sync::mpsc::sync_channel(config.queue);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        std::thread::Builder::new()
            .name("sift-local-model".into())
            .spawn(move || run(config, queue, ready_tx, shared))
            .map_err(|e| format!("could not start the model thread: {e}"))?;
        let loaded = ready_rx
            .recv()
            .map_err(|_| "the model thread stopped while loading".to_owned())??;
        Ok((Engine { jobs, counters }, loaded))
    }

    /// Queues a job without waiting.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Rejected> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Rejected::Full,
            TrySendError::Disconnected(_) => Rejected::Stopped,
        })
    }
}

fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp's own logging goes to `tracing` (debug level), not stderr.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| format!("could not start llama.cpp: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn run(
    config: EngineConfig,
    queue: Receiver<Job>,
    ready: std::sync::mpsc::Sender<Result<Loaded, String>>,
    counters: Arc<Counters>,
) {
    let setup = || -> Result<_, String> {
        let backend = backend()?;
        let model =
            LlamaModel::load_from_file(backend, &config.model_path, &LlamaModelParams::default())
                .map_err(|e| format!("could not load {}: {e}", config.model_path.display()))?;
        Ok((backend, model))
    };
    let (backend, model) = match setup() {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let template = model.chat_template(None).ok();
    // Building the token environment walks the whole vocabulary: once per model.
    let tok_env = LlamaSampler::llguidance_tok_env(&model);
    let grammars = match ParserFactory::new_simple(&tok_env) {
        Ok(mut f) => {
            f.quiet();
            Grammars::new(f, config.whitespace_flexible)
        }
        Err(e) => {
            let _ = ready.send(Err(format!("could not prepare constrained decoding: {e}")));
            return;
        }
    };
    let n_ctx = config.n_ctx.min(model.n_ctx_train().max(512));
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_threads(config.threads)
        .with_n_threads_batch(config.threads);
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("could not create a context: {e}")));
            return;
        }
    };
    // The file's name says which model and quantisation; `general.name` is often less clear.
    let name = config
        .model_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "local".into());
    let _ = ready.send(Ok(Loaded {
        name,
        n_ctx,
        grammars: grammars.clone(),
    }));
    let engine = Generator {
        model: &model,
        template: template.as_ref(),
        grammars: &grammars,
        n_ctx,
        counters: &counters,
    };
    while let Ok(job) = queue.recv() {
        let out = job.out.clone();
        if out.is_closed() {
            continue;
        }
        if let Err(e) = engine.generate(&mut ctx, job) {
            let _ = out.blocking_send(Piece::Failed(e));
        }
    }
}

struct Generator<'m> {
    model: &'m LlamaModel,
    template: Option<&'m LlamaChatTemplate>,
    grammars: &'m Grammars,
    n_ctx: u32,
    counters: &'m Counters,
}

impl Generator<'_> {
    fn cancelled(&self) {
        self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    fn prompt(&self, messages: &[(String, String)]) -> Result<String, String> {
        let Some(template) = self.template else {
            // No template in the file: plain "role: content" lines.
            let mut text: String = messages
                .iter()
                .map(|(r, c)| format!("{r}: {c}\n"))
                .collect();
            text.push_str("assistant: ");
            return Ok(text);
        };
        let chat = messages
            .iter()
            .map(|(r, c)| LlamaChatMessage::new(r.clone(), c.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("invalid message: {e}"))?;
        self.model
            .apply_chat_template(template, &chat, true)
            .map_err(|e| format!("could not apply the chat template: {e}"))
    }

    fn sampler(&self, schema: Option<&Value>, temperature: f32) -> Result<LlamaSampler, String> {
        let mut chain = Vec::new();
        if let Some(schema) = schema {
            // Checked (and remembered) before the job was queued: built here in the form found.
            let matcher = self.grammars.matcher(schema).map_err(|e| e.to_string())?;
            chain.push(LlamaSampler::from(matcher));
        }
        if temperature > 0.0 {
            chain.push(LlamaSampler::temp(temperature));
            chain.push(LlamaSampler::dist(fastrand_seed()));
        } else {
            chain.push(LlamaSampler::greedy());
        }
        Ok(LlamaSampler::chain_simple(chain))
    }

    fn generate(&self, ctx: &mut LlamaContext<'_>, job: Job) -> Result<(), String> {
        let prompt = self.prompt(&job.messages)?;
        let mut sampler = self.sampler(job.schema.as_ref(), job.temperature)?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
        let budget = tokens.len() as u64 + u64::from(job.max_tokens);
        if budget > u64::from(self.n_ctx) {
            let _ = job.out.blocking_send(Piece::TooLong(format!(
                "the prompt ({} tokens) and max_tokens ({}) exceed the context of {} tokens",
                tokens.len(),
                job.max_tokens,
                self.n_ctx
            )));
            return Ok(());
        }
        ctx.clear_kv_cache();
        let started = Instant::now();
        let mut batch = LlamaBatch::new(self.n_ctx as usize, 1);
        let last = tokens.len().saturating_sub(1);
        for (i, token) in tokens.iter().enumerate() {
            batch
                .add(*token, i as i32, &[0], i == last)
                .map_err(|e| format!("batch: {e}"))?;
        }
        ctx.decode(&mut batch)
            .map_err(|e| format!("decoding the prompt failed: {e}"))?;
        let prefill_s = started.elapsed().as_secs_f64();
        let decode_started = Instant::now();
        let mut pos = tokens.len() as i32;
        let mut generated: u32 = 0;
        let mut pending: Vec<u8> = Vec::new();
        let finish = loop {
            if job.out.is_closed() {
                // The caller went away: stop generating.
                self.cancelled();
                return Ok(());
            }
            // `sample` also accepts the token into every sampler (the grammar included).
            let token = sampler.sample(ctx, batch.n_tokens() - 1);
            if vocab.is_eog(token) {
                break "stop";
            }
            generated += 1;
            self.counters
                .generated_tokens
                .fetch_add(1, Ordering::Relaxed);
            pending.extend(vocab.token_to_piece(token, false, None));
            let valid = match std::str::from_utf8(&pending) {
                Ok(_) => pending.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => pending.len(),
            };
            if valid > 0 {
                let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
                pending.drain(..valid);
                if job.out.blocking_send(Piece::Text(text)).is_err() {
                    self.cancelled();
                    return Ok(());
                }
            }
            if generated >= job.max_tokens {
                break "length";
            }
            batch.clear();
            batch
                .add(token, pos, &[0], true)
                .map_err(|e| format!("batch: {e}"))?;
            pos += 1;
            ctx.decode(&mut batch)
                .map_err(|e| format!("decoding failed: {e}"))?;
        };
        if !pending.is_empty() {
            let _ = job
                .out
                .blocking_send(Piece::Text(String::from_utf8_lossy(&pending).into_owned()));
        }
        self.counters.completed.fetch_add(1, Ordering::Relaxed);
        let _ = job.out.blocking_send(Piece::Done {
            finish,
            usage: Usage {
                input_tokens: tokens.len() as u64,
                output_tokens: u64::from(generated),
                ..Usage::default()
            },
            prefill_s,
            decode_s: decode_started.elapsed().as_secs_f64(),
        });
        Ok(())
    }
}

fn fastrand_seed() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
