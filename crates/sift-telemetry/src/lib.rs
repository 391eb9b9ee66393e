//! sift's telemetry, Logfire-style, over OpenTelemetry.
//!
//! The other crates emit plain `tracing` spans and events; this crate alone knows
//! OpenTelemetry. [`Telemetry::init`] (what `sift serve` calls) installs:
//! - the [console](console): a readable tree of spans and logs on stderr;
//! - OTLP export (http/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, with the standard `OTEL_*` variables for
//!   headers, timeout, service name and resource attributes;
//! - export to Pydantic Logfire when `LOGFIRE_TOKEN` is set (its regional endpoint, the token
//!   as the `Authorization` header);
//! - [metrics](metrics) read off the spans, for OTLP and for `GET /metrics` (Prometheus text).
//!
//! Every exported span gets Logfire's attributes (`logfire.span_type`, `logfire.msg_template`,
//! `logfire.msg`, `logfire.level_num`), every log inside a span becomes a zero-duration child
//! span so trace-only backends show it, and every attribute is [scrubbed](scrub) first.
//! Export is batched on its own thread: a slow or unreachable backend costs requests nothing,
//! and is reported once, not per batch. [`Telemetry::shutdown`] flushes what is left.
//!
//! Span names and attributes are documented in `docs/telemetry.md`.

mod config;
pub mod console;
mod export;
pub mod metrics;
pub mod scrub;
pub mod traces;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::{KeyValue, metrics::MeterProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanExporter};
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::env;
pub use crate::config::{TelemetryConfig, logfire_base_url};
use crate::console::{ConsoleLayer, ConsoleWriter};
use crate::export::Processed;
use crate::metrics::MetricsLayer;
pub use crate::scrub::{ScrubOptions, Scrubber};

/// A function that makes a request's span continue an incoming trace.
pub type TraceContinuation = dyn Fn(&tracing::Span, &http::HeaderMap) + Send + Sync;

/// A function that writes the current trace context into an outgoing request's headers.
pub type TracePropagation = dyn Fn(&mut http::HeaderMap) + Send + Sync;

/// The default console filter: llama.cpp's own chatter (its bindings' warnings about log
/// lines it splits, say) stays out unless it is an error or the console is verbose.
pub const DEFAULT_FILTER: &str = "info,llama-cpp-2=error,llama_cpp_2=error";
/// The default console filter when the console is verbose (`-v`).
pub const VERBOSE_FILTER: &str = "info,llama-cpp-2=warn,llama_cpp_2=warn";
/// The default filter of what is exported: sift's own debug records (request arguments,
/// streamed objects) go to the backend, as Logfire sends everything and lets its UI filter.
pub const DEFAULT_EXPORT_FILTER: &str =
    "info,sift_core=debug,sift_server=debug,llama-cpp-2=error,llama_cpp_2=error";

/// How often the binary's console writes out its lines: too short for a person to notice,
/// long enough that a busy service writes many lines at once.
pub const CONSOLE_FLUSH: Duration = Duration::from_millis(50);

/// A telemetry setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A filter string (`SIFT_LOG`, `SIFT_EXPORT_LOG`) does not parse.
    #[error("{var} `{value}` is not a valid filter: {message}")]
    Filter {
        /// Which setting.
        var: &'static str,
        /// Its value.
        value: String,
        /// The parser's message.
        message: String,
    },
    /// A scrubbing pattern does not compile.
    #[error("SIFT_SCRUB_PATTERNS: {0}")]
    Pattern(#[from] regex::Error),
    /// An exporter could not be built.
    #[error("could not set up export to {target}: {message}")]
    Exporter {
        /// Where to.
        target: String,
        /// Why not.
        message: String,
    },
    /// The compression asked for is not built in.
    #[error("{var} `{value}` is not supported; sift compresses with gzip or not at all (none)")]
    Compression {
        /// Which setting.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The protocol asked for is not built in.
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL `{0}` is not supported; sift exports http/protobuf")]
    Protocol(String),
    /// A global subscriber was already installed.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Builds a [`Telemetry`], with extra exporters (tests use an in-memory one) and another
/// console writer.
pub struct TelemetryBuilder {
    config: TelemetryConfig,
    scrubber: Option<Arc<Scrubber>>,
    console_writer: Option<ConsoleWriter>,
    tracer: opentelemetry_sdk::trace::TracerProviderBuilder,
    exporting: Vec<String>,
    traces: Option<traces::TraceStore>,
    metric_readers: Vec<
        Box<
            dyn FnOnce(
                opentelemetry_sdk::metrics::MeterProviderBuilder,
            ) -> opentelemetry_sdk::metrics::MeterProviderBuilder,
        >,
    >,
}

impl std::fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("config", &self.config)
            .field("exporting", &self.exporting)
            .finish_non_exhaustive()
    }
}

