#[test]
fn openapi_document_matches_the_golden_file() {
    let doc = sift_server::openapi();
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["openapi"], "3.1.0");
    for path in ["/user", "/many-users", "/extract", "/healthz"] {
        assert!(value["paths"][path].is_object(), "{path} documented");
    }
    let extract = &value["paths"]["/extract"]["post"]["responses"]["200"]["content"];
    assert!(extract["application/x-ndjson"].is_object());
    assert!(extract["text/event-stream"].is_object());
    insta::assert_snapshot!("openapi", text);
}
