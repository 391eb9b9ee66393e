//! The console: one line per span as it starts and per log, in the shape of Logfire's.
//!
//! ```text
//! 09:14:02.120 POST /user
//! 09:14:02.121   extract User
//! 09:14:02.121     chat gpt-4o-mini
//! 09:14:02.804     validate User succeeded
//! 09:14:02.805   /User returning {"name":"Jason","age":25}
//! ```
//!
//! The time is `HH:MM:SS.mmm` in [`ConsoleOptions::time_zone`]; each nesting level indents two spaces. When concurrent
//! work interleaves, a line whose parents were not the last thing printed is preceded by its
//! parents' lines again, so every line reads in its context. On a terminal, levels have
//! colours (debug blue, warnings yellow, errors red). The verbose mode prints each span's and
//! log's attributes under it, and for a span whose attributes are filled in later (tokens,
//! outcome) a closing line with them and its duration.
//!
//! Written by hand rather than with `tracing_subscriber::fmt`: that formatter prints events,
//! not spans as they start, and has no notion of reprinting a parent line.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::scrub::Scrubber;

pub use jiff::tz::TimeZone;

/// Where console lines go.
pub type ConsoleWriter = Box<dyn Write + Send>;

/// A clock for the console's timestamps (replaceable so tests are deterministic).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// How the console prints.
#[derive(Clone)]
pub struct ConsoleOptions {
    /// Print attributes too.
    pub verbose: bool,
    /// Colour levels with ANSI escapes.
    pub colors: bool,
    /// Where the time comes from.
    pub clock: Clock,
    /// The zone the time is shown in: UTC by default, the system's (`TZ`, else
    /// `/etc/localtime`) in `sift serve`, as Logfire's console shows local time.
    pub time_zone: TimeZone,
    /// Collect lines and write them this often (one write for many lines under load), or
    /// write each line at once (`None`, the default).
    pub flush_every: Option<Duration>,
}

impl std::fmt::Debug for ConsoleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleOptions")
            .field("verbose", &self.verbose)
            .field("colors", &self.colors)
            .field("time_zone", &self.time_zone.iana_name())
            .field("flush_every", &self.flush_every)
            .finish_non_exhaustive()
    }
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        Self {
            verbose: false,
            colors: false,
            clock: Arc::new(SystemTime::now),
            time_zone: TimeZone::UTC,
            flush_every: None,
        }
    }
}

/// The console layer.
pub struct ConsoleLayer {
    options: ConsoleOptions,
    scrubber: Arc<Scrubber>,
    state: Mutex<State>,
    sink: Arc<Sink>,
}

struct State {
    /// The spans of the last printed line, root first.
    printed: Vec<Id>,
    line: String,
}

/// Where finished lines go: straight to the writer, or into a buffer a background thread
/// writes out every `flush_every`, so that under load many lines cost one `write`.
pub struct Sink {
    pending: Mutex<Vec<u8>>,
    out: Mutex<ConsoleWriter>,
    buffered: bool,
}

/// Lines held before a write is forced, whatever the interval.
const MAX_PENDING: usize = 64 * 1024;

impl Sink {
    fn new(out: ConsoleWriter, flush_every: Option<Duration>) -> Arc<Self> {
        let sink = Arc::new(Self {
            pending: Mutex::new(Vec::new()),
            out: Mutex::new(out),
            buffered: flush_every.is_some(),
        });
        if let Some(every) = flush_every {
            let weak: Weak<Sink> = Arc::downgrade(&sink);
            let _ = std::thread::Builder::new()
                .name("sift-console".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(every);
                        match weak.upgrade() {
                            Some(sink) => sink.flush(),
                            None => return,
                        }
                    }
                });
        }
        sink
    }

    fn write(&self, line: &[u8]) {
        if !self.buffered {
            if let Ok(mut out) = self.out.lock() {
                let _ = out.write_all(line);
                let _ = out.flush();
            }
            return;
        }
        let full = match self.pending.lock() {
            Ok(mut pending) => {
                pending.extend_from_slice(line);
                pending.len() >= MAX_PENDING
            }
            Err(_) => false,
        };
        if full {
            self.flush();
        }
    }

    /// Writes out what is pending.
    pub fn flush(&self) {
        let Ok(mut out) = self.out.lock() else { return };
        let lines = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::take(&mut *pending),
            _ => return,
        };
        let _ = out.write_all(&lines);
        let _ = out.flush();
    }
}

