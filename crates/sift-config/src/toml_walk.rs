//! Reading a TOML document key by key, keeping every key's place.
//!
//! serde's derive stops at the first problem; a config file should be checked whole, every
//! unknown key and wrong type reported with its line and column at once. So the document is
//! parsed into toml's spanned tree and each section is read through [`Section`], which
//! records what it was asked for and reports the keys nobody asked for.

use std::ops::Range;

use serde_json::{Map, Number, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem, at a byte range of the file (when it has one).
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) span: Option<Range<usize>>,
    pub(crate) message: String,
}

/// Collected problems.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.0.push(Problem {
            span: Some(span),
            message: message.into(),
        });
    }

    pub(crate) fn push(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.0.push(Problem {
            span,
            message: message.into(),
        });
    }
}

/// A table being read: `path` names it in messages (`extractors.invoice`).
pub(crate) struct Section<'a, 'i> {
    table: &'a DeTable<'i>,
    pub(crate) path: String,
    pub(crate) span: Range<usize>,
    known: Vec<&'static str>,
}

impl<'a, 'i> Section<'a, 'i> {
    pub(crate) fn new(table: &'a DeTable<'i>, path: impl Into<String>, span: Range<usize>) -> Self {
        Self {
            table,
            path: path.into(),
            span,
            known: Vec::new(),
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value of `key`, marking it known.
    pub(crate) fn value(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.known.push(key);
        self.table.get(key)
    }

    /// A string, or a problem if `key` holds something else.
    pub(crate) fn string(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<Spanned<String>> {
        let v = self.value(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
            _ => {
                problems.at(
                    v.span(),
                    format!("`{}` must be a string", self.key_path(key)),
                );
                None
            }
        }
    }

    /// A boolean.
    pub(crate) fn boolean(&mut self, key: &'static str, problems: &mut Problems) -> Option<bool> {
        let v = self.value(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                problems.at(
                    v.span(),
                    format!("`{}` must be true or false", self.key_path(key)),
                );
                None
            }
        }
    }

    /// A non-negative integer that fits `u32`.
    pub(crate) fn count(&mut self, key: &'static str, problems: &mut Problems) -> Option<u32> {
        let v = self.value(key)?;
        match to_json(v.get_ref()) {
            Ok(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)) => {
                n.as_u64().and_then(|n| u32::try_from(n).ok())
            }
            _ => {
                problems.at(
                    v.span(),
                    format!(
                        "`{}` must be a whole number of 0 or more",
                        self.key_path(key)
                    ),
                );
                None
            }
        }
    }

    /// A number (integer or float).
    pub(crate) fn number(&mut self, key: &'static str, problems: &mut Problems) -> Option<f64> {
        let v = self.value(key)?;
        match to_json(v.get_ref()) {
            Ok(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()),
            _ => {
                problems.at(
                    v.span(),
                    format!("`{}` must be a number", self.key_path(key)),
                );
                None
            }
        }
    }

    /// A sub-table.
    pub(crate) fn table(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<Section<'a, 'i>> {
        let v = self.value(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(Section::new(t, self.key_path(key), v.span())),
            _ => {
                problems.at(
                    v.span(),
                    format!("`{}` must be a table", self.key_path(key)),
                );
                None
            }
        }
    }

    /// Every entry of this table as a sub-table, with its name and the name's place.
    pub(crate) fn entries(
        &self,
        problems: &mut Problems,
    ) -> Vec<(Spanned<String>, Section<'a, 'i>)> {
        let mut out = Vec::new();
        for (key, value) in self.table.iter() {
            let name = key.get_ref().to_string();
            match value.get_ref() {
                DeValue::Table(t) => out.push((
                    Spanned::new(key.span(), name.clone()),
                    Section::new(t, self.key_path(&name), value.span()),
                )),
                _ => problems.at(
                    value.span(),
                    format!("`{}` must be a table", self.key_path(&name)),
                ),
            }
        }
        out
    }

    /// Every string in this table and the tables under it, by its dotted key (`a.b = "x"`
    /// and `"a.b" = "x"` both name `a.b`), with the value's place; a problem for each value
    /// that is not a string or a table.
    pub(crate) fn strings(&self, problems: &mut Problems) -> Vec<(String, Spanned<String>)> {
        fn walk(
            table: &DeTable<'_>,
            prefix: &str,
            section: &str,
            problems: &mut Problems,
            out: &mut Vec<(String, Spanned<String>)>,
        ) {
            for (key, value) in table.iter() {
                let name = if prefix.is_empty() {
                    key.get_ref().to_string()
                } else {
                    format!("{prefix}.{}", key.get_ref())
                };
                match value.get_ref() {
                    DeValue::String(s) => {
                        out.push((name, Spanned::new(value.span(), s.to_string())));
                    }
                    DeValue::Table(t) => walk(t, &name, section, problems, out),
                    _ => problems.at(value.span(), format!("`{section}.{name}` must be a string")),
                }
            }
        }
        let mut out = Vec::new();
        walk(self.table, "", &self.path, problems, &mut out);
        out
    }

    /// Reports every key that was not asked for.
    pub(crate) fn finish(self, problems: &mut Problems) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref();
            if !self.known.iter().any(|k| *k == name.as_ref()) {
                // Each key once, in the order they were asked for.
                let mut expected: Vec<&str> = Vec::new();
                for k in &self.known {
                    if !expected.contains(k) {
                        expected.push(k);
                    }
                }
                problems.at(
                    key.span(),
                    format!(
                        "unknown key `{}` (expected one of: {})",
                        self.key_path(name),
                        expected.join(", ")
                    ),
                );
            }
        }
    }
}

/// A TOML value as JSON (datetimes become strings).
pub(crate) fn to_json(value: &DeValue<'_>) -> Result<Value, String> {
    Ok(match value {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let digits = digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0o"))
                .or_else(|| digits.strip_prefix("0b"))
                .unwrap_or(&digits);
            let n = i64::from_str_radix(digits, i.radix())
                .map_err(|e| format!("invalid integer `{}`: {e}", i.as_str()))?;
            Value::Number(n.into())
        }
        DeValue::Float(f) => {
            let x: f64 = f
                .as_str()
                .replace('_', "")
                .parse()
                .map_err(|e| format!("invalid number `{}`: {e}", f.as_str()))?;
            Value::Number(
                Number::from_f64(x)
                    .ok_or_else(|| format!("`{}` is not a finite number", f.as_str()))?,
            )
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| to_json(v.get_ref()))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => {
            let mut map = Map::new();
            for (k, v) in t.iter() {
                map.insert(k.get_ref().to_string(), to_json(v.get_ref())?);
            }
            Value::Object(map)
        }
    })
}

/// Where each line of a text starts, so many offsets are placed with a binary search each
/// rather than a scan from the start (a file with thousands of problems reports them in
/// linear time).
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    /// The 1-based line and column (in characters) of the byte `offset`.
    pub(crate) fn place(&self, offset: usize) -> (usize, usize) {
        let offset = self.text.floor_char_boundary(offset.min(self.text.len()));
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (line, column)
    }
}
