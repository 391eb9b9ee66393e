//! The exact body sent in each mode after a re-ask (so a failed answer's turns are in it
//! too), against golden files: what an OpenAI-compatible server is asked is reviewed when it
//! changes, as for the Anthropic and Gemini providers.

use sift_core::Mode;
use sift_test_support::{Reply, ScriptedServer};

use crate::{UserDetail, client};

#[tokio::test]
async fn each_modes_requests_match_the_golden_files() {
    let mut shown = String::new();
    for mode in [Mode::Tools, Mode::JsonSchema, Mode::Json, Mode::MdJson] {
        let server = ScriptedServer::start().await;
        let (bad, good) = (
            r#"{"name": "Ada", "age": 360}"#,
            r#"{"name": "Ada", "age": 36}"#,
        );
        let reply = |text: &str| match mode {
            Mode::Tools => Reply::tool_call("UserDetail", text),
            Mode::MdJson => Reply::content(format!("```json\n{text}\n```")),
            _ => Reply::content(text),
        };
        server.push(reply(bad)).push(reply(good));
        let out = client(&server)
            .extract::<UserDetail>()
            .system("Extract the person.")
            .user("Ada is 36")
            .mode(mode)
            .temperature(0.0)
            .max_tokens(512)
            .seed(7)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(out.value.age, 36, "{mode}");
        let second = server.requests()[1].body.clone();
        shown.push_str(&format!(
            "== {mode}\n{}\n",
            serde_json::to_string_pretty(&second).unwrap()
        ));
    }
    insta::assert_snapshot!(shown);
}
