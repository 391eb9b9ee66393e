//! The value built so far, for streaming partial objects.

use serde_json::Value;

use super::{Container, JsonStreamParser, Lex};

impl JsonStreamParser {
    /// The value built so far: completed members and elements, and the string being read
    /// (as far as it goes). Numbers and literals appear once complete. Detached elements are
    /// not included. Costs a copy of what is kept, so call it when something completes rather
    /// than on every chunk.
    pub fn partial(&self) -> Option<Value> {
        if let Some(root) = &self.root {
            return Some(root.clone());
        }
        let mut child: Option<Value> = match &self.lex {
            Lex::Str {
                buf,
                is_key: false,
                collect: true,
                ..
            } => Some(Value::String(match std::str::from_utf8(buf) {
                Ok(s) => s.to_owned(),
                Err(e) => String::from_utf8_lossy(&buf[..e.valid_up_to()]).into_owned(),
            })),
            _ => None,
        };
        for frame in self.stack.iter().rev() {
            let value = match &frame.container {
                Container::Object { map, key } => {
                    let mut map = map.clone();
                    if let (Some(k), Some(v)) = (key, child.take()) {
                        map.insert(k.clone(), v);
                    }
                    Value::Object(map)
                }
                Container::Array { items, .. } => {
                    let mut items = items.clone();
                    if let Some(v) = child.take() {
                        items.push(v);
                    }
                    Value::Array(items)
                }
                // A raw element in progress is not part of the partial value.
                Container::Skip { .. } => {
                    child = None;
                    continue;
                }
            };
            child = Some(value);
        }
        child
    }
}
