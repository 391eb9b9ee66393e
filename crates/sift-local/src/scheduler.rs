//! Continuous batching on the model thread.
//!
//! Up to `parallel` generations run in one llama.cpp context, each in a sequence of its own.
//! Every step decodes, in a single batch, the next token of every generating sequence, so a
//! request joins at the next step instead of waiting for the others; a joining prompt is read
//! a chunk per step, so a long one does not stall the others for long. Each sequence samples
//! under its own llguidance matcher, so every answer still fits its schema. A finished or
//! cancelled generation frees its sequence and its answer's KV cells at once.
//!
//! The KV cache is split by sequence (llama.cpp's non-unified cache, `n_ctx` cells each), and a
//! sequence keeps the prompt it read when its generation ends; the next prompt goes where it
//! shares the most (see [`crate::prefix`]) and reads only the rest. Memory is fixed: `parallel`
//! contexts, whatever the traffic.
//!
//! A request's greedy answer does not depend on what runs beside it, nor on which kept prompt
//! it reused. Measured on the default model (`examples/kv_layout.rs`), llama.cpp's CPU kernels
//! give the same logits for single tokens of several sequences decoded together as for each
//! alone, but with a KV cache shared by all sequences not for a prompt read beside another's
//! tokens (0.74 in a logit) nor for a token whose cell comes before its prompt's, as happens once
//! freed cells are reused (0.71); and a batch of 64 tokens or more is computed differently from
//! a smaller one (0.54). Enough to change a greedy token. Within each of the two (batches under
//! 64, batches of 64 or more) the result does not depend on the cut (`examples/prefill.rs`). So
//! the cache is split by sequence; a prompt of 64 tokens or more is read, all of it, in batches
//! of 64 or more of its own tokens alone (llama.cpp would split a batch of several sequences
//! into smaller pieces), and reuses only cells read that way, leaving 64 or more to read; a
//! shorter prompt and the generated tokens go in batches under 64.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use sift_core::Usage;

use crate::engine::{Counters, Job, Piece};
use crate::grammar::{Constraint, Grammars};
use crate::prefix::Kept;

/// DRY's settings for grounded generations: llama.cpp's suggested multiplier and base, runs
/// of more than a few tokens, looked for in the last 512.
const DRY_MULTIPLIER: f32 = 0.8;
const DRY_BASE: f32 = 1.75;
const DRY_ALLOWED: i32 = 4;
const DRY_LAST_N: i32 = 512;

/// Tokens decoded in one small batch: generated tokens, and the prompts shorter than
/// [`BIG_PROMPT`]. Under 64: llama.cpp's CPU kernels compute a batch of 64 tokens or more
/// differently from a smaller one (`examples/kv_layout.rs`, `examples/prefill.rs`: the same
/// prompt read in pieces under 64 and in pieces of 64 or more differs by 1.25 in a logit), while
/// within each of the two the result does not depend on how the prompt was cut or what was
/// read beside it (0 between pieces of 32 and 63, and between 64, 128 and 512).
const STEP_TOKENS: usize = 63;

/// A prompt this long or longer is read in batches of 64 tokens or more, all its tokens, alone
/// or beside others, so it is always computed by the same (faster: 282 against 204 tokens/s on
/// the default model) kernels; a shorter one in small batches.
const BIG_PROMPT: usize = 64;

/// Prompt tokens of long prompts read per step, in one batch of their own (a sequence's last
/// piece takes up to 63 more rather than leave a remainder under 64). At 128 the prompt rate
/// was 0.91x that of pieces of 512 (`examples/prefill.rs`), and a step holds the generating
/// sequences back less than half a second on 2 cores.
const BIG_PIECE: usize = 128;

/// Prompt tokens of a short prompt read in a batch of their own, when generated tokens leave
/// no room beside them ([`STEP_TOKENS`] sequences or more generating).
const PREFILL_CHUNK: usize = 32;

/// Sizes of the context.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Prompt plus answer of one generation.
    pub(crate) n_ctx: u32,
    /// Generations run together: the context's sequences.
    pub(crate) parallel: usize,
    /// Whether a sequence keeps its prompt for the next to reuse.
    pub(crate) keep_prompts: bool,
    /// KV cells in all: `n_ctx` for each sequence.
    pub(crate) cells: u32,
    /// Tokens one decode may carry: a prompt chunk, or a token of every sequence.
    pub(crate) batch: u32,
}

