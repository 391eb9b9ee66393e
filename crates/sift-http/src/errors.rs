//! Reading what an upstream says when it fails, whatever its wire format: its own message
//! from an error body, an answer that is not JSON described (an HTML page by its title), an
//! input-too-long error told apart, and the keys a provider sends masked out of all of it.

use serde_json::Value;
use sift_core::ProviderError;

/// An answer that is not JSON, described: HTML (a proxy's or a login page) by its title or
/// start, anything else by its start and the parser's complaint.
pub fn not_json(bytes: &[u8], complaint: &str) -> ProviderError {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let start = text.trim_start();
    let snippet = |t: &str| {
        let flat: String = t.split_whitespace().collect::<Vec<_>>().join(" ");
        let cut: String = flat.chars().take(120).collect();
        if cut.len() < flat.len() {
            format!("{cut}…")
        } else {
            cut
        }
    };
    if start.starts_with('<') {
        let lower = start.to_ascii_lowercase();
        let title = lower
            .find("<title>")
            .and_then(|i| {
                let from = i + "<title>".len();
                lower[from..]
                    .find("</title>")
                    .map(|j| &start[from..from + j])
            })
            .map(snippet);
        return ProviderError::InvalidResponse(match title {
            Some(t) => format!(
                "the upstream answered with an HTML page (\"{t}\"), not a JSON completion: is the base URL right?"
            ),
            None => format!(
                "the upstream answered with HTML, not a JSON completion: {}",
                snippet(start)
            ),
        });
    }
    if start.is_empty() {
        return ProviderError::InvalidResponse("the upstream answered with an empty body".into());
    }
    if complaint.is_empty() {
        return ProviderError::InvalidResponse(format!(
            "the answer is not JSON: {}",
            snippet(start)
        ));
    }
    ProviderError::InvalidResponse(format!(
        "the answer is not JSON ({complaint}): {}",
        snippet(start)
    ))
}

/// The upstream's own message from an error body (`{"error": {"message": ...}}` or text).
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"));
        if let Some(m) = found {
            return m
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| m.to_string());
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text.chars().take(500).collect()
    }
}

