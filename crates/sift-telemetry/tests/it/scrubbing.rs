//! Sensitive request data and the configured API key reach no exported span and no console
//! line.

use sift_test_support::Reply;

use crate::{API_KEY, Options, attr, harness, one};

#[tokio::test]
async fn secrets_appear_in_no_span_and_no_console_line() {
    let h = harness(Options {
        verbose: true,
        console_filter: "debug,h2=info,hyper=info,hyper_util=info,reqwest=info",
    })
    .await;
    // The model echoes the secrets back, too.
    h.upstream.push(Reply::tool_call(
        "UserDetail",
        format!(r#"{{"name": "Daniel {API_KEY}", "age": 24}}"#),
    ));
    // The text holds the answer's values (answers are grounded), the key among them.
    let query = format!("my password is hunter2 and Daniel {API_KEY} is 24, my key is {API_KEY}");
    let (status, _) = h
        .call(
            "POST",
            "/user",
            &serde_json::json!({ "query": query }).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    // The upstream did get the key (so it was there to leak).
    let sent = h.upstream.requests();
    assert_eq!(
        sent[0].headers.get("authorization").unwrap(),
        &format!("Bearer {API_KEY}")
    );

    let spans = h.finished();
    assert!(spans.len() >= 6);
    for span in &spans {
        let mut texts = vec![span.name.to_string()];
        texts.extend(
            span.attributes
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value)),
        );
        texts.extend(span.events.events.iter().flat_map(|e| {
            e.attributes
                .iter()
                .map(|kv| kv.value.to_string())
                .chain([e.name.to_string()])
        }));
        for t in texts {
            assert!(!t.contains(API_KEY), "key in span {}: {t}", span.name);
            assert!(
                !t.contains("hunter2"),
                "password in span {}: {t}",
                span.name
            );
        }
    }
    let console = h.console.text();
    assert!(!console.contains(API_KEY), "{console}");
    assert!(!console.contains("hunter2"), "{console}");
    // What was scrubbed says why, and JSON stays JSON around it.
    let args = one(&spans, "request arguments");
    let values = attr(args, "fastapi.arguments.values").unwrap();
    assert_eq!(values, r#"{"query":"[Scrubbed due to 'password']"}"#);
    assert!(console.contains("[Scrubbed due to 'api key']"), "{console}");
}

#[tokio::test]
async fn logfire_patterns_scrub_inside_json_and_keep_the_rest() {
    let h = harness(Options::default()).await;
    h.upstream.push(Reply::tool_call(
        "UserDetail",
        r#"{"name": "Daniel", "age": 24}"#,
    ));
    let (status, _) = h
        .call(
            "POST",
            "/user",
            r#"{"query": "Daniel is 24; his session cookie is abc123"}"#,
        )
        .await;
    assert_eq!(status, 200);
    let spans = h.finished();
    let args = one(&spans, "request arguments");
    assert_eq!(
        attr(args, "fastapi.arguments.values").unwrap(),
        r#"{"query":"[Scrubbed due to 'session']"}"#
    );
    let chat = one(&spans, "chat gpt-4o-mini");
    let input = attr(chat, "gen_ai.input.messages").unwrap();
    assert!(!input.contains("abc123"), "{input}");
    let input: serde_json::Value = serde_json::from_str(&input).unwrap();
    assert_eq!(input[0]["role"], "user");
    assert_eq!(
        input[0]["parts"][0]["content"],
        "[Scrubbed due to 'session']"
    );
    // Unrelated attributes are untouched.
    assert_eq!(
        attr(chat, "gen_ai.request.model").as_deref(),
        Some("gpt-4o-mini")
    );
}
