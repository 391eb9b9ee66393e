//! The servers people run besides OpenAI's, as the scripted upstream plays them: a forced
//! call is asked for in the form each honours, learned from their answers (a prose answer, a
//! `400` naming the parameter) and kept for later calls; extraction defaults (temperature 0);
//! and a failure after transport retries that says how each try failed.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sift_core::{Client, Event, Mode, ProviderError};
use sift_openai::{Dialect, Forcing, OpenAi};
use sift_test_support::{Reply, ScriptedServer, ServerDialect};

use crate::{UserDetail, config};

const DANIEL: &str = r#"{"name": "Daniel", "age": 24}"#;
const QUERY: &str = "Extract: `Daniel is a 24 year man living in New York City`";

/// How each recorded request asked for the call.
fn forms(server: &ScriptedServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| {
            let b = &r.body;
            match (&b["tool_choice"], b["response_format"]["type"].as_str()) {
                (Value::Object(_), _) => "named".to_owned(),
                (Value::String(s), _) => s.clone(),
                (_, Some(t)) => t.to_owned(),
                _ => "none".to_owned(),
            }
        })
        .collect()
}

fn provider(server: &ScriptedServer, dialect: Dialect) -> OpenAi {
    OpenAi::new(config(server).dialect(dialect)).unwrap()
}

#[tokio::test]
async fn llama_server_is_forced_with_required_after_ignoring_the_named_form() {
    let server = ScriptedServer::start().await;
    server.dialect(ServerDialect::LlamaCpp, |_| DANIEL.to_owned());
    let api = provider(&server, Dialect::Auto);
    let client = Client::new(api.clone()).with_model("m");
    let out = client
        .extract::<UserDetail>()
        .user(QUERY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.value,
        UserDetail {
            name: "Daniel".into(),
            age: 24
        }
    );
    // One attempt: the prose answer to the named form never reached the loop.
    assert_eq!(out.attempts.len(), 1);
    assert_eq!(forms(&server), ["named", "required"]);
    assert_eq!(api.forcing(), (Dialect::Auto, Forcing::Required));
    // Learned for the process: the next call goes straight to the form that works.
    let again = client
        .extract::<UserDetail>()
        .user(QUERY)
        .send()
        .await
        .unwrap();
    assert_eq!(again.value.age, 24);
    assert_eq!(forms(&server), ["named", "required", "required"]);
    // An extraction wants the likeliest answer: temperature 0 when none is set.
    for r in server.requests() {
        assert_eq!(r.body["temperature"], json!(0.0));
    }
    // Set up front, the dialect starts there.
    let server = ScriptedServer::start().await;
    server.dialect(ServerDialect::LlamaCpp, |_| DANIEL.to_owned());
    let client = Client::new(provider(&server, Dialect::LlamaCpp)).with_model("m");
    client
        .extract::<UserDetail>()
        .user(QUERY)
        .send()
        .await
        .unwrap();
    assert_eq!(forms(&server), ["required"]);
}

#[tokio::test]
async fn ollama_ignoring_tool_choice_is_asked_with_a_json_schema_and_streams_as_a_call() {
    let server = ScriptedServer::start().await;
    server.dialect(ServerDialect::Ollama, |_| DANIEL.to_owned());
    let api = provider(&server, Dialect::Auto);
    let client = Client::new(api.clone()).with_model("m");
    let out = client
        .extract::<UserDetail>()
        .user(QUERY)
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.name, "Daniel");
    assert_eq!(forms(&server), ["named", "required", "json_schema"]);
    let sent = &server.requests()[2].body;
    assert!(sent.get("tools").is_none(), "{sent}");
    assert_eq!(sent["response_format"]["json_schema"]["name"], "UserDetail");
    assert_eq!(api.forcing().1, Forcing::JsonSchema);

    // Streamed: the text answer comes back as the call's arguments, piece by piece.
    server.fallback(|_| {
        Reply::stream_content(sift_test_support::split_chars(
            r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}]}"#,
            5,
        ))
    });
    let events: Vec<_> = client
        .extract::<UserDetail>()
        .user("Alice and Bob are 32 and 43.")
        .elements()
        .collect()
        .await;
    let names: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Ok(Event::Element { value, .. }) => Some(value.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["Alice", "Bob"], "{events:?}");
    assert_eq!(forms(&server).last().unwrap(), "json_schema");
}

#[tokio::test]
async fn a_400_naming_tool_choice_moves_to_the_next_form() {
    let server = ScriptedServer::start().await;
    server.dialect(ServerDialect::VllmOld, |_| DANIEL.to_owned());
    let api = provider(&server, Dialect::LlamaCpp);
    let out = Client::new(api.clone())
        .with_model("m")
        .extract::<UserDetail>()
        .user(QUERY)
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.age, 24);
    // "required" refused, then the json_schema response format answered.
    assert_eq!(forms(&server), ["required", "json_schema"]);
}

#[tokio::test]
async fn openai_is_not_second_guessed_and_gets_no_default_temperature() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::content("Daniel, 24."))
        .push(Reply::tool_call("UserDetail", DANIEL));
    let api = provider(&server, Dialect::OpenAi);
    let out = Client::new(api.clone())
        .with_model("m")
        .extract::<UserDetail>()
        .user(QUERY)
        .mode(Mode::Tools)
        .send()
        .await
        .unwrap();
    // The prose answer was the model's: re-asked by the loop, the named form kept.
    assert_eq!(out.attempts.len(), 2);
    assert_eq!(forms(&server), ["named", "named"]);
    assert_eq!(api.forcing().1, Forcing::Named);
    assert!(server.requests()[0].body.get("temperature").is_none());
}

#[tokio::test]
async fn a_call_that_fails_every_try_says_how_each_failed() {
    let server = ScriptedServer::start().await;
    let reason = "output does not match the expected peg-native format";
    server
        .push(Reply::error(500, reason))
        .push(Reply::error(503, "loading model"))
        .push(Reply::stalled());
    let api = OpenAi::new(
        config(&server)
            .timeout(Duration::from_millis(300))
            .max_transport_retries(2),
    )
    .unwrap();
    let err = Client::new(api)
        .with_model("m")
        .extract::<UserDetail>()
        .user(QUERY)
        .max_retries(0)
        .send()
        .await
        .unwrap_err();
    let sift_core::ExtractError::Provider { source, .. } = &err else {
        panic!("{err:?}");
    };
    let ProviderError::Retried { tries, earlier, .. } = source else {
        panic!("{source:?}");
    };
    assert_eq!(*tries, 3);
    let message = source.to_string();
    assert!(message.starts_with("no answer within"), "{message}");
    assert!(
        message.contains(&format!("1. upstream answered 500: {reason}")),
        "{message}"
    );
    assert!(
        message.contains("2. ") && message.contains("503"),
        "{message}"
    );
    assert_eq!(earlier.len(), 2);
}
