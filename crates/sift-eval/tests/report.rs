//! The report of hand-made cases, against golden files: scores per field, exact match, the
//! misses, the failures, and the table with deltas against a baseline.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::json;
use sift_config::{FieldRule, Matching};
use sift_eval::report::{Failure, Scored};
use sift_eval::{Report, Rules, compare};

fn cases() -> Vec<Scored> {
    let rules = Rules::new(BTreeMap::from([(
        "people[].age".to_owned(),
        FieldRule::new(Matching::Number, Some(1.0)),
    )]));
    let example = |id: &str, expected: serde_json::Value, got: Option<serde_json::Value>| Scored {
        id: id.into(),
        leaves: compare(&expected, got.as_ref(), &rules),
        failure: None,
        grounded: 2,
        checked: 2,
    };
    vec![
        example(
            "exact",
            json!({"people": [{"name": "Ann Lee", "age": 31}]}),
            Some(json!({"people": [{"name": "ann lee.", "age": 32}]})),
        ),
        example(
            "order",
            json!({"people": [{"name": "Bo", "age": 40}, {"name": "Cy", "age": 20}]}),
            Some(json!({"people": [{"name": "Cy", "age": 20}, {"name": "Bo", "age": 40}]})),
        ),
        example(
            "title",
            json!({"people": [{"name": "Jane Smith", "age": 50}]}),
            Some(
                json!({"people": [{"name": "Dr. Jane Smith", "age": 50}, {"name": "Tom", "age": 9}]}),
            ),
        ),
        Scored {
            id: "failed".into(),
            leaves: compare(
                &json!({"people": [{"name": "Zed", "age": 70}]}),
                None,
                &rules,
            ),
            failure: Some(Failure {
                id: "failed".into(),
                kind: "retries_exhausted".into(),
                message: "no valid answer after 3 attempts".into(),
            }),
            grounded: 1,
            checked: 2,
        },
    ]
}

#[test]
fn scores_misses_and_failures() {
    let report = Report::new("people", "test-model", cases());
    assert_eq!(report.exact, 2);
    insta::assert_snapshot!("report", serde_json::to_string_pretty(&report).unwrap());
    insta::assert_snapshot!("table", report.table(None, 20));
}

#[test]
fn a_baseline_gives_the_deltas() {
    let now = Report::new("people", "test-model", cases());
    let mut then = now.clone();
    then.exact_match = 0.25;
    if let Some(s) = then.fields.get_mut("people[].name") {
        s.f1 = 0.5;
    }
    then.fields.remove("people[].age");
    insta::assert_snapshot!("table_with_baseline", now.table(Some(&then), 3));
}
