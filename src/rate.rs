//! The per-connection message rate (S19): a token bucket that says when
//! the next message may be handed to the listener.
//!
//! This module owns [`Pace`], a plain value fed the current time: the
//! connection asks it before delivering each message and, when no token is
//! left, stops reading until the time it names (S15's demand), so TCP holds
//! the client back and nothing it sent is dropped. No actor, no timer here.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// Messages that had to wait for their token, process-wide.
static PACED: AtomicU64 = AtomicU64::new(0);

/// Messages, across the process, that waited for their token.
pub(crate) fn paced_messages() -> u64 {
    PACED.load(Ordering::Relaxed)
}

/// A token bucket: `per_second` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub(crate) struct Pace {
    /// Time one token takes to come back.
    period: Duration,
    burst: u32,
    /// Tokens saved up, at most `burst`.
    tokens: u32,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Pace {
    /// A full bucket for `per_second` messages a second (at least one) and
    /// bursts of `burst` (at least one).
    pub(crate) fn new(per_second: u32, burst: u32, now: Instant) -> Pace {
        let burst = burst.max(1);
        Pace {
            period: Duration::from_secs(1) / per_second.max(1),
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes a token for a message; `Err(when)` when none is left, with the
    /// moment the next one is due (the caller asks again then).
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Instant> {
        self.refill(now);
        if self.tokens > 0 {
            self.tokens -= 1;
            return Ok(());
        }
        PACED.fetch_add(1, Ordering::Relaxed);
        Err(self.at + self.period)
    }

    fn refill(&mut self, now: Instant) {
        if self.tokens >= self.burst {
            self.at = now;
            return;
        }
        let elapsed = now.saturating_duration_since(self.at);
        let earned = elapsed.as_nanos() / self.period.as_nanos().max(1);
        if earned == 0 {
            return;
        }
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        self.tokens = self.tokens.saturating_add(earned).min(self.burst);
        // Keep the part of a period already elapsed towards the next token.
        self.at = if self.tokens >= self.burst {
            now
        } else {
            self.at + self.period * earned
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_one_message_per_period() {
        let start = Instant::now();
        let mut pace = Pace::new(10, 3, start);
        for _ in 0..3 {
            assert_eq!(pace.take(start), Ok(()));
        }
        let due = pace.take(start).unwrap_err();
        assert_eq!(due, start + Duration::from_millis(100));
        assert_eq!(pace.take(due - Duration::from_millis(1)), Err(due));
        assert_eq!(pace.take(due), Ok(()));
        assert_eq!(pace.take(due), Err(due + Duration::from_millis(100)));
    }

    #[test]
    fn over_any_stretch_no_more_than_rate_times_time_plus_burst_pass() {
        let start = Instant::now();
        let mut pace = Pace::new(200, 5, start);
        let mut now = start;
        let mut passed = 0u32;
        // A client that asks every 1 ms for 2 s.
        for _ in 0..2000 {
            if pace.take(now).is_ok() {
                passed += 1;
            }
            now += Duration::from_millis(1);
        }
        assert!(passed <= 2 * 200 + 5, "{passed}");
        assert!(passed >= 2 * 200 - 1, "{passed}");
    }

    #[test]
    fn an_idle_connection_saves_up_only_its_burst() {
        let start = Instant::now();
        let mut pace = Pace::new(100, 4, start);
        let later = start + Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(pace.take(later), Ok(()));
        }
        assert!(pace.take(later).is_err());
    }
}
