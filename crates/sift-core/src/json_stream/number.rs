//! JSON numbers: the grammar checked by hand, the value read as serde_json reads it.

use serde_json::Number;

/// Whether `text` fits the JSON number grammar and, as serde_json requires, is finite.
pub(super) fn valid_number(text: &str) -> bool {
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
pub(super) fn parse_number(text: &str) -> Option<Number> {
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
