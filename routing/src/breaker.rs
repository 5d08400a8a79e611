//! A circuit breaker per upstream broker: fail fast while a broker is down, probe it back.
//!
//! ```text
//!   closed ──(N consecutive failures)──▶ open ──(open_for elapsed)──▶ half-open
//!     ▲                                   ▲                              │ one probe
//!     └──────────── probe succeeds ───────┼──────────────────────────────┤
//!                                         └──────── probe fails ─────────┘
//! ```
//!
//! A failure is what says the broker itself is unwell: no connection, a timeout, a broken exchange,
//! a 5xx. A 4xx is the broker working. While open, calls are refused *before* anything is sent
//! (so nothing can be orphaned) and the broker counts as unhealthy for placement. The catalog
//! refresher's fetches count too, so a broker that comes back closes its breaker on its own.
//! Time is an argument (`Instant`), so the state machine is tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Consecutive failures that open the breaker.
pub const DEFAULT_FAILURES: u32 = 5;
/// How long the breaker stays open before a probe.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(10);

/// The breaker's state, as the admin API and metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `probe`: when the probe in flight left; a probe that never reports (its caller gave up
    /// before sending) is replaced after `open_for`.
    HalfOpen {
        probe: Option<Instant>,
    },
}

/// See the module docs.
#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new(DEFAULT_FAILURES, DEFAULT_OPEN_FOR)
    }
}

impl Breaker {
    pub fn new(failures: u32, open_for: Duration) -> Self {
        Breaker {
            failures: failures.max(1),
            open_for,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go now. In half-open, only one probe goes at a time.
    pub fn allow(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } if now >= until => {
                *inner = Inner::HalfOpen { probe: Some(now) };
                true
            }
            Inner::Open { .. } => false,
            Inner::HalfOpen { probe: Some(since) } if now < since + self.open_for => false,
            Inner::HalfOpen { .. } => {
                *inner = Inner::HalfOpen { probe: Some(now) };
                true
            }
        }
    }

    /// Records a call's outcome: `healthy` unless the broker failed (see the module docs).
    pub fn record(&self, healthy: bool, now: Instant) {
        let mut inner = self.lock();
        *inner = match (&*inner, healthy) {
            (_, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, false) if failures + 1 < self.failures => Inner::Closed {
                failures: failures + 1,
            },
            (Inner::Open { until }, false) => Inner::Open { until: *until },
            (_, false) => Inner::Open {
                until: now + self.open_for,
            },
        };
    }

    /// `true` while calls are refused without a probe (open, time not up): the cheap check made
    /// before any work is done for a call.
    pub fn is_open(&self, now: Instant) -> bool {
        self.state(now) == BreakerState::Open
    }

    /// The state at `now` (an open breaker whose time is up shows as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// A retry budget: retries may add at most `ratio` of the calls made (plus a small reserve), so a
/// sick broker is not hammered by retries.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: Mutex<f64>,
    ratio: f64,
    max: f64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            tokens: Mutex::new(10.0),
            ratio: 0.1,
            max: 10.0,
        }
    }
}

impl RetryBudget {
    /// A call was made: it earns `ratio` of a retry.
    pub fn deposit(&self) {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *tokens = (*tokens + self.ratio).min(self.max);
    }

    /// Takes one retry from the budget, if there is one.
    pub fn withdraw(&self) -> bool {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_probes_back() {
        let t0 = Instant::now();
        let b = Breaker::new(3, Duration::from_secs(10));
        assert!(b.allow(t0));
        b.record(false, t0);
        b.record(false, t0);
        b.record(true, t0); // a success resets the count
        b.record(false, t0);
        b.record(false, t0);
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.record(false, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(9)), "fails fast while open");
        // Time is up: one probe goes, a second waits for it.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert!(b.allow(t1));
        assert!(!b.allow(t1));
        b.record(false, t1);
        assert_eq!(b.state(t1), BreakerState::Open, "a failed probe opens it again");
        let t2 = t1 + Duration::from_secs(10);
        assert!(b.allow(t2));
        b.record(true, t2);
        assert_eq!(b.state(t2), BreakerState::Closed);
        assert!(b.allow(t2));
    }

    #[test]
    fn retries_are_budgeted() {
        let budget = RetryBudget::default();
        let mut granted = 0;
        for _ in 0..100 {
            budget.deposit();
            if budget.withdraw() {
                granted += 1;
            }
        }
        // 10 in reserve plus 10 % of 100 calls.
        assert!((19..=21).contains(&granted), "{granted}");
        for _ in 0..5 {
            assert!(!budget.withdraw());
        }
    }
}
