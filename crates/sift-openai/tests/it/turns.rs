//! `Turns`: an extraction whose answers come from a batch API, judged by the attempt loop's
//! rules, read from batch output lines by the provider's own parser.

use std::time::Duration;

use serde_json::json;
use sift_core::{ExtractError, Turn};
use sift_openai::batch::{answer_line, request_line};
use sift_test_support::ScriptedServer;

use crate::{UserDetail, client};

/// A batch output line answering `id` with a tool call of `arguments`.
fn line(id: &str, arguments: &str, finish: &str) -> String {
    json!({
        "id": "batch_req_1",
        "custom_id": id,
        "response": {"status_code": 200, "body": {
            "id": "chatcmpl-1", "model": "test-model",
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "UserDetail", "arguments": arguments}}]}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 20}}
        }},
        "error": null
    })
    .to_string()
}

#[tokio::test]
async fn an_invalid_answer_is_asked_again_then_a_valid_one_ends_it() {
    let server = ScriptedServer::start().await;
    let mut turns = client(&server)
        .extract::<UserDetail>()
        .user("Daniel is 24")
        .turns()
        .unwrap();
    let first = request_line("a", turns.request());
    assert_eq!(first["custom_id"], "a");
    assert_eq!(
        first["body"]["tool_choice"]["function"]["name"],
        "UserDetail"
    );
    let (id, answer) = answer_line(&line(
        "a",
        r#"{"name": "Daniel", "age": 400}"#,
        "tool_calls",
    ))
    .unwrap();
    assert_eq!(id, "a");
    assert!(matches!(
        turns.answer(answer.unwrap(), Duration::ZERO),
        Turn::Again
    ));
    // The re-ask: the answer echoed, then its errors as the tool's reply.
    let messages = &request_line("a", turns.request())["body"]["messages"];
    let last = messages.as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "tool");
    assert!(last["content"].as_str().unwrap().contains("age"), "{last}");
    let (_, answer) =
        answer_line(&line("a", r#"{"name": "Daniel", "age": 24}"#, "tool_calls")).unwrap();
    let Turn::Done(out) = turns.answer(answer.unwrap(), Duration::ZERO) else {
        panic!("expected a value");
    };
    assert_eq!(
        out.value,
        UserDetail {
            name: "Daniel".into(),
            age: 24
        }
    );
    assert_eq!(out.attempts.len(), 2);
    assert_eq!(out.usage.input_tokens, 100);
    assert_eq!(out.usage.cached_input_tokens, 40);
    assert!(server.requests().is_empty(), "no call made by sift itself");
}

#[tokio::test]
async fn a_cut_answer_ends_with_token_limit_and_spent_reasks_with_every_attempt() {
    let server = ScriptedServer::start().await;
    let mut turns = client(&server)
        .extract::<UserDetail>()
        .user("Daniel is 24")
        .max_tokens(5)
        .turns()
        .unwrap();
    let (_, answer) = answer_line(&line("a", r#"{"name": "Dan"#, "length")).unwrap();
    match turns.answer(answer.unwrap(), Duration::ZERO) {
        Turn::Failed(ExtractError::TokenLimit {
            limit, attempts, ..
        }) => {
            assert_eq!(limit, Some(5));
            assert_eq!(attempts[0].outcome.as_str(), "truncated");
        }
        other => panic!("expected token_limit, got {other:?}"),
    }

    let mut turns = client(&server)
        .extract::<UserDetail>()
        .user("Daniel is 24")
        .max_retries(1)
        .turns()
        .unwrap();
    let (_, answer) = answer_line(&line("a", "not json", "tool_calls")).unwrap();
    assert!(matches!(
        turns.answer(answer.unwrap(), Duration::ZERO),
        Turn::Again
    ));
    let (_, answer) = answer_line(&line("a", "not json", "tool_calls")).unwrap();
    match turns.answer(answer.unwrap(), Duration::ZERO) {
        Turn::Failed(e @ ExtractError::RetriesExhausted { .. }) => {
            assert_eq!(e.attempts().len(), 2);
            assert!(
                e.attempts()
                    .iter()
                    .all(|a| a.outcome.as_str() == "invalid_json")
            );
        }
        other => panic!("expected retries_exhausted, got {other:?}"),
    }
}

#[test]
fn error_lines_become_provider_errors() {
    let (id, answer) = answer_line(
        &json!({"custom_id": "b", "response": {"status_code": 429, "body": {"error": {"message": "slow down"}}}, "error": null}).to_string(),
    )
    .unwrap();
    assert_eq!(id, "b");
    let e = answer.unwrap_err();
    assert_eq!(e.kind(), "429");
    let (_, answer) = answer_line(
        &json!({"custom_id": "c", "response": null, "error": {"code": "batch_expired", "message": "not run in time"}}).to_string(),
    )
    .unwrap();
    let e = answer.unwrap_err();
    assert_eq!(e.kind(), "batch");
    assert!(
        e.to_string().contains("batch_expired: not run in time"),
        "{e}"
    );
    assert!(answer_line("{}").is_err());
    assert!(answer_line("nope").is_err());
}
