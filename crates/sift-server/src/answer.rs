//! How an extraction is answered, one-shot or streamed, once for the extractors, ad-hoc
//! requests and the seed's `/extract`: the query that shapes it (`?spans=true`,
//! `?attempts=true`), the bodies, the `sift-*` headers, the stream's framing and its final
//! `done` event, and what each call cost at the configured prices.

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use sift_config::Pricing;
use sift_core::grounding::Spans;
use sift_core::report::{AttemptReport, ExtractionFailure, UsageReport};
use sift_core::trace::Recording;
use sift_core::{Attempt, Event, EventStream, ExtractError, Extraction};
use utoipa::ToSchema;

use crate::deadline::{Deadline, next_before};
use crate::error::ApiError;
use crate::handlers::{ItemError, frame, stream_body};
use crate::request::{ErrorDetail, LocItem};

/// The query of the extractions: `?spans=true` and `?attempts=true`, each read as FastAPI
/// reads a boolean (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case); other keys
/// are ignored.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AnswerQuery {
    /// Answer `{"value": ..., "spans": {...}}` (a stream: each element, or the final value,
    /// so): where each grounded value was found, by JSON pointer into the value
    /// (`start`/`end` count Unicode scalar values of the input field named, end exclusive).
    pub(crate) spans: bool,
    /// Answer `{"value": ..., "attempts": [...], "usage": ..., "cost_usd": ...}`: every call
    /// with its errors, tokens and cost.
    pub(crate) attempts: bool,
}

