use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sift_core::{ExtractError, Mode};

use crate::old::{Old, PartialUpdate, StreamError};
use sift_derive::Partial;
use sift_test_support::{Reply, ScriptedServer, split_chars};

use crate::{UserDetail, client};

const PEOPLE: &str = r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}]}"#;

async fn collect(
    stream: impl futures::Stream<Item = Result<UserDetail, StreamError>>,
) -> Vec<Result<UserDetail, StreamError>> {
    stream.collect().await
}

fn names(items: &[Result<UserDetail, StreamError>]) -> Vec<String> {
    items
        .iter()
        .map(|r| match r {
            Ok(u) => format!("{} {}", u.name, u.age),
            Err(e) => format!("error: {e}"),
        })
        .collect()
}

#[tokio::test]
async fn elements_arrive_before_the_upstream_finishes() {
    let server = ScriptedServer::start().await;
    server.push(
        Reply::stream_tool_call("Array_of_UserDetail", split_chars(PEOPLE, 4))
            .chunk_delay(Duration::from_millis(20))
            .usage(50, 30),
    );
    let mut stream = client(&server)
        .extract::<UserDetail>()
        .user("Alice and Bob")
        .elements()
        .results();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(
        first,
        UserDetail {
            name: "Alice".into(),
            age: 32
        }
    );
    assert_eq!(
        server.finished(),
        0,
        "the upstream is still streaming when Alice arrives"
    );
    let second = stream.next().await.unwrap().unwrap();
    assert_eq!(second.name, "Bob");
    assert!(stream.next().await.is_none());
    assert_eq!(stream.usage().input_tokens, 50);
    assert_eq!(stream.usage().output_tokens, 30);
    let sent = &server.requests()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        sent["tool_choice"]["function"]["name"],
        "Array_of_UserDetail"
    );
}

