//! The string lexer: plain runs copied in bulk, escapes and surrogate pairs decoded, keys and
//! values handed to the structure once their closing quote arrives.

use serde_json::Value;

use super::{Container, Escape, Event, Expect, Frame, JsonStreamParser, Lex, ParseError, describe};

impl JsonStreamParser {
    /// Consumes string bytes from `chunk[i..]`; returns where it stopped.
    pub(super) fn string_bytes(
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
}
