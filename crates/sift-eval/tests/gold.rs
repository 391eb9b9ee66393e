//! The evaluation sets in `evals/` are true to their texts: every expected value the
//! extractor's grounding rules check is found in the example's input (a gold value the text
//! does not hold would score a right answer wrong, and could only be matched by inventing),
//! fields the set does not score aside; and each set is large enough to trust.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use sift_config::{Config, Matching};
use sift_core::grounding::Policy;

/// Gold answers that compose a name the text writes in parts ("Max and Mia Lange", "Greene,
/// Ruth"): no verbatim answer can match them, and they are kept as the hard cases they are.
const COMPOSED: &[&str] = &["many-03", "many-15"];

fn evals() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../evals")
}

#[test]
fn every_expected_value_is_found_in_its_text() {
    let config = Config::load(&evals().join("sift.toml")).unwrap();
    let mut problems = Vec::new();
    for (name, file, at_least) in [
        ("invoice", "invoice.jsonl", 15),
        ("contact", "contact.jsonl", 15),
        ("events", "events.jsonl", 15),
        ("profile", "absent.jsonl", 15),
        ("people", "people-many.jsonl", 15),
    ] {
        let spec = config.extractor(name).unwrap();
        let gold = sift_eval::read_gold(&evals().join(file), spec).unwrap();
        assert!(gold.len() >= at_least, "{file}: {} examples", gold.len());
        // What the set does not score is not held to the text here either.
        let unscored: BTreeMap<String, Policy> = spec
            .eval
            .iter()
            .filter(|(_, rule)| rule.matching == Matching::Ignore)
            .map(|(path, _)| (path.clone(), Policy::Free))
            .collect();
        for example in gold
            .into_iter()
            .filter(|e| !COMPOSED.contains(&e.id.as_str()))
        {
            let grounding = spec
                .sources(&example.input)
                .with_policies(&unscored)
                .ground(&example.expected, spec.output.value());
            for u in grounding.ungrounded {
                problems.push(format!(
                    "{file} {}: {} {}",
                    example.id,
                    u.pointer,
                    u.message()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
