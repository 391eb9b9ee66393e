//! How fast a long prompt is read, by the size of the pieces it is read in, and what the
//! piece size does to the answer: the trade behind the engine's batches of under 64 tokens.
//!
//! ```text
//! cargo run --release -p sift-local --example prefill [-- MODEL.gguf [TOKENS]]
//! ```
//! For pieces of 32, 63, 128 and 512 tokens: the prompt's tokens per second (median of three
//! reads, 2 threads, each read into a fresh sequence), and the largest difference in a logit
//! of its last token against the prompt read in pieces of 32 (0: bit for bit the same). Then
//! the engine's own rate, a request with that prompt through `LocalProvider` (its time to the
//! first token). Compare with llama.cpp's `llama-bench -p TOKENS -n 0 -t 2` on the same GGUF
//! (`scripts/llama-server.sh llama-bench` builds it), alternating runs:
//!
//! ```text
//! B=$(scripts/llama-server.sh llama-bench); M=~/.cache/sift/models/SmolLM2-135M-Instruct.Q4_1.gguf
//! for r in 1 2 3; do $B -m $M -p 512 -n 0 -t 2 -r 3 | grep pp512
//!   target/release/examples/prefill $M 512 | grep engine; done
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;

const PARAGRAPH: &str = "The quarterly report lists revenue of 4,210 million dollars, up 7 percent, with operating income of 1,130 million. Cash and equivalents closed at 2,890 million after the company repurchased 1.2 million shares. ";

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .map(Into::into)
        .unwrap_or_else(|| sift_local::model_file::default_model(&|m| eprintln!("{m}")).unwrap());
    let want: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1536);
    let backend = LlamaBackend::init().unwrap();
    let model = LlamaModel::load_from_file(&backend, &path, &LlamaModelParams::default()).unwrap();
    let vocab = model.vocab();
    let mut tokens = vocab.tokenize(PARAGRAPH.repeat(want / 40 + 1).as_bytes(), true, false);
    tokens.truncate(want);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(u32::try_from(want + 64).unwrap() * 2))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_seq_max(2)
        .with_kv_unified(false)
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model.new_context(&backend, params).unwrap();
    let mut read = |piece: usize| -> (f64, Vec<f32>) {
        ctx.clear_kv_cache();
        let started = Instant::now();
        let mut logits = Vec::new();
        for (start, chunk) in tokens
            .chunks(piece)
            .enumerate()
            .map(|(i, c)| (i * piece, c))
        {
            let mut batch = LlamaBatch::new(piece, 1);
            for (k, t) in chunk.iter().enumerate() {
                let pos = start + k;
                batch
                    .add(*t, pos as i32, &[0], pos + 1 == tokens.len())
                    .unwrap();
            }
            ctx.decode(&mut batch).unwrap();
            if start + chunk.len() == tokens.len() {
                logits = ctx.get_logits_ith(batch.n_tokens() - 1).to_vec();
            }
        }
        (
            tokens.len() as f64 / started.elapsed().as_secs_f64(),
            logits,
        )
    };
    let (_, reference) = read(32);
    let (_, big) = read(512);
    println!("prompt of {} tokens, 2 threads", tokens.len());
    for piece in [32, 63, 64, 128, 512] {
        let mut rates: Vec<f64> = Vec::new();
        let mut logits = Vec::new();
        for _ in 0..3 {
            let (rate, l) = read(piece);
            rates.push(rate);
            logits = l;
        }
        rates.sort_by(f64::total_cmp);
        let diff = reference
            .iter()
            .zip(&logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let diff_big = big
            .iter()
            .zip(&logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "pieces of {piece:>3}: {:>7.1} tokens/s (median of 3); largest logit difference against pieces of 32: {diff}, of 512: {diff_big}",
            rates[1]
        );
    }
    // A piece of 128 read beside another sequence's 100 tokens in one batch, against alone.
    let piece = &tokens[..128];
    let other = vocab.tokenize(
        "The weather in Leeds was wet all week. "
            .repeat(12)
            .as_bytes(),
        true,
        false,
    );
    let other = &other[..100.min(other.len())];
    let mut last = |beside: bool| -> Vec<f32> {
        ctx.clear_kv_cache();
        let mut batch = LlamaBatch::new(512, 2);
        for (k, t) in piece.iter().enumerate() {
            batch.add(*t, k as i32, &[0], k + 1 == piece.len()).unwrap();
        }
        if beside {
            for (k, t) in other.iter().enumerate() {
                batch.add(*t, k as i32, &[1], false).unwrap();
            }
        }
        ctx.decode(&mut batch).unwrap();
        ctx.get_logits_ith(piece.len() as i32 - 1).to_vec()
    };
    let alone = last(false);
    let beside = last(true);
    let diff = alone
        .iter()
        .zip(&beside)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "a piece of 128 read beside another sequence's 100 tokens in one batch, against alone: {diff}"
    );
    drop(ctx);
    drop(model);
    // The engine loads the backend itself (one per process).
    drop(backend);

    // The engine: one request of that prompt, one token answered.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let provider = sift_local::LocalProvider::load(
        sift_local::LocalConfig::default()
            .model_path(&path)
            .threads(2)
            .context_size(u32::try_from(want * 2 + 256).unwrap())
            .keep_prompts(false)
            .max_tokens(1),
    )
    .unwrap();
    // About as many tokens (the chat template adds a few).
    let text = PARAGRAPH.repeat(tokens.len() / 56);
    let mut times = Vec::new();
    for _ in 0..3 {
        let request = sift_core::ChatRequest {
            model: sift_core::Provider::default_model(&provider).to_owned(),
            messages: vec![sift_core::Message::user(text.clone())],
            output: sift_core::OutputFormat::Text,
            temperature: None,
            max_tokens: Some(1),
            seed: None,
            structured: None,
        };
        let started = Instant::now();
        let response = runtime
            .block_on(sift_core::Provider::chat(&provider, &request))
            .unwrap();
        times.push((started.elapsed().as_secs_f64(), response.usage.input_tokens));
    }
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (secs, prompt) = times[1];
    println!(
        "the engine (LocalProvider, as it reads prompts): {prompt} prompt tokens in {secs:.2} s, {:.1} tokens/s (median of 3)",
        prompt as f64 / secs
    );
}
