//! `/v1`: the example config's extractors, the built-in `user`, ad-hoc schemas and service
//! keys, against the scripted upstream.

use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sift_config::Config;
use sift_server::{Extractor, ServerConfig};
use sift_test_support::{Reply, ScriptedServer, split_chars};
use tower::ServiceExt;

use crate::{app, call, call_with, json, sse_events};

pub(crate) fn example_config() -> Config {
    Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sift.toml")).unwrap()
}

/// The router serving the example extractors, answered by `upstream`.
pub(crate) fn examples(upstream: &ScriptedServer, config: ServerConfig) -> Router {
    serving(upstream, example_config(), config)
}

/// The router serving the extractors of `file`, answered by `upstream`.
pub(crate) fn serving(upstream: &ScriptedServer, file: Config, config: ServerConfig) -> Router {
    let provider = sift_openai::OpenAi::new(
        sift_openai::OpenAiConfig::new(upstream.base_url())
            .api_key("sk-test")
            .timeout(std::time::Duration::from_secs(5)),
    )
    .unwrap();
    let client = sift_core::Client::new(provider);
    let extractors = file
        .extractors
        .into_iter()
        .map(|spec| Extractor::new(spec, client.clone()))
        .collect();
    sift_server::router(client, config.extractors(extractors))
}

/// An example text of `examples/texts/`.
pub(crate) fn text(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/texts")
            .join(path),
    )
    .unwrap()
}

const INVOICE: &str = r#"{"number": "2026-0412", "issued": "2026-11-03", "seller": {"name": "Brightwater Tools Ltd"}, "buyer": {"name": "Harbour Café"}, "currency": "GBP", "lines": [{"description": "Espresso grinder burr set", "quantity": 2, "unit_price": 45.0, "amount": 90.0}], "total": 126.5}"#;

#[tokio::test]
async fn extractors_are_listed_with_their_schemas_and_versions() {
    let upstream = ScriptedServer::start().await;
    let app = examples(&upstream, ServerConfig::default());
    let (status, _, body) = call(&app, "GET", "/v1/extractors", "").await;
    assert_eq!(status, StatusCode::OK);
    let list = json(&body);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user", "invoice", "contact", "events"]);
    let user = &list[0];
    assert_eq!(user["input_schema"]["required"], json!(["query"]));
    assert_eq!(user["output_schema"]["properties"]["age"]["maximum"], 150);
    assert_eq!(
        list[1]["output_schema"]["$defs"]["Line"]["required"][0],
        "description"
    );
    assert_eq!(list[1]["version"].as_str().unwrap().len(), 16);

    let (status, _, body) = call(&app, "GET", "/v1/extractors/contact", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&body)["description"],
        "A person's or company's contact details"
    );
    let (status, _, body) = call(&app, "GET", "/v1/extractors/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        json(&body)["detail"].as_str().unwrap().contains("invoice"),
        "{body}"
    );
}

#[tokio::test]
async fn one_input_answers_the_value_with_usage_headers() {
    let upstream = ScriptedServer::start().await;
    upstream
        .push(Reply::tool_call("Invoice", INVOICE.replace("\"GBP\"", "\"pounds\"")).usage(300, 80))
        .push(
            Reply::tool_call("Invoice", INVOICE)
                .usage(350, 80)
                .cached(200),
        );
    let app = examples(&upstream, ServerConfig::default());
    let request = Request::post("/v1/extractors/invoice")
        .header("content-type", "application/json")
        .body(Body::from(json!({"text": text("invoice.txt")}).to_string()))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h["sift-attempts"], "2");
    assert_eq!(h["sift-input-tokens"], "650");
    assert_eq!(h["sift-output-tokens"], "160");
    assert_eq!(h["sift-cached-input-tokens"], "200");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["currency"], "GBP");
    assert_eq!(value["lines"][0]["amount"], 90.0);

    let requests = upstream.requests();
    let first = &requests[0].body;
    assert_eq!(first["messages"][0]["role"], "system");
    assert_eq!(
        first["messages"][0]["content"],
        "You read invoices and copy their figures exactly."
    );
    let prompt = first["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.starts_with("Extract the invoice below.\n\nINVOICE No. 2026-0412"),
        "{prompt}"
    );
    // The re-ask names the failing field.
    assert!(
        requests[1].body["messages"]
            .to_string()
            .contains("currency")
    );
}

