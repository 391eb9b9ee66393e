//! What sift's HTTP model providers share, so each wire format (OpenAI-compatible, and the
//! native ones to come) is only its own request and answer shapes:
//!
//! - [`Transport`]: transport retries with exponential backoff and jitter (`Retry-After`
//!   honoured up to a bound, rate limits shared through an [`Admission`]), bodies read up to
//!   a limit, reqwest's errors mapped onto [`ProviderError`]'s kinds;
//! - [`retry_after`] and [`location`]: an upstream's headers read as hostile (absurd waits
//!   bounded, redirect targets cut and printable);
//! - [`error_message`], [`not_json`], [`input_too_long`], [`redact`]: what an upstream says
//!   when it fails, read and made safe to show;
//! - [`sse`]: the server-sent-events decoder streamed answers are read with, and the loop
//!   that turns a response's events into a [`ChatStream`](sift_core::ChatStream) through a
//!   provider's own [`EventReader`](sse::EventReader);
//! - [`Transport::json`] and [`Transport::download`]: the calls of the providers' batch APIs;
//! - [`transport_setters!`]: the settings every provider's config offers, written once;
//! - [`HeaderHook`]: headers added to every request as it is sent (trace propagation).

mod errors;
pub mod sse;

pub use errors::{
    batch_request_error, error_message, input_too_long, not_json, redact, status_error,
};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use sift_core::{Admission, ProviderError};

/// A function that adds headers to each request just before it is sent, in the span of the
/// call: `sift_telemetry::Telemetry::trace_propagation` gives one that adds the W3C
/// `traceparent`, so the model server's own spans join sift's trace.
pub type HeaderHook = dyn Fn(&mut HeaderMap) + Send + Sync;

/// How a provider's calls are sent and retried.
#[derive(Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Where calls go, for connect errors.
    pub endpoint: String,
    /// The time one try is given (and, streamed, each gap between chunks).
    pub timeout: Duration,
    /// The largest answer read: a whole body, or one line or event of a stream.
    pub max_body: usize,
    /// Retries after a failed try that may succeed when repeated.
    pub max_transport_retries: u32,
    /// The first backoff; each retry doubles it, up to `backoff_max`, jittered.
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// The longest `Retry-After` waited; an upstream asking more fails the call.
    pub max_retry_after: Duration,
    /// Paces calls across callers (`sift batch`'s rate limits), when set.
    pub admission: Option<Arc<dyn Admission>>,
    /// Adds headers to every request as it is sent, when set.
    pub header_hook: Option<Arc<HeaderHook>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .field("max_transport_retries", &self.max_transport_retries)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("max_retry_after", &self.max_retry_after)
            .field("admission", &self.admission)
            .field("header_hook", &self.header_hook.is_some())
            .finish()
    }
}

impl Settings {
    /// Settings for calls to `endpoint`: 120 s a try, 16 MiB bodies, 2 retries backing off
    /// from 500 ms to 8 s, `Retry-After` waited up to 60 s.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            timeout: Duration::from_secs(120),
            max_body: 16 * 1024 * 1024,
            max_transport_retries: 2,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            admission: None,
            header_hook: None,
        }
    }
}

/// The HTTP side of a provider: its settings, applied the same way by every provider.
#[derive(Debug, Clone)]
pub struct Transport {
    settings: Settings,
}

