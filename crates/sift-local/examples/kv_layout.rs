//! Why the engine reads prompts in chunks under 64 tokens and gives each sequence cells of its
//! own: how far the logits of one prompt move with the way llama.cpp computed its KV state.
//!
//! ```text
//! cargo run --release -p sift-local --example kv_layout [-- MODEL.gguf]
//! ```
//! Each line is the largest difference in a logit against the prompt read alone in one batch
//! (0 means bit for bit the same). On the default model (release build): a prefix kept from a
//! prompt read in a batch of 64 tokens or more, 0.54; under 64, 0. With a KV cache shared by all
//! sequences (unified), a prompt read beside another's tokens 0.74, a token whose cell comes
//! before its prompt's 0.71; with a cache split by sequence, 0 and 0. A debug build gives
//! 0.77, enough to change the greedy token of the kept-prefix case.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::num::NonZeroU32;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

const SYSTEM: &str = "<|im_start|>system\nExtract the information from the user's text. Reply in JSON, using only what the text says.<|im_end|>\n<|im_start|>user\n";
const B: &str = "Extract the order: `Maria is 31, lives in Lisbon, Portugal, loves the colour green and plays chess and tennis.`<|im_end|>\n<|im_start|>assistant\n";

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Decodes `tokens[from..]` into `seq` in one batch; the last token's logits.
fn read(ctx: &mut LlamaContext, tokens: &[LlamaToken], from: usize, seq: i32) -> Vec<f32> {
    let mut batch = LlamaBatch::new(512, 1);
    for (i, t) in tokens.iter().enumerate().skip(from) {
        batch
            .add(*t, i as i32, &[seq], i + 1 == tokens.len())
            .unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    ctx.get_logits_ith(batch.n_tokens() - 1).to_vec()
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(|| sift_local::model_file::default_model(&|m| eprintln!("{m}")).unwrap());
    let backend = LlamaBackend::init().unwrap();
    let model = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default()).unwrap();
    let context = |unified: bool| {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(4096))
            .with_n_batch(512)
            .with_n_ubatch(512)
            .with_n_seq_max(4)
            .with_kv_unified(unified)
            .with_n_threads(2)
            .with_n_threads_batch(2);
        model.new_context(&backend, params).unwrap()
    };
    let vocab = model.vocab();
    let b = vocab.tokenize(format!("{SYSTEM}{B}").as_bytes(), false, true);

    // A prefix kept from a longer prompt read in one batch of n tokens, the rest read after it.
    let mut ctx = context(false);
    let alone = read(&mut ctx, &b, 0, 0);
    for filler in [10, 28, 29, 200] {
        let a_text = format!("{SYSTEM}Extract: `{}`<|im_end|>\n", "x ".repeat(filler));
        let a = vocab.tokenize(a_text.as_bytes(), false, true);
        let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        ctx.clear_kv_cache();
        read(&mut ctx, &a, 0, 1);
        assert!(
            ctx.clear_kv_cache_seq(Some(1), Some(shared as u32), None)
                .unwrap()
        );
        let reused = read(&mut ctx, &b, shared, 1);
        println!(
            "prefix of {shared} tokens kept from a prompt read in a batch of {:>3}: {}",
            a.len(),
            max_diff(&alone, &reused)
        );
    }

    for unified in [true, false] {
        let name = if unified {
            "shared by all sequences"
        } else {
            "split by sequence"
        };
        let mut ctx = context(unified);
        let alone = read(&mut ctx, &b, 0, 0);
        // Beside another prompt's tokens in one batch.
        ctx.clear_kv_cache();
        let other = vocab.tokenize(
            format!("{SYSTEM}Extract: `2 pizzas`<|im_end|>\n").as_bytes(),
            false,
            true,
        );
        let mut batch = LlamaBatch::new(512, 1);
        for (i, t) in other.iter().enumerate() {
            batch.add(*t, i as i32, &[1], false).unwrap();
        }
        for (i, t) in b.iter().enumerate() {
            batch.add(*t, i as i32, &[2], i + 1 == b.len()).unwrap();
        }
        ctx.decode(&mut batch).unwrap();
        let beside = ctx.get_logits_ith(batch.n_tokens() - 1).to_vec();
        println!(
            "KV cache {name}: prompt read beside another's: {}",
            max_diff(&alone, &beside)
        );
        // The next token, alone, and after a freed sequence left a hole before the prompt.
        let next = LlamaToken(
            alone
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .unwrap()
                .0 as i32,
        );
        let step = |ctx: &mut LlamaContext, seq: i32| {
            let mut batch = LlamaBatch::new(8, 1);
            batch.add(next, b.len() as i32, &[seq], true).unwrap();
            ctx.decode(&mut batch).unwrap();
            ctx.get_logits_ith(0).to_vec()
        };
        ctx.clear_kv_cache();
        read(&mut ctx, &b, 0, 0);
        let in_order = step(&mut ctx, 0);
        ctx.clear_kv_cache();
        read(&mut ctx, &other, 0, 1);
        read(&mut ctx, &b, 0, 2);
        ctx.clear_kv_cache_seq(Some(1), None, None).unwrap();
        let after_hole = step(&mut ctx, 2);
        println!(
            "KV cache {name}: next token after another sequence's cells were freed: {}",
            max_diff(&in_order, &after_hole)
        );
    }
}
