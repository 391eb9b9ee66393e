//! A resumable, one-pass JSON parser for model output that arrives in pieces.
//!
//! Hand-written because no crate does what streaming extraction needs: serde_json and simd-json
//! parse whole documents (peers re-parse the growing buffer on every chunk, O(n²)), and the
//! incremental tokenizers on crates.io do not build values, track paths or report completed
//! fields and elements. This parser reads each byte once, keeps its state between chunks of any
//! size, and reports:
//!
//! - [`Event::FieldComplete`]: an object member's value is complete,
//! - [`Event::ElementComplete`]: an array element is complete (optionally detached and handed
//!   over, so a list of any length costs the same per element and keeps no memory),
//! - [`Event::RootComplete`]: the top-level value is complete,
//!
//! and [`JsonStreamParser::partial`] gives the value built so far at any time.
//!
//! ```
//! use sift_core::json_stream::{Event, JsonStreamParser};
//!
//! let mut parser = JsonStreamParser::new().detach_elements(true);
//! let mut events = Vec::new();
//! for chunk in [r#"{"value": [{"name": "Al"#, r#"ice"}, {"name": "Bob"}"#, "]}"] {
//!     parser.feed(chunk.as_bytes(), &mut events).unwrap();
//! }
//! parser.finish(&mut events).unwrap();
//! let names: Vec<String> = events
//!     .iter()
//!     .filter_map(|e| match e {
//!         Event::ElementComplete { value: Some(v), .. } => Some(v["name"].to_string()),
//!         _ => None,
//!     })
//!     .collect();
//! assert_eq!(names, [r#""Alice""#, r#""Bob""#]);
//! ```

use std::fmt;

use serde_json::{Map, Value};

use crate::schema::WRAPPER_FIELD;
use number::{parse_number, valid_number};

mod number;
mod partial;
mod string;
#[cfg(test)]
mod tests;

/// Default limit on nesting: 127 levels, as serde_json allows.
pub const DEFAULT_MAX_DEPTH: usize = 127;

/// One step of a path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// Where a value sits in the document. Displays as `items[2].name` (empty for the root).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct JsonPath(pub Vec<PathSegment>);

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSegment::Key(k) if i == 0 => write!(f, "{k}")?,
                PathSegment::Key(k) => write!(f, ".{k}")?,
                PathSegment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Something the parser finished.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An object member's value is complete (reported when field events are on).
    FieldComplete {
        /// The member's path.
        path: JsonPath,
    },
    /// An array element is complete.
    ElementComplete {
        /// The element's path.
        path: JsonPath,
        /// The element, when it was detached (see [`JsonStreamParser::detach_elements`]);
        /// otherwise it stays in the document and this is `None`.
        value: Option<Value>,
        /// The element's JSON text, when it was detached raw (see
        /// [`JsonStreamParser::detach_raw`]).
        raw: Option<String>,
    },
    /// The top-level value is complete.
    RootComplete,
}

/// Input that is not JSON: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: expected {expected}, found {found}")]
pub struct ParseError {
    /// Byte offset from the start of the whole stream.
    pub offset: usize,
    /// What would have been valid there.
    pub expected: &'static str,
    /// What was there.
    pub found: String,
}

