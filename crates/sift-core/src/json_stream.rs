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

use serde_json::{Map, Number, Value};

use crate::schema::WRAPPER_FIELD;

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

    /// Consumes string bytes from `chunk[i..]`; returns where it stopped.
    fn string_bytes(
        &mut self,
        chunk: &[u8],
        mut i: usize,
        events: &mut Vec<Event>,
    ) -> Result<usize, ParseError> {
        let start_offset = self.offset;
        let Lex::Str {
            buf,
            collect,
            is_key,
            escape,
            high_surrogate,
        } = &mut self.lex
        else {
            return Ok(i);
        };
        let begin = i;
        let fail = |at: usize, expected: &'static str, found: String| ParseError {
            offset: start_offset + (at - begin),
            expected,
            found,
        };
        while i < chunk.len() {
            match *escape {
                Escape::None => {
                    // Copy the plain run in bulk.
                    let run = chunk[i..]
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                        .unwrap_or(chunk.len() - i);
                    if run > 0 {
                        if high_surrogate.is_some() {
                            return Err(fail(i, "'\\u' with a low surrogate", describe(chunk[i])));
                        }
                        if *collect {
                            buf.extend_from_slice(&chunk[i..i + run]);
                        }
                        i += run;
                        continue;
                    }
                    let b = chunk[i];
                    match b {
                        b'"' => {
                            if high_surrogate.is_some() {
                                return Err(fail(i, "'\\u' with a low surrogate", describe(b)));
                            }
                            let bytes = std::mem::take(buf);
                            let is_key = *is_key;
                            let collect = *collect;
                            i += 1;
                            self.offset = start_offset + (i - begin);
                            if !collect {
                                // Inside a raw capture: UTF-8 is checked when it is handed over.
                                self.lex = Lex::Idle;
                                if is_key {
                                    if let Some(frame) = self.stack.last_mut() {
                                        frame.expect = Expect::Colon;
                                    }
                                } else {
                                    self.complete(None, events);
                                }
                                return Ok(i);
                            }
                            let text = String::from_utf8(bytes).map_err(|e| ParseError {
                                offset: self.offset,
                                expected: "UTF-8 text in the string",
                                found: format!(
                                    "invalid UTF-8 after {} bytes of it",
                                    e.utf8_error().valid_up_to()
                                ),
                            })?;
                            self.lex = Lex::Idle;
                            if is_key {
                                if let Some(Frame {
                                    container: Container::Object { key, .. },
                                    expect,
                                }) = self.stack.last_mut()
                                {
                                    *key = Some(text);
                                    *expect = Expect::Colon;
                                }
                            } else {
                                self.complete(Some(Value::String(text)), events);
                            }
                            return Ok(i);
                        }
                        b'\\' => {
                            *escape = Escape::Backslash;
                            i += 1;
                        }
                        _ => {
                            return Err(fail(i, "an escaped control character", describe(b)));
                        }
                    }
                }
                Escape::Backslash => {
                    let b = chunk[i];
                    if high_surrogate.is_some() && b != b'u' {
                        return Err(fail(i, "'u' for a low surrogate", describe(b)));
                    }
                    let plain = match b {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        _ => return Err(fail(i, "a valid escape", describe(b))),
                    };
                    match plain {
                        Some(c) => {
                            if *collect {
                                buf.push(c);
                            }
                            *escape = Escape::None;
                        }
                        None => *escape = Escape::Unicode { digits: 0, code: 0 },
                    }
                    i += 1;
                }
                Escape::Unicode { digits, code } => {
                    let b = chunk[i];
                    let Some(d) = (b as char).to_digit(16) else {
                        return Err(fail(i, "a hex digit", describe(b)));
                    };
                    let code = code * 16 + d;
                    i += 1;
                    if digits < 3 {
                        *escape = Escape::Unicode {
                            digits: digits + 1,
                            code,
                        };
                        continue;
                    }
                    *escape = Escape::None;
                    let c = match (*high_surrogate, code) {
                        (Some(high), 0xDC00..=0xDFFF) => {
                            *high_surrogate = None;
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00))
                        }
                        (Some(_), _) => {
                            return Err(fail(i, "a low surrogate", format!("\\u{code:04x}")));
                        }
                        (None, 0xD800..=0xDBFF) => {
                            *high_surrogate = Some(code);
                            continue;
                        }
                        (None, 0xDC00..=0xDFFF) => {
                            return Err(fail(
                                i,
                                "a high surrogate first",
                                format!("lone \\u{code:04x}"),
                            ));
                        }
                        (None, _) => char::from_u32(code),
                    };
                    let Some(c) = c else {
                        return Err(fail(i, "a valid code point", format!("\\u{code:04x}")));
                    };
                    if *collect {
                        let mut tmp = [0u8; 4];
                        buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                    }
                }
            }
        }
        self.offset = start_offset + (i - begin);
        Ok(i)
    }

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

