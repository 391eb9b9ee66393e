//! What to record and where to send it, read from the environment.

use std::io::IsTerminal;

use crate::console::ConsoleOptions;
use crate::scrub::ScrubOptions;
use crate::{CONSOLE_FLUSH, DEFAULT_EXPORT_FILTER, DEFAULT_FILTER};

/// What to record and where to send it.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The console, if any.
    pub console: Option<ConsoleOptions>,
    /// What the console shows (`SIFT_LOG`, then `RUST_LOG`).
    pub console_filter: String,
    /// What is exported (`SIFT_EXPORT_LOG`).
    pub export_filter: String,
    /// Export over OTLP, configured by the standard `OTEL_EXPORTER_OTLP_*` variables.
    pub otlp: bool,
    /// Export to Pydantic Logfire with this write token.
    pub logfire_token: Option<String>,
    /// Logfire's base URL (default from the token's region).
    pub logfire_base_url: Option<String>,
    /// `service.name` when `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` do not say.
    pub service_name: String,
    /// Scrubbing rules.
    pub scrub: ScrubOptions,
    /// Keep the recent traces in process ([`TraceStore`](crate::traces::TraceStore)) within
    /// these limits (`sift serve`'s trace viewer); `None`: keep none.
    pub keep_traces: Option<crate::traces::TraceLimits>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            console: Some(ConsoleOptions::default()),
            console_filter: DEFAULT_FILTER.into(),
            export_filter: DEFAULT_EXPORT_FILTER.into(),
            otlp: false,
            logfire_token: None,
            logfire_base_url: None,
            service_name: "sift".into(),
            scrub: ScrubOptions::default(),
            keep_traces: None,
        }
    }
}

pub(crate) fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

fn list(key: &str) -> Vec<String> {
    env(key)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn off(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "off" | "no" | "none"
    )
}

impl TelemetryConfig {
    /// Reads the environment:
    /// - `SIFT_LOG` (or `RUST_LOG`): console filter, default `info`;
    /// - `SIFT_CONSOLE`: `on` (default), `verbose` (attributes too) or `off`;
    /// - `NO_COLOR`: no colours even on a terminal;
    /// - `SIFT_EXPORT_LOG`: export filter, default [`DEFAULT_EXPORT_FILTER`];
    /// - `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (and the other
    ///   `OTEL_EXPORTER_OTLP_*`), `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
    ///   `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER=none`;
    /// - `LOGFIRE_TOKEN`, `LOGFIRE_BASE_URL`;
    /// - `SIFT_SCRUB=off`, `SIFT_SCRUB_PATTERNS` (comma-separated regular expressions added to
    ///   Logfire's), `SIFT_SCRUB_SAFE_KEYS` (comma-separated attribute keys never scrubbed).
    ///
    /// `OPENAI_API_KEY` and `LOGFIRE_TOKEN` are added as exact secrets.
    pub fn from_env() -> Self {
        let mut config = Self::default();
        if let Some(f) = env("SIFT_LOG").or_else(|| env("RUST_LOG")) {
            config.console_filter = f;
        }
        if let Some(f) = env("SIFT_EXPORT_LOG") {
            config.export_filter = f;
        }
        let colors = std::io::stderr().is_terminal() && env("NO_COLOR").is_none();
        config.console = match env("SIFT_CONSOLE").map(|v| v.to_ascii_lowercase()) {
            Some(v) if off(&v) => None,
            v => Some(ConsoleOptions {
                verbose: v.as_deref() == Some("verbose"),
                colors,
                flush_every: Some(CONSOLE_FLUSH),
                time_zone: jiff::tz::TimeZone::system(),
                ..ConsoleOptions::default()
            }),
        };
        let filter_given = env("SIFT_LOG").or_else(|| env("RUST_LOG")).is_some();
        if !filter_given && config.console.as_ref().is_some_and(|c| c.verbose) {
            config.console_filter = crate::VERBOSE_FILTER.into();
        }
        let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let traces_off = env("OTEL_TRACES_EXPORTER").is_some_and(|v| off(&v));
        config.otlp = !disabled
            && !traces_off
            && (env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some());
        config.logfire_token = env("LOGFIRE_TOKEN").filter(|_| !disabled);
        config.logfire_base_url = env("LOGFIRE_BASE_URL");
        config.scrub.enabled = !env("SIFT_SCRUB").is_some_and(|v| off(&v));
        config.scrub.extra_patterns = list("SIFT_SCRUB_PATTERNS");
        config.scrub.safe_keys = list("SIFT_SCRUB_SAFE_KEYS");
        config.scrub.secrets = ["OPENAI_API_KEY", "LOGFIRE_TOKEN"]
            .into_iter()
            .filter_map(env)
            .collect();
        config
    }
}

/// Logfire's base URL for a write token: its region is in the token (`pylf_v1_eu_…`).
pub fn logfire_base_url(token: &str) -> String {
    let region = token
        .strip_prefix("pylf_v")
        .and_then(|rest| rest.split('_').nth(1))
        .filter(|r| matches!(*r, "us" | "eu"))
        .unwrap_or("us");
    format!("https://logfire-{region}.pydantic.dev")
}