#[derive(Debug)]
enum Container {
    Object {
        map: Map<String, Value>,
        key: Option<String>,
    },
    Array {
        items: Vec<Value>,
        count: usize,
    },
    /// Inside a raw-detached element: checked, not built.
    Skip {
        object: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Object: a key or `}`.
    FirstKey,
    /// Object: a key (after a comma).
    Key,
    /// Object: `:`.
    Colon,
    /// Array: a value or `]`.
    FirstValue,
    /// Object or array: a value.
    Value,
    /// Object or array: `,` or the closing bracket.
    CommaOrEnd,
}

#[derive(Debug)]
struct Frame {
    container: Container,
    expect: Expect,
}

impl Frame {
    fn is_object(&self) -> bool {
        matches!(
            self.container,
            Container::Object { .. } | Container::Skip { object: true }
        )
    }
}

/// The raw text of an element being detached.
#[derive(Debug)]
struct Capture {
    /// Stack depth of the array holding the element.
    depth: usize,
    buf: Vec<u8>,
    /// Offset of the element's first byte in the whole stream.
    start: usize,
    done: bool,
}

#[derive(Debug, Clone, Copy)]
enum Escape {
    None,
    Backslash,
    Unicode { digits: u8, code: u32 },
}

#[derive(Debug)]
enum Lex {
    Idle,
    Str {
        buf: Vec<u8>,
        /// Whether to keep the text (not inside a raw capture).
        collect: bool,
        is_key: bool,
        escape: Escape,
        high_surrogate: Option<u32>,
    },
    /// A number; its text is in the parser's `number` buffer.
    Num,
    Lit {
        text: &'static [u8],
        pos: usize,
    },
}

/// The parser. Feed it chunks with [`feed`](Self::feed), then call [`finish`](Self::finish).
#[derive(Debug)]
pub struct JsonStreamParser {
    stack: Vec<Frame>,
    lex: Lex,
    root: Option<Value>,
    done: bool,
    offset: usize,
    detach: bool,
    raw: bool,
    field_events: bool,
    max_depth: usize,
    capture: Option<Capture>,
    /// Where in the current chunk a capture began (set by `start_value`).
    capture_began: Option<usize>,
    /// Index in the current chunk of the byte being handled.
    cursor: usize,
    /// Text of the number being read (reused to save an allocation per number).
    number: String,
    /// Length of the last raw element, to size the next one's buffer.
    last_capture_len: usize,
    /// Whether events carry paths.
    paths: bool,
    /// The member of a top-level object whose array is the list being streamed.
    wrapper: Option<String>,
}

impl Default for JsonStreamParser {
    fn default() -> Self {
        Self::new()
    }
}

fn describe(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else if b == b' ' {
        "' '".into()
    } else {
        format!("byte 0x{b:02x}")
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl JsonStreamParser {
    /// A parser that reports field and element events and keeps every value.
    pub fn new() -> Self {
        Self {
            stack: Vec::new(),
            lex: Lex::Idle,
            root: None,
            done: false,
            offset: 0,
            detach: false,
            raw: false,
            field_events: true,
            max_depth: DEFAULT_MAX_DEPTH,
            capture: None,
            capture_began: None,
            cursor: 0,
            number: String::new(),
            last_capture_len: 64,
            paths: true,
            wrapper: Some(WRAPPER_FIELD.to_owned()),
        }
    }

    /// Hands over the elements of the list being streamed instead of keeping them: those of a
    /// top-level array, or of the array under the wrapper member of a top-level object
    /// (`{"value": [...]}`, see [`list_wrapper`](Self::list_wrapper)). An array under any
    /// other member is kept as part of the value. They arrive in [`Event::ElementComplete`]'s
    /// `value`.
    #[must_use]
    pub fn detach_elements(mut self, on: bool) -> Self {
        self.detach = on;
        self
    }

    /// Like [`detach_elements`](Self::detach_elements), but hands over each element's JSON
    /// text ([`Event::ElementComplete`]'s `raw`) instead of a built value: the element is
    /// checked byte by byte as usual but nothing inside it is allocated, which is what makes
    /// streaming a long list cheap. No field events are reported inside such elements.
    #[must_use]
    pub fn detach_raw(mut self, on: bool) -> Self {
        self.detach = on;
        self.raw = on;
        self
    }

    /// The member of a top-level object whose array is the list
    /// ([`WRAPPER_FIELD`], `value`, by default; `None`: only a top-level array is).
    #[must_use]
    pub fn list_wrapper(mut self, member: Option<&str>) -> Self {
        self.wrapper = member.map(str::to_owned);
        self
    }

    /// Whether element events carry their path (on by default). Off saves building one per
    /// element when only the elements matter; paths are then empty.
    #[must_use]
    pub fn element_paths(mut self, on: bool) -> Self {
        self.paths = on;
        self
    }

    /// Whether to report [`Event::FieldComplete`] (on by default; off saves building a path
    /// for every member).
    #[must_use]
    pub fn field_events(mut self, on: bool) -> Self {
        self.field_events = on;
        self
    }

    /// Limit on nesting depth (default [`DEFAULT_MAX_DEPTH`]).
    #[must_use]
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Whether the top-level value is complete.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The completed top-level value.
    pub fn value(&self) -> Option<&Value> {
        self.root.as_ref()
    }

    /// Takes the completed top-level value.
    pub fn into_value(self) -> Option<Value> {
        self.root
    }

    fn error<T>(&self, expected: &'static str, found: String) -> Result<T, ParseError> {
        Err(ParseError {
            offset: self.offset,
            expected,
            found,
        })
    }

    /// Feeds the next chunk; completed things are appended to `events`.
    pub fn feed(&mut self, chunk: &[u8], events: &mut Vec<Event>) -> Result<(), ParseError> {
        let mut i = 0;
        // Start, in this chunk, of the raw element being captured.
        let mut seg = self.capture.as_ref().map(|_| 0);
        while i < chunk.len() {
            if let Some(start) = seg
                && let Some(capture) = self.capture.as_mut()
                && capture.done
            {
                capture.buf.extend_from_slice(&chunk[start..i]);
                seg = None;
                self.emit_capture(events)?;
            }
            match &mut self.lex {
                Lex::Str { .. } => i = self.string_bytes(chunk, i, events)?,
                Lex::Num => {
                    let run = chunk[i..]
                        .iter()
                        .position(|&b| {
                            !(b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
                        })
                        .unwrap_or(chunk.len() - i);
                    // Only number characters, so ASCII.
                    self.number
                        .extend(chunk[i..i + run].iter().map(|&b| b as char));
                    i += run;
                    self.offset += run;
                    if i < chunk.len() {
                        self.end_number(events)?;
                    }
                }
                Lex::Lit { text, pos } => {
                    let b = chunk[i];
                    if b != text[*pos] {
                        let expected = match text[0] {
                            b't' => "'true'",
                            b'f' => "'false'",
                            _ => "'null'",
                        };
                        return self.error(expected, describe(b));
                    }
                    *pos += 1;
                    i += 1;
                    self.offset += 1;
                    if *pos == text.len() {
                        let value = match text[0] {
                            b't' => Value::Bool(true),
                            b'f' => Value::Bool(false),
                            _ => Value::Null,
                        };
                        self.lex = Lex::Idle;
                        self.complete(Some(value), events);
                    }
                }
                Lex::Idle => {
                    // Skip whitespace in bulk.
                    while i < chunk.len() && is_ws(chunk[i]) {
                        i += 1;
                        self.offset += 1;
                    }
                    if i < chunk.len() {
                        self.cursor = i;
                        self.structural(chunk[i], events)?;
                        if let Some(at) = self.capture_began.take() {
                            seg = Some(at);
                        }
                        i += 1;
                        self.offset += 1;
                    }
                }
            }
        }
        if let Some(start) = seg
            && let Some(capture) = self.capture.as_mut()
        {
            capture.buf.extend_from_slice(&chunk[start..]);
            if capture.done {
                self.emit_capture(events)?;
            }
        }
        Ok(())
    }

    /// Hands over a completed raw element.
    fn emit_capture(&mut self, events: &mut Vec<Event>) -> Result<(), ParseError> {
        let Some(capture) = self.capture.take() else {
            return Ok(());
        };
        let start = capture.start;
        self.last_capture_len = capture.buf.len().next_power_of_two().max(64);
        let text = String::from_utf8(capture.buf).map_err(|e| ParseError {
            offset: start + e.utf8_error().valid_up_to(),
            expected: "UTF-8 text",
            found: "invalid UTF-8".into(),
        })?;
        let path = if self.paths {
            self.current_path_of_last_element()
        } else {
            JsonPath::default()
        };
        events.push(Event::ElementComplete {
            path,
            value: None,
            raw: Some(text),
        });
        Ok(())
    }

    /// Path of the element that just completed in the top (array) frame.
    fn current_path_of_last_element(&self) -> JsonPath {
        let mut path = self.current_path();
        if let Some(PathSegment::Index(n)) = path.0.last_mut() {
            *n = n.saturating_sub(1);
        }
        path
    }

    /// Ends the input: a number at the very end is completed; anything unfinished is an error.
    pub fn finish(&mut self, events: &mut Vec<Event>) -> Result<(), ParseError> {
        if matches!(self.lex, Lex::Num) {
            self.end_number(events)?;
        }
        if self.done {
            return Ok(());
        }
        let expected = match (&self.lex, self.stack.last()) {
            (Lex::Str { .. }, _) => "'\"' closing the string",
            (Lex::Lit { .. }, _) => "the rest of a literal",
            (_, None) => "a JSON value",
            (_, Some(f)) => expectation(f),
        };
        self.error(expected, "end of input".into())
    }

    fn structural(&mut self, b: u8, events: &mut Vec<Event>) -> Result<(), ParseError> {
        if self.done {
            return self.error("end of input", describe(b));
        }
        let expect = match self.stack.last() {
            None => Expect::Value,
            Some(f) => f.expect,
        };
        match expect {
            Expect::Value | Expect::FirstValue => {
                if expect == Expect::FirstValue && b == b']' {
                    return self.close(events);
                }
                self.start_value(b, expect)
            }
            Expect::FirstKey | Expect::Key => match b {
                b'"' => {
                    self.lex = Lex::Str {
                        buf: Vec::new(),
                        collect: self.capture.is_none(),
                        is_key: true,
                        escape: Escape::None,
                        high_surrogate: None,
                    };
                    Ok(())
                }
                b'}' if expect == Expect::FirstKey => self.close(events),
                _ => self.error(
                    if expect == Expect::FirstKey {
                        "a string key or '}'"
                    } else {
                        "a string key"
                    },
                    describe(b),
                ),
            },
            Expect::Colon => {
                if b == b':' {
                    self.set_expect(Expect::Value);
                    Ok(())
                } else {
                    self.error("':'", describe(b))
                }
            }
            Expect::CommaOrEnd => {
                let is_object = self.stack.last().is_some_and(Frame::is_object);
                match (b, is_object) {
                    (b',', true) => {
                        self.set_expect(Expect::Key);
                        Ok(())
                    }
                    (b',', false) => {
                        self.set_expect(Expect::Value);
                        Ok(())
                    }
                    (b'}', true) | (b']', false) => self.close(events),
                    (_, true) => self.error("',' or '}'", describe(b)),
                    (_, false) => self.error("',' or ']'", describe(b)),
                }
            }
        }
    }

    fn set_expect(&mut self, expect: Expect) {
        if let Some(f) = self.stack.last_mut() {
            f.expect = expect;
        }
    }

    fn start_value(&mut self, b: u8, expect: Expect) -> Result<(), ParseError> {
        if self.raw && self.capture.is_none() && self.detaching_here() {
            self.capture = Some(Capture {
                depth: self.stack.len(),
                buf: Vec::with_capacity(self.last_capture_len),
                start: self.offset,
                done: false,
            });
            self.capture_began = Some(self.cursor);
        }
        match b {
            b'{' | b'[' => {
                if self.stack.len() >= self.max_depth {
                    return self.error("less nesting", format!("depth over {}", self.max_depth));
                }
                let container = if self.capture.is_some() {
                    Container::Skip { object: b == b'{' }
                } else if b == b'{' {
                    Container::Object {
                        map: Map::new(),
                        key: None,
                    }
                } else {
                    Container::Array {
                        items: Vec::new(),
                        count: 0,
                    }
                };
                self.stack.push(Frame {
                    container,
                    expect: if b == b'{' {
                        Expect::FirstKey
                    } else {
                        Expect::FirstValue
                    },
                });
            }
            b'"' => {
                self.lex = Lex::Str {
                    buf: Vec::new(),
                    collect: self.capture.is_none(),
                    is_key: false,
                    escape: Escape::None,
                    high_surrogate: None,
                };
            }
            b'-' | b'0'..=b'9' => {
                self.number.clear();
                self.number.push(b as char);
                self.lex = Lex::Num;
            }
            b't' => {
                self.lex = Lex::Lit {
                    text: b"true",
                    pos: 1,
                }
            }
            b'f' => {
                self.lex = Lex::Lit {
                    text: b"false",
                    pos: 1,
                }
            }
            b'n' => {
                self.lex = Lex::Lit {
                    text: b"null",
                    pos: 1,
                }
            }
            _ => {
                return self.error(
                    if expect == Expect::FirstValue {
                        "a JSON value or ']'"
                    } else {
                        "a JSON value"
                    },
                    describe(b),
                );
            }
        }
        Ok(())
    }

    fn close(&mut self, events: &mut Vec<Event>) -> Result<(), ParseError> {
        let Some(frame) = self.stack.pop() else {
            return self.error("a JSON value", "a closing bracket".into());
        };
        let value = match frame.container {
            Container::Object { map, .. } => Some(Value::Object(map)),
            Container::Array { items, .. } => Some(Value::Array(items)),
            Container::Skip { .. } => None,
        };
        self.complete(value, events);
        Ok(())
    }

    fn end_number(&mut self, events: &mut Vec<Event>) -> Result<(), ParseError> {
        if !matches!(std::mem::replace(&mut self.lex, Lex::Idle), Lex::Num) {
            return Ok(());
        }
        let text = &self.number;
        let number = if self.capture.is_some() {
            // Inside a raw element only the grammar matters.
            valid_number(text).then_some(None)
        } else {
            parse_number(text).map(Some)
        };
        match number {
            Some(n) => {
                self.complete(n.map(Value::Number), events);
                Ok(())
            }
            None => Err(ParseError {
                offset: self.offset - self.number.len(),
                expected: "a valid number",
                found: format!("'{}'", self.number),
            }),
        }
    }

    /// The path of the value about to complete inside the current frames.
    fn current_path(&self) -> JsonPath {
        JsonPath(
            self.stack
                .iter()
                .map(|f| match &f.container {
                    Container::Object { key, .. } => {
                        PathSegment::Key(key.clone().unwrap_or_default())
                    }
                    Container::Array { count, .. } => PathSegment::Index(*count),
                    Container::Skip { .. } => PathSegment::Index(0),
                })
                .collect(),
        )
    }

    /// Whether a value starting or ending now is an element of the list being detached.
    fn detaching_here(&self) -> bool {
        self.detach
            && matches!(
                self.stack.last().map(|f| &f.container),
                Some(Container::Array { .. })
            )
            && match self.stack.len() {
                1 => true,
                2 => match (&self.stack[0].container, self.wrapper.as_deref()) {
                    (Container::Object { key: Some(key), .. }, Some(wrapper)) => key == wrapper,
                    _ => false,
                },
                _ => false,
            }
    }

    /// A value completed: `None` inside a raw capture, where nothing is built.
    fn complete(&mut self, value: Option<Value>, events: &mut Vec<Event>) {
        if let Some(capture) = self.capture.as_mut() {
            if self.stack.len() == capture.depth {
                // The captured element itself is complete; its bytes are handed over once
                // `feed` has copied them.
                capture.done = true;
                if let Some(Frame {
                    container: Container::Array { count, .. },
                    expect,
                }) = self.stack.last_mut()
                {
                    *count += 1;
                    *expect = Expect::CommaOrEnd;
                }
            } else if let Some(frame) = self.stack.last_mut() {
                frame.expect = Expect::CommaOrEnd;
            }
            return;
        }
        let Some(value) = value else {
            return;
        };
        let detach = self.detaching_here();
        let want_path = match self.stack.last() {
            None => false,
            Some(Frame {
                container: Container::Object { .. },
                ..
            }) => self.field_events,
            Some(_) => detach || self.field_events,
        };
        let path = match self.stack.last() {
            _ if !want_path => None,
            Some(Frame {
                container: Container::Array { .. },
                ..
            }) if !self.paths => Some(JsonPath::default()),
            _ => Some(self.current_path()),
        };
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
                self.done = true;
                events.push(Event::RootComplete);
            }
            Some(frame) => {
                frame.expect = Expect::CommaOrEnd;
                match &mut frame.container {
                    Container::Object { map, key } => {
                        if let Some(k) = key.take() {
                            map.insert(k, value);
                        }
                        if let Some(path) = path {
                            events.push(Event::FieldComplete { path });
                        }
                    }
                    Container::Array { items, count } => {
                        *count += 1;
                        let value = if detach {
                            Some(value)
                        } else {
                            items.push(value);
                            None
                        };
                        if let Some(path) = path {
                            events.push(Event::ElementComplete {
                                path,
                                value,
                                raw: None,
                            });
                        }
                    }
                    Container::Skip { .. } => {}
                }
            }
        }
    }
}

fn expectation(frame: &Frame) -> &'static str {
    let is_object = frame.is_object();
    match (frame.expect, is_object) {
        (Expect::FirstKey, _) => "a string key or '}'",
        (Expect::Key, _) => "a string key",
        (Expect::Colon, _) => "':'",
        (Expect::FirstValue, _) => "a JSON value or ']'",
        (Expect::Value, _) => "a JSON value",
        (Expect::CommaOrEnd, true) => "',' or '}'",
        (Expect::CommaOrEnd, false) => "',' or ']'",
    }
}