#[tokio::test]
async fn inputs_that_do_not_fit_their_schema_answer_fastapi_422s() {
    let upstream = ScriptedServer::start().await;
    let app = examples(&upstream, ServerConfig::default());
    let (status, _, body) = call(&app, "POST", "/v1/extractors/events", r#"{"year": 1800}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let detail = json(&body)["detail"].as_array().unwrap().clone();
    let locs: Vec<Value> = detail.iter().map(|d| d["loc"].clone()).collect();
    assert!(locs.contains(&json!(["body", "text"])), "{body}");
    assert!(locs.contains(&json!(["body", "year"])), "{body}");
    let missing = detail
        .iter()
        .find(|d| d["loc"] == json!(["body", "text"]))
        .unwrap();
    assert_eq!(missing["type"], "missing");
    assert_eq!(missing["msg"], "Field required");
    let year = detail
        .iter()
        .find(|d| d["loc"] == json!(["body", "year"]))
        .unwrap();
    assert_eq!(year["type"], "minimum");
    assert_eq!(year["input"], 1800);

    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/extractors/contact/many",
        r#"{"inputs": [{"text": "ok"}, {"text": 5}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        json(&body)["detail"][0]["loc"],
        json!(["body", "inputs", 1, "text"])
    );
    let (status, _, _) = call(&app, "POST", "/v1/extractors/contact", "{").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(upstream.requests().is_empty(), "nothing reached the model");
}

#[tokio::test]
async fn many_inputs_keep_their_order_and_a_failure_costs_the_others_nothing() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|body| {
        let text = sift_test_support::last_user_text(body);
        if text.contains("Maria") {
            Reply::tool_call("Contact", r#"{"name": "Maria Keller", "kind": "person", "email": "maria.keller@alpenlicht.ch"}"#)
        } else if text.contains("Acme") {
            Reply::tool_call("Contact", r#"{"name": "Acme", "kind": "company"}"#)
        } else {
            Reply::error(500, "boom")
        }
    });
    let app = examples(&upstream, ServerConfig::default());
    let inputs =
        json!({"inputs": [{"text": text("contact.txt")}, {"text": "Acme Corp, no email"}]});
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/extractors/contact/many",
        &inputs.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let values = json(&body);
    assert_eq!(values[0]["name"], "Maria Keller");
    assert_eq!(values[1]["kind"], "company");

    let inputs = json!({"inputs": [
        {"text": "Acme"},
        {"text": "nobody"},
        {"text": "Maria Keller (person), maria.keller@alpenlicht.ch"}
    ]});
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/extractors/contact/many",
        &inputs.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let detail = &json(&body)["detail"];
    assert_eq!(detail["failed"][0]["index"], 1);
    assert_eq!(detail["failed"][0]["input"], json!({"text": "nobody"}));
    assert_eq!(detail["failed"][0]["error"]["upstream_status"], 500);
    assert_eq!(detail["results"][0]["name"], "Acme");
    assert_eq!(detail["results"][1], Value::Null);
    assert_eq!(detail["results"][2]["name"], "Maria Keller");
}