#[tokio::test]
async fn one_parallel_tool_call_per_element() {
    let server = ScriptedServer::start().await;
    server.push(Reply::stream_tool_calls(vec![
        (
            "UserDetail",
            split_chars(r#"{"name": "Alice", "age": 32}"#, 5),
        ),
        (
            "UserDetail",
            split_chars(r#"{"name": "Bob", "age": 43}"#, 5),
        ),
    ]));
    let items = collect(
        client(&server)
            .extract::<UserDetail>()
            .user("x")
            .elements()
            .results(),
    )
    .await;
    assert_eq!(names(&items), ["Alice 32", "Bob 43"]);
}

#[tokio::test]
async fn every_text_mode_streams() {
    let cases = [
        (Mode::JsonSchema, PEOPLE.to_owned()),
        (
            Mode::Json,
            r#"[{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}]"#.to_owned(),
        ),
        (
            Mode::MdJson,
            format!("Here you go:\n```json\n{PEOPLE}\n```\nAnything else? {{}}"),
        ),
    ];
    for (mode, text) in cases {
        let server = ScriptedServer::start().await;
        server.push(Reply::stream_content(split_chars(&text, 3)));
        let items = collect(
            client(&server)
                .extract::<UserDetail>()
                .user("x")
                .mode(mode)
                .elements()
                .results(),
        )
        .await;
        assert_eq!(names(&items), ["Alice 32", "Bob 43"], "{mode}");
    }
}

#[tokio::test]
async fn a_bracket_inside_a_string_and_adjacent_objects_are_fine() {
    let server = ScriptedServer::start().await;
    let text = r#"{"value":[{"name":"Al}ice{[","age":32},{"name":"Bob","age":43}]}"#;
    server.push(Reply::stream_content(split_chars(text, 1)));
    let items = collect(
        client(&server)
            .extract::<UserDetail>()
            .user("x")
            .mode(Mode::Json)
            .elements()
            .results(),
    )
    .await;
    assert_eq!(names(&items), ["Al}ice{[ 32", "Bob 43"]);
}

#[tokio::test]
async fn an_invalid_element_is_reported_in_place_and_the_rest_continue() {
    let server = ScriptedServer::start().await;
    let text = r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Old", "age": 999}, {"name": "Bob", "age": 43}]}"#;
    server.push(Reply::stream_tool_call(
        "Array_of_UserDetail",
        split_chars(text, 7),
    ));
    let items = collect(
        client(&server)
            .extract::<UserDetail>()
            .user("x")
            .elements()
            .results(),
    )
    .await;
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[2].is_ok());
    match &items[1] {
        Err(StreamError::Item {
            index,
            errors,
            value,
        }) => {
            assert_eq!(*index, 1);
            assert_eq!(errors[0].path, "age");
            assert_eq!(value["name"], "Old");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!items[1].as_ref().unwrap_err().is_terminal());
}

#[tokio::test]
async fn a_broken_answer_before_any_element_is_reasked() {
    let server = ScriptedServer::start().await;
    server
        .push(
            Reply::stream_tool_call(
                "Array_of_UserDetail",
                split_chars(r#"{"value": [{"name" 1}"#, 4),
            )
            .usage(10, 5),
        )
        .push(Reply::stream_tool_call("Array_of_UserDetail", split_chars(PEOPLE, 6)).usage(20, 9));
    let mut stream = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .elements()
        .results();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    assert_eq!(names(&items), ["Alice 32", "Bob 43"]);
    assert_eq!(
        stream.usage().input_tokens,
        30,
        "usage summed over attempts"
    );
    let attempts = stream.attempts();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[0].errors[0]
            .message
            .contains("invalid JSON at byte 19"),
        "{attempts:?}"
    );
    let reask = server.requests()[1].messages().to_vec();
    let n = reask.len();
    assert_eq!(
        reask[n - 2]["tool_calls"][0]["function"]["arguments"],
        r#"{"value": [{"name" 1}"#
    );
    assert_eq!(reask[n - 1]["role"], "tool");
    assert!(
        reask[n - 1]["content"]
            .as_str()
            .unwrap()
            .contains("expected ':'")
    );
}

#[tokio::test]
async fn a_break_after_elements_ends_the_stream_with_what_came_through() {
    let server = ScriptedServer::start().await;
    let text = r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Bob", "age"#;
    server.push(
        Reply::stream_tool_call("Array_of_UserDetail", split_chars(text, 8))
            .finish_reason("length"),
    );
    let items = collect(
        client(&server)
            .extract::<UserDetail>()
            .user("x")
            .elements()
            .results(),
    )
    .await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap().name, "Alice");
    match &items[1] {
        Err(StreamError::Extract(ExtractError::Incomplete {
            emitted: 1,
            attempts,
            ..
        })) => {
            assert_eq!(attempts[0].outcome, sift_core::AttemptOutcome::Truncated);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        server.requests().len(),
        1,
        "no re-ask after elements were handed over"
    );
}

#[tokio::test]
async fn an_error_event_mid_stream_is_a_provider_error() {
    let server = ScriptedServer::start().await;
    server.push(
        Reply::stream_tool_call("Array_of_UserDetail", split_chars(PEOPLE, 10))
            .stream_error_after(3, "server overloaded"),
    );
    let items = collect(
        client(&server)
            .extract::<UserDetail>()
            .user("x")
            .elements()
            .results(),
    )
    .await;
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert!(last.is_terminal());
    assert!(
        format!("{:?}", last).contains("server overloaded"),
        "{last:?}"
    );
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_connection() {
    let server = ScriptedServer::start().await;
    server.push(
        Reply::stream_tool_call("Array_of_UserDetail", split_chars(PEOPLE, 2))
            .chunk_delay(Duration::from_millis(30)),
    );
    let mut stream = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .elements()
        .results();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.name, "Alice");
    drop(stream);
    let mut waited = 0;
    while server.disconnects() == 0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(
        server.disconnects(),
        1,
        "the scripted server saw the client go"
    );
    assert_eq!(server.finished(), 0);
}

#[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema, Partial)]
struct Team {
    name: String,
    members: Vec<UserDetail>,
}

#[tokio::test]
async fn partial_snapshots_grow_then_the_value_is_validated() {
    let server = ScriptedServer::start().await;
    let text =
        r#"{"name": "Red", "members": [{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}]}"#;
    server.push(Reply::stream_tool_call("Team", split_chars(text, 5)));
    let updates: Vec<_> = client(&server)
        .extract::<Team>()
        .user("x")
        .partials()
        .updates()
        .collect()
        .await;
    let snapshots: Vec<_> = updates
        .iter()
        .filter_map(|u| match u {
            Ok(PartialUpdate::Snapshot(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert!(snapshots.len() >= 5, "{snapshots:?}");
    assert!(
        snapshots
            .iter()
            .any(|s| s.members.first().and_then(|m| m.as_ref()?.name.as_deref()) == Some("Al")),
        "strings grow: {snapshots:?}"
    );
    assert!(
        snapshots
            .iter()
            .any(|s| s.members.first().and_then(|m| m.as_ref()?.age) == Some(32))
    );
    let last = snapshots.last().unwrap();
    assert_eq!(last.members.len(), 2);
    match updates.last().unwrap() {
        Ok(PartialUpdate::Done(team)) => assert_eq!(team.members[1].name, "Bob"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_partial_stream_that_fails_validation_announces_the_retry() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::stream_tool_call(
            "Team",
            split_chars(
                r#"{"name": "Red", "members": [{"name": "A", "age": 200}]}"#,
                9,
            ),
        ))
        .push(Reply::stream_tool_call(
            "Team",
            split_chars(
                r#"{"name": "Red", "members": [{"name": "A", "age": 20}]}"#,
                9,
            ),
        ));
    let updates: Vec<_> = client(&server)
        .extract::<Team>()
        .user("x")
        .partials()
        .updates()
        .collect()
        .await;
    let retry = updates
        .iter()
        .position(|u| matches!(u, Ok(PartialUpdate::Retry { attempt: 1, .. })))
        .expect("a retry is announced");
    match &updates[retry] {
        Ok(PartialUpdate::Retry { errors, .. }) => assert_eq!(errors[0].path, "members[0].age"),
        _ => unreachable!(),
    }
    assert!(matches!(updates[retry + 1], Ok(PartialUpdate::Snapshot(_))));
    match updates.last().unwrap() {
        Ok(PartialUpdate::Done(team)) => assert_eq!(team.members[0].age, 20),
        other => panic!("unexpected {other:?}"),
    }
}

/// A large object in small chunks: snapshots as it grows by an eighth, not one per chunk
/// (each copies the whole value), each one a prefix of the next, then the whole value.
#[tokio::test]
async fn a_large_partial_answer_is_shown_in_geometric_steps() {
    let server = ScriptedServer::start().await;
    let notes: String = "lorem ipsum ".repeat(6_700);
    let answer = json!({"name": "Daniel", "notes": notes}).to_string();
    let chunks = split_chars(&answer, 4);
    let chunk_count = chunks.len();
    server.push(Reply::stream_tool_call("Output", chunks).burst());
    let schema = sift_core::Schema::compile(
        "Output",
        json!({"type": "object", "properties": {"name": {"type": "string"}, "notes": {"type": "string"}}, "required": ["name", "notes"]}),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut stream = client(&server)
        .extract_value(&schema)
        .user("x")
        .partials()
        .updates();
    let mut lengths = Vec::new();
    let mut done = None;
    while let Some(update) = stream.next().await {
        match update.unwrap() {
            PartialUpdate::Snapshot(v) => {
                lengths.push(v["notes"].as_str().map_or(0, str::len));
            }
            PartialUpdate::Done(v) => done = Some(v),
            _ => {}
        }
    }
    eprintln!(
        "{} chunks, {} snapshots, {:?}",
        chunk_count,
        lengths.len(),
        started.elapsed()
    );
    assert!(chunk_count > 20_000);
    assert!(
        (20..200).contains(&lengths.len()),
        "{} snapshots for {chunk_count} chunks",
        lengths.len()
    );
    assert!(lengths.windows(2).all(|w| w[0] <= w[1]), "snapshots grow");
    assert_eq!(done.unwrap()["notes"].as_str().unwrap().len(), notes.len());
}
