use std::time::{Duration, Instant};

use sift_core::{ExtractError, ProviderError};
use sift_openai::OpenAi;
use sift_test_support::{Reply, ScriptedServer};

use crate::old::Old;
use crate::{UserDetail, client, config};

const GOOD: &str = r#"{"name": "Daniel", "age": 24}"#;

#[tokio::test]
async fn retries_429_after_the_wait_it_asks() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::error(429, "slow down").header("retry-after", "0.3"))
        .push(Reply::tool_call("UserDetail", GOOD).usage(7, 3));
    let started = Instant::now();
    let out = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(out.value.age, 24);
    assert_eq!(server.requests().len(), 2);
    // A transport retry is not a re-ask.
    assert_eq!(out.attempts.len(), 1);
}

#[tokio::test]
async fn retries_503_then_succeeds() {
    let server = ScriptedServer::start().await;
    server
        .push(Reply::error(503, "overloaded"))
        .push(Reply::error(500, "oops"))
        .push(Reply::tool_call("UserDetail", GOOD));
    let out = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.name, "Daniel");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn gives_up_after_the_transport_retry_limit() {
    let server = ScriptedServer::start().await;
    for _ in 0..3 {
        server.push(Reply::error(503, "still overloaded"));
    }
    let err = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    match err.provider_error() {
        Some(ProviderError::Status {
            status: 503,
            message,
            ..
        }) => {
            assert_eq!(message, "still overloaded")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(server.requests().len(), 3, "first try plus two retries");
}

#[tokio::test]
async fn a_400_is_surfaced_without_retry() {
    let server = ScriptedServer::start().await;
    server.push(Reply::error(
        400,
        "Invalid schema for function 'UserDetail'",
    ));
    let err = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, ExtractError::Provider { attempt: 1, .. }));
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(
        source,
        "upstream answered 400: Invalid schema for function 'UserDetail'"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_hung_upstream_hits_the_timeout() {
    let server = ScriptedServer::start().await;
    server.push(Reply::hang()).push(Reply::hang());
    let provider = OpenAi::new(
        config(&server)
            .timeout(Duration::from_millis(300))
            .max_transport_retries(1),
    )
    .unwrap();
    let started = Instant::now();
    let err = sift_core::Client::new(provider)
        .extract::<UserDetail>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err.provider_error(), Some(ProviderError::Timeout(_))),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(600),
        "two tries of 300 ms: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "must not hang: {took:?}");
    assert_eq!(server.requests().len(), 2);
    // The report says it was tried twice, not "attempt 1: no answer" as if once.
    let report = sift_core::report::ExtractionFailure::from_error(&err, &Default::default());
    assert!(
        report.message.contains(
            "no answer within 300ms (tried 2 times; before that: 1. no answer within 300ms)"
        ),
        "{}",
        report.message
    );
    assert_eq!(
        report.attempts[0].errors[0].message,
        "no answer within 300ms (tried 2 times; before that: 1. no answer within 300ms)"
    );
    assert_eq!(err.kind(), "provider_error");
}

#[tokio::test]
async fn a_too_long_retry_after_is_not_waited_for() {
    let server = ScriptedServer::start().await;
    server.push(Reply::error(429, "quota").header("retry-after", "3600"));
    let started = Instant::now();
    let err = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        err.provider_error(),
        Some(ProviderError::Status { status: 429, .. })
    ));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn malformed_upstream_json_is_an_error_not_a_panic() {
    let server = ScriptedServer::start().await;
    server.push(Reply::raw("{\"choices\": [ this is not json"));
    let err = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err.provider_error(), Some(ProviderError::InvalidResponse(m)) if m.contains("not JSON")),
        "{err:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    // Bind then drop, so the port is (almost surely) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = OpenAi::new(
        sift_openai::OpenAiConfig::new(format!("http://127.0.0.1:{port}/v1"))
            .backoff(Duration::from_millis(1), Duration::from_millis(5)),
    )
    .unwrap();
    let err = sift_core::Client::new(provider)
        .extract::<UserDetail>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err.provider_error(), Some(ProviderError::Connect { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_answer_over_the_body_limit_is_refused_naming_the_limit() {
    let server = ScriptedServer::start().await;
    // A whole body over the limit, then one streamed event over it.
    server.push(Reply::raw(format!(
        "{{\"choices\": [], \"pad\": \"{}\"}}",
        "x".repeat(64 * 1024)
    )));
    server.push(Reply::stream_content(vec!["y".repeat(64 * 1024)]));
    let provider = OpenAi::new(
        sift_openai::OpenAiConfig::new(server.base_url())
            .api_key("sk-test")
            .max_body(16 * 1024),
    )
    .unwrap();
    let client = sift_core::Client::new(provider);
    let err = client
        .extract::<UserDetail>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err.provider_error(), Some(ProviderError::InvalidResponse(m)) if m.contains("limit of 16384 bytes")),
        "{err:?}"
    );
    let mut stream = client
        .extract::<UserDetail>()
        .user("x")
        .mode(sift_core::Mode::Json)
        .partials()
        .updates();
    let mut failure = None;
    while let Some(item) = futures::StreamExt::next(&mut stream).await {
        if let Err(e) = item {
            failure = Some(e);
            break;
        }
    }
    let failure = format!("{:?}", failure.expect("the stream fails"));
    assert!(
        failure.contains("larger than the limit of 16384 bytes"),
        "{failure}"
    );
}

/// A redirect is not followed (it could point at a link-local or internal address): the call
/// fails at once with the status, naming where it pointed, whole or streamed.
#[tokio::test]
async fn a_redirect_is_an_error_naming_its_location_not_followed() {
    let server = ScriptedServer::start().await;
    let target = ScriptedServer::start().await;
    let to = format!("{}/chat/completions", target.base_url());
    for _ in 0..2 {
        server.push(Reply::error(307, "moved").header("location", &to));
    }
    let err = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .send()
        .await
        .unwrap_err();
    match err.provider_error() {
        Some(ProviderError::Status {
            status: 307,
            message,
            ..
        }) => assert!(message.contains(&to), "{message}"),
        other => panic!("{other:?}"),
    }
    let mut stream = client(&server)
        .extract::<UserDetail>()
        .user("x")
        .elements()
        .results();
    match futures::StreamExt::next(&mut stream).await {
        Some(Err(crate::old::StreamError::Extract(e))) => {
            assert!(matches!(
                e.provider_error(),
                Some(ProviderError::Status { status: 307, .. })
            ));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 2, "not retried");
    assert!(
        target.requests().is_empty(),
        "the redirect was not followed"
    );
}
