//! One span per HTTP request, `{method} {route}` (kind SERVER), with the HTTP semantic
//! conventions' attributes. The span stays open until the response body has been sent, so a
//! streamed `/extract` response is inside it and its duration is the whole exchange.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use tracing::{Instrument, Span, field};

/// What the edge middleware applies to every request.
#[derive(Clone)]
pub(crate) struct Edge {
    /// Called with each request's span and headers.
    pub(crate) hook: Option<crate::RequestHook>,
    /// The deadline over each whole request.
    pub(crate) deadline: Option<std::time::Duration>,
    /// How request bodies are read.
    pub(crate) body: crate::request::BodyRules,
}

/// The middleware: the request's span, its deadline and body timeout (one layer: each
/// middleware layer costs every request).
pub(crate) async fn http_span(
    State(edge): State<Edge>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let hook = edge.hook;
    let method = req.method().clone();
    let route = matched
        .as_ref()
        .map_or_else(|| req.uri().path(), MatchedPath::as_str);
    let version = match req.version() {
        axum::http::Version::HTTP_10 => "1.0",
        axum::http::Version::HTTP_2 => "2",
        axum::http::Version::HTTP_3 => "3",
        _ => "1.1",
    };
    let span = tracing::info_span!(
        "http.server",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = field::Empty,
        logfire.msg_template = "{http.request.method} {http.route}",
        http.request.method = %method,
        http.route = route,
        url.path = req.uri().path(),
        url.query = req.uri().query(),
        url.scheme = "http",
        network.protocol.version = version,
        user_agent.original = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        http.response.status_code = field::Empty,
        error.r#type = field::Empty,
    );
    if let Some(hook) = &hook {
        (hook.0)(&span, req.headers());
    }
    req.extensions_mut().insert(edge.body);
    let response = match edge.deadline {
        None => next.run(req).instrument(span.clone()).await,
        Some(limit) => {
            crate::deadline::within(limit, req, next)
                .instrument(span.clone())
                .await
        }
    };
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "ERROR");
    }
    response.map(|inner| Body::new(SpanBody { inner, span }))
}

/// A response body that holds the request's span until it is done or dropped.
struct SpanBody {
    inner: Body,
    span: Span,
}

impl HttpBody for SpanBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        // Entered while the body is produced: OpenTelemetry ends a span at its last exit, so
        // the span covers the whole response.
        let this = &mut *self;
        let _entered = this.span.enter();
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