impl TelemetryBuilder {
    /// A builder over `config`; nothing is exported unless [`otlp_from_config`] or
    /// [`with_exporter`] add it.
    ///
    /// [`otlp_from_config`]: Self::otlp_from_config
    /// [`with_exporter`]: Self::with_exporter
    pub fn new(config: TelemetryConfig) -> Self {
        Self {
            config,
            scrubber: None,
            console_writer: None,
            tracer: SdkTracerProvider::builder(),
            exporting: Vec::new(),
            traces: None,
            metric_readers: Vec::new(),
        }
    }

    fn scrubber(&mut self) -> Result<Arc<Scrubber>, TelemetryError> {
        if let Some(s) = &self.scrubber {
            return Ok(s.clone());
        }
        let s = Arc::new(Scrubber::new(&self.config.scrub)?);
        self.scrubber = Some(s.clone());
        Ok(s)
    }

    /// Writes the console to `writer` instead of stderr.
    #[must_use]
    pub fn console_writer(mut self, writer: ConsoleWriter) -> Self {
        self.console_writer = Some(writer);
        self
    }

    /// Sends spans to `exporter` too, after sift's processing; `batched` exports on a
    /// background thread, otherwise as each span ends (for tests).
    pub fn with_exporter<E: SpanExporter + 'static>(
        mut self,
        exporter: E,
        name: &str,
        batched: bool,
    ) -> Result<Self, TelemetryError> {
        let processed = Processed::new(exporter, self.scrubber()?, name);
        self.tracer = if batched {
            self.tracer.with_span_processor(
                BatchSpanProcessor::builder(processed)
                    .with_batch_config(
                        opentelemetry_sdk::trace::BatchConfigBuilder::default()
                            .with_scheduled_delay(Duration::from_millis(500))
                            .build(),
                    )
                    .build(),
            )
        } else {
            self.tracer.with_simple_exporter(processed)
        };
        self.exporting.push(name.to_owned());
        Ok(self)
    }

    /// Adds the OTLP and Logfire exporters the configuration asks for.
    pub fn otlp_from_config(mut self) -> Result<Self, TelemetryError> {
        tls();
        if self.config.otlp || self.config.logfire_token.is_some() {
            // opentelemetry-otlp would ignore an unknown value with a warning nobody sees.
            for var in [
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
            ] {
                if let Some(value) = env(var)
                    && !["gzip", "none"].contains(&value.trim().to_ascii_lowercase().as_str())
                {
                    return Err(TelemetryError::Compression { var, value });
                }
            }
        }
        if self.config.otlp {
            if let Some(p) = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
                && p != "http/protobuf"
            {
                return Err(TelemetryError::Protocol(p));
            }
            let target = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .unwrap_or_default();
            // Endpoint and headers come from the OTEL_* variables, read by the exporter.
            self = self.otlp(None, HashMap::new(), &target)?;
        }
        if let Some(token) = self.config.logfire_token.clone() {
            let base = self
                .config
                .logfire_base_url
                .clone()
                .unwrap_or_else(|| logfire_base_url(&token));
            let base = base.trim_end_matches('/').to_owned();
            let headers = HashMap::from([("Authorization".to_owned(), token)]);
            let client = OwnHeaders::new(&headers).map_err(|message| TelemetryError::Exporter {
                target: base.clone(),
                message,
            })?;
            self = self.otlp_with(
                Some(&base),
                headers,
                &format!("Logfire ({base})"),
                Some(client),
            )?;
        }
        Ok(self)
    }

    /// Exports traces and metrics over OTLP http/protobuf to `base` (`…/v1/traces` and
    /// `…/v1/metrics`), or where the `OTEL_*` variables say when `base` is `None`.
    pub fn otlp(
        self,
        base: Option<&str>,
        headers: HashMap<String, String>,
        name: &str,
    ) -> Result<Self, TelemetryError> {
        self.otlp_with(base, headers, name, None)
    }

    fn otlp_with(
        mut self,
        base: Option<&str>,
        headers: HashMap<String, String>,
        name: &str,
        client: Option<OwnHeaders>,
    ) -> Result<Self, TelemetryError> {
        tls();
        let err = |e: opentelemetry_otlp::ExporterBuildError| TelemetryError::Exporter {
            target: name.to_owned(),
            message: e.to_string(),
        };
        let mut spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_headers(headers.clone());
        let mut metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_headers(headers);
        if let Some(base) = base {
            spans = spans.with_endpoint(format!("{base}/v1/traces"));
            metrics = metrics.with_endpoint(format!("{base}/v1/metrics"));
        }
        if let Some(client) = client {
            let client: Arc<dyn opentelemetry_http::HttpClient> = Arc::new(client);
            spans = spans.with_shared_http_client(client.clone());
            metrics = metrics.with_shared_http_client(client);
        }
        self = self.with_exporter(spans.build().map_err(err)?, name, true)?;
        let metrics = metrics.build().map_err(err)?;
        self.metric_readers.push(Box::new(move |b| {
            b.with_reader(PeriodicReader::builder(metrics).build())
        }));
        Ok(self)
    }

    /// Keeps the recent traces in a [`TraceStore`](traces::TraceStore) within `limits`, after
    /// the same processing as every exporter's (exported every 200 ms, off the requests).
    pub fn keep_traces(mut self, limits: traces::TraceLimits) -> Result<Self, TelemetryError> {
        let store = traces::TraceStore::new(limits);
        let processed = Processed::new(store.clone(), self.scrubber()?, "the trace viewer");
        self.tracer = self.tracer.with_span_processor(
            BatchSpanProcessor::builder(processed)
                .with_batch_config(
                    opentelemetry_sdk::trace::BatchConfigBuilder::default()
                        .with_scheduled_delay(Duration::from_millis(200))
                        .build(),
                )
                .build(),
        );
        self.traces = Some(store);
        Ok(self)
    }

    /// Builds the subscriber (not yet installed).
    pub fn build(mut self) -> Result<Telemetry, TelemetryError> {
        if let Some(limits) = self.config.keep_traces.take()
            && self.traces.is_none()
        {
            self = self.keep_traces(limits)?;
        }
        let scrubber = self.scrubber()?;
        let filter = |var: &'static str, value: &str| {
            EnvFilter::try_new(value).map_err(|e| TelemetryError::Filter {
                var,
                value: value.to_owned(),
                message: e.to_string(),
            })
        };
        let resource = resource(&self.config.service_name);
        let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
        let mut console_sink = None;
        if let Some(options) = self.config.console.clone() {
            let writer = self
                .console_writer
                .take()
                .unwrap_or_else(|| Box::new(std::io::stderr()));
            let console = ConsoleLayer::new(options, scrubber.clone(), writer);
            console_sink = Some(console.sink());
            layers.push(
                console
                    .with_filter(filter("SIFT_LOG", &self.config.console_filter)?)
                    .boxed(),
            );
        }
        let tracer_provider = if self.exporting.is_empty() && self.traces.is_none() {
            None
        } else {
            let provider = self.tracer.with_resource(resource.clone()).build();
            let tracer = provider.tracer("sift");
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer.clone())
                    .with_level(true)
                    .with_target(false)
                    .with_location(false)
                    .with_threads(false)
                    .with_tracked_inactivity(false)
                    .with_context_activation(false)
                    .with_filter(filter("SIFT_EXPORT_LOG", &self.config.export_filter)?)
                    .boxed(),
            );
            layers.push(
                RootLogs { tracer }
                    .with_filter(filter("SIFT_EXPORT_LOG", &self.config.export_filter)?)
                    .boxed(),
            );
            Some(provider)
        };
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .build()
            .map_err(|e| TelemetryError::Exporter {
                target: "/metrics".into(),
                message: e.to_string(),
            })?;
        let mut meters = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(prometheus);
        for add in self.metric_readers.drain(..) {
            meters = add(meters);
        }
        let meter_provider = meters.build();
        let meter = meter_provider.meter("sift");
        // Only the spans the metrics are read from: every other callsite stays disabled for
        // this layer, so with the console off and no export nothing else is even built.
        layers.push(
            MetricsLayer::new(&meter)
                .with_filter(tracing_subscriber::filter::filter_fn(metrics::wanted))
                .boxed(),
        );
        let dispatch = Dispatch::new(Registry::default().with(layers));
        Ok(Telemetry {
            dispatch,
            console_sink,
            tracer_provider,
            meter_provider,
            registry,
            exporting: self.exporting,
            traces: self.traces,
            scrubber,
        })
    }
}

