//! A job's input: a JSONL file (objects with an `id` and the extractor's input fields), a
//! file of plain text lines, or a folder of `.txt` files.
//!
//! The input is read twice: once up front, to count it and refuse duplicate ids (resuming
//! goes by id, so each must name one item), then item by item as the job runs, so a large
//! input is never held in memory whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::BatchError;

/// One item of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Its id: the line's `id` (a string, or a number written as one), the line number, or
    /// the file name.
    pub id: String,
    /// The extractor's input, or why the line is not one.
    pub input: Result<Value, String>,
}

/// Where the input comes from.
#[derive(Debug, Clone)]
pub struct Source {
    path: PathBuf,
    kind: Kind,
    /// For plain text: the input field the text goes into.
    text_field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Jsonl,
    Lines,
    Folder,
}

impl Source {
    /// The input at `path`, for an extractor whose input schema is `input_schema`. A folder,
    /// or a file whose first non-blank line is a JSON object (JSONL), or else plain text
    /// lines; plain text goes into the input's one text field (refused when it has none).
    pub fn open(path: &Path, input_schema: &Value) -> Result<Self, BatchError> {
        let meta = std::fs::metadata(path).map_err(|e| BatchError::io(path, e))?;
        let kind = if meta.is_dir() {
            Kind::Folder
        } else {
            let file = File::open(path).map_err(|e| BatchError::io(path, e))?;
            let mut first = None;
            for line in BufReader::new(file).lines() {
                let line = line.map_err(|e| BatchError::io(path, e))?;
                if !line.trim().is_empty() {
                    first = Some(line);
                    break;
                }
            }
            match first {
                Some(l) if serde_json::from_str::<Map<String, Value>>(&l).is_ok() => Kind::Jsonl,
                _ => Kind::Lines,
            }
        };
        let text_field = match kind {
            Kind::Jsonl => None,
            Kind::Lines | Kind::Folder => {
                Some(
                    text_field(input_schema).ok_or_else(|| BatchError::NeedsText {
                        path: path.to_owned(),
                        fields: describe_fields(input_schema),
                    })?,
                )
            }
        };
        Ok(Self {
            path: path.to_owned(),
            kind,
            text_field,
        })
    }

    /// The path read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the whole input once: the number of items, refused when two have the same id
    /// (each duplicate named with its lines).
    pub fn count(&self) -> Result<usize, BatchError> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut duplicates = Vec::new();
        let mut n = 0;
        for (place, item) in self.items()? {
            let item = item?;
            n += 1;
            if let Some(first) = seen.insert(item.id.clone(), place) {
                duplicates.push(format!(
                    "`{}` ({} and {})",
                    item.id,
                    self.place(first),
                    self.place(place)
                ));
            }
        }
        if duplicates.is_empty() {
            return Ok(n);
        }
        let shown = duplicates.len().min(5);
        Err(BatchError::DuplicateIds {
            path: self.path.clone(),
            count: duplicates.len(),
            shown: duplicates[..shown].to_vec(),
        })
    }

    fn place(&self, n: usize) -> String {
        match self.kind {
            Kind::Folder => format!("file {n}"),
            Kind::Jsonl | Kind::Lines => format!("line {n}"),
        }
    }

    /// Every item in order, each with its line (or file) number, as they are read.
    #[allow(clippy::type_complexity)]
    pub fn items(
        &self,
    ) -> Result<Box<dyn Iterator<Item = (usize, Result<Item, BatchError>)> + Send>, BatchError>
    {
        let path = self.path.clone();
        match self.kind {
            Kind::Folder => {
                let mut files = Vec::new();
                for entry in std::fs::read_dir(&path).map_err(|e| BatchError::io(&path, e))? {
                    let entry = entry.map_err(|e| BatchError::io(&path, e))?;
                    let p = entry.path();
                    if p.extension().is_some_and(|e| e == "txt") && p.is_file() {
                        files.push(p);
                    }
                }
                files.sort();
                let field = self.text_field.clone().unwrap_or_default();
                Ok(Box::new(files.into_iter().enumerate().map(
                    move |(i, p)| {
                        let id = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let item = std::fs::read_to_string(&p)
                            .map_err(|e| BatchError::io(&p, e))
                            .map(|text| Item {
                                id,
                                input: Ok(single(&field, text)),
                            });
                        (i + 1, item)
                    },
                )))
            }
            Kind::Jsonl | Kind::Lines => {
                let file = File::open(&path).map_err(|e| BatchError::io(&path, e))?;
                let kind = self.kind;
                let field = self.text_field.clone().unwrap_or_default();
                let lines = BufReader::new(file).lines().enumerate();
                Ok(Box::new(lines.filter_map(move |(i, line)| {
                    let n = i + 1;
                    let line = match line {
                        Ok(l) => l,
                        Err(e) => return Some((n, Err(BatchError::io(&path, e)))),
                    };
                    if line.trim().is_empty() {
                        return None;
                    }
                    let item = match kind {
                        Kind::Jsonl => jsonl_item(&line, n),
                        _ => Item {
                            id: n.to_string(),
                            input: Ok(single(&field, line)),
                        },
                    };
                    Some((n, Ok(item)))
                })))
            }
        }
    }
}

