//! Grounded extraction against the scripted upstream: a value the text does not hold is an
//! error the model is asked to fix, in every mode; when the re-asks run out it is an error of
//! its own kind; the value that passes comes with its spans.

use futures::StreamExt;
use serde_json::{Value, json};
use sift_core::grounding::{Policy, Sources};
use sift_core::{AttemptOutcome, Event, ExtractError, Mode, Schema};
use sift_test_support::{Reply, ScriptedServer, split_chars};

use crate::client;

const TEXT: &str = "Jeffrey lives down in Leeds; he turned thirty-three in May.";

fn person() -> Schema {
    Schema::compile(
        "Person",
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "city": {"type": "string"},
                "age": {"type": "integer"},
                "mood": {"type": "string", "description": "A one-word summary of the tone"}
            },
            "required": ["name", "city"],
            "additionalProperties": false
        }),
    )
    .unwrap()
}

fn answer(mode: Mode, json: &str) -> Reply {
    match mode {
        Mode::Tools => Reply::tool_call("Person", json),
        Mode::MdJson => Reply::content(format!("Here:\n```json\n{json}\n```")),
        _ => Reply::content(json),
    }
}

/// The characters `start..end` of `text` (offsets in Unicode scalar values).
fn chars(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

/// Every message of a recorded request, as one text.
fn conversation(body: &Value) -> String {
    body["messages"].to_string()
}

#[tokio::test]
async fn an_invented_value_is_reasked_in_every_mode() {
    for mode in [Mode::Tools, Mode::JsonSchema, Mode::Json, Mode::MdJson] {
        let server = ScriptedServer::start().await;
        server
            .push(answer(
                mode,
                r#"{"name": "Jeffrey", "city": "Lisle", "age": 33, "mood": "calm"}"#,
            ))
            .push(answer(
                mode,
                r#"{"name": "Jeffrey", "city": "Leeds", "age": 33, "mood": "calm"}"#,
            ));
        let out = client(&server)
            .extract_value(&person())
            .user(TEXT)
            .grounded_in("text", TEXT)
            .mode(mode)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(out.value["city"], "Leeds", "{mode}");
        let outcomes: Vec<AttemptOutcome> = out.attempts.iter().map(|a| a.outcome).collect();
        assert_eq!(
            outcomes,
            [AttemptOutcome::Ungrounded, AttemptOutcome::Success],
            "{mode}"
        );
        let errors = &out.attempts[0].errors;
        assert_eq!(errors.len(), 1, "{mode}: {errors:?}");
        assert_eq!(errors[0].path, "city");
        assert_eq!(
            errors[0].message,
            "'Lisle' does not appear in the text; copy the value from the text or leave the field out"
        );
        // The second request carries the error back to the model.
        let requests = server.requests();
        assert_eq!(requests.len(), 2, "{mode}");
        assert!(!conversation(&requests[0].body).contains("does not appear in the text"));
        assert!(
            conversation(&requests[1].body).contains("'Lisle' does not appear in the text"),
            "{mode}: {}",
            conversation(&requests[1].body)
        );
        // The value that passed comes with where each checked value is.
        let spans = out.spans.expect("a grounded extraction has spans");
        let city = &spans["/city"];
        assert_eq!(city.len(), 1);
        assert_eq!(city[0].field, "text");
        assert_eq!(chars(TEXT, city[0].start, city[0].end), "Leeds");
        let age = &spans["/age"][0];
        assert_eq!(chars(TEXT, age.start, age.end), "thirty-three");
        assert_eq!(
            chars(TEXT, spans["/name"][0].start, spans["/name"][0].end),
            "Jeffrey"
        );
        // A summary is free: not checked, no span.
        assert!(!spans.contains_key("/mood"), "{spans:?}");
    }
}

#[tokio::test]
async fn without_grounding_an_invented_value_passes() {
    let server = ScriptedServer::start().await;
    server.push(answer(
        Mode::Tools,
        r#"{"name": "Jeffrey", "city": "Lisle"}"#,
    ));
    let out = client(&server)
        .extract_value(&person())
        .user(TEXT)
        .send()
        .await
        .unwrap();
    assert_eq!(out.value["city"], "Lisle");
    assert_eq!(out.attempts.len(), 1);
    assert_eq!(out.spans, None);
}

#[tokio::test]
async fn values_still_invented_after_the_reasks_are_an_error_of_their_own() {
    let server = ScriptedServer::start().await;
    for city in ["Lisle", "Zuraflasche"] {
        server.push(answer(
            Mode::Tools,
            &format!(r#"{{"name": "Jeffrey", "city": "{city}", "age": 34}}"#),
        ));
    }
    let err = client(&server)
        .extract_value(&person())
        .user(TEXT)
        .grounded_in("text", TEXT)
        .max_retries(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "ungrounded");
    let ExtractError::Ungrounded {
        ungrounded,
        value,
        attempts,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    let pointers: Vec<&str> = ungrounded.iter().map(|u| u.pointer.as_str()).collect();
    assert_eq!(pointers, ["/city", "/age"]);
    assert_eq!(ungrounded[1].policy, Policy::Normalized);
    assert_eq!(value["city"], "Zuraflasche");
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts
            .iter()
            .all(|a| a.outcome == AttemptOutcome::Ungrounded)
    );
    let message = err.to_string();
    assert!(message.contains("\"Zuraflasche\" at /city"), "{message}");
    assert!(message.contains("34 at /age"), "{message}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_policy_set_by_path_wins_over_the_default() {
    let server = ScriptedServer::start().await;
    server.push(answer(
        Mode::Tools,
        r#"{"name": "Jeffrey", "city": "Yorkshire"}"#,
    ));
    let sources = Sources::new()
        .with_input("text", TEXT)
        .with_policy("city", Policy::Free);
    let out = client(&server)
        .extract_value(&person())
        .user(TEXT)
        .grounding(sources)
        .send()
        .await
        .unwrap();
    assert_eq!(out.value["city"], "Yorkshire");
    let spans = out.spans.unwrap();
    assert!(spans.contains_key("/name"));
    assert!(!spans.contains_key("/city"));
}

#[tokio::test]
async fn streamed_elements_are_grounded_as_they_close() {
    let server = ScriptedServer::start().await;
    let schema = Schema::compile(
        "People",
        json!({
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"]
            }
        }),
    )
    .unwrap();
    let text = "Ada and Grace wrote the first programs.";
    let answer = r#"{"value": [{"name": "Ada"}, {"name": "Zed"}, {"name": "Grace"}]}"#;
    server.push(Reply::stream_tool_call("People", split_chars(answer, 6)));
    let mut stream = client(&server)
        .extract_value(&schema)
        .user(text)
        .grounded_in("text", text)
        .elements();
    let (mut seen, mut located) = (Vec::new(), Vec::new());
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            Event::Element {
                index,
                value,
                spans,
            } => {
                seen.push((index, Ok(value["name"].clone())));
                // Each element's spans point into the element.
                let span = spans.expect("grounded")["/name"][0].clone();
                located.push((span.start, span.end));
            }
            Event::ItemError { index, errors, .. } => {
                seen.push((index, Err(errors[0].message.clone())));
            }
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            (0, Ok(json!("Ada"))),
            (
                1,
                Err(
                    "'Zed' does not appear in the text; copy the value from the text or leave the field out"
                        .to_owned()
                )
            ),
            (2, Ok(json!("Grace"))),
        ]
    );
    assert_eq!(located, [(0, 3), (8, 13)]);
}
