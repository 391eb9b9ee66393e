//! Benchmark of the embedded model: sift's local provider against a plain llama-cpp-2 loop on
//! the same GGUF, prompt and thread count.
//!
//! ```text
//! cargo build --release -p sift-local --example bench_local
//! target/release/examples/bench_local plain     # llama-cpp-2 alone
//! target/release/examples/bench_local sift      # sift's provider
//! ```
//! Each prints prefill and decode tokens/s (mean of the runs), time per seed extraction, and
//! peak RSS. Run them as separate processes: llama.cpp's backend starts once per process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::explicit_counter_loop,
    missing_docs
)]

use std::num::NonZeroU32;
use std::time::Instant;

use futures::StreamExt;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use sift_core::{ChatDelta, ChatRequest, Client, Message, OutputFormat, Provider};
use sift_local::{LocalConfig, LocalProvider};

const RUNS: usize = 10;
const DECODE_TOKENS: u32 = 128;
const QUERY: &str = "Extract: `Daniel is a 24 year man living in New York City`";
/// A prompt that makes the model write on (for decode speed).
const LONG: &str = "Write a 300-word essay about the ocean.";

fn threads() -> i32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i32)
        .unwrap_or(2)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn model_path() -> std::path::PathBuf {
    std::env::var_os("SIFT_MODEL_PATH")
        .map(Into::into)
        .unwrap_or_else(|| sift_local::model_file::default_model(&|m| eprintln!("{m}")).unwrap())
}

/// llama-cpp-2 alone: template the same conversation, prefill, decode greedily.
fn plain() {
    let backend = LlamaBackend::init().unwrap();
    let model =
        LlamaModel::load_from_file(&backend, model_path(), &LlamaModelParams::default()).unwrap();
    let template = model.chat_template(None).unwrap();
    let chat = vec![LlamaChatMessage::new("user".into(), LONG.into()).unwrap()];
    let prompt = model.apply_chat_template(&template, &chat, true).unwrap();
    let vocab = model.vocab();
    let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(2048))
        .with_n_batch(2048)
        .with_n_threads(threads())
        .with_n_threads_batch(threads());
    let mut ctx = model.new_context(&backend, params).unwrap();
    let (mut prefill, mut decode, mut decoded) = (0.0, 0.0, 0u32);
    for _ in 0..RUNS {
        ctx.clear_kv_cache();
        let mut batch = LlamaBatch::new(2048, 1);
        for (i, t) in tokens.iter().enumerate() {
            batch
                .add(*t, i as i32, &[0], i == tokens.len() - 1)
                .unwrap();
        }
        let t = Instant::now();
        ctx.decode(&mut batch).unwrap();
        prefill += t.elapsed().as_secs_f64();
        let mut sampler = LlamaSampler::greedy();
        let mut pos = tokens.len() as i32;
        let t = Instant::now();
        for _ in 0..DECODE_TOKENS {
            let token = sampler.sample(&ctx, batch.n_tokens() - 1);
            if vocab.is_eog(token) {
                break;
            }
            let _ = vocab.token_to_piece(token, false, None);
            decoded += 1;
            batch.clear();
            batch.add(token, pos, &[0], true).unwrap();
            pos += 1;
            ctx.decode(&mut batch).unwrap();
        }
        decode += t.elapsed().as_secs_f64();
    }
    println!(
        "plain llama-cpp-2, {} threads, prompt {} tokens",
        threads(),
        tokens.len()
    );
    println!(
        "  prefill {:.0} tokens/s",
        (tokens.len() * RUNS) as f64 / prefill
    );
    println!(
        "  decode  {:.1} tokens/s ({decoded} tokens)",
        f64::from(decoded) / decode
    );
    let _ = QUERY;
    println!("  peak RSS {:.0} MB", peak_rss_mb());
}

/// sift's provider: the same unconstrained generation through the job queue and stream, then
/// the seed extraction, constrained.
async fn sift() {
    let provider = LocalProvider::load(LocalConfig::default().model_path(model_path())).unwrap();
    let request = ChatRequest {
        model: provider.default_model().to_owned(),
        messages: vec![Message::user(LONG)],
        output: OutputFormat::Text,
        temperature: None,
        max_tokens: Some(DECODE_TOKENS + 1),
        seed: None,
        structured: None,
    };
    let (mut decoded, mut wall) = (0u64, 0.0);
    for _ in 0..RUNS {
        let t = Instant::now();
        let mut stream = provider.chat_stream(&request).await.unwrap();
        let mut first = None;
        let mut n = 0;
        while let Some(delta) = stream.next().await {
            match delta {
                Ok(ChatDelta::Content(_)) => {
                    n += 1;
                    first.get_or_insert_with(Instant::now);
                }
                Ok(_) => {}
                Err(_) => break, // the token limit ends the run
            }
        }
        if let Some(f) = first {
            // From the first token to the last: n - 1 decode steps.
            wall += f.elapsed().as_secs_f64();
            decoded += n - 1;
        }
        let _ = t;
    }
    println!("sift local provider, {} threads", threads());
    println!(
        "  decode  {:.1} tokens/s (unconstrained, through the queue and stream)",
        decoded as f64 / wall
    );

    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct UserDetail {
        name: String,
        age: u32,
    }
    let client = Client::new(provider.clone());
    let mut times = Vec::new();
    let mut out_tokens = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let out = client
            .extract::<UserDetail>()
            .user(QUERY)
            .send()
            .await
            .unwrap();
        times.push(t.elapsed().as_secs_f64());
        out_tokens = out.usage.output_tokens;
        assert_eq!(out.value.age, 24);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "  seed extraction: median {:.0} ms, max {:.0} ms ({out_tokens} tokens out, constrained)",
        times[RUNS / 2] * 1000.0,
        times[RUNS - 1] * 1000.0
    );
    println!("  peak RSS {:.0} MB", peak_rss_mb());
}

#[tokio::main]
async fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("plain") => plain(),
        Some("sift") => sift().await,
        _ => eprintln!("usage: bench_local plain|sift"),
    }
}
