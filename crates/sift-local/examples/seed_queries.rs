//! Runs the seed's queries on the embedded model and prints what comes back, with timings.
//!
//! `cargo run --release -p sift-local --example seed_queries [-- --model-path FILE]`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use futures::StreamExt;
use sift_core::Client;
use sift_local::{LocalConfig, LocalProvider};

use sift_server::models::UserDetail;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut config = LocalConfig::default();
    if let Some(i) = args.iter().position(|a| a == "--model-path") {
        config = config.model_path(&args[i + 1]);
    }
    if args.iter().any(|a| a == "--compact") {
        config = config.whitespace_flexible(false);
    }
    let started = Instant::now();
    let provider = LocalProvider::load(config).expect("model loads");
    println!("loaded in {:.2?}", started.elapsed());
    let client = Client::new(provider.clone());
    for query in [
        "Daniel is a 24 year man living in New York City",
        "Daniel is a 34 year man in New York City",
        "Sarah is a 20 year old living in Tokyo",
        "Jeffrey is 55 and lives down in Leeds",
    ] {
        let t = Instant::now();
        let out = client
            .extract::<UserDetail>()
            .user(format!("Extract: `{query}`"))
            .send()
            .await;
        match out {
            Ok(o) => println!(
                "{:>6.0} ms  {query:?} -> {:?} ({} attempts, {} in / {} out tokens)",
                t.elapsed().as_secs_f64() * 1000.0,
                o.value,
                o.attempts.len(),
                o.usage.input_tokens,
                o.usage.output_tokens
            ),
            Err(e) => println!("{query:?} -> error {e:?}"),
        }
    }
    let t = Instant::now();
    let query = "Alice and Bob are best friends. They are currently 32 and 43 respectively.";
    let mut stream = client.extract::<UserDetail>().user(query).elements();
    let mut got = Vec::new();
    while let Some(item) = stream.next().await {
        got.push(format!("{item:?}"));
    }
    println!(
        "{:>6.0} ms  {query:?} -> {got:?}",
        t.elapsed().as_secs_f64() * 1000.0
    );
    println!("{:?}", provider.stats());
}