/// Logfire and most collectors are HTTPS; reqwest is built without a default TLS provider,
/// so one is chosen before any exporter's client is built (the same as the model provider's).
fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn resource(default_name: &str) -> Resource {
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    let builder = Resource::builder();
    let builder = if named {
        builder
    } else {
        builder.with_service_name(default_name.to_owned())
    };
    builder
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The HTTP client of the Logfire exporters. opentelemetry-otlp adds the headers of
/// `OTEL_EXPORTER_OTLP_HEADERS` (and the per-signal variables) to every exporter it builds,
/// which would hand another backend's credentials to Logfire, or replace Logfire's token:
/// this client removes those and sets its own headers again before each request.
#[derive(Debug)]
struct OwnHeaders {
    inner: reqwest::blocking::Client,
    remove: Vec<reqwest::header::HeaderName>,
    set: reqwest::header::HeaderMap,
}

impl OwnHeaders {
    fn new(own: &HashMap<String, String>) -> Result<Self, String> {
        let mut set = reqwest::header::HeaderMap::new();
        for (k, v) in own {
            let name =
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
            let mut value = reqwest::header::HeaderValue::from_str(v).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            set.insert(name, value);
        }
        let remove = [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        ]
        .into_iter()
        .filter_map(env)
        .flat_map(|list| {
            list.split(',')
                .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.trim().to_owned()))
                .collect::<Vec<_>>()
        })
        .filter_map(|k| reqwest::header::HeaderName::from_bytes(k.as_bytes()).ok())
        .collect();
        // A blocking client may not be built on an async runtime's thread.
        let inner = std::thread::spawn(reqwest::blocking::Client::new)
            .join()
            .map_err(|_| "could not build the HTTP client".to_owned())?;
        Ok(Self { inner, remove, set })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OwnHeaders {
    async fn send_bytes(
        &self,
        mut request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let headers = request.headers_mut();
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name, value.clone());
        }
        self.inner.send_bytes(request).await
    }
}

