//! Golden tests of the console.

use sift_telemetry::TelemetryBuilder;
use sift_telemetry::console::ConsoleOptions;
use sift_test_support::Reply;

use crate::{Buffer, Options, harness, test_clock};

const DANIEL: &str = r#"{"name": "Daniel", "age": 24}"#;

#[tokio::test]
async fn user_request_reads_as_a_tree() {
    let h = harness(Options::default()).await;
    h.upstream
        .push(Reply::tool_call(
            "UserDetail",
            r#"{"name": "Daniel", "age": "old"}"#,
        ))
        .push(Reply::tool_call("UserDetail", DANIEL).usage(57, 12));
    let (status, _) = h
        .call("POST", "/user", r#"{"query": "Daniel is 24"}"#)
        .await;
    assert_eq!(status, 200);
    insta::assert_snapshot!(h.console.text(), @r#"
    09:14:02.000 POST /user
    09:14:02.001   extract UserDetail
    09:14:02.002     chat gpt-4o-mini
    09:14:02.003     validate UserDetail failed
    09:14:02.004     chat gpt-4o-mini
    09:14:02.005     validate UserDetail succeeded
    09:14:02.006   /User returning {"name":"Daniel","age":24}
    "#);
}

#[tokio::test]
async fn debug_level_shows_the_arguments() {
    let h = harness(Options {
        console_filter: "debug,h2=info,hyper=info,hyper_util=info,reqwest=info",
        ..Options::default()
    })
    .await;
    h.upstream.push(Reply::tool_call("UserDetail", DANIEL));
    let (status, _) = h
        .call("POST", "/user", r#"{"query": "Daniel is 24"}"#)
        .await;
    assert_eq!(status, 200);
    let text = h.console.text();
    let lines: Vec<&str> = text.lines().map(|l| &l[13..]).collect();
    assert_eq!(lines[0], "POST /user");
    assert_eq!(lines[1], "  request arguments");
    assert!(lines.contains(&"  extract UserDetail"), "{text}");
}

#[tokio::test]
async fn verbose_prints_attributes_and_what_the_span_learned_when_it_closed() {
    let h = harness(Options {
        verbose: true,
        ..Options::default()
    })
    .await;
    h.upstream
        .push(Reply::tool_call("UserDetail", DANIEL).usage(57, 12));
    let (status, _) = h
        .call("POST", "/user", r#"{"query": "Daniel is 24"}"#)
        .await;
    assert_eq!(status, 200);
    insta::with_settings!({filters => vec![
        (r"done in \d+\.\d ms", "done in [ms]"),
        (r"chatcmpl-\d+", "chatcmpl-[n]"),
    ]}, {
        insta::assert_snapshot!(h.console.text());
    });
}

#[test]
fn interleaved_spans_reprint_their_parents() {
    let text = console_text(ConsoleOptions::default(), "info", || {
        let request = tracing::info_span!("request", otel.name = "POST /many-users");
        let _r = request.enter();
        let a = tracing::info_span!("extract", otel.name = "extract Sarah");
        let b = tracing::info_span!("extract", otel.name = "extract Jeffrey");
        let chat_a = tracing::info_span!(parent: &a, "chat", otel.name = "chat gpt-4o-mini");
        let chat_b = tracing::info_span!(parent: &b, "chat", otel.name = "chat gpt-4o-mini");
        tracing::warn!(parent: &chat_a, "slow answer");
        tracing::info!(parent: &a, "Sarah done");
        tracing::info!(parent: &b, "Jeffrey done");
        drop((chat_a, chat_b));
        tracing::info!(count = 2, "returning {{count}} users");
    });
    insta::assert_snapshot!(text, @r"
    09:14:02.000 POST /many-users
    09:14:02.001   extract Sarah
    09:14:02.002   extract Jeffrey
    09:14:02.003   extract Sarah
    09:14:02.004     chat gpt-4o-mini
    09:14:02.005   extract Jeffrey
    09:14:02.006     chat gpt-4o-mini
    09:14:02.007   extract Sarah
    09:14:02.008     chat gpt-4o-mini
    09:14:02.009       slow answer
    09:14:02.010     Sarah done
    09:14:02.011   extract Jeffrey
    09:14:02.012     Jeffrey done
    09:14:02.013   returning 2 users
    ");
}

#[test]
fn colours_mark_levels_on_a_terminal() {
    let colors = ConsoleOptions {
        colors: true,
        ..ConsoleOptions::default()
    };
    let text = console_text(colors, "debug", || {
        tracing::debug!("d");
        tracing::info!("i");
        tracing::warn!("w");
        tracing::error!("e");
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "\x1b[2m09:14:02.000\x1b[0m \x1b[34md\x1b[0m");
    assert_eq!(lines[1], "\x1b[2m09:14:02.001\x1b[0m i");
    assert_eq!(lines[2], "\x1b[2m09:14:02.002\x1b[0m \x1b[33mw\x1b[0m");
    assert_eq!(lines[3], "\x1b[2m09:14:02.003\x1b[0m \x1b[31me\x1b[0m");
}

#[test]
fn the_time_is_shown_in_the_configured_zone() {
    let line = |time_zone: sift_telemetry::console::TimeZone| {
        let options = ConsoleOptions {
            time_zone,
            ..ConsoleOptions::default()
        };
        console_text(options, "info", || tracing::info!("hello"))
    };
    // The test clock reads 09:14:02.000 UTC.
    assert!(line(sift_telemetry::console::TimeZone::UTC).starts_with("09:14:02.000 hello"));
    let plus_two = sift_telemetry::console::TimeZone::fixed(jiff::tz::offset(2));
    assert!(line(plus_two).starts_with("11:14:02.000 hello"));
    // West of Greenwich across midnight: 09:14 UTC is 23:14 the day before at -10.
    let minus_ten = sift_telemetry::console::TimeZone::fixed(jiff::tz::offset(-10));
    assert!(line(minus_ten).starts_with("23:14:02.000 hello"));
}

/// What the console alone (with the test clock and `filter`) prints while `record` runs.
fn console_text(options: ConsoleOptions, filter: &str, record: impl FnOnce()) -> String {
    let out = Buffer::default();
    let telemetry = TelemetryBuilder::new(sift_telemetry::TelemetryConfig {
        console: Some(ConsoleOptions {
            clock: test_clock(),
            ..options
        }),
        console_filter: filter.into(),
        ..Default::default()
    })
    .console_writer(Box::new(out.clone()))
    .build()
    .unwrap();
    tracing::dispatcher::with_default(telemetry.dispatch(), record);
    out.text()
}
