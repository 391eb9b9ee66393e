//! Benchmark of grounded decoding on the embedded model: the grammar compile time per request
//! (the grounded grammar is made from each request's text) for a 2 KB and a 20 KB input, and
//! the decode speed with the substring constraint against the schema's grammar alone, on the
//! same model, prompt and text.
//!
//! ```text
//! cargo build --release -p sift-local --example grounded_bench
//! target/release/examples/grounded_bench [RUNS]
//! ```
//! Prints, per input size, the median compile time of the grounded grammar (from the
//! provider's debug event) and the median decode tokens/s with and without grounding (output
//! tokens over the call's time, the prompt being kept from the first run).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Mutex;

use serde_json::Value;
use sift_core::{Client, Schema};
use sift_local::{LocalConfig, LocalProvider};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The compile times of grounded grammars, from the provider's debug events.
static SEEN: Mutex<Vec<f64>> = Mutex::new(Vec::new());

struct Figures;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Figures {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct V;
        impl Visit for V {
            fn record_f64(&mut self, field: &Field, value: f64) {
                if field.name() == "compile_ms" {
                    SEEN.lock().unwrap().push(value);
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        event.record(&mut V);
    }
}

/// The compile times seen since the last call.
fn take() -> Vec<f64> {
    std::mem::take(&mut *SEEN.lock().unwrap())
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// A text of about `bytes` bytes: the example contact message, then the evaluation sets'
/// texts (names, numbers and dates of every kind), repeated.
fn text(bytes: usize) -> String {
    let mut texts = vec![std::fs::read_to_string(repo("examples/texts/contact.txt")).unwrap()];
    for file in ["people-one", "people-many", "contact", "invoice", "events"] {
        let path = repo(&format!("evals/{file}.jsonl"));
        for line in std::fs::read_to_string(path).unwrap().lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                for key in ["text", "query"] {
                    if let Some(t) = v.get(key).and_then(Value::as_str) {
                        texts.push(t.to_owned());
                    }
                }
            }
        }
    }
    let mut out = String::new();
    while out.len() < bytes {
        for t in &texts {
            out.push_str(t);
            out.push('\n');
        }
    }
    let mut end = bytes;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let subscriber = tracing_subscriber::registry().with(Figures);
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let provider = LocalProvider::load(
        LocalConfig::default()
            .context_size(16384)
            .parallel(1)
            .max_tokens(160),
    )
    .unwrap();
    let client = Client::new(provider);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("examples/schemas/contact.json")).unwrap(),
    )
    .unwrap();
    let schema = Schema::compile("Contact", schema).unwrap();
    // 20,000 bytes is about 7,800 tokens: with the answer, within the model's 8,192.
    for bytes in [2048, 20000] {
        let text = text(bytes);
        let prompt = format!("Extract the contact details from this message:\n\n{text}");
        let mut rows = Vec::new();
        for grounded in [true, false] {
            take();
            let mut compile = Vec::new();
            let mut decode = Vec::new();
            for _ in 0..runs {
                let mut b = client.extract_value(&schema).user(&prompt).max_retries(0);
                if grounded {
                    b = b.grounded_in("text", &text);
                }
                // An answer the text does not hold is an error here: its speed counts all the same.
                // An answer the text does not hold is an error here: its speed counts all the
                // same. The prompt is kept after the first run, so a call's time is its decoding.
                let attempts = match b.send().await {
                    Ok(out) => out.attempts,
                    Err(e) => e.attempts().to_vec(),
                };
                compile.extend(take());
                if let Some(a) = attempts.first()
                    && a.usage.output_tokens > 0
                {
                    decode.push(a.usage.output_tokens as f64 / a.duration.as_secs_f64());
                }
            }
            rows.push((grounded, median(compile), median(decode)));
        }
        let (_, compile, with) = rows[0];
        let (_, _, without) = rows[1];
        println!(
            "{bytes} bytes: grounded grammar compile {compile:.2} ms (median of {runs}); decode {with:.1} tokens/s grounded, {without:.1} without ({:.2}x)",
            with / without
        );
    }
}