/// What the console keeps of a span.
struct SpanLine {
    message: String,
    level: Level,
    attributes: Vec<(&'static str, String)>,
    late: Vec<(&'static str, String)>,
    started: Instant,
}

/// Fields collected from a span or an event.
#[derive(Default)]
struct Fields<'t> {
    message: Option<String>,
    name: Option<String>,
    attributes: Vec<(&'static str, String)>,
    /// Collect only the message, the name and the fields this template mentions (the
    /// console without `-v` prints nothing else); `None` collects everything.
    only: Option<&'t str>,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.wants(field) {
            self.put(field, value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.wants(field) {
            self.put(field, format!("{value:?}"));
        }
    }
}

impl Fields<'_> {
    fn wants(&self, field: &Field) -> bool {
        let name = field.name();
        match self.only {
            None => true,
            Some(template) => {
                name == "message"
                    || name == "otel.name"
                    || (template.len() > name.len() + 1 && mentions(template, name))
            }
        }
    }

    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = Some(value),
            "otel.name" => self.name = Some(value),
            n if n.starts_with("otel.") || n.starts_with("logfire.") => {}
            n => self.attributes.push((n, value)),
        }
    }
}

/// Whether `template` has `{name}`.
fn mentions(template: &str, name: &str) -> bool {
    template
        .match_indices(name)
        .any(|(i, _)| template[..i].ends_with('{') && template[i + name.len()..].starts_with('}'))
}

