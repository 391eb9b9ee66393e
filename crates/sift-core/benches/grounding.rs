//! Grounding cost per answer: the seed's `/user` answer in its query (the case every
//! `/user` request pays), and an invoice of nine values in its 400-byte text.
//!
//! ```text
//! cargo bench -p sift-core --bench grounding
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sift_core::grounding::Sources;

fn grounding(c: &mut Criterion) {
    let user = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"]
    });
    let query = json!({"query": "Daniel is a 24 year man living in New York City"});
    let answer = json!({"name": "Daniel", "age": 24});
    c.bench_function("ground /user answer", |b| {
        b.iter(|| {
            let g = Sources::of_input(&query).ground(&answer, &user);
            assert!(g.ungrounded.is_empty());
            g
        });
    });
    let invoice: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/schemas/invoice.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/texts/invoice.txt"
    ))
    .unwrap();
    let input = json!({ "text": text });
    let answer = json!({
        "number": "2026-0412", "issued": "2026-11-03",
        "seller": {"name": "Brightwater Tools Ltd"}, "buyer": {"name": "Harbour Café"},
        "currency": "GBP",
        "lines": [{"description": "Espresso grinder burr set", "quantity": 2, "unit_price": 45.0, "amount": 90.0}],
        "total": 126.5
    });
    c.bench_function("ground invoice answer", |b| {
        b.iter(|| {
            let g = Sources::of_input(&input).ground(&answer, &invoice);
            assert!(g.ungrounded.is_empty(), "{:?}", g.ungrounded);
            g
        });
    });
}

criterion_group!(benches, grounding);
criterion_main!(benches);