/// Whether `text` fits the JSON number grammar and, as serde_json requires, is finite.
fn valid_number(text: &str) -> bool {
    match number_kind(text) {
        None => false,
        // Only an exponent or a very long number can overflow a float: parse those.
        Some(_) if text.len() > 300 || text.contains(['e', 'E']) => parse_number(text).is_some(),
        Some(_) => true,
    }
}

/// Checks the grammar `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; `Some(true)` for an
/// integer, `Some(false)` for a float.
fn number_kind(text: &str) -> Option<bool> {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_len = i - int_start;
    if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
        return None;
    }
    let mut integer = true;
    if i < b.len() && b[i] == b'.' {
        integer = false;
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return None;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        integer = false;
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    Some(integer)
}

/// Parses a JSON number as serde_json does.
fn parse_number(text: &str) -> Option<Number> {
    let integer = number_kind(text)?;
    if integer {
        if let Ok(u) = text.parse::<u64>() {
            return Some(Number::from(u));
        }
        // `-0` is left to serde_json, which reads it as the float -0.0.
        if let Ok(n) = text.parse::<i64>().map(Number::from)
            && n.as_i64() != Some(0)
        {
            return Some(n);
        }
    }
    // Floats, and integers too large for 64 bits, as serde_json reads them.
    serde_json::from_str::<Number>(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_in(chunks: &[&str]) -> (Result<Option<Value>, ParseError>, Vec<Event>) {
        let mut p = JsonStreamParser::new();
        let mut events = Vec::new();
        for c in chunks {
            if let Err(e) = p.feed(c.as_bytes(), &mut events) {
                return (Err(e), events);
            }
        }
        let r = p.finish(&mut events).map(|()| p.into_value());
        (r, events)
    }

    fn bytewise(text: &str) -> Result<Option<Value>, ParseError> {
        let mut p = JsonStreamParser::new();
        let mut events = Vec::new();
        for b in text.as_bytes() {
            p.feed(std::slice::from_ref(b), &mut events)?;
        }
        p.finish(&mut events)?;
        Ok(p.into_value())
    }

    #[test]
    fn escapes_and_surrogates_split_anywhere() {
        let text = r#"{"a\"b": "x\\y\/z\n\t\u00e9 \ud83d\ude00 }]{[", "n": -12.5e+3, "t": [true, false, null]}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(bytewise(text).unwrap(), Some(expected.clone()));
        for split in 0..text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(
                parse_in(&[a, b]).0.unwrap(),
                Some(expected.clone()),
                "split at {split}"
            );
        }
    }

    #[test]
    fn events_report_fields_and_elements_with_paths() {
        let (r, events) = parse_in(&[r#"{"items": [{"name": "a"}, 2], "k": null}"#]);
        assert!(r.is_ok());
        let shown: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::FieldComplete { path } => format!("field {path}"),
                Event::ElementComplete { path, .. } => format!("element {path}"),
                Event::RootComplete => "root".into(),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "field items[0].name",
                "element items[0]",
                "element items[1]",
                "field items",
                "field k",
                "root"
            ]
        );
    }

    #[test]
    fn detached_elements_are_handed_over() {
        let mut p = JsonStreamParser::new()
            .detach_elements(true)
            .field_events(false);
        let mut events = Vec::new();
        p.feed(br#"[{"a": [1, 2]}, 3]"#, &mut events).unwrap();
        p.finish(&mut events).unwrap();
        assert_eq!(
            events,
            [
                Event::ElementComplete {
                    path: JsonPath(vec![PathSegment::Index(0)]),
                    value: Some(json!({"a": [1, 2]})),
                    raw: None,
                },
                Event::ElementComplete {
                    path: JsonPath(vec![PathSegment::Index(1)]),
                    value: Some(json!(3)),
                    raw: None,
                },
                Event::RootComplete,
            ]
        );
        assert_eq!(p.into_value(), Some(json!([])));
    }

    #[test]
    fn raw_elements_keep_their_exact_text_across_chunks() {
        let text =
            r#"{"value": [ {"a": "x\"}", "n": [1, 2.5e3]} , "s\u00e9", 7, true, null ], "k": 1}"#;
        for size in [1, 2, 3, 5, 64] {
            let mut p = JsonStreamParser::new().detach_raw(true);
            let mut events = Vec::new();
            for piece in text.as_bytes().chunks(size) {
                p.feed(piece, &mut events).unwrap();
            }
            p.finish(&mut events).unwrap();
            let raws: Vec<(String, String)> = events
                .iter()
                .filter_map(|e| match e {
                    Event::ElementComplete {
                        path, raw: Some(r), ..
                    } => Some((path.to_string(), r.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(
                raws,
                [
                    (
                        "value[0]".into(),
                        r#"{"a": "x\"}", "n": [1, 2.5e3]}"#.into()
                    ),
                    ("value[1]".into(), r#""s\u00e9""#.into()),
                    ("value[2]".into(), "7".into()),
                    ("value[3]".into(), "true".into()),
                    ("value[4]".into(), "null".into()),
                ],
                "chunks of {size}"
            );
            assert_eq!(p.into_value(), Some(json!({"value": [], "k": 1})));
        }
    }

    #[test]
    fn raw_elements_are_still_checked() {
        let bad: [&[u8]; 5] = [
            br#"[{"a" 1}]"#,
            br#"[{"a": 01}]"#,
            br#"["\x"]"#,
            b"[\"\xff\"]",
            br#"[[1,]]"#,
        ];
        for text in bad {
            let mut p = JsonStreamParser::new().detach_raw(true);
            let mut events = Vec::new();
            let r = p
                .feed(text, &mut events)
                .and_then(|()| p.finish(&mut events));
            assert!(r.is_err(), "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn partial_values_grow() {
        let mut p = JsonStreamParser::new();
        let mut events = Vec::new();
        p.feed(br#"{"name": "Ali"#, &mut events).unwrap();
        assert_eq!(p.partial(), Some(json!({"name": "Ali"})));
        p.feed(br#"ce", "age": 3"#, &mut events).unwrap();
        assert_eq!(
            p.partial(),
            Some(json!({"name": "Alice"})),
            "number not yet complete"
        );
        p.feed(br#"2, "tags": ["x"#, &mut events).unwrap();
        assert_eq!(
            p.partial(),
            Some(json!({"name": "Alice", "age": 32, "tags": ["x"]}))
        );
    }

    #[test]
    fn top_level_scalars() {
        assert_eq!(parse_in(&["4", "2"]).0.unwrap(), Some(json!(42)));
        assert_eq!(parse_in(&[" \"s\" "]).0.unwrap(), Some(json!("s")));
        assert_eq!(parse_in(&["nu", "ll"]).0.unwrap(), Some(json!(null)));
        assert_eq!(
            parse_in(&["18446744073709551615"]).0.unwrap(),
            Some(json!(18446744073709551615u64))
        );
    }

    #[test]
    fn malformed_input_is_rejected_with_offset_and_expectation() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "a JSON value"),
            ("{", 1, "a string key or '}'"),
            ("{\"a\" 1}", 5, "':'"),
            ("{\"a\": 1,}", 8, "a string key"),
            ("[1 2]", 3, "',' or ']'"),
            ("[1,]", 3, "a JSON value"),
            ("{\"a\": tru}", 9, "'true'"),
            ("01", 0, "a valid number"),
            ("-", 0, "a valid number"),
            ("1.", 0, "a valid number"),
            ("[1e]", 1, "a valid number"),
            ("\"abc", 4, "'\"' closing the string"),
            ("\"a\\x\"", 3, "a valid escape"),
            ("\"\\u12g4\"", 5, "a hex digit"),
            ("\"\\ud800\"", 7, "'\\u' with a low surrogate"),
            ("\"\\udc00\"", 7, "a high surrogate first"),
            ("\"tab\there\"", 4, "an escaped control character"),
            ("{} x", 3, "end of input"),
            ("]", 0, "a JSON value"),
            ("{\"a\": 1]", 7, "',' or '}'"),
        ];
        for (text, offset, expected) in cases {
            let err = parse_in(&[text]).0.unwrap_err();
            assert_eq!(
                (err.offset, err.expected),
                (*offset, *expected),
                "{text:?}: {err}"
            );
            assert!(
                serde_json::from_str::<Value>(text).is_err(),
                "{text:?} is invalid"
            );
            let bytewise = bytewise(text).unwrap_err();
            assert_eq!(bytewise.expected, err.expected, "{text:?} fed bytewise");
        }
    }

    #[test]
    fn invalid_utf8_in_a_string_is_an_error() {
        let mut p = JsonStreamParser::new();
        let mut events = Vec::new();
        let err = p.feed(b"[\"ab\xff\"]", &mut events).unwrap_err();
        assert_eq!(err.expected, "UTF-8 text in the string");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "[".repeat(200);
        let err = parse_in(&[&deep]).0.unwrap_err();
        assert_eq!(err.expected, "less nesting");
        assert_eq!(err.offset, 127);
        for depth in [127, 128] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(
                parse_in(&[&text]).0.is_ok(),
                serde_json::from_str::<Value>(&text).is_ok(),
                "depth {depth} as serde_json"
            );
        }
    }
}