impl Transport {
    /// A transport with `settings`.
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Runs `call` with transport retries: backoff with jitter, `Retry-After` honoured. With
    /// an [`Admission`], each try waits to be admitted (counted as `estimate` tokens), and a
    /// rate-limit wait is passed on to it (the caller settles a success). A call that fails
    /// after retries says how each try failed ([`ProviderError::Retried`]).
    pub async fn with_retries<F, Fut, T>(
        &self,
        estimate: u64,
        mut call: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let s = &self.settings;
        let admission = s.admission.as_deref();
        let mut retry = 0;
        // How each failed try failed, for the summary of a call that never succeeds.
        let mut earlier: Vec<String> = Vec::new();
        loop {
            if let Some(a) = admission {
                a.admit(estimate).await;
            }
            let err = match call().await {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            let rate_limited = matches!(
                err,
                ProviderError::Status { status: 429, .. } | ProviderError::Busy { .. }
            );
            let wait = err.retry_after().unwrap_or_else(|| self.backoff(retry));
            if let Some(a) = admission {
                a.settle(estimate, 0);
                if rate_limited {
                    a.back_off(wait.min(s.max_retry_after));
                }
            }
            let give_up = !err.is_retryable()
                || retry >= s.max_transport_retries
                || err
                    .retry_after()
                    .is_some_and(|asked| asked > s.max_retry_after);
            if give_up {
                // A failure after retries says how often it was tried ("no answer within 120s"
                // alone reads as if it was tried once).
                return Err(match retry {
                    0 => err,
                    n => ProviderError::Retried {
                        tries: n + 1,
                        last: Box::new(err),
                        earlier,
                    },
                });
            }
            retry += 1;
            let reason = err.to_string();
            // The reason in the message itself: the console shows it at the default level.
            tracing::warn!(
                error = %reason,
                retry,
                wait_ms = wait.as_millis() as u64,
                "upstream call failed ({}); retrying in {} ms",
                bounded(&reason),
                wait.as_millis()
            );
            earlier.push(bounded(&reason));
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends `request`: its status line and headers must arrive within the per-try timeout.
    /// A success is handed back with its body unread (a stream, or a whole answer the caller
    /// reads with [`read_body`](Self::read_body)); an error status becomes its
    /// [`status_error`], the body read within the limits and `secrets` masked out of it.
    pub async fn open<'a>(
        &self,
        request: reqwest::RequestBuilder,
        secrets: impl Iterator<Item = &'a String>,
    ) -> Result<reqwest::Response, ProviderError> {
        let timeout = self.settings.timeout;
        let response = tokio::time::timeout(timeout, self.hooked(request).send())
            .await
            .map_err(|_| ProviderError::Timeout(timeout))?
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let location = location(status, response.headers());
        let bytes = self.read_body(response).await?;
        Err(status_error(status, retry_after, location, &bytes, secrets))
    }

    /// `request` with the [`HeaderHook`]'s headers, written now, in the caller's span (every
    /// request [`open`](Self::open) sends gets them; a provider sending by itself calls this).
    pub fn hooked(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.header_hook {
            Some(hook) => {
                let mut headers = HeaderMap::new();
                hook(&mut headers);
                request.headers(headers)
            }
            None => request,
        }
    }

    /// The backoff before retry `retry` (0 for the first): doubling from the base, capped,
    /// jittered between half and all of it.
    pub fn backoff(&self, retry: u32) -> Duration {
        let s = &self.settings;
        let exp = s
            .backoff_base
            .saturating_mul(2u32.saturating_pow(retry))
            .min(s.backoff_max);
        exp.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// The whole body, refused (and released) once it passes `max_body`: a declared length
    /// over it before reading, or the bytes as they arrive.
    pub async fn bounded_body(
        &self,
        mut response: reqwest::Response,
    ) -> Result<bytes::Bytes, ProviderError> {
        let limit = self.settings.max_body;
        let too_big = || {
            ProviderError::InvalidResponse(format!(
                "the upstream's answer is larger than the limit of {limit} bytes"
            ))
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_big());
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Reads a whole response body within the per-try timeout.
    pub async fn read_body(
        &self,
        response: reqwest::Response,
    ) -> Result<bytes::Bytes, ProviderError> {
        tokio::time::timeout(self.settings.timeout, self.bounded_body(response))
            .await
            .map_err(|_| ProviderError::Timeout(self.settings.timeout))?
    }

    /// Sends the request `request` makes, with retries, and reads the whole (bounded) answer
    /// as JSON; `what` names it in an error. `secrets` are masked out of error messages.
    pub async fn json<'a>(
        &self,
        what: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
        secrets: impl Iterator<Item = &'a String> + Clone,
    ) -> Result<serde_json::Value, ProviderError> {
        let bytes = self
            .with_retries(0, || async {
                let response = self.open(request(), secrets.clone()).await?;
                self.read_body(response).await
            })
            .await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::InvalidResponse(format!("{what}: {e}")))
    }

    /// Streams `response`'s body into the file `to` (never whole in memory), refused past
    /// `limit` bytes, each chunk within the per-try timeout; the bytes written.
    pub async fn download(
        &self,
        mut response: reqwest::Response,
        to: &std::path::Path,
        limit: u64,
    ) -> Result<u64, ProviderError> {
        use tokio::io::AsyncWriteExt;
        let timeout = self.settings.timeout;
        let local = |e: std::io::Error| {
            ProviderError::Transport(format!("writing {}: {e}", to.display()).into())
        };
        let mut file = tokio::fs::File::create(to).await.map_err(local)?;
        let mut written = 0u64;
        while let Some(chunk) = tokio::time::timeout(timeout, response.chunk())
            .await
            .map_err(|_| ProviderError::Timeout(timeout))?
            .map_err(|e| self.transport_error(e))?
        {
            written += chunk.len() as u64;
            if written > limit {
                return Err(ProviderError::InvalidResponse(format!(
                    "the upstream's file is larger than the limit of {limit} bytes"
                )));
            }
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        Ok(written)
    }

    /// reqwest's error as a provider error of the right kind (its URL left out: it may
    /// carry a key in its query).
    pub fn transport_error(&self, e: reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            ProviderError::Timeout(self.settings.timeout)
        } else if e.is_connect() {
            ProviderError::Connect {
                url: self.settings.endpoint.clone(),
                source: Box::new(e.without_url()),
            }
        } else {
            ProviderError::Transport(Box::new(e.without_url()))
        }
    }
}

/// `reason` cut to 200 characters, for summaries and log lines.
pub fn bounded(reason: &str) -> String {
    let mut cut: String = reason.chars().take(200).collect();
    if cut.len() < reason.len() {
        cut.push('…');
    }
    cut
}

/// Where a redirect points (its `Location`, bounded and printable), for a 3xx only.
pub fn location(status: http::StatusCode, headers: &HeaderMap) -> Option<String> {
    if !status.is_redirection() {
        return None;
    }
    let to = headers
        .get(http::header::LOCATION)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(200)
                .collect()
        })
        .unwrap_or_else(|| "an address it did not name".to_owned());
    Some(to)
}

