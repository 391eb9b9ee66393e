//! Scrubbing throughput: the check every exported and printed string goes through.
//!
//! ```text
//! cargo bench -p sift-telemetry --bench scrub
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sift_telemetry::{ScrubOptions, Scrubber};

fn bench(c: &mut Criterion) {
    // What a request's content looks like: the prompt and the answer as GenAI messages.
    let clean = r#"[{"role":"user","parts":[{"type":"text","content":"Extract: `Daniel is a 24 year man living in New York City, works as a carpenter and likes long walks by the river`"}]},{"role":"assistant","parts":[{"type":"tool_call","id":"call_1","name":"UserDetail","arguments":{"name": "Daniel", "age": 24}}],"finish_reason":"tool_calls"}]"#
        .repeat(4);
    let scrubber = Scrubber::new(&ScrubOptions {
        secrets: vec!["sk-bench-0123456789abcdef".into()],
        ..ScrubOptions::default()
    })
    .unwrap();
    assert_eq!(scrubber.find(&clean), None);
    let mut group = c.benchmark_group("scrub");
    group.throughput(Throughput::Bytes(clean.len() as u64));
    group.bench_function("clean content", |b| {
        b.iter(|| scrubber.find(std::hint::black_box(&clean)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
