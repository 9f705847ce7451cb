//! The daemon's counters and histograms, read by `GET /metrics`
//! (`endpoints::metrics` renders them with the live gauges the central
//! loop adds).
//!
//! They are process-wide statics of relaxed atomics, not `Rc`s threaded
//! through every session: the journal thread records sync latencies and
//! the executor thread everything else, and a scrape reads them without
//! taking anything a session holds. Label sets are fixed enums, so the
//! registry cannot grow with what clients send.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::journal::EndReason;

/// A monotonic count.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A Prometheus histogram with fixed upper bounds, in seconds.
pub struct Histogram<const N: usize> {
    bounds: [f64; N],
    /// Observations at or under each bound (not cumulative; summed when
    /// rendered).
    counts: [AtomicU64; N],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    const fn new(bounds: [f64; N]) -> Histogram<N> {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros
            .fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// The cumulative buckets (`le`, count), the sum in seconds and the count.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(&b, c)| {
                running += c.load(Relaxed);
                (b, running)
            })
            .collect();
        (
            buckets,
            self.sum_micros.load(Relaxed) as f64 / 1e6,
            self.count.load(Relaxed),
        )
    }
}

/// Which way a relayed message went.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// From the candidate's client to the upstream interviewer.
    ToUpstream,
    /// From the upstream interviewer to the candidate's client.
    ToClient,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::ToUpstream, Direction::ToClient];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToUpstream => "to_upstream",
            Direction::ToClient => "to_client",
        }
    }
}

/// How an assessment ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Completed,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 2] = [Outcome::Completed, Outcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
        }
    }
}

pub const END_REASONS: [EndReason; 5] = [
    EndReason::Completed,
    EndReason::ClientClosed,
    EndReason::Stale,
    EndReason::Shutdown,
    EndReason::Error,
];

/// Engines, in the order of [`Metrics::sessions_started`].
pub const ENGINES: [&str; 2] = ["scripted", "openai"];

/// Why an invite token was turned away, in the order of
/// [`Metrics::invite_refusals`] (`invites::Refusal::as_str`).
pub const INVITE_REFUSALS: [&str; 5] = ["missing", "unknown", "expired", "used", "revoked"];

/// Why a connection was refused before its handshake, in the order of
/// [`Metrics::connections_refused`] (`admission::Refusal`'s variants).
pub const CONNECTION_REFUSALS: [&str; 4] = [
    "handshakes",
    "handshakes_per_ip",
    "sessions",
    "sessions_per_ip",
];

pub struct Metrics {
    /// Sessions that began an interview, by engine ([`ENGINES`]); a
    /// resumed session is not counted again.
    pub sessions_started: [Counter; 2],
    /// Sessions whose transcript got its end line, by [`END_REASONS`].
    pub sessions_ended: [Counter; 5],
    /// Assessments by [`Outcome`], and how long they took.
    pub assessments: [Counter; 2],
    pub assessment_seconds: Histogram<11>,
    /// fdatasync of transcript lines, on the journal thread.
    pub journal_sync_seconds: Histogram<12>,
    /// Messages and bytes relayed between clients and the upstream
    /// interviewer, by [`Direction`].
    pub relayed_messages: [Counter; 2],
    pub relayed_bytes: [Counter; 2],
    /// Upstream connections lost and made again mid-interview.
    pub upstream_reconnects: Counter,
    /// Interviews the upstream could not carry (`upstream_unavailable`).
    pub upstream_failures: Counter,
    /// Invite tokens refused, by [`INVITE_REFUSALS`].
    pub invite_refusals: [Counter; 5],
    /// Connections refused over the admission limits, by
    /// [`CONNECTION_REFUSALS`].
    pub connections_refused: [Counter; 4],
}

pub static METRICS: Metrics = Metrics {
    sessions_started: [const { Counter::new() }; 2],
    sessions_ended: [const { Counter::new() }; 5],
    assessments: [const { Counter::new() }; 2],
    // Built-in rubric: milliseconds; an LLM: 5-60 s; the timeout: 2 min.
    assessment_seconds: Histogram::new([
        0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
    ]),
    // A local SSD syncs in well under a millisecond; a cloud block device
    // in a few; past a second the disk is in trouble.
    journal_sync_seconds: Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
    ]),
    relayed_messages: [const { Counter::new() }; 2],
    relayed_bytes: [const { Counter::new() }; 2],
    upstream_reconnects: Counter::new(),
    upstream_failures: Counter::new(),
    invite_refusals: [const { Counter::new() }; 5],
    connections_refused: [const { Counter::new() }; 4],
};

pub fn session_started(engine: &str) {
    if let Some(i) = ENGINES.iter().position(|e| *e == engine) {
        METRICS.sessions_started[i].inc();
    }
}

pub fn session_ended(reason: EndReason) {
    if let Some(i) = END_REASONS.iter().position(|r| *r == reason) {
        METRICS.sessions_ended[i].inc();
    }
}

/// An assessment's result, and how long it took.
pub fn assessed<T, E>(result: &Result<T, E>, took: Duration) {
    let outcome = match result {
        Ok(_) => Outcome::Completed,
        Err(_) => Outcome::Failed,
    };
    METRICS.assessments[outcome as usize].inc();
    METRICS.assessment_seconds.observe(took);
}

pub fn relayed(direction: Direction, bytes: usize) {
    METRICS.relayed_messages[direction as usize].inc();
    METRICS.relayed_bytes[direction as usize].add(bytes as u64);
}

pub fn invite_refused(reason: &str) {
    if let Some(i) = INVITE_REFUSALS.iter().position(|r| *r == reason) {
        METRICS.invite_refusals[i].inc();
    }
}

pub fn connection_refused(refusal: crate::admission::Refusal) {
    METRICS.connections_refused[refusal as usize].inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_in_seconds() {
        let h = Histogram::new([0.001, 0.01, 1.0]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        let (buckets, sum, count) = h.snapshot();
        assert_eq!(buckets, vec![(0.001, 1), (0.01, 3), (1.0, 3)]);
        assert_eq!(count, 4);
        assert!((sum - 3.0105).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn label_lists_match_the_enums_they_name() {
        for (i, r) in END_REASONS.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.as_str());
        }
        for r in [
            crate::invites::Refusal::Missing,
            crate::invites::Refusal::Unknown,
            crate::invites::Refusal::Expired,
            crate::invites::Refusal::Used,
            crate::invites::Refusal::Revoked,
        ] {
            assert!(INVITE_REFUSALS.contains(&r.as_str()));
        }
    }
}