/// `Retry-After` (seconds or an HTTP date) or `retry-after-ms`. Upstream bytes are hostile: a
/// wait too large to be a `Duration` (`1e20`, `18446744073709551615`) is read as "longer than
/// anyone waits" (a day), never a panic; the caller's `max_retry_after` then refuses it.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = |s: f64| {
        (s.is_finite() && s >= 0.0).then(|| {
            Duration::try_from_secs_f64(s.min(LONGEST_WAIT))
                .unwrap_or(Duration::from_secs_f64(LONGEST_WAIT))
        })
    };
    if let Some(wait) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1000.0))
    {
        return Some(wait);
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs_f64(LONGEST_WAIT)),
    )
}

/// The longest wait an upstream's `Retry-After` is read as, in seconds (a day).
const LONGEST_WAIT: f64 = 86_400.0;

/// The settings every HTTP provider's config offers, as builder methods over its
/// `transport: Settings` field: `timeout`, `max_transport_retries`, `backoff`, `max_body`,
/// `admission`, `header_hook`. Used inside the config's `impl` block.
#[macro_export]
macro_rules! transport_setters {
    () => {
        /// The time one try is given.
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.transport.timeout = timeout;
            self
        }

        /// Transport retries after the first try.
        pub fn max_transport_retries(mut self, n: u32) -> Self {
            self.transport.max_transport_retries = n;
            self
        }

        /// The first and the longest backoff between tries.
        pub fn backoff(mut self, base: std::time::Duration, max: std::time::Duration) -> Self {
            (self.transport.backoff_base, self.transport.backoff_max) = (base, max);
            self
        }

        /// The largest answer read (a whole body, or one event of a stream).
        pub fn max_body(mut self, bytes: usize) -> Self {
            self.transport.max_body = bytes;
            self
        }

        /// Paces calls through `admission` (rate limits shared across callers).
        pub fn admission(mut self, admission: std::sync::Arc<dyn sift_core::Admission>) -> Self {
            self.transport.admission = Some(admission);
            self
        }

        /// Adds headers to each request as it is sent (see [`HeaderHook`](
        /// $crate::HeaderHook)): `sift_telemetry`'s trace propagation.
        pub fn header_hook(mut self, hook: std::sync::Arc<$crate::HeaderHook>) -> Self {
            self.transport.header_hook = Some(hook);
            self
        }
    };
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_reads_seconds_dates_and_millis() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(5));
        h.insert("retry-after", HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn absurd_waits_are_a_day_not_a_panic() {
        let day = Some(Duration::from_secs(86_400));
        for (name, value) in [
            ("retry-after", "1e20"),
            ("retry-after", "18446744073709551615"),
            ("retry-after-ms", "1e25"),
            ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            assert_eq!(retry_after(&h), day, "{name}: {value}");
        }
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("-3"));
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("NaN"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_doubles_within_its_cap_and_jitter() {
        let mut settings = Settings::new("http://x");
        settings.backoff_base = Duration::from_millis(100);
        settings.backoff_max = Duration::from_millis(300);
        let t = Transport::new(settings);
        for (retry, full) in [(0, 100), (1, 200), (2, 300), (10, 300), (40, 300)] {
            let wait = t.backoff(retry).as_millis();
            assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait} ms");
        }
    }

    #[test]
    fn reasons_are_cut_at_200_characters() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(300);
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
    }
}
