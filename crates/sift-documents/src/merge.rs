//! Merging the answers of a document's chunks into one value, by these rules:
//!
//! - **Objects** merge field by field, each field by the rules for its value.
//! - **Arrays** are the chunks' elements concatenated in document order. An element is
//!   dropped as a duplicate when its grounded spans are the same as a kept element's (the
//!   same words found twice), or when it equals an element of the chunk before and was
//!   found in (or cannot be placed outside) the overlap the two chunks share. Each element
//!   is kept whole, as its chunk read it.
//! - **Other values** come from the first chunk, in document order, where the value is
//!   grounded (found in the text). When chunks ground different values, the first is taken
//!   and every candidate is reported as a [`Conflict`], never dropped silently. With no
//!   grounded candidate, the first chunk's non-null value is taken (a free field such as a
//!   summary or a category).
//!
//! Spans are in document offsets (see [`Part::spans`]) and are re-keyed to the merged
//! value's pointers.

use serde::Serialize;
use serde_json::{Map, Value};
use sift_core::grounding::{Span, Spans};

/// One chunk's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The chunk's index.
    pub chunk: usize,
    /// Where the chunk starts in the document.
    pub start: usize,
    /// Where the chunk before it ends (the overlap is `start..previous_end`).
    pub previous_end: usize,
    /// The answer.
    pub value: Value,
    /// Where its grounded values were found, in document offsets.
    pub spans: Spans,
}

/// Chunks that grounded different values for one field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    /// The field's JSON pointer in the merged value.
    pub pointer: String,
    /// The value taken.
    pub chosen: Value,
    /// Every grounded candidate, in document order.
    pub candidates: Vec<Candidate>,
}

/// One grounded value a chunk gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The value.
    pub value: Value,
    /// The chunk it came from.
    pub chunk: usize,
    /// Where it was found.
    pub spans: Vec<Span>,
}

/// The merged answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Merged {
    /// The value.
    pub value: Value,
    /// Its spans, by pointer into `value`.
    pub spans: Spans,
    /// Fields where chunks disagreed.
    pub conflicts: Vec<Conflict>,
}

/// Merges `parts` (in document order) by the rules above.
pub fn merge(parts: &[Part]) -> Merged {
    let mut merged = Merged::default();
    let candidates: Vec<(usize, &Value, String)> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| (i, &p.value, String::new()))
        .collect();
    merged.value = merge_at(parts, "", &candidates, &mut merged);
    merged
}

