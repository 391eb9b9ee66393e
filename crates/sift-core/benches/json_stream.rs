//! Parser benchmarks: throughput by chunk size, and cost per element by list length.
//!
//! `cargo bench -p sift-core --bench json_stream`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sift_core::json_stream::{Event, JsonStreamParser};
use std::hint::black_box;

/// A list of `n` people, wrapped as the model answers: `{"value": [...]}`.
fn people(n: usize) -> String {
    let items: Vec<_> = (0..n)
        .map(|i| {
            json!({"name": format!("Person {i} \"the {{great}}\""), "age": i % 100,
                   "city": "New York City", "tags": ["a", "b"], "score": 0.5 + i as f64})
        })
        .collect();
    serde_json::to_string(&json!({ "value": items })).unwrap_or_default()
}

#[derive(Clone, Copy)]
enum How {
    /// What an element stream uses: elements handed over as raw text, nothing else built.
    RawElements,
    /// Elements handed over as built values.
    ValueElements,
    /// The whole document built, every field and element reported.
    AllEvents,
}

fn parse_chunked(text: &[u8], chunk: usize, how: How) -> usize {
    let mut parser = match how {
        How::RawElements => JsonStreamParser::new()
            .detach_raw(true)
            .element_paths(false)
            .field_events(false),
        How::ValueElements => JsonStreamParser::new()
            .detach_elements(true)
            .field_events(false),
        How::AllEvents => JsonStreamParser::new(),
    };
    let mut events = Vec::new();
    let mut elements = 0;
    for piece in text.chunks(chunk) {
        if parser.feed(piece, &mut events).is_err() {
            return 0;
        }
        elements += events
            .iter()
            .filter(|e| matches!(e, Event::ElementComplete { .. }))
            .count();
        events.clear();
    }
    let _ = parser.finish(&mut events);
    elements
}

fn throughput(c: &mut Criterion) {
    let text = people(2000);
    let mut group = c.benchmark_group("parse_by_chunk_size");
    group.throughput(Throughput::Bytes(text.len() as u64));
    for chunk in [1usize, 4, 64, 4096] {
        for (name, how) in [
            ("raw_elements", How::RawElements),
            ("value_elements", How::ValueElements),
            ("all_events", How::AllEvents),
        ] {
            group.bench_with_input(BenchmarkId::new(name, chunk), &chunk, |b, &chunk| {
                b.iter(|| parse_chunked(black_box(text.as_bytes()), chunk, how))
            });
        }
    }
    group.bench_function("serde_json_whole_document", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&text)).map(|_| ()))
    });
    group.finish();
}

fn per_element(c: &mut Criterion) {
    let mut group = c.benchmark_group("cost_per_element");
    group.sample_size(10);
    for n in [10usize, 100, 1000, 10_000, 100_000] {
        let text = people(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| parse_chunked(black_box(text.as_bytes()), 64, How::RawElements))
        });
    }
    group.finish();
}

criterion_group!(benches, throughput, per_element);
criterion_main!(benches);
