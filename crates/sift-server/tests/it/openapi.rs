//! The OpenAPI document: the seed's endpoints (golden file), then what a config adds, checked
//! by `openapi-spec-validator` and used by a client `openapi-python-client` generates.

use std::path::Path;

use serde_json::{Value, json};
use sift_server::{Extractor, ServerConfig};
use sift_test_support::{Reply, ScriptedServer};

#[test]
fn openapi_document_matches_the_golden_file() {
    let doc = sift_server::openapi();
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["openapi"], "3.1.0");
    for path in ["/user", "/many-users", "/extract", "/healthz"] {
        assert!(value["paths"][path].is_object(), "{path} documented");
    }
    let extract = &value["paths"]["/extract"]["post"]["responses"]["200"]["content"];
    assert!(extract["application/x-ndjson"].is_object());
    assert!(extract["text/event-stream"].is_object());
    insta::assert_snapshot!("openapi", text);
}

fn example_extractors(client: &sift_core::Client) -> Vec<Extractor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sift.toml");
    sift_config::Config::load(&path)
        .unwrap()
        .extractors
        .into_iter()
        .map(|spec| Extractor::new(spec, client.clone()))
        .collect()
}

/// Every `$ref` in `doc` resolves inside it.
fn dangling_refs(doc: &Value, at: &Value, out: &mut Vec<String>) {
    match at {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let target = r.strip_prefix('#').and_then(|p| doc.pointer(p));
                if target.is_none() {
                    out.push(r.clone());
                }
            }
            map.values().for_each(|v| dangling_refs(doc, v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| dangling_refs(doc, v, out)),
        _ => {}
    }
}

#[test]
fn each_extractor_gets_operations_typed_by_its_own_schemas() {
    let client = sift_core::Client::new(
        sift_openai::OpenAi::new(sift_openai::OpenAiConfig::new("http://127.0.0.1:9/v1")).unwrap(),
    );
    let registry = sift_server::Registry::new(example_extractors(&client));
    let doc = sift_server::document(&registry, true);
    let invoice = &doc["paths"]["/v1/extractors/invoice"]["post"];
    assert_eq!(invoice["operationId"], "extract_invoice");
    assert_eq!(
        invoice["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/InvoiceInput"
    );
    let ok = &invoice["responses"]["200"];
    // The value, or with `?spans=true` the value and its spans.
    let answers = &ok["content"]["application/json"]["schema"]["anyOf"];
    assert_eq!(answers[0]["$ref"], "#/components/schemas/InvoiceOutput");
    assert_eq!(
        answers[1]["properties"]["value"]["$ref"],
        "#/components/schemas/InvoiceOutput"
    );
    assert_eq!(
        answers[1]["properties"]["spans"]["additionalProperties"]["items"]["$ref"],
        "#/components/schemas/Span"
    );
    assert_eq!(invoice["parameters"][0]["name"], "spans");
    assert!(ok["headers"]["sift-attempts"].is_object());
    // `$defs` moved into components, references rewritten to follow them.
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["InvoiceOutput"].get("$defs").is_none());
    assert_eq!(
        schemas["InvoiceOutput"]["properties"]["seller"]["$ref"],
        "#/components/schemas/InvoiceOutputParty"
    );
    assert_eq!(schemas["InvoiceOutputLine"]["type"], "object");
    for path in [
        "/v1/extractors/invoice/many",
        "/v1/extractors/invoice/stream",
        "/v1/extractors/contact",
        "/v1/extractors/events/stream",
        "/v1/extract",
        "/v1/extractors",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    assert_eq!(
        schemas["EventsInput"]["properties"]["year"]["type"], "integer",
        "the input schema of the config"
    );
    let mut dangling = Vec::new();
    dangling_refs(&doc, &doc, &mut dangling);
    assert!(dangling.is_empty(), "{dangling:?}");
    let off = sift_server::document(&registry, false);
    assert!(off["paths"]["/v1/extract"].is_null());
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/setup.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The document a configured server serves passes `openapi-spec-validator`, and a client
/// generated from it by `openapi-python-client` calls the invoice extractor over HTTP and
/// gets its typed object back.
#[tokio::test]
async fn the_served_document_validates_and_generates_a_working_python_client() {
    let upstream = ScriptedServer::start().await;
    upstream.fallback(|_| {
        Reply::tool_call(
            "Invoice",
            r#"{"number": "2026-0412", "seller": {"name": "Brightwater Tools Ltd"}, "currency": "GBP", "lines": [{"description": "Burr set", "quantity": 2, "unit_price": 45.0, "amount": 90.0}], "total": 90.0}"#,
        )
    });
    let client = sift_core::Client::new(
        sift_openai::OpenAi::new(
            sift_openai::OpenAiConfig::new(upstream.base_url()).api_key("sk-test"),
        )
        .unwrap(),
    );
    let app = sift_server::router(
        client.clone(),
        ServerConfig::default().extractors(example_extractors(&client)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let doc = sift_test_support::http_client()
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("sift-openapi-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("openapi.json");
    std::fs::write(&spec, &doc).unwrap();

    let dir2 = dir.clone();
    let url2 = url.clone();
    let printed = tokio::task::spawn_blocking(move || {
        run(std::process::Command::new("python3")
            .args(["-m", "openapi_spec_validator"])
            .arg(&spec));
        run(std::process::Command::new("python3")
            .args([
                "-m",
                "openapi_python_client",
                "generate",
                "--meta",
                "none",
                "--path",
            ])
            .arg(&spec)
            .arg("--output-path")
            .arg(dir2.join("sift_client")));
        let script = r#"
import sys
from sift_client import Client
from sift_client.api.extractors import extract_invoice
from sift_client.models import Invoice, InvoiceInput
client = Client(base_url=sys.argv[1])
out = extract_invoice.sync(client=client, body=InvoiceInput(text="INVOICE No. 2026-0412 from Brightwater Tools Ltd: 2 x Burr set @ 45.00 = 90.00; total GBP 90.00"))
# The class is named by the schema's own title.
assert isinstance(out, Invoice), type(out)
print(type(out).__name__, out.number, out.seller.name, out.lines[0].quantity, out.total)
"#;
        run(std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&url2)
            .env("PYTHONPATH", &dir2))
    })
    .await
    .unwrap();
    assert_eq!(
        printed.trim(),
        "Invoice 2026-0412 Brightwater Tools Ltd 2 90.0"
    );
    assert_eq!(
        upstream.requests()[0].body["tools"][0]["function"]["name"],
        json!("Invoice")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