/// Merges the values at pointer `at` of the merged value; each candidate is a part's
/// index, its value there, and that value's pointer in the part.
fn merge_at(
    parts: &[Part],
    at: &str,
    candidates: &[(usize, &Value, String)],
    out: &mut Merged,
) -> Value {
    let present: Vec<&(usize, &Value, String)> =
        candidates.iter().filter(|(_, v, _)| !v.is_null()).collect();
    if present.is_empty() {
        return Value::Null;
    }
    if present.iter().all(|(_, v, _)| v.is_object()) {
        let mut keys: Vec<&String> = Vec::new();
        for (_, v, _) in &present {
            for k in v.as_object().into_iter().flat_map(Map::keys) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        let mut object = Map::new();
        for key in keys {
            let under: Vec<(usize, &Value, String)> = present
                .iter()
                .filter_map(|(i, v, p)| v.get(key).map(|x| (*i, x, child(p, key))))
                .collect();
            let value = merge_at(parts, &child(at, key), &under, out);
            object.insert(key.clone(), value);
        }
        return Value::Object(object);
    }
    if present.iter().all(|(_, v, _)| v.is_array()) {
        return concat(parts, at, &present, out);
    }
    leaf(parts, at, &present, out)
}

/// The arrays' elements concatenated, duplicates dropped.
fn concat(
    parts: &[Part],
    at: &str,
    arrays: &[&(usize, &Value, String)],
    out: &mut Merged,
) -> Value {
    // Kept elements: their part, value and spans (relative to the element).
    let mut kept: Vec<(usize, &Value, Vec<Rekeyed>)> = Vec::new();
    for (i, array, pointer) in arrays {
        let part = &parts[*i];
        for (j, element) in array.as_array().into_iter().flatten().enumerate() {
            let from = child(pointer, &j.to_string());
            let spans = spans_under(&part.spans, &from);
            let same_words = !spans.is_empty() && kept.iter().any(|(_, _, s)| *s == spans);
            let in_overlap = spans
                .iter()
                .flat_map(|(_, s)| s)
                .all(|s| s.start < part.previous_end && s.start >= part.start);
            let repeated = in_overlap
                && kept
                    .iter()
                    .any(|(k, v, _)| parts[*k].chunk + 1 == part.chunk && *v == element);
            if !(same_words || repeated) {
                kept.push((*i, element, spans));
            }
        }
    }
    let mut elements = Vec::with_capacity(kept.len());
    for (index, (_, value, spans)) in kept.into_iter().enumerate() {
        let to = child(at, &index.to_string());
        for (rest, s) in spans {
            out.spans.insert(format!("{to}{rest}"), s);
        }
        elements.push(value.clone());
    }
    Value::Array(elements)
}

/// A value taken from the first chunk grounding it, conflicts reported.
fn leaf(parts: &[Part], at: &str, present: &[&(usize, &Value, String)], out: &mut Merged) -> Value {
    let grounded: Vec<Candidate> = present
        .iter()
        .filter_map(|(i, v, p)| {
            let spans = parts[*i].spans.get(p.as_str())?;
            Some(Candidate {
                value: (*v).clone(),
                chunk: parts[*i].chunk,
                spans: spans.clone(),
            })
        })
        .collect();
    let Some(first) = grounded.first() else {
        // Nothing grounded: the first chunk's value, any spans under it kept.
        let (i, v, p) = present[0];
        for (rest, s) in spans_under(&parts[*i].spans, p) {
            out.spans.insert(format!("{at}{rest}"), s);
        }
        return (*v).clone();
    };
    let chosen = first.value.clone();
    // Every span of the chosen value, from every chunk that grounded it.
    let mut spans: Vec<Span> = Vec::new();
    for c in grounded.iter().filter(|c| c.value == chosen) {
        for s in &c.spans {
            if !spans.contains(s) {
                spans.push(s.clone());
            }
        }
    }
    out.spans.insert(at.to_owned(), spans);
    if grounded.iter().any(|c| c.value != chosen) {
        out.conflicts.push(Conflict {
            pointer: at.to_owned(),
            chosen: chosen.clone(),
            candidates: grounded,
        });
    }
    chosen
}

/// Spans keyed by the rest of their pointer below a value.
type Rekeyed = (String, Vec<Span>);

/// The spans at and under `pointer`, keyed by the rest of their pointer.
fn spans_under(spans: &Spans, pointer: &str) -> Vec<Rekeyed> {
    spans
        .range(pointer.to_owned()..)
        .take_while(|(k, _)| k.starts_with(pointer))
        .filter(|(k, _)| k.len() == pointer.len() || k[pointer.len()..].starts_with('/'))
        .map(|(k, s)| (k[pointer.len()..].to_owned(), s.clone()))
        .collect()
}

/// `pointer` with one more token, escaped as JSON Pointer asks.
fn child(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", token.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(start: usize, end: usize) -> Span {
        Span {
            field: "text".into(),
            start,
            end,
            page: None,
        }
    }

    fn part(
        chunk: usize,
        start: usize,
        previous_end: usize,
        value: Value,
        spans: &[(&str, Span)],
    ) -> Part {
        let mut map = Spans::new();
        for (k, s) in spans {
            map.entry((*k).to_owned()).or_default().push(s.clone());
        }
        Part {
            chunk,
            start,
            previous_end,
            value,
            spans: map,
        }
    }

    #[test]
    fn array_elements_concatenate_and_overlap_duplicates_drop() {
        let parts = [
            part(
                0,
                0,
                0,
                json!([{"n": "Ann"}, {"n": "Bob"}]),
                &[("/0/n", span(5, 8)), ("/1/n", span(90, 93))],
            ),
            // Bob again, found in the overlap (80..100): the same words.
            part(
                1,
                80,
                100,
                json!([{"n": "Bob"}, {"n": "Cy"}]),
                &[("/0/n", span(90, 93)), ("/1/n", span(150, 152))],
            ),
            // Cy again by value, no spans (ungrounded), from the next overlap.
            part(
                2,
                140,
                180,
                json!([{"n": "Cy"}, {"n": "Dee"}]),
                &[("/1/n", span(200, 203))],
            ),
        ];
        let merged = merge(&parts);
        assert_eq!(
            merged.value,
            json!([{"n": "Ann"}, {"n": "Bob"}, {"n": "Cy"}, {"n": "Dee"}])
        );
        assert_eq!(merged.spans["/1/n"], vec![span(90, 93)]);
        assert_eq!(merged.spans["/3/n"], vec![span(200, 203)]);
        assert!(merged.conflicts.is_empty());
    }

    #[test]
    fn equal_values_found_far_apart_are_both_kept() {
        // The same line item twice, on different words outside any overlap: two items.
        let parts = [
            part(
                0,
                0,
                0,
                json!([{"item": "Hammer"}]),
                &[("/0/item", span(10, 16))],
            ),
            part(
                1,
                100,
                110,
                json!([{"item": "Hammer"}]),
                &[("/0/item", span(300, 306))],
            ),
        ];
        assert_eq!(
            merge(&parts).value,
            json!([{"item": "Hammer"}, {"item": "Hammer"}])
        );
    }

    #[test]
    fn object_fields_come_from_the_chunk_grounding_them_and_conflicts_are_reported() {
        let parts = [
            // Chunk 0 invented a title (no span), found the date.
            part(
                0,
                0,
                0,
                json!({"title": "Made up", "date": "2026-11-03", "tags": ["a"]}),
                &[("/date", span(3, 13)), ("/tags/0", span(20, 21))],
            ),
            part(
                1,
                90,
                100,
                json!({"title": "Real Title", "date": "2026-12-01", "tags": ["b"]}),
                &[
                    ("/title", span(120, 130)),
                    ("/date", span(140, 150)),
                    ("/tags/0", span(160, 161)),
                ],
            ),
            part(
                2,
                190,
                200,
                json!({"title": null, "summary": "free words"}),
                &[],
            ),
        ];
        let merged = merge(&parts);
        assert_eq!(
            merged.value,
            json!({"title": "Real Title", "date": "2026-11-03", "tags": ["a", "b"], "summary": "free words"})
        );
        assert_eq!(merged.spans["/title"], vec![span(120, 130)]);
        assert_eq!(merged.spans["/tags/1"], vec![span(160, 161)]);
        assert_eq!(merged.conflicts.len(), 1);
        let c = &merged.conflicts[0];
        assert_eq!(c.pointer, "/date");
        assert_eq!(c.chosen, json!("2026-11-03"));
        assert_eq!(
            c.candidates.iter().map(|c| c.chunk).collect::<Vec<_>>(),
            vec![0, 1]
        );
    }

    #[test]
    fn agreeing_chunks_pool_their_spans() {
        let parts = [
            part(0, 0, 0, json!({"name": "Ann"}), &[("/name", span(1, 4))]),
            part(
                1,
                50,
                60,
                json!({"name": "Ann"}),
                &[("/name", span(70, 73))],
            ),
        ];
        let merged = merge(&parts);
        assert_eq!(merged.spans["/name"], vec![span(1, 4), span(70, 73)]);
        assert!(merged.conflicts.is_empty());
    }

    #[test]
    fn pointers_with_slashes_are_escaped() {
        let parts = [part(0, 0, 0, json!({"a/b": "x"}), &[("/a~1b", span(0, 1))])];
        let merged = merge(&parts);
        assert_eq!(merged.spans["/a~1b"], vec![span(0, 1)]);
    }
}
