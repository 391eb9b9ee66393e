//! How many schemas of a folder tree sift takes, per set (subfolder): compiled by sift, sent
//! to an OpenAI-compatible provider in strict mode, and enforced by the embedded model's
//! grammar exactly, approximately, or refused (with the keyword named). No model is loaded:
//! whether a schema compiles does not depend on the vocabulary.
//!
//! ```text
//! cargo run --release -p sift-local --example schema_coverage -- ../shared/data/jsonschemabench
//! ```
//! `scripts/jsonschemabench.py` measures the answers themselves, through `POST /v1/extract`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;

use sift_core::Schema;
use sift_local::Enforcement;

#[derive(Default)]
struct Row {
    total: usize,
    compiled: usize,
    strict: usize,
    exact: usize,
    approximate: usize,
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .expect("a folder of sets of schemas");
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut refusals = Vec::new();
    let mut sets: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    sets.sort_by_key(|e| e.file_name());
    for set in sets {
        let name = set.file_name().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(set.path()).unwrap().flatten().collect();
        files.sort_by_key(|e| e.file_name());
        for file in files {
            let row = rows.entry(name.clone()).or_default();
            row.total += 1;
            let path = file.path();
            match check(&path) {
                Ok((strict, enforcement)) => {
                    row.compiled += 1;
                    row.strict += usize::from(strict);
                    match enforcement {
                        Ok(Enforcement::Exact) => row.exact += 1,
                        Ok(_) => row.approximate += 1,
                        Err(e) => refusals.push(format!("{}: {e}", path.display())),
                    }
                }
                Err(e) => refusals.push(format!("{}: sift: {e}", path.display())),
            }
        }
    }
    println!(
        "| set | schemas | sift compiles | OpenAI strict | grammar exact | grammar approximate | refused |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut all = Row::default();
    for (name, r) in &rows {
        print_row(name, r);
        all.total += r.total;
        all.compiled += r.compiled;
        all.strict += r.strict;
        all.exact += r.exact;
        all.approximate += r.approximate;
    }
    print_row("all", &all);
    println!();
    for r in refusals {
        println!("refused {r}");
    }
}

fn print_row(name: &str, r: &Row) {
    println!(
        "| {name} | {} | {} | {} | {} | {} | {} |",
        r.total,
        r.compiled,
        r.strict,
        r.exact,
        r.approximate,
        r.total - r.exact - r.approximate
    );
}

type Outcome = (bool, Result<Enforcement, sift_core::SchemaError>);

fn check(path: &Path) -> Result<Outcome, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let schema = Schema::compile("Output", value).map_err(|e| e.to_string())?;
    Ok((
        schema.is_strict(),
        sift_local::check_schema(schema.constrained_schema()),
    ))
}
