//! Extraction against schemas given as data: the same loop, modes, re-asks and streams as
//! typed extraction.

use futures::StreamExt;
use serde_json::{Value, json};
use sift_core::{AttemptOutcome, ExtractError, FieldError, Mode, Schema};
use sift_openai::OpenAi;
use sift_test_support::{Reply, ScriptedServer, split_chars};

use crate::old::{Old, PartialUpdate, StreamError};
use crate::{UserDetail, client};

fn contact() -> Schema {
    Schema::compile(
        "Contact",
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string", "pattern": "^[^@ ]+@[^@ ]+$"},
                "kind": {"enum": ["person", "company"]},
                "phone": {"type": ["string", "null"]}
            },
            "required": ["name", "email", "kind"],
            "additionalProperties": false
        }),
    )
    .unwrap()
}

fn answer(mode: Mode, json: &str) -> Reply {
    match mode {
        Mode::Tools => Reply::tool_call("Contact", json),
        Mode::MdJson => Reply::content(format!("Sure:\n```json\n{json}\n```")),
        _ => Reply::content(json),
    }
}

async fn reask_in(mode: Mode) {
    let server = ScriptedServer::start().await;
    server
        .push(
            answer(
                mode,
                r#"{"name": "Ada", "email": "ada at example.org", "kind": "human"}"#,
            )
            .usage(80, 20),
        )
        .push(
            answer(
                mode,
                r#"{"name": "Ada", "email": "ada@example.org", "kind": "person"}"#,
            )
            .usage(120, 18),
        );
    let out = client(&server)
        .extract_value(&contact())
        .user("Ada (ada@example.org) is a person.")
        .mode(mode)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.value,
        json!({"name": "Ada", "email": "ada@example.org", "kind": "person"})
    );
    assert_eq!(out.attempts.len(), 2);
    assert_eq!(out.attempts[0].outcome, AttemptOutcome::ValidationFailed);
    let mut paths: Vec<&str> = out.attempts[0]
        .errors
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        ["email", "kind"],
        "{mode}: {:?}",
        out.attempts[0].errors
    );
    assert_eq!(out.usage.input_tokens, 200);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    // The second request carries the errors back, with their paths.
    let second = requests[1].body["messages"].to_string();
    assert!(second.contains(r#"\"path\":\"email\""#), "{mode}: {second}");
    assert!(second.contains(r#"\"path\":\"kind\""#), "{mode}: {second}");
    match mode {
        Mode::Tools => {
            let f = &requests[0].body["tools"][0]["function"];
            assert_eq!(f["name"], "Contact");
            assert_eq!(f["strict"], true);
            // Optional in the schema, so nullable and required in strict mode.
            assert_eq!(
                f["parameters"]["required"],
                json!(["name", "email", "kind", "phone"])
            );
        }
        Mode::JsonSchema => {
            assert_eq!(
                requests[0].body["response_format"]["json_schema"]["name"],
                "Contact"
            );
        }
        Mode::Json | Mode::MdJson => {
            assert!(
                requests[0].body["messages"][0]["content"]
                    .as_str()
                    .unwrap()
                    .contains("pattern")
            );
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_dynamic_schema_is_reasked_in_tools_mode() {
    reask_in(Mode::Tools).await;
}

#[tokio::test]
async fn a_dynamic_schema_is_reasked_in_json_schema_mode() {
    reask_in(Mode::JsonSchema).await;
}

#[tokio::test]
async fn a_dynamic_schema_is_reasked_in_json_mode() {
    reask_in(Mode::Json).await;
}

#[tokio::test]
async fn a_dynamic_schema_is_reasked_in_md_json_mode() {
    reask_in(Mode::MdJson).await;
}

#[tokio::test]
async fn what_strict_mode_cannot_express_is_enforced_by_validation() {
    // A map of scores: strict mode cannot close it, so it goes with `strict: false`, the
    // upstream is free to answer wrong, and validation plus a re-ask fix it.
    let schema = Schema::compile(
        "Scores",
        json!({
            "type": "object",
            "properties": {
                "scores": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
            },
            "required": ["scores"]
        }),
    )
    .unwrap();
    assert!(!schema.is_strict());
    let server = ScriptedServer::start().await;
    server
        .push(Reply::tool_call(
            "Scores",
            r#"{"scores": {"ann": 3, "bob": -1}}"#,
        ))
        .push(Reply::tool_call(
            "Scores",
            r#"{"scores": {"ann": 3, "bob": 1}}"#,
        ));
    let out = client(&server)
        .extract_value(&schema)
        .user("Ann 3, Bob 1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.value["scores"]["bob"], 1);
    assert_eq!(out.attempts[0].errors[0].path, "scores.bob");
    let requests = server.requests();
    assert_eq!(requests[0].body["tools"][0]["function"]["strict"], false);
}

#[tokio::test]
async fn exhausted_retries_on_a_dynamic_schema_keep_every_attempt() {
    let server = ScriptedServer::start().await;
    for _ in 0..2 {
        server.push(Reply::tool_call("Contact", r#"{"name": "Ada"}"#).usage(10, 5));
    }
    let err = client(&server)
        .extract_value(&contact())
        .user("Ada")
        .max_retries(1)
        .send()
        .await
        .unwrap_err();
    let ExtractError::RetriesExhausted {
        attempts, usage, ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(attempts.len(), 2);
    assert_eq!(usage.input_tokens, 20);
}

#[tokio::test]
async fn elements_of_a_dynamic_array_schema_stream_as_they_close() {
    let schema = Schema::compile(
        "Events",
        json!({
            "type": "array",
            "items": {"$ref": "#/$defs/Event"},
            "$defs": {"Event": {
                "type": "object",
                "properties": {"title": {"type": "string"}, "day": {"type": "integer", "minimum": 1, "maximum": 31}},
                "required": ["title", "day"]
            }}
        }),
    )
    .unwrap();
    let server = ScriptedServer::start().await;
    let text = r#"{"value": [{"title": "launch", "day": 3}, {"title": "party", "day": 40}, {"title": "review", "day": 9}]}"#;
    server.push(Reply::stream_tool_call("Events", split_chars(text, 7)).usage(50, 30));
    let mut stream = client(&server)
        .extract_value(&schema)
        .user("launch on the 3rd, party on the 40th, review on the 9th")
        .elements()
        .results();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(v) => good.push(v),
            Err(StreamError::Item {
                index,
                errors,
                value,
            }) => bad.push((index, errors, value)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        good,
        [
            json!({"title": "launch", "day": 3}),
            json!({"title": "review", "day": 9})
        ]
    );
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, 1);
    assert_eq!(bad[0].1[0].path, "day");
    assert_eq!(bad[0].2["title"], "party");
    assert_eq!(stream.usage().output_tokens, 30);
    let body = &server.requests()[0].body;
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["properties"]["value"]["type"],
        "array"
    );
}

#[tokio::test]
async fn an_element_stream_needs_an_array_schema() {
    let server = ScriptedServer::start().await;
    let mut stream = client(&server)
        .extract_value(&contact())
        .user("x")
        .elements()
        .results();
    match stream.next().await {
        Some(Err(StreamError::Extract(ExtractError::Schema(e)))) => assert_eq!(e.kind(), "shape"),
        other => panic!("{other:?}"),
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn partial_snapshots_of_a_dynamic_object_then_the_value() {
    let server = ScriptedServer::start().await;
    let text =
        r#"{"name": "Ada Lovelace", "email": "ada@example.org", "kind": "person", "phone": null}"#;
    server.push(Reply::stream_content(split_chars(text, 5)).usage(40, 25));
    let mut stream = client(&server)
        .extract_value(&contact())
        .user("Ada Lovelace, ada@example.org")
        .mode(Mode::JsonSchema)
        .partials()
        .updates();
    let mut snapshots: Vec<Value> = Vec::new();
    let mut done = None;
    while let Some(update) = stream.next().await {
        match update.unwrap() {
            PartialUpdate::Snapshot(v) => snapshots.push(v),
            PartialUpdate::Done(v) => done = Some(v),
            other => panic!("{other:?}"),
        }
    }
    assert!(snapshots.len() > 5, "{snapshots:?}");
    assert!(
        snapshots
            .iter()
            .any(|s| s.get("email").is_none() && s["name"] == "Ada Lovelace")
    );
    assert_eq!(done.unwrap()["email"], "ada@example.org");
    assert_eq!(stream.attempts().len(), 1);
}

impl sift_core::Validate for UserDetail {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        if self.name.chars().next().is_some_and(char::is_uppercase) {
            Ok(())
        } else {
            Err(vec![FieldError::new("name", "must be capitalised")])
        }
    }
}

#[tokio::test]
async fn validate_with_adds_to_validated() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::tool_call(
            "UserDetail",
            r#"{"name": "daniel", "age": 3}"#,
        ))
        .push(Reply::tool_call(
            "UserDetail",
            r#"{"name": "Daniel", "age": 24}"#,
        ));
    let out = client(&server)
        .extract::<UserDetail>()
        .user("Daniel is 24")
        .validated()
        .validate_with(|u| {
            if u.age >= 18 {
                Ok(())
            } else {
                Err(vec![FieldError::new("age", "must be an adult")])
            }
        })
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.age, 24);
    let mut paths: Vec<&str> = out.attempts[0]
        .errors
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    paths.sort_unstable();
    assert_eq!(paths, ["age", "name"], "both rules ran");
}

#[tokio::test]
async fn nulls_strict_mode_asks_for_optional_fields_are_not_held_against_the_answer() {
    // `city` is optional and not nullable: strict mode makes it required and nullable, so a
    // strict model answers `null` for it; the answer must still fit the schema as given.
    let schema = Schema::compile(
        "Contact",
        json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
            "required": ["name"]
        }),
    )
    .unwrap();
    assert!(schema.is_strict());
    let server = ScriptedServer::start().await;
    server.push(Reply::tool_call(
        "Contact",
        r#"{"name": "Ada", "city": null}"#,
    ));
    let out = client(&server)
        .extract_value(&schema)
        .user("Ada")
        .send()
        .await
        .unwrap();
    assert_eq!(out.value, json!({"name": "Ada"}));
    assert_eq!(out.attempts.len(), 1, "no re-ask");
    let sent = &server.requests()[0].body["tools"][0]["function"];
    assert_eq!(
        sent["parameters"]["properties"]["city"]["type"],
        json!(["string", "null"])
    );
}

#[tokio::test]
async fn an_answer_cut_by_the_token_limit_ends_with_a_token_limit_error_not_a_reask() {
    let server = ScriptedServer::start().await;
    server.push(
        Reply::tool_call("Contact", r#"{"name": "Ada", "email": "ada@exa"#)
            .finish_reason("length")
            .usage(50, 16),
    );
    let err = client(&server)
        .extract_value(&contact())
        .user("Ada")
        .max_tokens(16)
        .send()
        .await
        .unwrap_err();
    match &err {
        ExtractError::TokenLimit {
            limit: Some(16),
            attempts,
            usage,
        } => {
            assert_eq!(attempts.len(), 1);
            assert_eq!(attempts[0].outcome, AttemptOutcome::Truncated);
            assert_eq!(usage.output_tokens, 16);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.kind(), "token_limit");
    assert_eq!(
        server.requests().len(),
        1,
        "the same limit would cut it again"
    );
}

#[tokio::test]
async fn a_call_that_sets_no_token_limit_is_sent_one_derived_from_its_size() {
    let server = ScriptedServer::start().await;
    let answer = r#"{"name": "Ada", "email": "ada@example.com", "kind": "person"}"#;
    server.push(Reply::tool_call("Contact", answer));
    server.push(Reply::tool_call("Contact", answer));
    server.push(Reply::tool_call("Contact", answer));
    let sent = |i: usize| server.requests()[i].body["max_tokens"].as_u64();
    // A short call: the floor.
    client(&server)
        .extract_value(&contact())
        .user("Ada")
        .send()
        .await
        .unwrap();
    assert_eq!(sent(0), Some(u64::from(sift_core::MIN_DERIVED_MAX_TOKENS)));
    // A long text: about its size in tokens, under the ceiling.
    let long = "Ada Lovelace wrote the first program. ".repeat(1000);
    let provider = OpenAi::new(crate::config(&server).max_answer_tokens(4000)).unwrap();
    let capped = sift_core::Client::new(provider).with_model("test-model");
    capped
        .extract_value(&contact())
        .user(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(sent(1), Some(4000), "the ceiling holds");
    // A limit the caller sets is sent as it is.
    client(&server)
        .extract_value(&contact())
        .user(&long)
        .max_tokens(77)
        .send()
        .await
        .unwrap();
    assert_eq!(sent(2), Some(77));
}
