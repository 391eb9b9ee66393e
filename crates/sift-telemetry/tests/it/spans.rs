//! The span tree of each endpoint, from the in-memory exporter.

use opentelemetry::trace::SpanKind;
use serde_json::Value;
use sift_test_support::{Reply, split_chars};

use crate::{Options, attr, child_names, children, harness, is_child, is_log, kind, named, one};

const DANIEL: &str = r#"{"name": "Daniel", "age": 24}"#;

#[tokio::test]
async fn prompt_tokens_read_from_the_cache_are_on_the_chat_span() {
    let h = harness(Options::default()).await;
    h.upstream.push(
        Reply::tool_call("UserDetail", DANIEL)
            .usage(57, 12)
            .cached(40),
    );
    let (status, body) = h
        .call("POST", "/user", r#"{"query": "Daniel is 24 years old"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    let spans = h.finished();
    let chat = one(&spans, "chat gpt-4o-mini");
    assert_eq!(
        attr(chat, "gen_ai.usage.cache_read.input_tokens").as_deref(),
        Some("40")
    );
    assert_eq!(
        attr(chat, "gen_ai.usage.input_tokens").as_deref(),
        Some("57")
    );
}

#[tokio::test]
async fn user_request_is_one_tree_with_genai_attributes() {
    let h = harness(Options::default()).await;
    h.upstream
        .push(Reply::tool_call("UserDetail", DANIEL).usage(57, 12));
    let (status, body) = h
        .call("POST", "/user", r#"{"query": "Daniel is 24 years old"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    let spans = h.finished();

    let http = one(&spans, "POST /user");
    assert_eq!(kind(http), SpanKind::Server);
    assert_eq!(attr(http, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(attr(http, "http.route").as_deref(), Some("/user"));
    assert_eq!(attr(http, "url.path").as_deref(), Some("/user"));
    assert_eq!(
        attr(http, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(http, "user_agent.original").as_deref(),
        Some("sift-tests")
    );
    assert_eq!(attr(http, "logfire.span_type").as_deref(), Some("span"));
    assert_eq!(
        attr(http, "logfire.msg_template").as_deref(),
        Some("{http.request.method} {http.route}")
    );
    assert_eq!(attr(http, "logfire.msg").as_deref(), Some("POST /user"));
    assert_eq!(attr(http, "logfire.level_num").as_deref(), Some("9"));
    assert_eq!(http.parent_span_id, opentelemetry::trace::SpanId::INVALID);

    // Children of the request: the arguments (debug), the extraction, the handler's log.
    let names = child_names(&spans, http);
    assert_eq!(
        names,
        [
            "request arguments",
            "extract UserDetail",
            r#"/User returning {"name":"Daniel","age":24}"#
        ]
    );
    let args = one(&spans, "request arguments");
    assert!(is_log(args));
    assert_eq!(attr(args, "logfire.level_num").as_deref(), Some("5"));
    let values: Value =
        serde_json::from_str(&attr(args, "fastapi.arguments.values").unwrap()).unwrap();
    assert_eq!(
        values,
        serde_json::json!({"query": "Daniel is 24 years old"})
    );
    let returning = one(&spans, r#"/User returning {"name":"Daniel","age":24}"#);
    assert!(is_log(returning));
    assert_eq!(
        attr(returning, "logfire.msg_template").as_deref(),
        Some("/User returning {value}")
    );
    assert_eq!(
        attr(returning, "value").as_deref(),
        Some(r#"{"name":"Daniel","age":24}"#)
    );
    assert!(
        attr(returning, "logfire.json_schema")
            .unwrap()
            .contains("\"value\"")
    );

    let extract = one(&spans, "extract UserDetail");
    assert!(is_child(extract, http));
    assert_eq!(
        attr(extract, "response_model").as_deref(),
        Some("UserDetail")
    );
    assert_eq!(attr(extract, "mode").as_deref(), Some("tools"));
    assert_eq!(attr(extract, "max_retries").as_deref(), Some("2"));
    assert_eq!(attr(extract, "attempts").as_deref(), Some("1"));
    assert_eq!(attr(extract, "outcome").as_deref(), Some("success"));
    assert_eq!(
        attr(extract, "gen_ai.usage.input_tokens").as_deref(),
        Some("57")
    );
    assert_eq!(
        attr(extract, "gen_ai.usage.output_tokens").as_deref(),
        Some("12")
    );
    assert_eq!(
        attr(extract, "logfire.msg_template").as_deref(),
        Some("extract {response_model}")
    );

    let inside = child_names(&spans, extract);
    assert_eq!(
        inside,
        ["chat gpt-4o-mini", "validate UserDetail succeeded"]
    );

    let chat = one(&spans, "chat gpt-4o-mini");
    assert_eq!(kind(chat), SpanKind::Client);
    for (key, want) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "gpt-4o-mini"),
        ("gen_ai.response.model", "gpt-4o-mini"),
        ("gen_ai.output.type", "json"),
        ("gen_ai.usage.input_tokens", "57"),
        ("gen_ai.usage.output_tokens", "12"),
        ("sift.attempt", "1"),
        ("sift.mode", "tools"),
    ] {
        assert_eq!(attr(chat, key).as_deref(), Some(want), "{key}");
    }
    // No prompt cache reported, no cache attribute.
    assert_eq!(attr(chat, "gen_ai.usage.cache_read.input_tokens"), None);
    assert!(
        attr(chat, "gen_ai.response.id")
            .unwrap()
            .starts_with("chatcmpl-")
    );
    let finish = chat
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "gen_ai.response.finish_reasons")
        .unwrap();
    assert_eq!(
        finish.value,
        opentelemetry::Value::Array(opentelemetry::Array::String(vec!["tool_calls".into()]))
    );
    assert_eq!(attr(chat, "error.type"), None);
    let input: Value = serde_json::from_str(&attr(chat, "gen_ai.input.messages").unwrap()).unwrap();
    assert_eq!(input[0]["role"], "user");
    assert_eq!(
        input[0]["parts"][0]["content"],
        "Extract: `Daniel is 24 years old`"
    );
    let output: Value =
        serde_json::from_str(&attr(chat, "gen_ai.output.messages").unwrap()).unwrap();
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["parts"][0]["type"], "tool_call");
    assert_eq!(output[0]["parts"][0]["name"], "UserDetail");
    assert_eq!(output[0]["parts"][0]["arguments"]["age"], 24);
    assert_eq!(output[0]["finish_reason"], "tool_calls");

    let validate = one(&spans, "validate UserDetail succeeded");
    assert!(is_log(validate));
    assert_eq!(attr(validate, "schema_name").as_deref(), Some("UserDetail"));
    assert_eq!(attr(validate, "success").as_deref(), Some("true"));
    assert_eq!(
        attr(validate, "logfire.msg_template").as_deref(),
        Some("validate {schema_name} succeeded")
    );
    let input: Value = serde_json::from_str(&attr(validate, "input_data").unwrap()).unwrap();
    assert_eq!(input, serde_json::json!({"name": "Daniel", "age": 24}));
    assert!(attr(validate, "result").is_some());

    // One trace.
    let trace = http.span_context.trace_id();
    assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));
}

#[tokio::test]
async fn many_users_is_one_request_with_one_extraction_per_query() {
    let h = harness(Options::default()).await;
    h.upstream.fallback(|body| {
        let text = sift_test_support::last_user_text(body);
        let name = if text.contains("Sarah") {
            "Sarah"
        } else {
            "Jeffrey"
        };
        Reply::tool_call("UserDetail", format!(r#"{{"name":"{name}","age":30}}"#)).usage(20, 5)
    });
    let (status, body) = h
        .call(
            "POST",
            "/many-users",
            r#"{"queries": ["Sarah is 30", "Jeffrey is 30", "Sarah again, 30"]}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let spans = h.finished();
    let http = one(&spans, "POST /many-users");
    let extracts = named(&spans, "extract UserDetail");
    assert_eq!(extracts.len(), 3);
    assert!(extracts.iter().all(|e| is_child(e, http)));
    let chats = named(&spans, "chat gpt-4o-mini");
    assert_eq!(chats.len(), 3);
    // Each chat span sits under its own extraction.
    for chat in &chats {
        assert_eq!(
            extracts.iter().filter(|e| is_child(chat, e)).count(),
            1,
            "chat not under exactly one extraction"
        );
    }
    let returning: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("/User returning"))
        .collect();
    assert_eq!(returning.len(), 3);
    assert!(returning.iter().all(|r| is_child(r, http)));
}

#[tokio::test]
async fn a_reask_is_two_attempt_spans_and_one_failed_validation() {
    let h = harness(Options::default()).await;
    h.upstream
        .push(Reply::tool_call("UserDetail", r#"{"name": "Daniel", "age": "old"}"#).usage(50, 9))
        .push(Reply::tool_call("UserDetail", DANIEL).usage(80, 10));
    let (status, body) = h
        .call("POST", "/user", r#"{"query": "Daniel is 24"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    let spans = h.finished();
    let extract = one(&spans, "extract UserDetail");
    assert_eq!(attr(extract, "attempts").as_deref(), Some("2"));
    assert_eq!(
        attr(extract, "gen_ai.usage.input_tokens").as_deref(),
        Some("130")
    );
    let inside = child_names(&spans, extract);
    assert_eq!(
        inside,
        [
            "chat gpt-4o-mini",
            "validate UserDetail failed",
            "chat gpt-4o-mini",
            "validate UserDetail succeeded"
        ]
    );
    let chats = named(&spans, "chat gpt-4o-mini");
    let attempts: Vec<String> = chats
        .iter()
        .map(|c| attr(c, "sift.attempt").unwrap())
        .collect();
    assert!(attempts.contains(&"1".to_owned()) && attempts.contains(&"2".to_owned()));
    let failed = one(&spans, "validate UserDetail failed");
    assert!(is_log(failed));
    assert_eq!(attr(failed, "logfire.level_num").as_deref(), Some("13"));
    assert_eq!(attr(failed, "success").as_deref(), Some("false"));
    let errors: Value = serde_json::from_str(&attr(failed, "errors").unwrap()).unwrap();
    assert_eq!(errors[0]["path"], "age");
    // The second call carries the re-ask: the failed answer and the errors.
    let second = chats
        .iter()
        .find(|c| attr(c, "sift.attempt").as_deref() == Some("2"))
        .unwrap();
    let input = attr(second, "gen_ai.input.messages").unwrap();
    assert!(input.contains("tool_call_response"), "{input}");
    assert!(
        input.contains("\\\"age\\\"") || input.contains("age"),
        "{input}"
    );
}

#[tokio::test]
async fn a_failed_call_marks_chat_extract_and_request_as_errors() {
    let h = harness(Options::default()).await;
    h.upstream
        .push(Reply::error(400, "model `nope` does not exist"));
    let (status, _) = h.call("POST", "/user", r#"{"query": "x"}"#).await;
    assert_eq!(status, 502);
    let spans = h.finished();
    let chat = one(&spans, "chat gpt-4o-mini");
    assert_eq!(attr(chat, "error.type").as_deref(), Some("400"));
    assert_eq!(attr(chat, "logfire.level_num").as_deref(), Some("17"));
    assert!(matches!(
        chat.status,
        opentelemetry::trace::Status::Error { .. }
    ));
    let extract = one(&spans, "extract UserDetail");
    assert_eq!(attr(extract, "outcome").as_deref(), Some("provider_error"));
    let http = one(&spans, "POST /user");
    assert_eq!(
        attr(http, "http.response.status_code").as_deref(),
        Some("502")
    );
    assert_eq!(attr(http, "error.type").as_deref(), Some("502"));
    assert!(matches!(
        http.status,
        opentelemetry::trace::Status::Error { .. }
    ));
}

#[tokio::test]
async fn a_422_records_its_errors_at_warn_level() {
    let h = harness(Options::default()).await;
    let (status, _) = h.call("POST", "/user", r#"{"query": 12}"#).await;
    assert_eq!(status, 422);
    let spans = h.finished();
    let http = one(&spans, "POST /user");
    assert_eq!(
        attr(http, "http.response.status_code").as_deref(),
        Some("422")
    );
    let log = one(&spans, "request validation failed");
    assert!(is_child(log, http) && is_log(log));
    assert_eq!(attr(log, "logfire.level_num").as_deref(), Some("13"));
    let errors: Value =
        serde_json::from_str(&attr(log, "fastapi.arguments.errors").unwrap()).unwrap();
    assert_eq!(errors[0]["type"], "string_type");
    assert_eq!(errors[0]["loc"], serde_json::json!(["body", "query"]));
    assert!(named(&spans, "request arguments").is_empty());
}

#[tokio::test]
async fn extract_stream_has_a_generation_span_with_each_object() {
    let h = harness(Options::default()).await;
    let answer = r#"{"value": [{"name": "Alice", "age": 32}, {"name": "Bob", "age": 43}]}"#;
    h.upstream.push(
        Reply::stream_tool_call("Users", split_chars(answer, 5))
            .usage(40, 30)
            .chunk_delay(std::time::Duration::from_millis(2)),
    );
    let (status, body) = h
        .call("POST", "/extract", r#"{"query": "Alice is 32, Bob is 43"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.lines().count(), 2);
    let spans = h.finished();
    let http = one(&spans, "POST /extract");
    let extract = one(&spans, "extract Iterable[UserDetail]");
    assert!(is_child(extract, http));
    assert_eq!(
        attr(extract, "response_model").as_deref(),
        Some("Iterable[UserDetail]")
    );
    assert_eq!(attr(extract, "sift.stream").as_deref(), Some("true"));
    assert_eq!(attr(extract, "sift.elements").as_deref(), Some("2"));
    assert_eq!(attr(extract, "outcome").as_deref(), Some("success"));
    assert!(attr(extract, "sift.time_to_first_element_ms").is_some());
    // The request span lasts until the stream is sent.
    assert!(
        http.end_time >= extract.end_time,
        "request ended {:?} before the extraction {:?}",
        http.end_time,
        extract.end_time
    );

    let chat = one(&spans, "chat gpt-4o-mini");
    assert!(is_child(chat, extract));
    assert_eq!(attr(chat, "sift.stream").as_deref(), Some("true"));
    assert_eq!(
        attr(chat, "gen_ai.usage.output_tokens").as_deref(),
        Some("30")
    );
    assert_eq!(attr(chat, "sift.elements").as_deref(), Some("2"));
    let ttft: f64 = attr(chat, "sift.time_to_first_token_ms")
        .unwrap()
        .parse()
        .unwrap();
    let ttfe: f64 = attr(chat, "sift.time_to_first_element_ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ttft <= ttfe,
        "first token {ttft} ms after first element {ttfe} ms"
    );
    assert!(
        attr(chat, "gen_ai.output.messages")
            .unwrap()
            .contains("Alice")
    );

    let emitted: Vec<_> = children(&spans, chat)
        .into_iter()
        .filter(|s| s.name.starts_with("emitted"))
        .collect();
    assert_eq!(emitted.len(), 2);
    assert!(emitted.iter().all(|e| is_log(e)));
    assert_eq!(attr(emitted[0], "logfire.level_num").as_deref(), Some("5"));
    assert_eq!(
        attr(emitted[0], "logfire.msg_template").as_deref(),
        Some("emitted {index}")
    );
    assert_eq!(emitted[0].name, "emitted 0");
    assert!(attr(emitted[1], "value").unwrap().contains("Bob"));
    let validations = children(&spans, chat)
        .into_iter()
        .filter(|s| s.name.starts_with("validate UserDetail succeeded"))
        .count();
    assert_eq!(validations, 2);
}

#[tokio::test]
async fn metrics_are_read_off_the_spans() {
    let h = harness(Options::default()).await;
    h.upstream
        .push(Reply::tool_call("UserDetail", DANIEL).usage(57, 12));
    let (status, _) = h
        .call("POST", "/user", r#"{"query": "Daniel is 24"}"#)
        .await;
    assert_eq!(status, 200);
    let (status, text) = h.call("GET", "/metrics", "").await;
    assert_eq!(status, 200);
    let sum = |prefix: &str, needle: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    assert_eq!(
        sum(
            "gen_ai_client_token_usage_sum",
            "gen_ai_token_type=\"input\""
        ),
        Some(57.0),
        "{text}"
    );
    assert_eq!(
        sum(
            "gen_ai_client_token_usage_sum",
            "gen_ai_token_type=\"output\""
        ),
        Some(12.0),
        "{text}"
    );
    assert_eq!(
        sum(
            "gen_ai_client_operation_duration_seconds_count",
            "gen_ai_request_model=\"gpt-4o-mini\""
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sum(
            "http_server_request_duration_seconds_count",
            "http_route=\"/user\""
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("http_response_status_code=\"200\""), "{text}");
    // Labelled with the extractor: `user` for the seed's endpoints, `adhoc` for inline schemas.
    assert_eq!(
        sum(
            "gen_ai_client_operation_duration_seconds_count",
            "sift_extractor=\"user\""
        ),
        Some(1.0),
        "{text}"
    );
    h.upstream
        .push(Reply::tool_call("Output", r#"{"city": "Leeds"}"#).usage(20, 5));
    let (status, _) = h
        .call(
            "POST",
            "/v1/extract",
            r#"{"schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "text": "Leeds"}"#,
        )
        .await;
    assert_eq!(status, 200);
    let (_, text) = h.call("GET", "/metrics", "").await;
    let adhoc_output = text
        .lines()
        .find(|l| {
            l.starts_with("gen_ai_client_token_usage_sum")
                && l.contains("sift_extractor=\"adhoc\"")
                && l.contains("gen_ai_token_type=\"output\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(adhoc_output, Some(5.0), "{text}");
}

#[tokio::test]
async fn the_openai_gateway_is_traced_and_measured_as_chat() {
    let h = harness(Options::default()).await;
    h.upstream
        .push(Reply::tool_call("UserDetail", DANIEL).usage(40, 10))
        .push(Reply::content("Hello.").usage(7, 2));
    let structured = r#"{"messages": [{"role": "user", "content": "Daniel is 24"}], "response_format": {"type": "json_schema", "json_schema": {"name": "UserDetail", "schema": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}}}}"#;
    let (status, _) = h.call("POST", "/v1/chat/completions", structured).await;
    assert_eq!(status, 200);
    let plain = r#"{"messages": [{"role": "user", "content": "Say hello"}]}"#;
    let (status, _) = h.call("POST", "/v1/chat/completions", plain).await;
    assert_eq!(status, 200);
    let (_, text) = h.call("GET", "/metrics", "").await;
    let sum = |needles: &[&str]| -> Option<f64> {
        text.lines()
            .find(|l| {
                l.starts_with("gen_ai_client_token_usage_sum")
                    && needles.iter().all(|n| l.contains(n))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    // Both calls, structured and plain, labelled `chat`.
    assert_eq!(
        sum(&["sift_extractor=\"chat\"", "gen_ai_token_type=\"input\""]),
        Some(47.0),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_count")
                && l.contains("http_route=\"/v1/chat/completions\"")
        ),
        "{text}"
    );
    let spans = h.finished();
    let calls: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("chat "))
        .collect();
    assert_eq!(calls.len(), 2, "{spans:#?}");
    let kinds: Vec<Option<String>> = calls
        .iter()
        .map(|s| attr(s, "gen_ai.output.type"))
        .collect();
    assert!(
        kinds.contains(&Some("json".into())) && kinds.contains(&Some("text".into())),
        "{kinds:?}"
    );
    assert!(
        calls
            .iter()
            .all(|s| attr(s, "sift.extractor").as_deref() == Some("chat"))
    );
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Person {
    name: String,
    age: u8,
}

#[tokio::test]
async fn request_parameters_and_mode_are_on_the_chat_span() {
    let h = harness(Options::default()).await;
    h.upstream
        .push(Reply::content(r#"{"name": "Ada", "age": 36}"#).usage(30, 8));
    let provider = sift_openai::OpenAi::new(
        sift_openai::OpenAiConfig::new(h.upstream.base_url()).api_key(crate::API_KEY),
    )
    .unwrap();
    let client = sift_core::Client::new(provider);
    let out = client
        .extract::<Person>()
        .user("Ada is 36")
        .mode(sift_core::Mode::JsonSchema)
        .model("small-model")
        .temperature(0.25)
        .max_tokens(64)
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.age, 36);
    let spans = h.finished();
    let chat = one(&spans, "chat small-model");
    assert_eq!(
        attr(chat, "gen_ai.request.temperature").as_deref(),
        Some("0.25")
    );
    assert_eq!(
        attr(chat, "gen_ai.request.max_tokens").as_deref(),
        Some("64")
    );
    assert_eq!(attr(chat, "sift.mode").as_deref(), Some("json_schema"));
    let output = attr(chat, "gen_ai.output.messages").unwrap();
    assert!(output.contains(r#""type":"text""#), "{output}");
    let extract = one(&spans, "extract Person");
    assert_eq!(
        extract.parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
    assert!(is_child(chat, extract));
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued() {
    let h = harness(Options::default()).await;
    h.upstream.push(Reply::tool_call("UserDetail", DANIEL));
    let (status, _) = h
        .call_with(
            "POST",
            "/user",
            r#"{"query": "Daniel is 24"}"#,
            &[(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )],
        )
        .await;
    assert_eq!(status, 200);
    let spans = h.finished();
    let http = one(&spans, "POST /user");
    let trace =
        opentelemetry::trace::TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    assert_eq!(http.span_context.trace_id(), trace);
    assert_eq!(
        http.parent_span_id,
        opentelemetry::trace::SpanId::from_hex("b7ad6b7169203331").unwrap()
    );
    assert!(http.parent_span_is_remote);
    assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));
    // Without the header, a request starts its own trace.
    h.upstream.push(Reply::tool_call("UserDetail", DANIEL));
    let (status, _) = h
        .call("POST", "/user", r#"{"query": "Daniel is 24"}"#)
        .await;
    assert_eq!(status, 200);
    let spans = h.finished();
    let second = named(&spans, "POST /user")
        .into_iter()
        .find(|s| s.span_context.trace_id() != trace)
        .expect("a second request with a trace of its own");
    assert_eq!(second.parent_span_id, opentelemetry::trace::SpanId::INVALID);
}

/// The `traceparent` the model server got: trace id and parent span id.
fn upstream_traceparent(h: &crate::Harness, index: usize) -> (String, String) {
    let requests = h.upstream.requests();
    let value = requests[index]
        .headers
        .get("traceparent")
        .expect("the model call carries a traceparent")
        .to_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    assert_eq!(parts[3], "01", "sampled: {value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn model_calls_carry_the_chat_spans_traceparent() {
    let h = harness(Options::default()).await;
    // A re-ask: each attempt's request names its own chat span.
    h.upstream
        .push(Reply::tool_call("UserDetail", r#"{"name": "Daniel"}"#));
    h.upstream.push(Reply::tool_call("UserDetail", DANIEL));
    let (status, _) = h
        .call("POST", "/user", r#"{"query": "Daniel is 24"}"#)
        .await;
    assert_eq!(status, 200);
    let spans = h.finished();
    let chats = named(&spans, "chat gpt-4o-mini");
    assert_eq!(chats.len(), 2);
    for (i, chat) in chats.iter().enumerate() {
        let (trace, parent) = upstream_traceparent(&h, i);
        assert_eq!(trace, chat.span_context.trace_id().to_string());
        assert_eq!(parent, chat.span_context.span_id().to_string());
    }

    // A streamed call too.
    let answer = r#"{"value": [{"name": "Alice", "age": 32}]}"#;
    h.upstream
        .push(Reply::stream_tool_call("Users", split_chars(answer, 7)));
    let (status, _) = h
        .call("POST", "/extract", r#"{"query": "Alice is 32"}"#)
        .await;
    assert_eq!(status, 200);
    let spans = h.finished();
    let extract = one(&spans, "extract Iterable[UserDetail]");
    let chat = children(&spans, extract)
        .into_iter()
        .find(|s| s.name.starts_with("chat "))
        .expect("the stream's chat span");
    let (trace, parent) = upstream_traceparent(&h, 2);
    assert_eq!(trace, chat.span_context.trace_id().to_string());
    assert_eq!(parent, chat.span_context.span_id().to_string());
}

#[tokio::test]
async fn nothing_exported_means_no_traceparent_hook() {
    let telemetry = sift_telemetry::TelemetryBuilder::new(sift_telemetry::TelemetryConfig {
        console: None,
        ..sift_telemetry::TelemetryConfig::default()
    })
    .build()
    .unwrap();
    assert!(telemetry.trace_propagation().is_none());
    assert!(telemetry.trace_continuation().is_none());
}
