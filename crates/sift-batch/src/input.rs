//! A job's input: a JSONL file (objects with an `id` and the extractor's input fields), a
//! file of plain text lines, or a folder of documents (PDF, HTML, Markdown and text files,
//! each one item named by its file name).
//!
//! The input is read twice: once up front, to count it and refuse duplicate ids (resuming
//! goes by id, so each must name one item), then item by item as the job runs, so a large
//! input is never held in memory whole.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
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
    /// For a folder's file: the document to read (its text goes into the input's text
    /// field, split into chunks when long).
    pub document: Option<PathBuf>,
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

/// How an input file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line: an `id` and the extractor's input fields.
    Jsonl,
    /// One plain text per line, into the input's one text field.
    Lines,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(Format::Jsonl),
            "lines" | "text" => Ok(Format::Lines),
            other => Err(format!(
                "unknown input format `{other}`: expected jsonl or lines"
            )),
        }
    }
}

impl Format {
    /// The format a file's name says: `.jsonl` or `.ndjson`, `.txt` or `.text`.
    pub fn of_name(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "txt" | "text" => Some(Format::Lines),
            _ => None,
        }
    }
}

/// The longest line of an input file, in bytes: a longer one is an item error naming its
/// line, never read into memory whole.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

impl Source {
    /// The input at `path`, for an extractor whose input schema is `input_schema`: a folder,
    /// or a file in `format` (by default the one its name says: `.jsonl`/`.ndjson` is JSONL,
    /// `.txt` plain text lines; any other name needs `format`). Never guessed from the
    /// content. Plain text goes into the input's one text field (refused when it has none).
    pub fn open(
        path: &Path,
        input_schema: &Value,
        format: Option<Format>,
    ) -> Result<Self, BatchError> {
        let meta = std::fs::metadata(path).map_err(|e| BatchError::io(path, e))?;
        let kind = if meta.is_dir() {
            Kind::Folder
        } else {
            // A FIFO or a device is refused by name (it is read twice, and may not end).
            drop(sift_core::files::open_regular(path)?);
            match format.or_else(|| Format::of_name(path)) {
                Some(Format::Jsonl) => Kind::Jsonl,
                Some(Format::Lines) => Kind::Lines,
                None => return Err(BatchError::UnknownFormat(path.to_owned())),
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
                    if sift_documents::Kind::from_path(&p).is_some() && p.is_file() {
                        files.push(p);
                    }
                }
                files.sort();
                Ok(Box::new(files.into_iter().enumerate().map(
                    move |(i, p)| {
                        let id = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        // The file is read as a document when its item runs (a bad one is
                        // that item's error).
                        let item = Ok(Item {
                            id,
                            input: Ok(Value::Object(Map::new())),
                            document: Some(p),
                        });
                        (i + 1, item)
                    },
                )))
            }
            Kind::Jsonl | Kind::Lines => {
                let file = sift_core::files::open_regular(&path)?;
                let kind = self.kind;
                let field = self.text_field.clone().unwrap_or_default();
                let mut lines = Lines {
                    reader: BufReader::new(file),
                    n: 0,
                };
                Ok(Box::new(std::iter::from_fn(move || {
                    loop {
                        let (n, line) = match lines.next()? {
                            Ok(line) => line,
                            Err(e) => return Some((lines.n, Err(BatchError::io(&path, e)))),
                        };
                        let line = match line {
                            Line::Text(l) if l.trim().is_empty() => continue,
                            Line::Text(l) => Ok(l),
                            Line::TooLong => Err(format!("line {n}: longer than {MAX_LINE} bytes")),
                            Line::NotText(offset) => Err(format!(
                                "line {n}: not UTF-8 text (the first bad byte is at column {})",
                                offset + 1
                            )),
                        };
                        let item = match (line, kind) {
                            (Err(why), _) => Item {
                                id: n.to_string(),
                                input: Err(why),
                                document: None,
                            },
                            (Ok(line), Kind::Jsonl) => jsonl_item(&line, n),
                            (Ok(line), _) => Item {
                                id: n.to_string(),
                                input: Ok(single(&field, line)),
                                document: None,
                            },
                        };
                        return Some((n, Ok(item)));
                    }
                })))
            }
        }
    }
}

/// One line of an input file.
enum Line {
    Text(String),
    /// Over [`MAX_LINE`] bytes (the rest of it skipped unread into memory).
    TooLong,
    /// Not UTF-8: where the first bad byte is.
    NotText(usize),
}

/// The lines of a file, each bounded, numbered from 1. Hand-written rather than
/// `BufRead::lines`: that one reads a line whole however long, and stops the whole input
/// at the first line that is not UTF-8, without saying which.
struct Lines<R> {
    reader: R,
    n: usize,
}

impl<R: BufRead> Lines<R> {
    fn next(&mut self) -> Option<std::io::Result<(usize, Line)>> {
        let mut buf = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf);
        match read {
            Err(e) => return Some(Err(e)),
            Ok(0) => return None,
            Ok(_) => {}
        }
        self.n += 1;
        let n = self.n;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        } else if buf.len() > MAX_LINE {
            // Skip the rest of the line without keeping it.
            loop {
                let chunk = match self.reader.fill_buf() {
                    Ok(c) => c,
                    Err(e) => return Some(Err(e)),
                };
                if chunk.is_empty() {
                    break;
                }
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.reader.consume(i + 1);
                        break;
                    }
                    None => {
                        let len = chunk.len();
                        self.reader.consume(len);
                    }
                }
            }
            return Some(Ok((n, Line::TooLong)));
        }
        Some(Ok((
            n,
            match String::from_utf8(buf) {
                Ok(text) => Line::Text(text),
                Err(e) => Line::NotText(e.utf8_error().valid_up_to()),
            },
        )))
    }
}