impl Limits {
    pub(crate) fn new(n_ctx: u32, parallel: usize, keep_prompts: bool) -> Self {
        // llama.cpp takes at most 256 sequences.
        let parallel = parallel.clamp(1, 128);
        let cells = u32::try_from(parallel)
            .ok()
            .and_then(|p| n_ctx.checked_mul(p))
            .unwrap_or(u32::MAX / 2);
        let batch =
            u32::try_from((parallel + STEP_TOKENS).max(BIG_PIECE + BIG_PROMPT)).unwrap_or(256);
        Self {
            n_ctx,
            parallel,
            keep_prompts,
            cells,
            batch,
        }
    }

    /// Sequences in the context.
    pub(crate) fn sequences(&self) -> u32 {
        u32::try_from(self.parallel).unwrap_or(128)
    }
}

/// A job ready to run: its prompt read into tokens and its sampler built.
struct Prepared {
    job: Job,
    tokens: Vec<LlamaToken>,
    sampler: LlamaSampler,
}

/// A running generation.
struct Slot {
    run: Prepared,
    /// Prompt tokens in the KV cache so far (kept ones included).
    fed: usize,
    /// Prompt tokens reused from a kept prompt.
    cached: usize,
    /// Position of the next token.
    pos: i32,
    /// The token sampled last, to be decoded in the next step.
    next: Option<LlamaToken>,
    /// Where this sequence's logits are in the current batch.
    logits: Option<i32>,
    generated: u32,
    /// Bytes of a character not yet complete.
    pending: Vec<u8>,
    started: Instant,
    /// Seconds until the first token could be sampled; `None` while reading the prompt.
    prefill_s: Option<f64>,
    decode_started: Instant,
}

/// How a running generation ends.
enum End {
    Finished(&'static str),
    Cancelled,
    Failed(String),
}

pub(crate) struct Scheduler<'m> {
    model: &'m LlamaModel,
    template: Option<&'m LlamaChatTemplate>,
    grammars: &'m Grammars,
    limits: Limits,
    counters: &'m Counters,
    ctx: LlamaContext<'m>,
    /// Index = sequence id.
    slots: Vec<Option<Slot>>,
    /// The prompt each sequence keeps.
    kept: Kept<LlamaToken>,
    batch: LlamaBatch<'static>,
    /// Steps taken, for reading long prompts every other step while others generate.
    steps: u64,
}

impl<'m> Scheduler<'m> {
    pub(crate) fn new(
        model: &'m LlamaModel,
        template: Option<&'m LlamaChatTemplate>,
        grammars: &'m Grammars,
        limits: Limits,
        counters: &'m Counters,
        ctx: LlamaContext<'m>,
    ) -> Self {
        Self {
            model,
            template,
            grammars,
            limits,
            counters,
            ctx,
            slots: (0..limits.parallel).map(|_| None).collect(),
            kept: Kept::new(limits.parallel),
            batch: LlamaBatch::new(usize::try_from(limits.batch).unwrap_or(1024), 1),
            steps: 0,
        }
    }

    /// Runs until the queue is closed and every generation has ended.
    pub(crate) fn run(mut self, queue: &Receiver<Job>) {
        while self.admit(queue) {
            self.drop_cancelled();
            if self.running() > 0 {
                self.step();
            }
        }
    }