/// Whether an error body says the input is too long for the model (OpenAI's
/// `context_length_exceeded`, and the wording of servers that give no code).
pub fn input_too_long(body: &[u8]) -> bool {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && v.pointer("/error/code").and_then(Value::as_str) == Some("context_length_exceeded")
    {
        return true;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    [
        "context_length_exceeded",
        "maximum context length",
        "exceeds the context",
        "prompt is too long",
        // Gemini's.
        "exceeds the maximum number of tokens",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// The error a provider's batch reports for one of its requests (`body`, as the provider
/// wrote it): a prompt too long for the model as such, any other as a batch failure, each
/// with the upstream's message, bounded.
pub fn batch_request_error(body: &[u8]) -> ProviderError {
    let message = sift_core::batch::bounded_message(error_message(body));
    if input_too_long(body) {
        ProviderError::InputTooLong(message)
    } else {
        ProviderError::Batch(message)
    }
}

/// The longest upstream error message kept, in characters.
const MESSAGE_CHARS: usize = 500;

/// `message` with every trace of `secrets` masked: the whole secret, and any word that starts
/// like one (an upstream echoes keys shortened, `sk-proj-abc1****wxyz`); words shaped like an
/// OpenAI key (`sk-...`) too. At most [`MESSAGE_CHARS`] characters are kept.
pub fn redact<'a>(message: &str, secrets: impl Iterator<Item = &'a String>) -> String {
    let secrets: Vec<&str> = secrets
        .map(String::as_str)
        .filter(|s| s.len() >= 4)
        .collect();
    let mut text = message.to_owned();
    for s in &secrets {
        text = text.replace(s, "[redacted]");
    }
    let keyish = |word: &str| {
        let word = word
            .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_' && c != '*');
        (word.starts_with("sk-") && word.len() >= 10)
            || secrets
                .iter()
                .any(|s| word.len() >= 6 && s.get(..6).is_some_and(|head| word.starts_with(head)))
    };
    let redacted = text
        .split(' ')
        .map(|w| if keyish(w) { "[redacted]" } else { w })
        .collect::<Vec<_>>()
        .join(" ");
    if redacted.chars().count() <= MESSAGE_CHARS {
        return redacted;
    }
    let mut out: String = redacted.chars().take(MESSAGE_CHARS).collect();
    out.push_str("...");
    out
}

/// An upstream's error status as a provider error: a redirect named (never followed for a
/// model call), else the upstream's own message with `secrets` masked; a `400`/`413` saying
/// the input is too long is [`ProviderError::InputTooLong`] (the caller's to fix, not the
/// upstream's fault), the rest keep their status and the wait `Retry-After` asked.
pub fn status_error<'a>(
    status: http::StatusCode,
    retry_after: Option<std::time::Duration>,
    location: Option<String>,
    body: &[u8],
    secrets: impl Iterator<Item = &'a String>,
) -> ProviderError {
    let message = match location {
        Some(to) if status.is_redirection() => format!(
            "the upstream redirected to {to}; redirects are not followed for model calls \
             (set the base URL to where the server is)"
        ),
        _ => redact(&error_message(body), secrets),
    };
    if matches!(status.as_u16(), 400 | 413) && input_too_long(body) {
        return ProviderError::InputTooLong(message);
    }
    ProviderError::Status {
        status: status.as_u16(),
        message,
        retry_after: retry_after.or_else(|| retry_delay(body)),
    }
}

/// The wait a Google API asks for in its body rather than a header: a `RetryInfo` detail's
/// `retryDelay` (`"37s"`, `"1.5s"`).
fn retry_delay(body: &[u8]) -> Option<std::time::Duration> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let details = v.pointer("/error/details")?.as_array()?;
    details.iter().find_map(|d| {
        let text = d.get("retryDelay")?.as_str()?.strip_suffix('s')?;
        let secs: f64 = text.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| std::time::Duration::from_secs_f64(secs.min(1e9)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_echoed_by_the_upstream_are_masked() {
        let key = "sk-proj-Abc123verysecretkeyWXYZ".to_owned();
        let header = "tenant-token-998877".to_owned();
        let message = format!(
            "Incorrect API key provided: sk-proj-Abc1************WXYZ. Also {key}, and {header}."
        );
        let out = redact(&message, [&key, &header].into_iter());
        assert!(
            !out.contains("Abc1") && !out.contains("verysecret"),
            "{out}"
        );
        assert!(!out.contains("998877"), "{out}");
        assert!(
            out.starts_with("Incorrect API key provided: [redacted]"),
            "{out}"
        );
        // Someone else's OpenAI-shaped key too, and the length is bounded.
        let other = redact("bad key sk-otherkey12345", std::iter::empty());
        assert_eq!(other, "bad key [redacted]");
        let long = redact(&"x".repeat(10_000), std::iter::empty());
        assert_eq!(long.len(), MESSAGE_CHARS + 3);
    }

    #[test]
    fn a_google_retry_delay_is_read_from_the_body() {
        let body = br#"{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}"#;
        let e = status_error(
            http::StatusCode::TOO_MANY_REQUESTS,
            None,
            None,
            body,
            std::iter::empty(),
        );
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(37)));
        assert_eq!(
            retry_delay(br#"{"error": {"details": [{"retryDelay": "-1s"}]}}"#),
            None
        );
        assert_eq!(
            retry_delay(br#"{"error": {"details": [{"retryDelay": "1e400s"}]}}"#),
            None
        );
    }

    #[test]
    fn error_messages_are_found() {
        assert_eq!(
            error_message(br#"{"error": {"message": "bad model", "type": "invalid"}}"#),
            "bad model"
        );
        assert_eq!(error_message(br#"{"error": "nope"}"#), "nope");
        assert_eq!(error_message(b"  upstream down "), "upstream down");
        assert_eq!(error_message(b""), "(empty body)");
    }
}