/// The query as a handler receives it.
pub(crate) type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query read, or a FastAPI-style 422 naming each key that is not a boolean
/// (`?spans=maybe`).
pub(crate) fn answer_query(query: RawQuery) -> Result<AnswerQuery, ApiError> {
    let Query(pairs) = query.map_err(|e| {
        ApiError::Validation(vec![ErrorDetail::new(
            "query_parsing",
            vec![LocItem::Key("query".into())],
            format!("The query string could not be read ({})", e.body_text()),
            Value::Null,
        )])
    })?;
    let mut out = AnswerQuery::default();
    let mut errors = Vec::new();
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "spans" => &mut out.spans,
            "attempts" => &mut out.attempts,
            _ => continue,
        };
        match boolean(&value) {
            Some(b) => *slot = b,
            None => errors.push(ErrorDetail::new(
                "bool_parsing",
                vec![LocItem::Key("query".into()), LocItem::Key(key)],
                "Input should be a valid boolean, unable to interpret input",
                Value::String(value),
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// A boolean as pydantic reads one from a query string.
fn boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// One call to the model as `?attempts=true` and the stream's `done` event report it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PricedAttempt {
    /// The call, its outcome, errors and tokens.
    #[serde(flatten)]
    pub report: AttemptReport,
    /// The model that answered (the one asked when the provider did not say).
    pub model: String,
    /// What the call cost in USD at the configured prices; `null` when the model has none.
    pub cost_usd: Option<f64>,
}

/// Every call of an extraction priced, and the total (`None` when any call's model has no
/// price). Calls whose model is unpriced but which spent nothing cost nothing, and so do
/// those of a model running in this process.
pub(crate) fn priced(attempts: &[Attempt], by: &Answerer) -> (Vec<PricedAttempt>, Option<f64>) {
    let mut total = Some(0.0);
    let list = attempts
        .iter()
        .map(|a| {
            let model = a.model.clone().unwrap_or_else(|| by.model.clone());
            let cost_usd = by
                .pricing
                .cost(&by.model, &model, &a.usage, 1.0)
                .or(by.in_process.then_some(0.0));
            total = total.zip(cost_usd).map(|(t, c)| t + c);
            PricedAttempt {
                report: AttemptReport::new(a, &by.recording),
                model,
                cost_usd,
            }
        })
        .collect();
    (list, total)
}

/// What `?spans=true` and `?attempts=true` answer (each part only when asked for).
#[derive(Debug, Serialize)]
struct Detailed {
    value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    spans: Option<Spans>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<Vec<PricedAttempt>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageReport>,
    /// `null` when a call's model has no price, so only absent when not asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<Option<f64>>,
}

/// Who answered an extraction, for pricing and scrubbing its report.
#[derive(Debug, Clone)]
pub(crate) struct Answerer {
    /// The model asked for.
    pub(crate) model: String,
    /// The prices to report costs at.
    pub(crate) pricing: Pricing,
    /// What may be shown of the content.
    pub(crate) recording: Recording,
    /// Whether the model runs in this process (its calls cost nothing).
    pub(crate) in_process: bool,
}

impl Answerer {
    /// The answerer of calls made through `client` at `pricing`.
    pub(crate) fn of(client: &sift_core::Client, pricing: &Pricing) -> Self {
        Self {
            model: client.model().to_owned(),
            pricing: pricing.clone(),
            recording: client.recording().clone(),
            in_process: client.provider().capabilities().in_process,
        }
    }
}

/// The value (or, with `?spans=true` / `?attempts=true`, the value and what was asked for),
/// with the attempts and tokens in headers.
pub(crate) fn answer(out: Extraction<Value>, query: &AnswerQuery, by: &Answerer) -> Response {
    let mut response = if query.spans || query.attempts {
        let (attempts, cost) = query.attempts.then(|| priced(&out.attempts, by)).unzip();
        Json(Detailed {
            value: out.value,
            spans: query.spans.then(|| out.spans.unwrap_or_default()),
            attempts,
            usage: query.attempts.then(|| out.usage.into()),
            cost_usd: cost,
        })
        .into_response()
    } else {
        Json(out.value).into_response()
    };
    usage_headers(response.headers_mut(), out.attempts.len(), out.usage);
    response
}

/// The attempts made and the tokens they used, as the `sift-*` headers.
pub(crate) fn usage_headers(headers: &mut HeaderMap, attempts: usize, usage: sift_core::Usage) {
    for (name, n) in [
        ("sift-attempts", attempts as u64),
        ("sift-input-tokens", usage.input_tokens),
        ("sift-output-tokens", usage.output_tokens),
        ("sift-cached-input-tokens", usage.cached_input_tokens),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(n));
    }
}

/// Sent last on an event stream (`event: done`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamDone {
    /// Tokens spent over every attempt.
    pub usage: UsageReport,
    /// With `?attempts=true`: every call, with its errors, tokens and cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<PricedAttempt>>,
    /// With `?attempts=true`: what the calls cost in USD at the configured prices; `null`
    /// when a model has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub cost_usd: Option<Option<f64>>,
}

impl StreamDone {
    /// The end of a stream that spent `usage` over `attempts`, priced when `query` asks.
    pub(crate) fn new(
        usage: sift_core::Usage,
        attempts: &[Attempt],
        query: &AnswerQuery,
        by: &Answerer,
    ) -> Self {
        let (attempts, cost_usd) = query.attempts.then(|| priced(attempts, by)).unzip();
        Self {
            usage: usage.into(),
            attempts,
            cost_usd,
        }
    }
}

/// Frames a stream's events in order. With `spans`, an element is sent as
/// `{"value", "spans"}` (pointers into the element), and a partial stream's final value as
/// `{"value", "spans"}` once its spans come with [`Event::Done`].
struct Framer {
    sse: bool,
    spans: bool,
    recording: Recording,
    /// A final value waiting for its spans.
    held: Option<Value>,
}