#[tokio::test]
async fn an_array_schema_streams_its_elements_as_ndjson() {
    let upstream = ScriptedServer::start().await;
    let answer = r#"{"value": [{"title": "Board meets", "date": "2027-01-14"}, {"title": "Spring fair", "date": "2027-04-02", "place": "Old Market Hall"}, {"title": "Summer party"}]}"#;
    upstream.push(Reply::stream_tool_call("Events", split_chars(answer, 6)).usage(90, 60));
    let app = examples(&upstream, ServerConfig::default());
    let body = json!({"text": text("events.txt"), "year": 2027}).to_string();
    let (status, ct, text) = call(&app, "POST", "/v1/extractors/events/stream", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/x-ndjson");
    let lines: Vec<Value> = text.lines().map(json).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["title"], "Board meets");
    assert_eq!(lines[1]["place"], "Old Market Hall");
    // The third lacks its date: reported in place, not dropped.
    assert_eq!(lines[2]["item_error"]["index"], 2);
    assert_eq!(lines[2]["item_error"]["errors"][0]["path"], "");
    let prompt = upstream.requests()[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(prompt.contains("the year is 2027"), "{prompt}");
}

#[tokio::test]
async fn an_object_schema_streams_partial_snapshots_then_the_value_as_sse() {
    let upstream = ScriptedServer::start().await;
    let answer = r#"{"name": "Maria Keller", "kind": "person", "email": "maria.keller@alpenlicht.ch", "city": "Zurich"}"#;
    upstream.push(Reply::stream_tool_call("Contact", split_chars(answer, 8)).usage(70, 40));
    let app = examples(&upstream, ServerConfig::default());
    let body = json!({"text": text("contact.txt")}).to_string();
    let (status, ct, text) = call_with(
        &app,
        "POST",
        "/v1/extractors/contact/stream",
        &body,
        Some("text/event-stream"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "text/event-stream");
    let events = sse_events(&text);
    let partials: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "partial")
        .map(|(_, v)| v)
        .collect();
    assert!(partials.len() >= 3, "{text}");
    assert!(
        partials
            .iter()
            .any(|p| p.get("email").is_none() && p["name"] == "Maria Keller")
    );
    let (name, value) = &events[events.len() - 2];
    assert_eq!(name, "message", "the value is plain data");
    assert_eq!(value["city"], "Zurich");
    let (name, done) = events.last().unwrap();
    assert_eq!(name, "done");
    assert_eq!(done["usage"]["output_tokens"], 40);
}

#[tokio::test]
async fn the_builtin_user_extractor_is_the_seeds() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::tool_call(
        "UserDetail",
        r#"{"name": "Daniel", "age": 24}"#,
    ));
    let app = app(&upstream, ServerConfig::default());
    let (status, _, body) = call(
        &app,
        "POST",
        "/v1/extractors/user",
        r#"{"query": "Daniel is a 24 year man living in New York City"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body), json!({"name": "Daniel", "age": 24}));
    let sent = &upstream.requests()[0].body;
    assert_eq!(
        sent["messages"][0]["content"],
        "Extract: `Daniel is a 24 year man living in New York City`",
        "the seed's prompt"
    );
}

