//! Scripted models that read the text they are sent, for tests whose answers must follow
//! the text (documents split into chunks: each chunk's answer is what that chunk says).

use serde_json::{Value, json};

use crate::{Reply, last_user_text};

/// Every `NAME lives in CITY.` of the last user turn (after an optional `People:` prompt),
/// as a forced call of the function asked for, answering a list (`{"value": [...]}`).
pub fn people(body: &Value) -> Reply {
    let text = last_user_text(body);
    let tool = body["tools"][0]["function"]["name"]
        .as_str()
        .unwrap_or("f")
        .to_owned();
    let words: Vec<&str> = text
        .trim_start_matches("People:")
        .split_whitespace()
        .collect();
    let people: Vec<Value> = words
        .windows(4)
        .filter(|w| w[1] == "lives" && w[2] == "in" && w[3].ends_with('.'))
        .map(|w| json!({"name": w[0], "city": w[3].trim_end_matches('.')}))
        .collect();
    Reply::tool_call(&tool, json!({ "value": people }).to_string())
}
