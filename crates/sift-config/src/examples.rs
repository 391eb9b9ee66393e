//! `[[extractors.NAME.examples]]`: worked examples shown to the model before each request,
//! checked when the config is read. Each is a table holding the input's fields and `output`,
//! the answer that input should get:
//!
//! ```toml
//! [[extractors.contact.examples]]
//! text = "Write to Ana Ruiz: ana@ruiz.example"
//! output = { name = "Ana Ruiz", email = "ana@ruiz.example" }
//! ```
//!
//! The input must fit the input schema, the output the output schema, and the output must be
//! grounded in the input by the extractor's own rules (an example that invents a value would
//! teach the model to invent); each problem is reported at the value it concerns.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::{Map, Value};
use sift_core::grounding::{Policy, Sources};
use sift_core::json_stream::{JsonPath, PathSegment};
use sift_core::{Example, Schema};
use toml::Spanned;
use toml::de::DeValue;

use crate::toml_walk::{Problems, to_json};

/// What the examples are checked against.
pub(crate) struct Checks<'a> {
    /// `extractors.NAME`, for messages.
    pub(crate) path: &'a str,
    pub(crate) input: &'a Schema,
    pub(crate) output: &'a Schema,
    pub(crate) grounding: &'a BTreeMap<String, Policy>,
    /// Renders the prompt for an input.
    pub(crate) render: &'a dyn Fn(&Value) -> Result<String, String>,
}

/// Reads `value` (the `examples` key: an array of tables), recording every problem; the
/// examples that pass, their prompts rendered.
pub(crate) fn read(
    value: &Spanned<DeValue<'_>>,
    checks: &Checks<'_>,
    problems: &mut Problems,
) -> Vec<Example> {
    let path = checks.path;
    let DeValue::Array(items) = value.get_ref() else {
        problems.at(
            value.span(),
            format!(
                "`{path}.examples` must be an array of tables (`[[{path}.examples]]`), each with \
                 the input's fields and `output`"
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let here = format!("{path}.examples[{i}]");
        let DeValue::Table(table) = item.get_ref() else {
            problems.at(
                item.span(),
                format!("`{here}` must be a table with the input's fields and `output`"),
            );
            continue;
        };
        let before = problems.0.len();
        let mut input = Map::new();
        let mut output = None;
        for (key, v) in table.iter() {
            let json = match to_json(v.get_ref()) {
                Ok(j) => j,
                Err(e) => {
                    problems.at(v.span(), format!("`{here}.{}`: {e}", key.get_ref()));
                    continue;
                }
            };
            if key.get_ref() == "output" {
                output = Some((v, json));
            } else {
                input.insert(key.get_ref().to_string(), json);
            }
        }
        let input = Value::Object(input);
        let Some((output_at, output)) = output else {
            problems.at(
                item.span(),
                format!("`{here}` needs an `output`: the answer its input should get"),
            );
            continue;
        };
        for (schema, value, at, key, which) in [
            (checks.input, &input, item, "", "input"),
            (checks.output, &output, output_at, ".output", "output"),
        ] {
            for v in schema.violations(value) {
                let (span, shown) = place(at, &v.location);
                problems.at(
                    span,
                    format!(
                        "`{here}{key}{shown}` does not fit the {which} schema: {}",
                        v.message
                    ),
                );
            }
        }
        if problems.0.len() > before {
            continue;
        }
        let sources = Sources::of_input(&input).with_policies(checks.grounding);
        for u in sources.ground(&output, checks.output.value()).ungrounded {
            let location = sift_core::pointer_segments(&u.pointer, &output);
            let (span, shown) = place(output_at, &location);
            problems.at(
                span,
                format!(
                    "`{here}.output{shown}`: {} (an example that is not true to its input \
                     teaches the model to invent: copy the value from the input, or make the \
                     field `free` in [{path}.grounding])",
                    u.finding("the example's input")
                ),
            );
        }
        if problems.0.len() > before {
            continue;
        }
        match (checks.render)(&input) {
            Ok(prompt) => out.push(Example::new(prompt, output)),
            Err(e) => problems.at(
                item.span(),
                format!("`{here}`: the prompt cannot be rendered for this input: {e}"),
            ),
        }
    }
    out
}

/// The place in the file of the value at `location` under `root`, or of the nearest value
/// above it that the file has (a missing property is reported at its object), and the
/// location as written in messages (`.seller.name`, `[2]`).
fn place(root: &Spanned<DeValue<'_>>, location: &[PathSegment]) -> (Range<usize>, String) {
    let mut at = root;
    for segment in location {
        let next = match (at.get_ref(), segment) {
            (DeValue::Table(t), PathSegment::Key(k)) => t.get(k.as_str()),
            (DeValue::Array(a), PathSegment::Index(i)) => a.get(*i),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => break,
        }
    }
    let shown = JsonPath(location.to_vec()).to_string();
    let shown = match shown.as_str() {
        "" => String::new(),
        s if s.starts_with('[') => s.to_owned(),
        s => format!(".{s}"),
    };
    (at.span(), shown)
}