#[tokio::test]
async fn adhoc_schemas_are_compiled_checked_and_answered() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::content(r#"{"city": "Leeds"}"#));
    let app = app(&upstream, ServerConfig::default());
    let request = json!({
        "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "text": "Jeffrey lives down in Leeds",
        "prompt": "Where does the person live?",
        "mode": "json_schema"
    });
    let (status, _, body) = call(&app, "POST", "/v1/extract", &request.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body), json!({"city": "Leeds"}));
    let sent = &upstream.requests()[0].body;
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(
        sent["messages"][0]["content"],
        "Where does the person live?\n\nJeffrey lives down in Leeds"
    );

    let bad =
        json!({"schema": {"type": "object", "properties": {"x": {"type": "strin"}}}, "text": "t"});
    let (status, _, body) = call(&app, "POST", "/v1/extract", &bad.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let d = &json(&body)["detail"][0];
    assert_eq!(d["type"], "schema_invalid");
    assert_eq!(
        d["loc"],
        json!(["body", "schema", "properties", "x", "type"])
    );
    let remote = json!({"schema": {"$ref": "https://example.com/s.json"}, "text": "t"});
    let (status, _, body) = call(&app, "POST", "/v1/extract", &remote.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        json(&body)["detail"][0]["type"],
        "schema_remote_ref",
        "{body}"
    );
    assert_eq!(
        upstream.requests().len(),
        1,
        "refused schemas never reach the model"
    );

    let off = crate::app(&upstream, ServerConfig::default().adhoc(false));
    let (status, _, _) = call(&off, "POST", "/v1/extract", &request.to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn status_with(app: &Router, path: &str, auth: Option<&str>) -> StatusCode {
    let mut req = Request::get(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn service_keys_guard_everything_but_healthz() {
    let upstream = ScriptedServer::start().await;
    let app = app(
        &upstream,
        ServerConfig::default().api_keys(vec!["k-one".into(), "k-two".into()]),
    );
    assert_eq!(status_with(&app, "/healthz", None).await, StatusCode::OK);
    for path in ["/v1/extractors", "/openapi.json", "/docs/", "/metrics"] {
        assert_eq!(
            status_with(&app, path, None).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            status_with(&app, path, Some("Bearer k-wrong")).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    assert_eq!(
        status_with(&app, "/v1/extractors", Some("Bearer k-two")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_with(&app, "/v1/extractors", Some("bearer k-one")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_with(&app, "/v1/extractors", Some("Basic k-one")).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, body) = call(&app, "POST", "/user", r#"{"query": "x"}"#).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!body.contains("k-one") && !body.contains("k-two"));
    assert!(upstream.requests().is_empty());

    let open = crate::app(&upstream, ServerConfig::default());
    assert_eq!(
        status_with(&open, "/v1/extractors", None).await,
        StatusCode::OK,
        "no keys, no auth"
    );
}

#[tokio::test]
async fn an_answer_cut_by_the_token_limit_is_a_422_saying_so() {
    let upstream = ScriptedServer::start().await;
    upstream.push(
        Reply::content(r#"{"city": "Lee"#)
            .finish_reason("length")
            .usage(30, 1024),
    );
    let app = app(&upstream, ServerConfig::default());
    let request = json!({
        "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "text": "Jeffrey lives down in Leeds",
        "mode": "json_schema"
    });
    let (status, _, body) = call(&app, "POST", "/v1/extract", &request.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let detail = &json(&body)["detail"];
    assert_eq!(detail["kind"], "token_limit");
    // No limit was set: the one derived from the call's size was sent, and is named.
    assert!(
        detail["message"]
            .as_str()
            .unwrap()
            .contains("did not fit in the limit of 1024 tokens"),
        "{detail}"
    );
    assert_eq!(upstream.requests()[0].body["max_tokens"], 1024);
    assert_eq!(detail["attempts"][0]["outcome"], "truncated");
    assert_eq!(upstream.requests().len(), 1, "not re-asked");
}

#[tokio::test]
async fn a_key_the_upstream_echoes_never_reaches_the_client() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::error(
        401,
        "Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com.",
    ));
    let app = app(&upstream, ServerConfig::default());
    let (status, _, body) = call(&app, "POST", "/user", r#"{"query": "Daniel is 24"}"#).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(!body.contains("sk-test"), "{body}");
    assert!(
        body.contains("Incorrect API key provided: [redacted]"),
        "{body}"
    );
}

#[tokio::test]
async fn input_the_upstream_finds_too_long_is_the_callers_422_not_a_502() {
    let upstream = ScriptedServer::start().await;
    upstream.push(Reply::json(
        400,
        json!({"error": {
            "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 250000 tokens.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded"
        }}),
    ));
    let app = app(&upstream, ServerConfig::default());
    let (status, _, body) = call(&app, "POST", "/user", r#"{"query": "Daniel is 24"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let detail = &json(&body)["detail"];
    assert!(
        detail["message"]
            .as_str()
            .unwrap()
            .contains("the input is too long for the model: This model's maximum context length"),
        "{detail}"
    );
    assert_eq!(upstream.requests().len(), 1, "not retried");
}

/// A configured extractor named `user` serves the seed's endpoints too: its schema, its prompt
/// and its answers, in the seed's shapes.
#[tokio::test]
async fn a_configured_user_extractor_serves_the_seed_endpoints() {
    let upstream = ScriptedServer::start().await;
    let config = Config::parse(
        r#"
[extractors.user]
prompt = "Who lives where? {{ query }}"
[extractors.user.schema]
type = "object"
properties = { name = { type = "string" }, city = { type = "string" } }
required = ["name", "city"]
[extractors.user.input]
type = "object"
properties = { query = { type = "string" } }
required = ["query"]
"#,
        "user.toml".as_ref(),
    )
    .unwrap();
    let app = serving(&upstream, config, ServerConfig::default());

    // Keys out of the schema's order, and one it does not declare: written as it declares.
    upstream.push(Reply::tool_call(
        "Output",
        r#"{"city": "Leeds", "name": "Jeffrey", "age": 55}"#,
    ));
    let (status, _, body) = call(&app, "POST", "/user", r#"{"query": "Jeffrey, 55, Leeds"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, r#"{"name":"Jeffrey","city":"Leeds"}"#);
    let sent = &upstream.requests()[0].body;
    assert_eq!(
        sift_test_support::last_user_text(sent),
        "Who lives where? Jeffrey, 55, Leeds"
    );

    // An answer that misses the configured schema's `city` is re-asked, as under /v1.
    upstream.push(Reply::tool_call("user", r#"{"name": "Ann"}"#));
    upstream.push(Reply::tool_call(
        "user",
        r#"{"name": "Ann", "city": "Oslo"}"#,
    ));
    let (status, _, body) =
        call(&app, "POST", "/many-users", r#"{"queries": ["Ann, Oslo"]}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, r#"[{"name":"Ann","city":"Oslo"}]"#);

    // /extract streams a list of the configured output.
    let people = r#"{"value": [{"name": "Bo", "city": "Rome"}, {"name": "Cy", "city": "Pisa"}]}"#;
    upstream.push(Reply::stream_tool_call(
        "Array_of_user",
        split_chars(people, 6),
    ));
    let (status, _, body) = call(
        &app,
        "POST",
        "/extract",
        r#"{"query": "Bo of Rome and Cy of Pisa"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        "{\"name\":\"Bo\",\"city\":\"Rome\"}\n{\"name\":\"Cy\",\"city\":\"Pisa\"}\n"
    );
    let requests = upstream.requests();
    let sent = &requests.last().unwrap().body;
    assert_eq!(
        sift_test_support::last_user_text(sent),
        "Who lives where? Bo of Rome and Cy of Pisa"
    );
    assert_eq!(sent["tool_choice"]["function"]["name"], "Array_of_user");
}

#[tokio::test]
async fn spans_are_answered_when_asked_and_an_invented_value_is_reasked() {
    let upstream = ScriptedServer::start().await;
    let invented = INVOICE.replace("Brightwater Tools Ltd", "Bristall Bank");
    upstream
        .push(Reply::tool_call("Invoice", invented.clone()))
        .push(Reply::tool_call("Invoice", INVOICE))
        .push(Reply::tool_call("Invoice", INVOICE));
    let app = examples(&upstream, ServerConfig::default());
    let input = json!({"text": text("invoice.txt")}).to_string();
    let (status, _, body) = call(&app, "POST", "/v1/extractors/invoice?spans=true", &input).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = json(&body);
    assert_eq!(answer["value"]["seller"]["name"], "Brightwater Tools Ltd");
    let chars: Vec<char> = text("invoice.txt").chars().collect();
    let read = |pointer: &str| -> String {
        let span = &answer["spans"][pointer][0];
        assert_eq!(span["field"], "text", "{pointer}: {answer}");
        let (start, end) = (
            span["start"].as_u64().unwrap() as usize,
            span["end"].as_u64().unwrap() as usize,
        );
        chars[start..end].iter().collect()
    };
    assert_eq!(read("/seller/name"), "Brightwater Tools Ltd");
    assert_eq!(read("/issued"), "3 November 2026");
    assert_eq!(read("/total"), "126.50");
    // A string with a pattern is verbatim too.
    assert_eq!(read("/currency"), "GBP");
    // The re-ask carried the error back.
    let requests = upstream.requests();
    assert!(
        requests[1].body["messages"]
            .to_string()
            .contains("'Bristall Bank' does not appear in the text"),
        "{}",
        requests[1].body["messages"]
    );
    // Without `spans=true`, the bare value.
    let (status, _, body) = call(&app, "POST", "/v1/extractors/invoice", &input).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["seller"]["name"], "Brightwater Tools Ltd");
    // `spans=maybe` is the caller's mistake, named.
    let (status, _, body) = call(&app, "POST", "/v1/extractors/invoice?spans=maybe", &input).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(json(&body)["detail"][0]["loc"], json!(["query", "spans"]));

    // Invented every time: a 502 of its own kind, never the invented value.
    for _ in 0..3 {
        upstream.push(Reply::tool_call("Invoice", invented.clone()));
    }
    let (status, _, body) = call(&app, "POST", "/v1/extractors/invoice", &input).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let failure = json(&body)["detail"].clone();
    assert_eq!(failure["kind"], "ungrounded", "{failure}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("Bristall Bank"),
        "{failure}"
    );
}