impl Framer {
    /// One event framed (or nothing to send); `true` when the stream ends after it.
    fn frame(&mut self, event: Result<Event<Value>, ExtractError>) -> (Option<String>, bool) {
        let sse = self.sse;
        let report = |errors: Vec<sift_core::FieldError>| -> Vec<crate::error::AnswerError> {
            errors
                .into_iter()
                .map(|e| crate::error::AnswerError {
                    path: e.path,
                    message: self.recording.scrub(e.message),
                })
                .collect()
        };
        let with_spans = |value: Value, spans: Option<Spans>| {
            let json = json!({"value": value, "spans": spans.unwrap_or_default()});
            frame(sse, None, None, &json.to_string())
        };
        let chunk = match event {
            Ok(Event::Element { value, spans, .. }) if self.spans => with_spans(value, spans),
            Ok(Event::Value(value)) if self.spans => {
                self.held = Some(value);
                return (None, false);
            }
            Ok(Event::Done { spans, .. }) => match self.held.take() {
                Some(value) => with_spans(value, spans),
                None => return (None, false),
            },
            Ok(Event::Element { value, .. } | Event::Value(value)) => {
                frame(sse, None, None, &value.to_string())
            }
            Ok(Event::Snapshot(v)) => frame(sse, Some("partial"), Some("partial"), &v.to_string()),
            Ok(Event::Retry { attempt, errors }) => {
                let json = json!({"attempt": attempt, "errors": report(errors)}).to_string();
                frame(sse, Some("retry"), Some("retry"), &json)
            }
            Ok(Event::ItemError {
                index,
                errors,
                value,
            }) => {
                let json = serde_json::to_string(&ItemError {
                    index,
                    errors: report(errors),
                    value,
                })
                .unwrap_or_default();
                frame(sse, Some("item_error"), Some("item_error"), &json)
            }
            Ok(_) => return (None, false),
            Err(e) => {
                let detail = ExtractionFailure::from_error(&e, &self.recording);
                tracing::error!(error = %detail.message, "extraction failed mid-stream");
                let json = serde_json::to_string(&detail).unwrap_or_default();
                return (Some(frame(sse, Some("error"), Some("error"), &json)), true);
            }
        };
        (Some(chunk), false)
    }
}

/// Streams an extraction's events (elements as they close, or partial snapshots then the
/// value) as NDJSON lines or SSE events, ending an event stream with `done`: the usage, every
/// call priced. A failure before anything was sent answers with its status.
pub(crate) async fn stream_response(
    mut events: EventStream<Value>,
    by: Answerer,
    query: AnswerQuery,
    sse: bool,
    deadline: Option<Deadline>,
) -> Result<Response, ApiError> {
    let first = match events.next().await {
        Some(Err(e)) => return Err(ApiError::Extraction(Box::new(e), by.recording)),
        other => other,
    };
    let stats = events.stats();
    let mut framer = Framer {
        sse,
        spans: query.spans,
        recording: by.recording.clone(),
        held: None,
    };
    let body = async_stream::stream! {
        let mut pending = first;
        loop {
            let event = match pending.take() {
                Some(event) => event,
                None => match next_before(&mut events, deadline).await {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(d) => {
                        let detail = d.failure("the stream");
                        tracing::error!(error = %detail.message, "request deadline passed mid-stream");
                        yield Ok(frame(sse, Some("error"), Some("error"), &serde_json::to_string(&detail).unwrap_or_default()));
                        break;
                    }
                },
            };
            let (chunk, last) = framer.frame(event);
            if let Some(chunk) = chunk {
                yield Ok::<_, std::convert::Infallible>(chunk);
            }
            if last {
                break;
            }
        }
        if sse {
            let done = StreamDone::new(stats.usage(), &stats.attempts(), &query, &by);
            yield Ok(frame(true, Some("done"), None, &serde_json::to_string(&done).unwrap_or_default()));
        }
    };
    Ok(stream_body(sse, body))
}

#[cfg(test)]
mod tests {
    use super::boolean;

    #[test]
    fn booleans_are_read_as_fastapi_reads_them() {
        for yes in ["true", "True", "1", "yes", "on", "ON"] {
            assert_eq!(boolean(yes), Some(true), "{yes}");
        }
        for no in ["false", "0", "no", "off", "FALSE"] {
            assert_eq!(boolean(no), Some(false), "{no}");
        }
        for neither in ["", "maybe", "2", "truee"] {
            assert_eq!(boolean(neither), None, "{neither}");
        }
    }
}
