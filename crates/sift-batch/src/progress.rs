//! What a running job shows: a progress bar on a terminal, a plain line now and then
//! otherwise, and the summary at the end.

use std::time::{Duration, Instant};

use serde::Serialize;
use sift_core::Usage;
use sift_core::report::UsageReport;

/// How progress is shown (on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// An indicatif bar (for a terminal).
    Bar,
    /// A plain line every so often (for logs and pipes).
    Lines(Duration),
    /// Nothing.
    Off,
}

/// Why a job stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// Interrupted once: no new work was taken; the calls in flight finished.
    Interrupted,
    /// Interrupted twice: the calls in flight were abandoned (their items are done on resume).
    Abandoned,
    /// `--max-cost` was reached: no new work was taken.
    MaxCost,
}

/// Counts of a job, live and at its end.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The output file.
    pub output: String,
    /// Items in the input.
    pub total: usize,
    /// Items already in the output when the job started (not done again).
    pub skipped: usize,
    /// Items done by this run.
    pub done: usize,
    /// Of those, the ones with a value.
    pub succeeded: usize,
    /// Of those, the ones with an error.
    pub failed: usize,
    /// Items still to do (a rerun does them).
    pub remaining: usize,
    /// Tokens spent by this run.
    pub usage: UsageReport,
    /// Prompt tokens served from the provider's cache.
    pub cached_input_tokens: u64,
    /// What this run cost in USD, when the prices of every model used are known.
    pub cost_usd: Option<f64>,
    /// Items whose model has no prices in the config (their cost is unknown).
    pub unpriced: usize,
    /// Times an upstream's rate limit paused every worker.
    pub rate_limit_pauses: u64,
    /// Wall time of this run, in seconds.
    pub elapsed_s: f64,
    /// Items per second in this run.
    pub rate_per_s: f64,
    /// Why the run stopped before the end, if it did.
    pub stopped: Option<Stopped>,
}

/// The running counts, and what shows them.
pub(crate) struct Tally {
    pub(crate) summary: Summary,
    usage: Usage,
    cost: f64,
    started: Instant,
    display: Display,
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
}

impl Tally {
    pub(crate) fn new(output: String, total: usize, skipped: usize, display: Display) -> Self {
        let todo = total.saturating_sub(skipped);
        let bar = (display == Display::Bar).then(|| {
            let bar = indicatif::ProgressBar::new(todo as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Self {
            summary: Summary {
                output,
                total,
                skipped,
                done: 0,
                succeeded: 0,
                failed: 0,
                remaining: todo,
                usage: Usage::default().into(),
                cached_input_tokens: 0,
                cost_usd: Some(0.0),
                unpriced: 0,
                rate_limit_pauses: 0,
                elapsed_s: 0.0,
                rate_per_s: 0.0,
                stopped: None,
            },
            usage: Usage::default(),
            cost: 0.0,
            started: now,
            display,
            bar,
            last_line: now,
        }
    }

    /// One item done: `cost` is `None` when its model has no prices.
    pub(crate) fn add(&mut self, ok: bool, usage: Usage, cost: Option<f64>) {
        let s = &mut self.summary;
        s.done += 1;
        s.remaining = s.remaining.saturating_sub(1);
        if ok {
            s.succeeded += 1;
        } else {
            s.failed += 1;
        }
        self.usage += usage;
        match cost {
            Some(c) => self.cost += c,
            None => s.unpriced += 1,
        }
        self.refresh();
        if let Some(bar) = &self.bar {
            bar.set_position(self.summary.done as u64);
            bar.set_message(self.message());
        }
    }

    /// What this run has spent, in USD, on the items whose prices are known.
    pub(crate) fn spent(&self) -> f64 {
        self.cost
    }

    fn refresh(&mut self) {
        let s = &mut self.summary;
        s.usage = self.usage.into();
        s.cached_input_tokens = self.usage.cached_input_tokens;
        s.cost_usd = (s.unpriced == 0).then_some(self.cost);
        s.elapsed_s = self.started.elapsed().as_secs_f64();
        s.rate_per_s = if s.elapsed_s > 0.0 {
            s.done as f64 / s.elapsed_s
        } else {
            0.0
        };
    }

    fn message(&self) -> String {
        let s = &self.summary;
        let mut m = format!("{} failed, {} tokens", s.failed, self.usage.total_tokens());
        if s.done > s.unpriced {
            m.push_str(&format!(", ${:.4}", self.cost));
            if s.unpriced > 0 {
                m.push_str(" (some unpriced)");
            }
        }
        m
    }

    /// Called now and then: prints the plain line when it is due.
    pub(crate) fn tick(&mut self, pauses: u64) {
        self.summary.rate_limit_pauses = pauses;
        if let Display::Lines(every) = self.display
            && self.last_line.elapsed() >= every
        {
            self.last_line = Instant::now();
            self.refresh();
            eprintln!("sift batch: {}", self.line());
        }
    }

    /// The one-line state: `120/1000 done (3 failed), 12.3/s, ETA 71s, 45000 tokens, $0.0123`.
    pub(crate) fn line(&self) -> String {
        let s = &self.summary;
        let todo = s.total.saturating_sub(s.skipped);
        let eta = if s.rate_per_s > 0.0 {
            format!("{:.0}s", s.remaining as f64 / s.rate_per_s)
        } else {
            "unknown".into()
        };
        format!(
            "{}/{} done, {:.1}/s, ETA {eta}, {}",
            s.done,
            todo,
            s.rate_per_s,
            self.message()
        )
    }

    /// The end: the bar cleared, the counts final.
    pub(crate) fn finish(mut self, stopped: Option<Stopped>, pauses: u64) -> Summary {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.refresh();
        self.summary.rate_limit_pauses = pauses;
        self.summary.stopped = stopped;
        self.summary
    }
}

impl Summary {
    /// The summary for people, several lines.
    pub fn human(&self) -> String {
        let mut out = format!(
            "{}: {} done in {:.1}s ({:.1}/s): {} succeeded, {} failed",
            self.output, self.done, self.elapsed_s, self.rate_per_s, self.succeeded, self.failed
        );
        if self.skipped > 0 {
            out.push_str(&format!("; {} already done before", self.skipped));
        }
        out.push_str(&format!(
            "\ntokens: {} in ({} cached), {} out",
            self.usage.input_tokens, self.cached_input_tokens, self.usage.output_tokens
        ));
        match self.cost_usd {
            Some(c) => out.push_str(&format!("; cost ${c:.4}")),
            None => out.push_str(&format!(
                "; cost unknown ({} items of a model with no prices in the config)",
                self.unpriced
            )),
        }
        if self.rate_limit_pauses > 0 {
            out.push_str(&format!(
                "\nrate limited: every worker paused {} times",
                self.rate_limit_pauses
            ));
        }
        match self.stopped {
            None => {}
            Some(Stopped::Interrupted) => out.push_str(&format!(
                "\ninterrupted: {} items remain; run the same command again to finish",
                self.remaining
            )),
            Some(Stopped::Abandoned) => out.push_str(&format!(
                "\ninterrupted twice, calls in flight abandoned: {} items remain; run the same \
                 command again to finish",
                self.remaining
            )),
            Some(Stopped::MaxCost) => out.push_str(&format!(
                "\nstopped: --max-cost reached (calls already in flight finished); {} items \
                 remain",
                self.remaining
            )),
        }
        out
    }
}
