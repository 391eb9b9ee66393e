//! The inference thread: owns the model and its one context, and runs up to `parallel`
//! generations together in it (see [`crate::scheduler`]).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llguidance::ParserFactory;
use sift_core::Usage;

use crate::grammar::Grammars;
use crate::scheduler::{Limits, Scheduler};

/// One generation request.
pub(crate) struct Job {
    /// (role, content) pairs, roles as the chat template knows them.
    pub(crate) messages: Vec<(String, String)>,
    /// What the output must match, if anything.
    pub(crate) constraint: Option<crate::grammar::Constraint>,
    /// The answer's token limit; when `stretch_to` is set, the least it may be.
    pub(crate) max_tokens: u32,
    /// Where the limit was not asked for: it grows to what the context has left after the
    /// prompt, up to this.
    pub(crate) stretch_to: Option<u32>,
    pub(crate) temperature: f32,
    /// The sampler's seed when `temperature` is above 0 (else the clock's).
    pub(crate) seed: Option<u64>,
    /// Where pieces go; closing the receiver cancels the generation. Its capacity must hold
    /// every piece of the generation (the limit, stretched, + 2), so the model thread never waits on
    /// a slow reader.
    pub(crate) out: tokio::sync::mpsc::Sender<Piece>,
    /// The job's place among those admitted; given back when it ends.
    pub(crate) ticket: Ticket,
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
    /// The grammar compiler refused the schema.
    Schema(sift_core::SchemaError),
}

/// Capacity of a job's piece channel: every piece of a generation fits.
pub(crate) fn pieces(max_tokens: u32) -> usize {
    usize::try_from(max_tokens).unwrap_or(usize::MAX / 2) + 4
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub(crate) model_path: PathBuf,
    pub(crate) threads: i32,
    /// Context of one generation: its prompt and answer must fit.
    pub(crate) n_ctx: u32,
    /// Generations run together.
    pub(crate) parallel: usize,
    /// Requests that may wait for a free sequence.
    pub(crate) queue: usize,
    /// Whether each sequence keeps its last prompt for the next to reuse.
    pub(crate) keep_prompts: bool,
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
    pub(crate) prompt_tokens: AtomicU64,
    /// Prompt tokens read from a kept prefix instead of being computed.
    pub(crate) cached_prompt_tokens: AtomicU64,
    /// Generations running now.
    pub(crate) running: AtomicUsize,
    /// The most generations given a token by one decode.
    pub(crate) peak_running: AtomicUsize,
    /// Decode steps, and the sequences they carried in all.
    pub(crate) steps: AtomicU64,
    pub(crate) step_sequences: AtomicU64,
    /// Jobs admitted (running or waiting).
    pub(crate) admitted: AtomicUsize,
}

/// A job's place among the admitted: counted while held.
pub(crate) struct Ticket(Arc<Counters>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The sending side of the job queue.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    jobs: SyncSender<Job>,
    /// Jobs that may be admitted at once: running plus waiting.
    capacity: usize,
    pub(crate) counters: Arc<Counters>,
}

/// Why a job was not queued.
pub(crate) enum Rejected {
    Full,
    Stopped,
}

/// Why the model thread could not start. The reasons are llama.cpp's and llguidance's own.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// llama.cpp's backend did not start.
    #[error("could not start llama.cpp: {0}")]
    Backend(String),
    /// The operating system refused a thread.
    #[error("could not start the model thread: {0}")]
    Thread(String),
    /// The model file did not load.
    #[error("could not load {}: {reason}", path.display())]
    Model {
        /// The file.
        path: std::path::PathBuf,
        /// llama.cpp's reason.
        reason: String,
    },
    /// The tokenizer could not be given to the grammar compiler.
    #[error("could not prepare constrained decoding: {0}")]
    Grammar(String),
    /// llama.cpp refused the context (its memory, its settings).
    #[error("could not create a context: {0}")]
    Context(String),
    /// The thread ended before it said whether the model loaded.
    #[error("the model thread stopped while loading")]
    Stopped,
}

impl Engine {
    /// Starts the inference thread and waits for the model to load.
    pub(crate) fn start(config: EngineConfig) -> Result<(Engine, Loaded), EngineError> {
        let capacity = config.parallel + config.queue;
        // Admission is counted by tickets; the channel only has to hold what they allow.
        let (jobs, queue) = std::sync::mpsc::sync_channel(capacity);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        std::thread::Builder::new()
            .name("sift-local-model".into())
            .spawn(move || run(config, queue, ready_tx, shared))
            .map_err(|e| EngineError::Thread(e.to_string()))?;
        let loaded = ready_rx.recv().map_err(|_| EngineError::Stopped)??;
        Ok((
            Engine {
                jobs,
                capacity,
                counters,
            },
            loaded,
        ))
    }

    /// A place for one job, unless `parallel + queue` jobs hold one already.
    pub(crate) fn ticket(&self) -> Result<Ticket, Rejected> {
        self.counters
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .map_err(|_| Rejected::Full)?;
        Ok(Ticket(self.counters.clone()))
    }

    /// Queues a job without waiting (its ticket guarantees room).
    pub(crate) fn submit(&self, job: Job) -> Result<(), Rejected> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Rejected::Full,
            TrySendError::Disconnected(_) => Rejected::Stopped,
        })
    }
}

fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, EngineError>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp's own logging goes to `tracing` (debug level), not stderr.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| EngineError::Backend(e.to_string()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn run(
    config: EngineConfig,
    queue: Receiver<Job>,
    ready: std::sync::mpsc::Sender<Result<Loaded, EngineError>>,
    counters: Arc<Counters>,
) {
    let setup = || -> Result<_, EngineError> {
        let backend = backend()?;
        let model =
            LlamaModel::load_from_file(backend, &config.model_path, &LlamaModelParams::default())
                .map_err(|e| EngineError::Model {
                path: config.model_path.clone(),
                reason: e.to_string(),
            })?;
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
            let _ = ready.send(Err(EngineError::Grammar(e.to_string())));
            return;
        }
    };
    let limits = Limits::new(
        config.n_ctx.min(model.n_ctx_train().max(512)),
        config.parallel,
        config.keep_prompts,
    );
    // A KV cache split by sequence: each sequence's cells stay in position order, so an
    // answer does not depend on what ran beside it (see the scheduler).
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(limits.cells))
        .with_n_batch(limits.batch)
        .with_n_ubatch(limits.batch)
        .with_n_seq_max(limits.sequences())
        .with_kv_unified(false)
        .with_n_threads(config.threads)
        .with_n_threads_batch(config.threads);
    let ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(EngineError::Context(e.to_string())));
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
        n_ctx: limits.n_ctx,
        grammars: grammars.clone(),
    }));
    Scheduler::new(&model, template.as_ref(), &grammars, limits, &counters, ctx).run(&queue);
}