/// Logs outside any span (start-up, shutdown) become root log spans, since OpenTelemetry
/// keeps events only inside spans.
struct RootLogs {
    tracer: SdkTracer,
}

#[derive(Default)]
struct EventFields {
    message: String,
    attributes: Vec<KeyValue>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.attributes
                .push(KeyValue::new(field.name(), value.to_owned()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.attributes.push(KeyValue::new(
            field.name(),
            i64::try_from(value).unwrap_or(i64::MAX),
        ));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S> Layer<S> for RootLogs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if ctx.event_span(event).is_some() || meta.target().starts_with("sift_telemetry") {
            return;
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let now = SystemTime::now();
        let mut attributes = fields.attributes;
        attributes.push(KeyValue::new("logfire.span_type", "log"));
        attributes.push(KeyValue::new("level", meta.level().as_str()));
        let mut span = self
            .tracer
            .span_builder(fields.message)
            .with_start_time(now)
            .with_attributes(attributes)
            .start(&self.tracer);
        span.end_with_timestamp(now);
    }
}

/// Installed telemetry: keep it alive while the program runs and call [`shutdown`] at the
/// end.
///
/// [`shutdown`]: Self::shutdown
pub struct Telemetry {
    dispatch: Dispatch,
    console_sink: Option<Arc<console::Sink>>,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: SdkMeterProvider,
    registry: prometheus::Registry,
    exporting: Vec<String>,
    traces: Option<traces::TraceStore>,
    scrubber: Arc<Scrubber>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.exporting)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Builds telemetry from `config` (console, OTLP, Logfire, metrics) and installs it as
    /// the global subscriber.
    pub fn init(config: TelemetryConfig) -> Result<Self, TelemetryError> {
        let telemetry = TelemetryBuilder::new(config).otlp_from_config()?.build()?;
        tracing::dispatcher::set_global_default(telemetry.dispatch.clone())
            .map_err(|_| TelemetryError::AlreadyInstalled)?;
        Ok(telemetry)
    }

    /// The recent traces, when they are kept ([`TelemetryConfig::keep_traces`]).
    pub fn trace_store(&self) -> Option<&traces::TraceStore> {
        self.traces.as_ref()
    }

    /// The subscriber, to install globally or for a scope (`tracing::dispatcher::set_default`).
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Where spans go, for the start-up message.
    pub fn exporting(&self) -> &[String] {
        &self.exporting
    }

    /// The scrubbing rules telemetry applies, for the text sift shows its clients
    /// (`sift_core::trace::Recording::with_scrubber`): the same patterns and secrets.
    pub fn scrubber(&self) -> Arc<Scrubber> {
        self.scrubber.clone()
    }

    /// The metrics in Prometheus' text format.
    pub fn prometheus_text(&self) -> String {
        render(&self.registry)
    }

    /// A function giving the metrics in Prometheus' text format, for `GET /metrics`.
    pub fn metrics_renderer(&self) -> Arc<dyn Fn() -> String + Send + Sync> {
        let registry = self.registry.clone();
        Arc::new(move || render(&registry))
    }

    /// A function that makes a request's span continue the trace of an incoming W3C
    /// `traceparent` header (for `sift_server::ServerConfig::request_hook`); `None` when
    /// nothing is exported.
    pub fn trace_continuation(&self) -> Option<Arc<TraceContinuation>> {
        self.tracer_provider.as_ref()?;
        Some(Arc::new(
            |span: &tracing::Span, headers: &http::HeaderMap| {
                use opentelemetry::propagation::TextMapPropagator as _;
                use tracing_opentelemetry::OpenTelemetrySpanExt as _;
                if headers.contains_key("traceparent") {
                    let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new()
                        .extract(&opentelemetry_http::HeaderExtractor(headers));
                    let _ = span.set_parent(cx);
                }
            },
        ))
    }

    /// A function that writes the current span's W3C `traceparent` into outgoing headers (for
    /// the providers' `header_hook`: OpenAI-compatible, Anthropic and Gemini), so an
    /// instrumented model server or gateway continues sift's trace under the `chat` span;
    /// `None` when nothing is exported.
    pub fn trace_propagation(&self) -> Option<Arc<TracePropagation>> {
        self.tracer_provider.as_ref()?;
        Some(Arc::new(|headers: &mut http::HeaderMap| {
            use opentelemetry::propagation::TextMapPropagator as _;
            use opentelemetry::trace::TraceContextExt as _;
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            let cx = tracing::Span::current().context();
            if cx.span().span_context().is_valid() {
                opentelemetry_sdk::propagation::TraceContextPropagator::new()
                    .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
            }
        }))
    }

    /// Whether anything leaves the process (OTLP, Logfire, or an added exporter).
    pub fn is_exporting(&self) -> bool {
        !self.exporting.is_empty()
    }

    /// Exports whatever is buffered now.
    pub fn flush(&self) {
        if let Some(sink) = &self.console_sink {
            sink.flush();
        }
        if let Some(p) = &self.tracer_provider {
            let _ = p.force_flush();
        }
        let _ = self.meter_provider.force_flush();
    }

    /// Flushes and stops the exporters (waits at most a few seconds for a slow backend).
    pub fn shutdown(&self) {
        if let Some(sink) = &self.console_sink {
            sink.flush();
        }
        if let Some(p) = &self.tracer_provider {
            let _ = p.shutdown_with_timeout(Duration::from_secs(5));
        }
        let _ = self
            .meter_provider
            .shutdown_with_timeout(Duration::from_secs(5));
    }
}

fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