fn single(field: &str, text: String) -> Value {
    let mut m = Map::new();
    m.insert(field.to_owned(), Value::String(text));
    Value::Object(m)
}

/// One JSONL line: its `id` taken out, the rest the input. A line that is not an object keeps
/// its line number as id and says what is wrong.
fn jsonl_item(line: &str, n: usize) -> Item {
    let mut object = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(o)) => o,
        Ok(other) => {
            return Item {
                id: n.to_string(),
                input: Err(format!(
                    "line {n}: expected a JSON object with an `id` and the input's fields, got {}",
                    kind_of(&other)
                )),
            };
        }
        Err(e) => {
            return Item {
                id: n.to_string(),
                input: Err(format!("line {n}: not valid JSON: {e}")),
            };
        }
    };
    let id = match object.remove("id") {
        None => Ok(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::Number(x)) => Ok(x.to_string()),
        Some(other) => Err(format!(
            "line {n}: `id` must be a non-empty string or a number, got {}",
            kind_of(&other)
        )),
    };
    match id {
        Ok(id) => Item {
            id,
            input: Ok(Value::Object(object)),
        },
        Err(message) => Item {
            id: n.to_string(),
            input: Err(message),
        },
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The input's one text field (where plain text goes): the only property, or the only
/// required one, when it is a string.
pub fn text_field(schema: &Value) -> Option<String> {
    let properties = schema.get("properties")?.as_object()?;
    let is_text = |name: &str| {
        properties
            .get(name)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            == Some("string")
    };
    if properties.len() == 1 {
        let name = properties.keys().next()?;
        return is_text(name).then(|| name.clone());
    }
    let required: Vec<&str> = schema
        .get("required")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match required.as_slice() {
        [one] if is_text(one) => Some((*one).to_owned()),
        _ => None,
    }
}

/// The input's fields for a message: `` `a`, `b` ``.
pub fn describe_fields(schema: &Value) -> String {
    match schema.get("properties").and_then(Value::as_object) {
        Some(p) if !p.is_empty() => {
            let names: Vec<String> = p.keys().map(|k| format!("`{k}`")).collect();
            names.join(", ")
        }
        _ => "no named fields".into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn text_schema() -> Value {
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
    }

    fn collect(source: &Source) -> Vec<Item> {
        source.items().unwrap().map(|(_, i)| i.unwrap()).collect()
    }

    #[test]
    fn jsonl_lines_keep_their_ids_and_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(
            &path,
            "{\"id\": \"a\", \"text\": \"x\"}\n\n{\"id\": 7, \"text\": \"y\"}\n{\"text\": \"z\"}\n[1]\n{broken\n{\"id\": true}\n",
        )
        .unwrap();
        let source = Source::open(&path, &text_schema()).unwrap();
        let items = collect(&source);
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "7", "4", "5", "6", "7"]);
        assert_eq!(items[0].input, Ok(json!({"text": "x"})));
        assert_eq!(items[2].input, Ok(json!({"text": "z"})));
        assert!(
            items[3]
                .input
                .as_ref()
                .unwrap_err()
                .contains("line 5: expected a JSON object")
        );
        assert!(
            items[4]
                .input
                .as_ref()
                .unwrap_err()
                .contains("line 6: not valid JSON")
        );
        assert!(
            items[5]
                .input
                .as_ref()
                .unwrap_err()
                .contains("`id` must be")
        );
        // `7` twice: the count refuses it, naming both lines.
        let err = source.count().unwrap_err().to_string();
        assert!(err.contains("`7` (line 3 and line 7)"), "{err}");
    }

    #[test]
    fn plain_lines_and_folders_fill_the_one_text_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "Daniel is 24\n\nAlice is 32\n").unwrap();
        let schema = json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]});
        let source = Source::open(&path, &schema).unwrap();
        assert_eq!(source.count().unwrap(), 2);
        let items = collect(&source);
        assert_eq!(items[1].id, "3");
        assert_eq!(items[1].input, Ok(json!({"query": "Alice is 32"})));

        let folder = dir.path().join("docs");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("b.txt"), "second").unwrap();
        std::fs::write(folder.join("a.txt"), "first").unwrap();
        std::fs::write(folder.join("notes.md"), "skipped").unwrap();
        let source = Source::open(&folder, &text_schema()).unwrap();
        let items = collect(&source);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].id, "a.txt");
        assert_eq!(items[0].input, Ok(json!({"text": "first"})));

        let two = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a", "b"]});
        let err = Source::open(&path, &two).unwrap_err().to_string();
        assert!(
            err.contains("takes `a`, `b`; write the input as JSONL"),
            "{err}"
        );
    }
}
