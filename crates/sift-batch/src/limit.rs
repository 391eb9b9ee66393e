//! Rate limits shared by every worker of a job: requests per minute, tokens per minute, and
//! the pause an upstream's `429` asks for.
//!
//! Requests are spaced evenly (one every `60 / rpm` seconds, no burst), so the rate holds over
//! any window, not only per minute. Tokens come from a bucket refilled at `tpm / 60` per
//! second and holding at most ten seconds' worth; a call takes its estimate before it is sent
//! and the difference from its real usage is given back (or taken) when it is over. A call
//! estimated at more than the bucket holds waits for a full bucket and runs it into debt.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sift_core::Admission;
use tokio::time::Instant;

/// The limits of a job; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute (prompt and completion).
    pub tpm: Option<u64>,
}

/// Paces the calls of every worker of a job (see the module's doc).
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    state: Mutex<State>,
    pauses: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// The earliest time the next request may go.
    next_slot: Instant,
    /// Tokens available (negative: debt).
    tokens: f64,
    refilled: Instant,
    /// No call goes before this (a rate-limited upstream asked for it).
    paused_until: Option<Instant>,
}

/// How long a token bucket holds, in seconds of the rate.
const BUCKET_SECONDS: f64 = 10.0;

impl Limiter {
    /// A limiter for `limits`.
    pub fn new(limits: Limits) -> Self {
        let now = Instant::now();
        let limiter = Self {
            limits,
            state: Mutex::new(State {
                next_slot: now,
                tokens: 0.0,
                refilled: now,
                paused_until: None,
            }),
            pauses: AtomicU64::new(0),
        };
        if let Some(capacity) = limiter.capacity()
            && let Ok(mut s) = limiter.state.lock()
        {
            s.tokens = capacity;
        }
        limiter
    }

    /// How many times an upstream's rate limit paused the job.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }

    fn capacity(&self) -> Option<f64> {
        self.limits
            .tpm
            .map(|tpm| (tpm as f64 / 60.0 * BUCKET_SECONDS).max(1.0))
    }

    /// Takes a slot for a call of `tokens`, or says how long to wait before asking again.
    fn try_take(&self, tokens: u64) -> Result<(), Duration> {
        let mut s = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let now = Instant::now();
        if let Some(until) = s.paused_until {
            if until > now {
                return Err(until - now);
            }
            s.paused_until = None;
        }
        let mut need = 0.0;
        if let (Some(tpm), Some(capacity)) = (self.limits.tpm, self.capacity()) {
            let rate = tpm as f64 / 60.0;
            let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
            s.tokens = (s.tokens + elapsed * rate).min(capacity);
            s.refilled = now;
            need = tokens as f64;
            // A call bigger than the bucket goes once the bucket is full.
            let wanted = need.min(capacity);
            if s.tokens < wanted {
                return Err(Duration::from_secs_f64((wanted - s.tokens) / rate));
            }
        }
        if let Some(rpm) = self.limits.rpm.filter(|&n| n > 0) {
            if s.next_slot > now {
                return Err(s.next_slot - now);
            }
            let interval = Duration::from_secs_f64(60.0 / f64::from(rpm));
            s.next_slot = s.next_slot.max(now) + interval;
        }
        s.tokens -= need;
        Ok(())
    }
}

#[async_trait]
impl Admission for Limiter {
    async fn admit(&self, tokens: u64) {
        while let Err(wait) = self.try_take(tokens) {
            tokio::time::sleep(wait).await;
        }
    }

    fn settle(&self, estimated: u64, used: u64) {
        let Some(capacity) = self.capacity() else {
            return;
        };
        if let Ok(mut s) = self.state.lock() {
            s.tokens = (s.tokens + estimated as f64 - used as f64).min(capacity);
        }
    }

    fn back_off(&self, wait: Duration) {
        self.pauses.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            let until = Instant::now() + wait;
            s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_evenly() {
        let limiter = Limiter::new(Limits {
            rpm: Some(600),
            tpm: None,
        });
        let start = Instant::now();
        for _ in 0..11 {
            limiter.admit(10).await;
        }
        // Ten intervals of 100 ms after the first call.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_wait_for_the_bucket_and_usage_corrects_the_estimate() {
        // 600 per minute: 10 per second, 100 in the bucket.
        let limiter = Limiter::new(Limits {
            rpm: None,
            tpm: Some(600),
        });
        let start = Instant::now();
        limiter.admit(100).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The bucket is empty: 50 tokens take 5 s.
        limiter.admit(50).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // The last call used 10, not 50: 40 come back, so 40 more go at once.
        limiter.settle(50, 10);
        let before = Instant::now();
        limiter.admit(40).await;
        assert_eq!(before.elapsed(), Duration::ZERO);
        // A call bigger than the bucket waits for a full one, then goes.
        let before = Instant::now();
        limiter.admit(1000).await;
        assert_eq!(before.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_back_off_holds_every_caller() {
        let limiter = std::sync::Arc::new(Limiter::new(Limits::default()));
        limiter.back_off(Duration::from_secs(3));
        let start = Instant::now();
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move {
                    l.admit(1).await;
                    Instant::now()
                })
            })
            .collect();
        for w in waiting {
            assert_eq!(w.await.unwrap() - start, Duration::from_secs(3));
        }
        // A shorter pause does not shorten a longer one.
        limiter.back_off(Duration::from_secs(5));
        limiter.back_off(Duration::from_secs(1));
        let before = Instant::now();
        limiter.admit(1).await;
        assert_eq!(before.elapsed(), Duration::from_secs(5));
        assert_eq!(limiter.pauses(), 3);
    }
}
