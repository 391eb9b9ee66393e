//! Answers that hold nothing to read, each reported by what it is: a refusal, prose instead of
//! a call, no choices, an HTML page (whole or where a stream was expected).

use futures::StreamExt;
use serde_json::json;
use sift_core::{ExtractError, Mode};

use crate::old::{Old, StreamError};
use sift_test_support::{Reply, ScriptedServer, split_chars};

use crate::{UserDetail, client};

/// The errors of every attempt of a failed extraction, joined.
fn attempt_errors(e: &ExtractError) -> String {
    e.attempts()
        .iter()
        .flat_map(|a| a.errors.iter().map(ToString::to_string))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// How an extraction against `server` in `mode` fails, with no re-ask.
async fn failure(server: &ScriptedServer, mode: Mode) -> ExtractError {
    client(server)
        .extract::<UserDetail>()
        .user("x")
        .mode(mode)
        .max_retries(0)
        .send()
        .await
        .unwrap_err()
}

/// How a streamed list extraction against `server` fails (with `retries` re-asks).
async fn streamed_failure(server: &ScriptedServer, retries: u32) -> ExtractError {
    let mut stream = client(server)
        .extract::<UserDetail>()
        .user("x")
        .max_retries(retries)
        .elements()
        .results();
    let mut failure = None;
    while let Some(item) = stream.next().await {
        if let Err(StreamError::Extract(e)) = item {
            failure = Some(e);
        }
    }
    failure.expect("the stream fails")
}

#[tokio::test]
async fn a_refusal_is_named_with_its_reason() {
    let server = ScriptedServer::start().await;
    server.fallback(|_| {
        Reply::json(
            200,
            json!({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}}]}),
        )
    });
    let text = attempt_errors(&failure(&server, Mode::Tools).await);
    assert!(
        text.contains("the model refused to answer: I can't help with that."),
        "{text}"
    );

    // Streamed: the refusal arrives as `delta.refusal` chunks.
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"refusal\":\"No, \"}}]}\n\n\
                data: {\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"sorry.\"},\"finish_reason\":\"stop\"}]}\n\n\
                data: [DONE]\n\n";
    server.push(Reply::raw(body).header("content-type", "text/event-stream"));
    let text = attempt_errors(&streamed_failure(&server, 0).await);
    assert!(
        text.contains("the model refused to answer: No, sorry."),
        "{text}"
    );
}

#[tokio::test]
async fn prose_instead_of_a_call_is_quoted() {
    let server = ScriptedServer::start().await;
    server.push(Reply::content("Daniel is 24 years old."));
    let text = attempt_errors(&failure(&server, Mode::Tools).await);
    assert!(
        text.contains("did not call the function `UserDetail`; it answered in text instead: Daniel is 24 years old."),
        "{text}"
    );
    server.push(Reply::stream_content(split_chars("Sorry, no.", 3)));
    let text = attempt_errors(&streamed_failure(&server, 0).await);
    assert!(
        text.contains("it answered in text instead: Sorry, no."),
        "{text}"
    );
    // In json mode, an empty answer says so.
    server.push(Reply::content(""));
    let err = failure(&server, Mode::Json).await;
    assert!(
        attempt_errors(&err).contains("the answer is empty"),
        "{err:?}"
    );
}

#[tokio::test]
async fn no_choices_and_html_are_upstream_faults_named_as_such() {
    let server = ScriptedServer::start().await;
    let cases = [
        (
            Reply::json(200, json!({"id": "c", "model": "m", "choices": []})),
            "the upstream answered with no choices",
        ),
        (
            Reply::json(200, json!({"object": "list", "data": []})),
            "it has no `choices` list",
        ),
        (
            Reply::raw(
                "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            ),
            "an HTML page (\"502 Bad Gateway\")",
        ),
        (Reply::raw(""), "an empty body"),
    ];
    for (reply, expected) in cases {
        server.push(reply);
        let err = client(&server)
            .extract::<UserDetail>()
            .user("x")
            .send()
            .await
            .unwrap_err();
        let message = err
            .provider_error()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(message.contains(expected), "{expected}: {message}");
        assert_eq!(err.kind(), "provider_error");
    }
    // An HTML page where a stream was expected.
    server.push(
        Reply::raw("<html><head><title>Sign in</title></head></html>")
            .header("content-type", "text/html"),
    );
    let failure = streamed_failure(&server, 2).await;
    let message = failure
        .provider_error()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        message.contains("`text/html` where an event stream was expected")
            && message.contains("\"Sign in\""),
        "{message}"
    );
}