    fn running(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Starts queued jobs while sequences are free. Waits for a job when nothing runs;
    /// `false` when the queue is closed and nothing runs.
    fn admit(&mut self, queue: &Receiver<Job>) -> bool {
        while self.slots.iter().any(Option::is_none) {
            let job = if self.running() == 0 {
                match queue.recv() {
                    Ok(job) => job,
                    Err(_) => return false,
                }
            } else {
                match queue.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            };
            if let Some(prepared) = self.prepare(job) {
                self.start(prepared);
            }
        }
        self.counters
            .running
            .store(self.running(), Ordering::Relaxed);
        true
    }

    /// The job's prompt as tokens and its sampler; `None` (the caller told) when it cannot run.
    fn prepare(&mut self, mut job: Job) -> Option<Prepared> {
        if job.out.is_closed() {
            return None;
        }
        let failed = |job: &Job, piece: Piece| {
            let _ = job.out.try_send(piece);
            None
        };
        let prompt = match self.prompt(&job.messages) {
            Ok(p) => p,
            Err(e) => return failed(&job, Piece::Failed(e)),
        };
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
        let budget = tokens.len() as u64 + u64::from(job.max_tokens);
        if budget > u64::from(self.limits.n_ctx) {
            let msg = format!(
                "the prompt ({} tokens) and max_tokens ({}) exceed the context of {} tokens",
                tokens.len(),
                job.max_tokens,
                self.limits.n_ctx
            );
            return failed(&job, Piece::TooLong(msg));
        }
        if let Some(most) = job.stretch_to {
            let left = u64::from(self.limits.n_ctx) - tokens.len() as u64;
            job.max_tokens = job
                .max_tokens
                .max(u32::try_from(left.min(u64::from(most))).unwrap_or(most));
        }
        if tokens.is_empty() {
            return failed(&job, Piece::Failed("the prompt is empty".into()));
        }
        match self.sampler(job.constraint.as_ref(), job.temperature, job.seed) {
            Ok(sampler) => Some(Prepared {
                job,
                tokens,
                sampler,
            }),
            Err(e) => failed(&job, Piece::Schema(e)),
        }
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

    fn sampler(
        &self,
        constraint: Option<&Constraint>,
        temperature: f32,
        seed: Option<u64>,
    ) -> Result<LlamaSampler, sift_core::SchemaError> {
        let mut chain = Vec::new();
        if let Some(constraint) = constraint {
            // The schema was checked (and remembered) before the job was queued: built here
            // in the form found.
            let matcher = self.grammars.matcher_for(constraint)?;
            chain.push(LlamaSampler::from(matcher));
            // Held to a schema, a small model repeats the same list item until the token
            // limit (the example invoice held to its text: one line 12 times; a
            // JSONSchemaBench record: one array item 30 times). DRY ("don't repeat yourself")
            // lowers the token that would continue a repeated run, so the list closes
            // instead; no sequence breakers, since JSON's quotes and newlines are inside every
            // repeated item.
            chain.push(LlamaSampler::dry(
                self.model,
                DRY_MULTIPLIER,
                DRY_BASE,
                DRY_ALLOWED,
                DRY_LAST_N,
                std::iter::empty::<&[u8]>(),
            ));
        }
        if temperature > 0.0 {
            chain.push(LlamaSampler::temp(temperature));
            // The request's seed, folded to the 32 bits llama.cpp takes; else the clock's.
            let seed = seed.map_or_else(clock_seed, |s| (s ^ (s >> 32)) as u32);
            chain.push(LlamaSampler::dist(seed));
        } else {
            chain.push(LlamaSampler::greedy());
        }
        Ok(LlamaSampler::chain_simple(chain))
    }

    /// Frees the KV cells of sequence `seq` from position `from` on (all of them from 0).
    fn clear(&mut self, seq: usize, from: usize) -> bool {
        let from = u32::try_from(from).ok().filter(|&p| p > 0);
        self.ctx
            .clear_kv_cache_seq(u32::try_from(seq).ok(), from, None)
            .unwrap_or(false)
    }

    /// Makes sequence `seq` hold (and keep) only the first `keep` of `tokens`, freeing the
    /// rest; a partial removal llama.cpp refuses empties it. The tokens held.
    fn truncate(&mut self, seq: usize, tokens: &[LlamaToken], keep: usize) -> usize {
        let keep = if self.clear(seq, keep) {
            keep
        } else {
            self.clear(seq, 0);
            0
        };
        self.kept
            .keep(seq, &tokens[..keep], tokens.len() >= BIG_PROMPT);
        keep
    }

    /// Runs `run` in the free sequence whose kept prompt it shares the most of.
    fn start(&mut self, run: Prepared) {
        let slots = &self.slots;
        let long = run.tokens.len() >= BIG_PROMPT;
        let Some((seq, shared)) = self.kept.choose(|i| slots[i].is_none(), &run.tokens, long)
        else {
            return;
        };
        // The last prompt token is always decoded: its logits give the first answer token. A
        // long prompt leaves 64 or more to read, so they are read by the kernels that read
        // the part it reuses.
        let shared = match (self.limits.keep_prompts, long) {
            (false, _) => 0,
            (true, false) => shared.min(run.tokens.len() - 1),
            (true, true) => shared.min(run.tokens.len() - BIG_PROMPT),
        };
        // What the sequence holds past the shared part goes.
        let reuse = self.truncate(seq, &run.tokens, shared);
        self.counters
            .prompt_tokens
            .fetch_add(run.tokens.len() as u64, Ordering::Relaxed);
        self.counters
            .cached_prompt_tokens
            .fetch_add(reuse as u64, Ordering::Relaxed);
        let now = Instant::now();
        self.slots[seq] = Some(Slot {
            run,
            fed: reuse,
            cached: reuse,
            pos: i32::try_from(reuse).unwrap_or(0),
            next: None,
            logits: None,
            generated: 0,
            pending: Vec::new(),
            started: now,
            prefill_s: None,
            decode_started: now,
        });
    }

    /// Ends the generations whose callers went away.
    fn drop_cancelled(&mut self) {
        for seq in 0..self.slots.len() {
            if self.slots[seq]
                .as_ref()
                .is_some_and(|s| s.run.job.out.is_closed())
            {
                self.end(seq, End::Cancelled);
            }
        }
    }

    /// One step: up to [`BIG_PIECE`] tokens of the long prompt with the least left (64 every
    /// other step while others generate), in a batch of their own (64 tokens or more: each such
    /// prompt keeps either none or 64 or more left);
    /// then the next token of every generating sequence and, in the room left under
    /// [`STEP_TOKENS`], the next tokens of the short prompts, in one small batch. Prompts with
    /// the least left go first, so a short request is not held up behind a document. A token
    /// is sampled for every sequence whose logits a batch produced.
    ///
    /// Every token of a long prompt is computed by the kernels of batches of 64 or more, and
    /// every other token by those of smaller batches, each sequence in KV cells of its own, so
    /// a prompt is read exactly as it would be alone (see the module's notes).
    fn step(&mut self) {
        let mut long: Vec<(usize, usize)> = Vec::new();
        let mut short: Vec<(usize, usize)> = Vec::new();
        for (seq, s) in self.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            let left = s.run.tokens.len() - s.fed;
            if left > 0 {
                if s.run.tokens.len() >= BIG_PROMPT {
                    long.push((left, seq));
                } else {
                    short.push((left, seq));
                }
            }
        }
        long.sort_unstable();
        short.sort_unstable();
        self.steps += 1;
        // While others generate, a long prompt is read 64 tokens every other step, so a step
        // holds their next token back about a tenth of a second on average (measured: reading
        // 128 every step, `/user` beside a 43-page PDF waited 6.7 s at the 95th percentile).
        let generating = self.slots.iter().flatten().any(|s| s.next.is_some());
        if !long.is_empty() && (!generating || self.steps.is_multiple_of(2)) {
            self.batch.clear();
            let room = if generating { BIG_PROMPT } else { BIG_PIECE };
            let mut full = false;
            // One sequence's tokens only: llama.cpp splits a batch of several sequences into
            // micro-batches of equal tokens per sequence (its KV cache is split by sequence),
            // which cut a prompt into pieces under 64 depending on what was read beside it
            // (measured: a 43-page PDF's first chunk answered differently from run to run).
            if let Some(&(left, seq)) = long.first() {
                // Never leave a remainder under 64: it would be read by the other kernels.
                let mut n = room.min(left);
                if left - n < BIG_PROMPT {
                    n = left;
                }
                full |= self.add_prompt_chunk(seq, n);
            }
            self.decode(full);
        }
        let generating = self
            .slots
            .iter()
            .flatten()
            .filter(|s| s.next.is_some())
            .count();
        let mut room = STEP_TOKENS.saturating_sub(generating);
        if room == 0 {
            // No room beside the generated tokens: the first short prompt's chunk goes alone.
            if let Some(&(_, seq)) = short.first() {
                self.batch.clear();
                let full = self.add_prompt_chunk(seq, PREFILL_CHUNK);
                self.decode(full);
            }
            short.clear();
        }
        self.batch.clear();
        let mut full = false;
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if let Some(token) = slot.next.take() {
                let id = i32::try_from(seq).unwrap_or(0);
                full |= self.batch.add(token, slot.pos, &[id], true).is_err();
                slot.logits = Some(self.batch.n_tokens() - 1);
                slot.pos += 1;
            }
        }
        for (_, seq) in short {
            if room == 0 {
                break;
            }
            let before = self.batch.n_tokens();
            full |= self.add_prompt_chunk(seq, room);
            let added = usize::try_from(self.batch.n_tokens() - before).unwrap_or(room);
            room = room.saturating_sub(added);
        }
        self.decode(full);
    }

