use serde_json::{Value, json};
use sift_core::{AttemptOutcome, ExtractError, FieldError, Mode};
use sift_test_support::{Reply, ScriptedServer};

use crate::{API_KEY, UserDetail, client};

fn invalid_then_valid(mode: Mode) -> (Reply, Reply) {
    match mode {
        Mode::Tools => (
            Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 240}"#).usage(100, 20),
            Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#).usage(130, 15),
        ),
        Mode::MdJson => (
            Reply::content("```json\n{\"name\": \"Daniel\", \"age\": 240}\n```").usage(100, 20),
            Reply::content("Here:\n```json\n{\"name\": \"Daniel\", \"age\": 24}\n```")
                .usage(130, 15),
        ),
        _ => (
            Reply::content(r#"{"name": "Daniel", "age": 240}"#).usage(100, 20),
            Reply::content(r#"{"name": "Daniel", "age": 24}"#).usage(130, 15),
        ),
    }
}

async fn reask_in(mode: Mode) {
    let server = ScriptedServer::start().await;
    let (bad, good) = invalid_then_valid(mode);
    server.push(bad).push(good);
    let out = client(&server)
        .extract::<UserDetail>()
        .user("Extract: `Daniel is a 24 year man living in New York City`")
        .mode(mode)
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
    assert_eq!(out.attempts.len(), 2);
    assert_eq!(out.attempts[0].outcome, AttemptOutcome::ValidationFailed);
    assert_eq!(out.attempts[0].errors[0].path, "age");
    assert_eq!(out.attempts[1].outcome, AttemptOutcome::Success);
    assert_eq!(out.usage.input_tokens, 230, "usage summed over attempts");
    assert_eq!(out.usage.output_tokens, 35);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(
        first.headers["authorization"],
        format!("Bearer {API_KEY}").as_str()
    );
    assert_eq!(first.body["model"], "test-model");
    match mode {
        Mode::Tools => {
            assert_eq!(
                first.body["tool_choice"],
                json!({"type": "function", "function": {"name": "UserDetail"}})
            );
            let f = &first.body["tools"][0]["function"];
            assert_eq!(f["name"], "UserDetail");
            assert_eq!(f["strict"], true);
            assert_eq!(f["parameters"]["additionalProperties"], false);
            assert_eq!(f["parameters"]["required"], json!(["name", "age"]));
            assert_eq!(f["parameters"]["properties"]["age"]["maximum"], 150);
        }
        Mode::JsonSchema => {
            let rf = &first.body["response_format"];
            assert_eq!(rf["type"], "json_schema");
            assert_eq!(rf["json_schema"]["name"], "UserDetail");
            assert_eq!(rf["json_schema"]["strict"], true);
            assert_eq!(
                rf["json_schema"]["schema"]["properties"]["name"]["type"],
                "string"
            );
        }
        Mode::Json => {
            assert_eq!(
                first.body["response_format"],
                json!({"type": "json_object"})
            );
            let system = first.messages()[0]["content"].as_str().unwrap();
            assert!(system.contains("\"maximum\":150"), "{system}");
        }
        _ => {
            assert!(first.body.get("response_format").is_none());
            assert!(first.body.get("tools").is_none());
            let system = first.messages()[0]["content"].as_str().unwrap();
            assert!(system.contains("```json"), "{system}");
        }
    }

    // The re-ask: the first conversation, the assistant's answer echoed, then the errors.
    let second = requests[1].messages();
    let first_len = first.messages().len();
    assert_eq!(second.len(), first_len + 2, "{second:#?}");
    assert_eq!(&second[..first_len], first.messages());
    let echoed = &second[first_len];
    assert_eq!(echoed["role"], "assistant");
    let feedback = &second[first_len + 1];
    let text = feedback["content"].as_str().unwrap();
    if mode == Mode::Tools {
        assert_eq!(
            echoed["tool_calls"][0]["function"]["arguments"],
            r#"{"name": "Daniel", "age": 240}"#
        );
        assert_eq!(feedback["role"], "tool");
        assert_eq!(feedback["tool_call_id"], echoed["tool_calls"][0]["id"]);
    } else {
        assert!(echoed["content"].as_str().unwrap().contains("240"));
        assert_eq!(feedback["role"], "user");
    }
    // The errors travel as a JSON list of {path, message}.
    let listed = text.lines().next().unwrap();
    let json_part = &listed[listed.find('[').unwrap()..];
    let errors: Vec<FieldError> = serde_json::from_str(json_part).unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "age");
    assert!(errors[0].message.contains("150"), "{errors:?}");
}