impl Item {
    /// A document item with the document's whole text read into `field` (for a provider's
    /// batch API, which takes each item as one request); other items as they are.
    pub fn with_document_text(mut self, field: &str) -> Self {
        if let Some(path) = self.document.take() {
            self.input = sift_documents::read_path(&path, &sift_documents::Limits::default())
                .map(|d| single(field, d.text))
                .map_err(|e| format!("{}: {e}", self.id));
        }
        self
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
                document: None,
            };
        }
        Err(e) => {
            return Item {
                id: n.to_string(),
                input: Err(format!("line {n}: not valid JSON: {e}")),
                document: None,
            };
        }
    };
    let id = match object.remove("id") {
        None => Ok(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        // As written: a number read as a float would turn two long ids into one (`1e+23`).
        Some(Value::Number(x)) => Ok(raw_id(line).unwrap_or_else(|| x.to_string())),
        Some(other) => Err(format!(
            "line {n}: `id` must be a non-empty string or a number, got {}",
            kind_of(&other)
        )),
    };
    match id {
        Ok(id) => Item {
            id,
            input: Ok(Value::Object(object)),
            document: None,
        },
        Err(message) => Item {
            id: n.to_string(),
            input: Err(message),
            document: None,
        },
    }
}

/// The text of a line's `id` as written.
fn raw_id(line: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: &'a serde_json::value::RawValue,
    }
    serde_json::from_str::<Id<'_>>(line)
        .ok()
        .map(|i| i.id.get().trim().to_owned())
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
        let source = Source::open(&path, &text_schema(), None).unwrap();
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
        let source = Source::open(&path, &schema, None).unwrap();
        assert_eq!(source.count().unwrap(), 2);
        let items = collect(&source);
        assert_eq!(items[1].id, "3");
        assert_eq!(items[1].input, Ok(json!({"query": "Alice is 32"})));

        let folder = dir.path().join("docs");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("b.txt"), "second").unwrap();
        std::fs::write(folder.join("a.txt"), "first").unwrap();
        std::fs::write(folder.join("notes.md"), "# Notes").unwrap();
        std::fs::write(folder.join("photo.png"), "skipped").unwrap();
        let source = Source::open(&folder, &text_schema(), None).unwrap();
        let items = collect(&source);
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a.txt", "b.txt", "notes.md"]);
        assert_eq!(
            items[0].document.as_deref(),
            Some(folder.join("a.txt").as_path())
        );

        let two = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a", "b"]});
        let err = Source::open(&path, &two, None).unwrap_err().to_string();
        assert!(
            err.contains("takes `a`, `b`; write the input as JSONL"),
            "{err}"
        );
    }

    #[test]
    fn the_format_comes_from_the_name_or_the_flag_never_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        // A JSONL file whose first line is malformed is still JSONL: that line is an item
        // error with its number, the others are read as objects.
        let path = dir.path().join("in.jsonl");
        std::fs::write(
            &path,
            "{\"id\": \"a\", \"text\": \n{\"id\": \"b\", \"text\": \"y\"}\n",
        )
        .unwrap();
        let items = collect(&Source::open(&path, &text_schema(), None).unwrap());
        assert_eq!(items[0].id, "1");
        assert!(
            items[0]
                .input
                .as_ref()
                .unwrap_err()
                .starts_with("line 1: not valid JSON")
        );
        assert_eq!(items[1].id, "b");
        // A name that says nothing needs --format.
        let other = dir.path().join("in.data");
        std::fs::write(&other, "{\"id\": \"a\", \"text\": \"x\"}\n").unwrap();
        let err = Source::open(&other, &text_schema(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pass --format jsonl or --format lines"),
            "{err}"
        );
        let items = collect(&Source::open(&other, &text_schema(), Some(Format::Jsonl)).unwrap());
        assert_eq!(items[0].input, Ok(json!({"text": "x"})));
        let items = collect(&Source::open(&other, &text_schema(), Some(Format::Lines)).unwrap());
        assert_eq!(
            items[0].input,
            Ok(json!({"text": "{\"id\": \"a\", \"text\": \"x\"}"}))
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_an_item_error_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, b"fine\nbad \xff here\nalso fine\r\n").unwrap();
        let items = collect(&Source::open(&path, &text_schema(), None).unwrap());
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].input, Ok(json!({"text": "fine"})));
        assert_eq!(
            items[1].input,
            Err("line 2: not UTF-8 text (the first bad byte is at column 5)".into())
        );
        assert_eq!(items[2].input, Ok(json!({"text": "also fine"})));
    }

    #[test]
    fn numeric_ids_are_kept_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(
            &path,
            "{\"id\": 12345678901234567890123, \"text\": \"a\"}\n{\"id\": 12345678901234567890124, \"text\": \"b\"}\n{\"text\": \"c\", \"id\": 1.50}\n",
        )
        .unwrap();
        let source = Source::open(&path, &text_schema(), None).unwrap();
        let ids: Vec<String> = collect(&source).into_iter().map(|i| i.id).collect();
        assert_eq!(
            ids,
            ["12345678901234567890123", "12345678901234567890124", "1.50"]
        );
        assert_eq!(source.count().unwrap(), 3);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_input_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("in.jsonl");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = Source::open(&fifo, &text_schema(), None)
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("is a FIFO, not a regular file"), "{err}");
    }
}
