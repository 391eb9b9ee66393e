//! The report as one self-contained HTML page (`sift eval --report-html`, and `/evals` of
//! `sift serve --eval-report`): the headline scores, per-field precision, recall and F1 with
//! the deltas against a baseline, the failed extractions, and every miss with what was
//! expected and what came. Rendered here, with every text escaped; no script, nothing loaded
//! from elsewhere.

use std::fmt::Write as _;

use serde_json::Value;

use crate::report::{FieldScore, Report};

/// `text` safe inside HTML text and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn shown(v: Option<&Value>) -> String {
    v.map_or_else(|| "nothing".to_owned(), Value::to_string)
}

/// A signed change, classed up or down (`""` without a baseline).
fn delta(now: f64, then: Option<f64>) -> String {
    match then {
        Some(t) => {
            let d = now - t;
            let class = if d > 1e-9 {
                "up"
            } else if d < -1e-9 {
                "down"
            } else {
                "same"
            };
            format!("<span class=\"{class}\">{d:+.3}</span>")
        }
        None => String::new(),
    }
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;color:#1d2330;margin:24px;max-width:1100px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.bar{display:inline-block;height:8px;background:#3b82f6;border-radius:2px;vertical-align:middle;margin-right:6px}\
.up{color:#15803d}.down{color:#dc2626}.same{color:#6b7280}\
code{font-size:12px;white-space:pre-wrap;word-break:break-word}.muted{color:#6b7280}";

impl Report {
    /// The report as one HTML page, with deltas against `baseline` when given.
    pub fn html(&self, baseline: Option<&Report>) -> String {
        let mut out = String::new();
        let title = format!("{} on {}", self.extractor, self.model);
        let _ = write!(
            out,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>sift eval: {}</title><style>{STYLE}</style></head><body>",
            esc(&title)
        );
        let _ = write!(out, "<h1>{}</h1>", esc(&title));
        let _ = write!(
            out,
            "<p data-testid=\"eval-summary\">{} examples · exact match {}/{} (<b>{:.1}%</b>) {} · grounded {}/{} values ({:.1}%) {} · F1 over all fields <b>{:.3}</b> {}</p>",
            self.examples,
            self.exact,
            self.examples,
            self.exact_match * 100.0,
            delta(self.exact_match, baseline.map(|b| b.exact_match)),
            self.grounded.grounded,
            self.grounded.checked,
            self.grounded.share * 100.0,
            delta(self.grounded.share, baseline.map(|b| b.grounded.share)),
            self.all.f1,
            delta(self.all.f1, baseline.map(|b| b.all.f1)),
        );
        if let Some(b) = baseline {
            let _ = write!(
                out,
                "<p class=\"muted\">Compared with a baseline of {} on {} ({} examples).</p>",
                esc(&b.extractor),
                esc(&b.model),
                b.examples
            );
        }
        out.push_str("<h2>Fields</h2><table><tr><th>field</th><th>F1</th><th class=\"num\">precision</th><th class=\"num\">recall</th><th class=\"num\">support</th>");
        if baseline.is_some() {
            out.push_str("<th class=\"num\">ΔF1</th>");
        }
        out.push_str("</tr>");
        let row = |out: &mut String, name: &str, s: &FieldScore, then: Option<&FieldScore>| {
            let _ = write!(
                out,
                "<tr data-testid=\"eval-field\"><td>{}</td><td><span class=\"bar\" style=\"width:{:.0}px\"></span>{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{}</td>",
                esc(name),
                s.f1 * 120.0,
                s.f1,
                s.precision,
                s.recall,
                s.true_positives + s.false_negatives
            );
            if baseline.is_some() {
                let change = match then {
                    Some(t) => delta(s.f1, Some(t.f1)),
                    None => "<span class=\"muted\">new</span>".into(),
                };
                let _ = write!(out, "<td class=\"num\">{change}</td>");
            }
            out.push_str("</tr>");
        };
        for (name, s) in &self.fields {
            row(&mut out, name, s, baseline.and_then(|b| b.fields.get(name)));
        }
        row(&mut out, "all", &self.all, baseline.map(|b| &b.all));
        out.push_str("</table>");
        if !self.failures.is_empty() {
            let _ = write!(
                out,
                "<h2>Failed extractions ({})</h2><table><tr><th>example</th><th>kind</th><th>why</th></tr>",
                self.failures.len()
            );
            for f in &self.failures {
                let _ = write!(
                    out,
                    "<tr data-testid=\"eval-failure\"><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    esc(&f.id),
                    esc(&f.kind),
                    esc(&f.message)
                );
            }
            out.push_str("</table>");
        }
        let _ = write!(out, "<h2>Misses ({})</h2>", self.misses.len());
        if self.misses.is_empty() {
            out.push_str("<p class=\"muted\">Every field matched.</p>");
        } else {
            out.push_str("<table><tr><th>example</th><th>field</th><th>kind</th><th>expected</th><th>got</th></tr>");
            for m in &self.misses {
                let _ = write!(
                    out,
                    "<tr data-testid=\"eval-miss\"><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    esc(&m.id),
                    esc(&m.field),
                    esc(&m.kind),
                    esc(&shown(m.expected.as_ref())),
                    esc(&shown(m.got.as_ref()))
                );
            }
            out.push_str("</table>");
        }
        out.push_str("</body></html>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Miss;

    #[test]
    fn every_text_is_escaped_and_deltas_are_signed() {
        let mut report = Report::new("people", "m<1>", Vec::new());
        report.misses.push(Miss {
            id: "x\"y".into(),
            field: "name".into(),
            kind: "mismatch".into(),
            expected: Some(Value::String("<script>alert(1)</script>".into())),
            got: None,
        });
        let mut before = report.clone();
        before.exact_match = 0.5;
        let page = report.html(Some(&before));
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("m&lt;1&gt;"));
        assert!(page.contains("x&quot;y"));
        assert!(page.contains("data-testid=\"eval-miss\""));
    }
}