    /// Adds up to `most` of sequence `seq`'s next prompt tokens to the batch; `true` if it
    /// overflowed.
    fn add_prompt_chunk(&mut self, seq: usize, most: usize) -> bool {
        let Some(slot) = self.slots[seq].as_mut() else {
            return false;
        };
        let len = slot.run.tokens.len();
        let id = i32::try_from(seq).unwrap_or(0);
        let n = most.min(len - slot.fed);
        let mut full = false;
        for k in slot.fed..slot.fed + n {
            let pos = i32::try_from(k).unwrap_or(i32::MAX);
            full |= self
                .batch
                .add(slot.run.tokens[k], pos, &[id], k + 1 == len)
                .is_err();
        }
        slot.fed += n;
        if slot.fed == len {
            slot.logits = Some(self.batch.n_tokens() - 1);
            slot.pos = i32::try_from(len).unwrap_or(i32::MAX);
        }
        full
    }

    /// Decodes the batch, then samples for every sequence it gave logits.
    fn decode(&mut self, full: bool) {
        if self.batch.n_tokens() == 0 {
            return;
        }
        let decoded = if full {
            Err("the batch overflowed".to_owned())
        } else {
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| format!("decoding failed: {e}"))
        };
        if let Err(e) = decoded {
            // Whatever the batch held is lost: every running generation fails.
            for seq in 0..self.slots.len() {
                if self.slots[seq].is_some() {
                    self.end(seq, End::Failed(e.clone()));
                }
            }
            return;
        }
        let sequences = self
            .slots
            .iter()
            .flatten()
            .filter(|s| s.logits.is_some())
            .count();
        self.counters.steps.fetch_add(1, Ordering::Relaxed);
        self.counters
            .step_sequences
            .fetch_add(sequences as u64, Ordering::Relaxed);
        self.counters
            .peak_running
            .fetch_max(sequences, Ordering::Relaxed);
        for seq in 0..self.slots.len() {
            if let Some(end) = self.sample(seq) {
                self.end(seq, end);
            }
        }
    }

    /// Samples the next token of sequence `seq` if this step gave it logits.
    fn sample(&mut self, seq: usize) -> Option<End> {
        let slot = self.slots[seq].as_mut()?;
        let index = slot.logits.take()?;
        if slot.prefill_s.is_none() {
            slot.prefill_s = Some(slot.started.elapsed().as_secs_f64());
            slot.decode_started = Instant::now();
        }
        // `sample` also accepts the token into every sampler (the grammar included).
        let token = slot.run.sampler.sample(&self.ctx, index);
        let vocab = self.model.vocab();
        if vocab.is_eog(token) {
            return Some(End::Finished("stop"));
        }
        slot.generated += 1;
        self.counters
            .generated_tokens
            .fetch_add(1, Ordering::Relaxed);
        slot.pending
            .extend(vocab.token_to_piece(token, false, None));
        let valid = match std::str::from_utf8(&slot.pending) {
            Ok(_) => slot.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => slot.pending.len(),
        };
        if valid > 0 {
            let text = String::from_utf8_lossy(&slot.pending[..valid]).into_owned();
            slot.pending.drain(..valid);
            // The channel holds every piece of a generation: it is only ever closed, not full.
            if slot.run.job.out.try_send(Piece::Text(text)).is_err() {
                return Some(End::Cancelled);
            }
        }
        if slot.generated >= slot.run.job.max_tokens {
            return Some(End::Finished("length"));
        }
        slot.next = Some(token);
        None
    }

    /// Ends the generation in `seq`, tells its caller and frees the sequence: the answer's
    /// cells at once, the prompt's kept for the next prompt (unless the decode failed).
    fn end(&mut self, seq: usize, end: End) {
        let Some(slot) = self.slots[seq].take() else {
            return;
        };
        let read = slot.fed.min(slot.run.tokens.len());
        let keep = if self.limits.keep_prompts && !matches!(end, End::Failed(_)) {
            read
        } else {
            0
        };
        self.truncate(seq, &slot.run.tokens, keep);
        self.counters
            .running
            .store(self.running(), Ordering::Relaxed);
        let Slot {
            run,
            generated,
            cached,
            pending,
            started,
            prefill_s,
            decode_started,
            ..
        } = slot;
        let Job { out, ticket, .. } = run.job;
        // The place is given back before the caller hears of the end, so a caller that sends
        // its next request at once finds it free.
        drop(ticket);
        match end {
            End::Cancelled => {
                self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            End::Failed(e) => {
                let _ = out.try_send(Piece::Failed(e));
            }
            End::Finished(finish) => {
                if !pending.is_empty() {
                    let text = String::from_utf8_lossy(&pending).into_owned();
                    let _ = out.try_send(Piece::Text(text));
                }
                self.counters.completed.fetch_add(1, Ordering::Relaxed);
                let _ = out.try_send(Piece::Done {
                    finish,
                    usage: Usage {
                        input_tokens: run.tokens.len() as u64,
                        output_tokens: u64::from(generated),
                        cached_input_tokens: cached as u64,
                    },
                    prefill_s: prefill_s.unwrap_or_else(|| started.elapsed().as_secs_f64()),
                    decode_s: decode_started.elapsed().as_secs_f64(),
                });
            }
        }
    }
}

fn clock_seed() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