/// Replaces `{field}` in a message template with the field's value.
pub(crate) fn interpolate(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}');
        let name = close.map(|c| &after[..c]);
        match name
            .filter(|n| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            })
            .and_then(|n| lookup(n).map(|v| (n, v)))
        {
            Some((n, value)) => {
                out.push_str(&value);
                rest = &after[n.len() + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl ConsoleLayer {
    /// A console writing to `out`.
    pub fn new(options: ConsoleOptions, scrubber: Arc<Scrubber>, out: ConsoleWriter) -> Self {
        let sink = Sink::new(out, options.flush_every);
        Self {
            options,
            scrubber,
            state: Mutex::new(State {
                printed: Vec::new(),
                line: String::new(),
            }),
            sink,
        }
    }

    /// The console's output, to flush at exit.
    pub fn sink(&self) -> Arc<Sink> {
        self.sink.clone()
    }

    fn scrubbed(&self, key: &str, value: String) -> String {
        self.scrubber.scrub_attribute(key, &value).unwrap_or(value)
    }

    fn timestamp(&self, out: &mut String) {
        let now = (self.options.clock)();
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let offset = jiff::Timestamp::try_from(now)
            .map_or(0, |t| self.options.time_zone.to_offset(t).seconds());
        let secs = (since.as_secs() as i64 + i64::from(offset)).rem_euclid(86_400);
        let _ = write!(
            out,
            "{:02}:{:02}:{:02}.{:03}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            since.subsec_millis()
        );
    }

    fn push_line(&self, out: &mut String, depth: usize, level: Level, message: &str) {
        let colors = self.options.colors;
        if colors {
            out.push_str("\x1b[2m");
        }
        self.timestamp(out);
        if colors {
            out.push_str("\x1b[0m");
        }
        out.push(' ');
        for _ in 0..depth {
            out.push_str("  ");
        }
        let color = match level {
            Level::ERROR => Some("\x1b[31m"),
            Level::WARN => Some("\x1b[33m"),
            Level::DEBUG | Level::TRACE => Some("\x1b[34m"),
            Level::INFO => None,
        };
        match color.filter(|_| colors) {
            Some(c) => {
                out.push_str(c);
                out.push_str(message);
                out.push_str("\x1b[0m");
            }
            None => out.push_str(message),
        }
        out.push('\n');
    }

    fn push_attributes(
        &self,
        out: &mut String,
        depth: usize,
        attributes: &[(&'static str, String)],
    ) {
        for (key, value) in attributes {
            // The width of the timestamp and its space.
            out.push_str("             ");
            for _ in 0..=depth {
                out.push_str("  ");
            }
            if self.options.colors {
                out.push_str("\x1b[2m");
            }
            let _ = write!(out, "│ {key}={value}");
            if self.options.colors {
                out.push_str("\x1b[0m");
            }
            out.push('\n');
        }
    }

    /// Prints the lines of `chain`'s spans that the last line did not show, then `f`'s lines,
    /// and remembers `then` as the printed context.
    fn print<S>(
        &self,
        ctx: &Context<'_, S>,
        chain: Vec<Id>,
        then: Vec<Id>,
        f: impl FnOnce(&mut String),
    ) where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let state = &mut *state;
        let mut line = std::mem::take(&mut state.line);
        line.clear();
        let common = state
            .printed
            .iter()
            .zip(&chain)
            .take_while(|(a, b)| a == b)
            .count();
        for (depth, id) in chain.iter().enumerate().skip(common) {
            if let Some(span) = ctx.span(id)
                && let Some(data) = span.extensions().get::<SpanLine>()
            {
                self.push_line(&mut line, depth, data.level, &data.message);
            }
        }
        f(&mut line);
        self.sink.write(line.as_bytes());
        state.line = line;
        state.printed = then;
    }
}

fn chain<S>(ctx: &Context<'_, S>, id: &Id) -> Vec<Id>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ctx.span_scope(id)
        .map(|scope| scope.from_root().map(|s| s.id()).collect())
        .unwrap_or_default()
}

impl<S> tracing_subscriber::Layer<S> for ConsoleLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields {
            only: (!self.options.verbose).then_some(""),
            ..Fields::default()
        };
        attrs.record(&mut fields);
        let name = fields.name.take().unwrap_or_else(|| span.name().to_owned());
        let message = self.scrubber.scrub_message(&name).into_owned();
        let attributes: Vec<_> = if self.options.verbose {
            fields
                .attributes
                .into_iter()
                .map(|(k, v)| (k, self.scrubbed(k, v)))
                .collect()
        } else {
            Vec::new()
        };
        let level = *span.metadata().level();
        span.extensions_mut().insert(SpanLine {
            message,
            level,
            attributes,
            late: Vec::new(),
            started: Instant::now(),
        });
        let path = chain(&ctx, id);
        let (parents, depth) = (
            path[..path.len().saturating_sub(1)].to_vec(),
            path.len().saturating_sub(1),
        );
        self.print(&ctx, parents, path, |line| {
            let ext = span.extensions();
            if let Some(data) = ext.get::<SpanLine>() {
                self.push_line(line, depth, data.level, &data.message);
                self.push_attributes(line, depth, &data.attributes);
            }
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if !self.options.verbose {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut ext = span.extensions_mut();
        if let Some(data) = ext.get_mut::<SpanLine>() {
            for (k, v) in fields.attributes {
                let v = self.scrubbed(k, v);
                data.late.retain(|(key, _)| *key != k);
                data.late.push((k, v));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let (template, attributes) = if self.options.verbose {
            let mut fields = Fields::default();
            event.record(&mut fields);
            (fields.message.unwrap_or_default(), fields.attributes)
        } else {
            // The message first; then only the fields it mentions.
            let mut first = Fields {
                only: Some(""),
                ..Fields::default()
            };
            event.record(&mut first);
            let template = first.message.unwrap_or_default();
            let mut fields = Fields {
                only: Some(&template),
                ..Fields::default()
            };
            if template.contains('{') {
                event.record(&mut fields);
            }
            let attributes = fields.attributes;
            (template, attributes)
        };
        let attributes: Vec<_> = attributes
            .into_iter()
            .map(|(k, v)| (k, self.scrubbed(k, v)))
            .collect();
        let message = interpolate(&template, |name| {
            attributes
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        });
        let message = self.scrubber.scrub_message(&message).into_owned();
        let path = ctx
            .event_span(event)
            .map(|s| chain(&ctx, &s.id()))
            .unwrap_or_default();
        let depth = path.len();
        let level = *event.metadata().level();
        let verbose = self.options.verbose;
        self.print(&ctx, path.clone(), path, |line| {
            self.push_line(line, depth, level, &message);
            if verbose {
                self.push_attributes(line, depth, &attributes);
            }
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if !self.options.verbose {
            return;
        }
        let Some(span) = ctx.span(&id) else { return };
        let Some((late, ms)) = span
            .extensions()
            .get::<SpanLine>()
            .filter(|d| !d.late.is_empty())
            .map(|d| (d.late.clone(), d.started.elapsed().as_secs_f64() * 1000.0))
        else {
            return;
        };
        let path = chain(&ctx, &id);
        let depth = path.len().saturating_sub(1);
        let level = *span.metadata().level();
        let parent = path[..depth].to_vec();
        self.print(&ctx, path, parent, |line| {
            let closing = format!("↳ done in {ms:.1} ms");
            self.push_line(line, depth + 1, level, &closing);
            self.push_attributes(line, depth + 1, &late);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    #[test]
    fn templates_take_field_values() {
        let look = |n: &str| (n == "value").then(|| "42".to_owned());
        assert_eq!(
            interpolate("/User returning {value}", look),
            "/User returning 42"
        );
        assert_eq!(interpolate("{missing} {value}", look), "{missing} 42");
        assert_eq!(interpolate("a { b } {value", look), "a { b } {value");
        assert_eq!(interpolate("{}{value}{", look), "{}42{");
    }
}
