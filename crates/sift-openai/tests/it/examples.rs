//! Worked examples as each mode shows them, read from the requests the scripted upstream
//! recorded: a user turn, then the answer as the mode gives answers (a call and its result
//! in `tools` mode, JSON text in `json_schema` and `json`, a fenced block in `md_json`),
//! after the system prompt and before the conversation; the output wrapped when answers
//! are, with strict mode's `null`s filled in.

use serde_json::{Value, json};
use sift_core::{Example, Mode, Schema};
use sift_test_support::{Reply, ScriptedServer};

use crate::client;

fn contact() -> Schema {
    Schema::compile(
        "Contact",
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string"}
            },
            "required": ["name"]
        }),
    )
    .unwrap()
}

fn answer(mode: Mode, name: &str, json: &str) -> Reply {
    match mode {
        Mode::Tools => Reply::tool_call(name, json),
        Mode::MdJson => Reply::content(format!("```json\n{json}\n```")),
        _ => Reply::content(json),
    }
}

fn examples() -> [Example; 2] {
    [
        Example::new(
            "Mail Ann Lee at ann@lee.example",
            json!({"name": "Ann Lee", "email": "ann@lee.example"}),
        ),
        // The optional email left out: strict mode shows it as null.
        Example::new("Bo Diaz called.", json!({"name": "Bo Diaz"})),
    ]
}

/// The messages of the first recorded request, the long system prompt of the JSON modes cut
/// to its first words (it holds the schema, shown elsewhere).
fn messages(server: &ScriptedServer) -> Value {
    let mut messages = server.requests()[0].body["messages"].clone();
    for m in messages.as_array_mut().unwrap() {
        if m["role"] == "system"
            && let Some(text) = m["content"].as_str()
        {
            m["content"] = json!(
                text.split_whitespace()
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    messages
}

#[tokio::test]
async fn examples_are_shown_the_way_each_mode_answers() {
    let mut shown = String::new();
    for mode in [Mode::Tools, Mode::JsonSchema, Mode::Json, Mode::MdJson] {
        let server = ScriptedServer::start().await;
        server.push(answer(
            mode,
            "Contact",
            r#"{"name": "Cy Park", "email": null}"#,
        ));
        let out = client(&server)
            .extract_value(&contact())
            .system("You copy contact details.")
            .examples(examples())
            .user("Cy Park here.")
            .mode(mode)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(out.value, json!({"name": "Cy Park"}), "{mode}");
        shown.push_str(&format!(
            "== {mode}\n{}\n",
            serde_json::to_string_pretty(&messages(&server)).unwrap()
        ));
    }
    insta::assert_snapshot!(shown);
}

#[tokio::test]
async fn a_list_answer_shows_its_examples_wrapped() {
    let server = ScriptedServer::start().await;
    server.push(Reply::tool_call("Names", r#"{"value": ["Cy"]}"#));
    let schema = Schema::compile(
        "Names",
        json!({"title": "Names", "type": "array", "items": {"type": "string"}}),
    )
    .unwrap();
    let out = client(&server)
        .extract_value(&schema)
        .example(Example::new("Ann and Bo", json!(["Ann", "Bo"])))
        .user("Cy")
        .send()
        .await
        .unwrap();
    assert_eq!(out.value, json!(["Cy"]));
    let messages = messages(&server);
    assert_eq!(
        messages[0],
        json!({"role": "user", "content": "Ann and Bo"})
    );
    let call = &messages[1]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "Names");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"value": ["Ann", "Bo"]}));
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(
        messages[2]["tool_call_id"],
        messages[1]["tool_calls"][0]["id"]
    );
    assert_eq!(messages[3], json!({"role": "user", "content": "Cy"}));
}
