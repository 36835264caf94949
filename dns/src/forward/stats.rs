//! Counters of the forwarder, updated lock-free on the query path, and the
//! snapshot handed to whoever exports metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::{Histogram, HistogramSnapshot};

/// Upper bounds, in seconds, of the upstream latency buckets: from a resolver
/// on the same host up to the default 2 s timeout.
const LATENCY_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A snapshot of the forwarder's counters (all counted since it was built).
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardStats {
    /// Client queries answered from the cache.
    pub cache_hits: u64,
    /// Client queries that had to go upstream. A `cached` call that finds
    /// nothing is not counted: the `resolve` that follows it is.
    pub cache_misses: u64,
    /// Answers in the cache now.
    pub cache_entries: usize,
    /// Queries sent to upstreams (one per upstream tried; the TCP retry of a
    /// truncated reply is counted in `upstream_truncated` instead).
    pub upstream_queries: u64,
    /// Upstream attempts that gave no answer: timeouts, network errors,
    /// malformed replies, SERVFAIL, REFUSED and other failure rcodes.
    pub upstream_errors: u64,
    /// Truncated UDP replies, each retried over TCP.
    pub upstream_truncated: u64,
    /// Time from sending a query to an upstream until its reply (including a
    /// TCP retry), for attempts that got a reply at all.
    pub upstream_latency: HistogramSnapshot,
    /// Upstreams found to forward back to us, no longer used.
    pub looping_upstreams: Vec<SocketAddr>,
}

pub(super) struct Counters {
    pub(super) cache_hits: AtomicU64,
    pub(super) cache_misses: AtomicU64,
    pub(super) upstream_queries: AtomicU64,
    pub(super) upstream_errors: AtomicU64,
    pub(super) upstream_truncated: AtomicU64,
    latency: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            upstream_queries: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            upstream_truncated: AtomicU64::new(0),
            latency: Histogram::new(&LATENCY_BOUNDS),
        }
    }
}

/// Adds one to a counter. Relaxed ordering: these are statistics, read
/// without any expectation of consistency between counters.
pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(super) fn observe_latency(&self, latency: Duration) {
        self.latency.observe(latency);
    }

    pub(super) fn snapshot(&self, cache_entries: usize, looping_upstreams: Vec<SocketAddr>) -> ForwardStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ForwardStats {
            cache_hits: load(&self.cache_hits),
            cache_misses: load(&self.cache_misses),
            cache_entries,
            upstream_queries: load(&self.upstream_queries),
            upstream_errors: load(&self.upstream_errors),
            upstream_truncated: load(&self.upstream_truncated),
            upstream_latency: self.latency.snapshot(),
            looping_upstreams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_buckets() {
        let counters = Counters::default();
        counters.observe_latency(Duration::from_micros(200));
        counters.observe_latency(Duration::from_millis(1));
        counters.observe_latency(Duration::from_secs(3));
        let histogram = counters.snapshot(0, Vec::new()).upstream_latency;
        assert_eq!(histogram.counts[0], 1);
        // A bound is inclusive: 1 ms is in the "at most 0.001" bucket.
        assert_eq!(histogram.counts[1], 1);
        // 3 s is over every bound: only in the count (the +Inf bucket).
        assert_eq!(histogram.counts.iter().sum::<u64>(), 2);
        assert_eq!(histogram.count, 3);
        assert!((histogram.sum_seconds - 3.0012).abs() < 1e-9);
    }
}