#[tokio::test]
async fn reask_in_tools_mode() {
    reask_in(Mode::Tools).await;
}

#[tokio::test]
async fn reask_in_json_schema_mode() {
    reask_in(Mode::JsonSchema).await;
}

#[tokio::test]
async fn reask_in_json_mode() {
    reask_in(Mode::Json).await;
}

#[tokio::test]
async fn reask_in_md_json_mode() {
    reask_in(Mode::MdJson).await;
}

#[tokio::test]
async fn malformed_json_and_missing_tool_call_are_reasked() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::content("I think the user is Daniel.").usage(10, 5))
        .push(Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": "#).usage(20, 5))
        .push(Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": 24}"#).usage(30, 5));
    let out = client(&server)
        .extract::<UserDetail>()
        .user("Extract: `Daniel is 24`")
        .send()
        .await
        .unwrap();
    let outcomes: Vec<_> = out.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AttemptOutcome::NoOutput,
            AttemptOutcome::InvalidJson,
            AttemptOutcome::Success
        ]
    );
    assert_eq!(out.usage.input_tokens, 60);
    // With no tool call to answer, the feedback is a user message.
    let second = server.requests()[1].messages().to_vec();
    assert_eq!(second.last().unwrap()["role"], "user");
    assert!(
        second.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .contains("UserDetail")
    );
    assert!(out.attempts[1].errors[0].message.contains("invalid JSON"));
}

#[tokio::test]
async fn retries_exhausted_lists_every_attempt() {
    let server = ScriptedServer::start().await;
    for age in [200, 300, 400] {
        server.push(
            Reply::tool_call("UserDetail", format!(r#"{{"name": "D", "age": {age}}}"#))
                .usage(10, 1),
        );
    }
    let err = client(&server)
        .extract::<UserDetail>()
        .user("Extract: `D`")
        .max_retries(2)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExtractError::RetriesExhausted { .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "no valid answer after 3 attempts");
    let attempts = err.attempts();
    assert_eq!(attempts.len(), 3);
    for (attempt, age) in attempts.iter().zip(["200", "300", "400"]) {
        assert_eq!(attempt.outcome, AttemptOutcome::ValidationFailed);
        assert_eq!(attempt.errors[0].path, "age");
        assert!(
            attempt.errors[0].message.contains(age),
            "{:?}",
            attempt.errors
        );
    }
    assert_eq!(err.usage().input_tokens, 30);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn max_retries_zero_means_one_call() {
    let server = ScriptedServer::start().await;
    server.push(Reply::tool_call("UserDetail", r#"{"age": 1}"#));
    let err = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .max_retries(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(server.requests().len(), 1);
    assert!(
        err.attempts()[0].errors[0].message.contains("name"),
        "{err:?}"
    );
}

#[tokio::test]
async fn custom_validators_feed_back_their_errors() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::tool_call("UserDetail", r#"{"name": "", "age": 3}"#))
        .push(Reply::tool_call(
            "UserDetail",
            r#"{"name": "Ann", "age": 3}"#,
        ));
    let out = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .validate_with(|u: &UserDetail| {
            if u.name.is_empty() {
                Err(vec![FieldError::new("name", "must not be empty")])
            } else {
                Ok(())
            }
        })
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.name, "Ann");
    let feedback = server.requests()[1].messages().last().unwrap().clone();
    assert!(
        feedback["content"]
            .as_str()
            .unwrap()
            .contains(r#"{"path":"name","message":"must not be empty"}"#),
        "{feedback}"
    );
}

#[tokio::test]
async fn non_object_types_are_wrapped_and_unwrapped() {
    let server = ScriptedServer::start().await;
    server.push(Reply::tool_call(
        "Array_of_UserDetail",
        r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}]}"#,
    ));
    let out = client(&server)
        .extract::<Vec<UserDetail>>()
        .user("Alice and Bob are 32 and 43")
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.len(), 2);
    assert_eq!(out.value[1].name, "Bob");
    let sent = &server.requests()[0].body["tools"][0]["function"]["parameters"];
    assert_eq!(sent["type"], "object");
    assert_eq!(sent["properties"]["value"]["type"], "array");
    assert!(sent["$defs"]["UserDetail"].is_object(), "{sent}");
    let _: &Value = sent;
}
