//! The client's frame rate: a token bucket (`limits.events_per_second`,
//! `limits.events_burst`) over every frame the client sends, pings and
//! audio appends included.
//!
//! A frame over the rate is dropped unread. The client hears about it at
//! most once a second (an `error` event, `rate_limited`), so that refusing
//! costs less than the flood; a client still over the rate in
//! [`STRIKES`] consecutive seconds is closed with 1008.

use std::time::{Duration, Instant};

/// Consecutive seconds with refused frames before the client is closed: a
/// client that bursts once and backs off is served; one that keeps pushing
/// is not worth the work of refusing it.
pub const STRIKES: u32 = 3;

const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Drop the frame; `tell` the client (the first refusal in a window).
    Refuse {
        tell: bool,
    },
    /// Sustained: close the client.
    Close,
}

pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// When the current window of refusals began.
    window: Option<Instant>,
    /// Consecutive windows with refusals.
    strikes: u32,
}

impl RateLimit {
    pub fn new(per_second: u32, burst: u32, now: Instant) -> RateLimit {
        RateLimit {
            rate: per_second as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            refilled: now,
            window: None,
            strikes: 0,
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        match self.window {
            Some(start) if now.saturating_duration_since(start) < WINDOW => {
                Verdict::Refuse { tell: false }
            }
            previous => {
                let consecutive =
                    previous.is_some_and(|s| now.saturating_duration_since(s) < 2 * WINDOW);
                self.strikes = if consecutive { self.strikes + 1 } else { 1 };
                self.window = Some(now);
                if self.strikes >= STRIKES {
                    Verdict::Close
                } else {
                    Verdict::Refuse { tell: true }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pass_floods_are_refused_then_closed() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(r.check(t0), Verdict::Accept);
        }
        assert_eq!(r.check(t0), Verdict::Refuse { tell: true });
        assert_eq!(r.check(t0), Verdict::Refuse { tell: false });
        // 100 ms later one token has come back.
        let t = t0 + Duration::from_millis(100);
        assert_eq!(r.check(t), Verdict::Accept);
        // Still flooding a second later, and a second after that: closed.
        let mut at = t0;
        let mut verdicts = Vec::new();
        for ms in (0..2500).step_by(1) {
            at = t0 + Duration::from_millis(ms);
            let v = r.check(at);
            if v != Verdict::Accept && v != (Verdict::Refuse { tell: false }) {
                verdicts.push(v);
            }
            if verdicts.last() == Some(&Verdict::Close) {
                break;
            }
        }
        assert_eq!(
            verdicts,
            vec![Verdict::Refuse { tell: true }, Verdict::Close]
        );
        assert!(at >= t0 + Duration::from_secs(2));
    }

    #[test]
    fn a_client_within_the_rate_is_never_refused() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(50, 100, t0);
        for i in 0..5000 {
            assert_eq!(r.check(t0 + Duration::from_millis(20 * i)), Verdict::Accept);
        }
    }
}
