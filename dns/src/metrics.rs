//! What the DNS server counts, in atomics the serving loops bump without a
//! lock; the agent renders them on its `/metrics` page.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A histogram of durations with fixed bucket bounds, safe to observe
/// from many threads at once.
pub struct Histogram {
    /// Upper bounds in seconds, ascending.
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in nanoseconds (an integer keeps it atomic).
    sum_nanos: AtomicU64,
}

/// A histogram's state at one moment; counts are per bucket, not
/// cumulative.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Query handling time, from the datagram read to the reply written:
/// tens of microseconds from the zone, milliseconds when forwarded.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0,
];

/// The query types counted apart; the rest count as "other".
pub const QUERY_TYPES: [&str; 8] = ["A", "AAAA", "CNAME", "SRV", "TXT", "PTR", "SOA", "other"];
/// Response codes counted apart, by their number; the rest count as "other".
pub const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other",
];

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cluster zone.
    Zone,
    /// The forwarder's cache or an upstream.
    Forwarded,
    /// Refused or malformed: no one was asked.
    Local,
}

pub struct DnsMetrics {
    queries: [AtomicU64; QUERY_TYPES.len()],
    responses: [AtomicU64; RCODES.len()],
    zone_answers: AtomicU64,
    forwarded: AtomicU64,
    /// Queries dropped unanswered: responses sent to us, runts.
    ignored: AtomicU64,
    /// Forwarded queries refused because too many were in flight.
    overloaded: AtomicU64,
    pub latency: Histogram,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        DnsMetrics {
            queries: Default::default(),
            responses: Default::default(),
            zone_answers: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            latency: Histogram::new(&LATENCY_BUCKETS),
        }
    }
}

/// A snapshot of [`DnsMetrics`].
#[derive(Debug, Clone, PartialEq)]
pub struct DnsCounts {
    /// (type, count) in the order of [`QUERY_TYPES`].
    pub queries: Vec<(&'static str, u64)>,
    /// (rcode, count) in the order of [`RCODES`].
    pub responses: Vec<(&'static str, u64)>,
    pub zone_answers: u64,
    pub forwarded: u64,
    pub ignored: u64,
    pub overloaded: u64,
    pub latency: HistogramSnapshot,
}

impl DnsMetrics {
    pub fn query(&self, qtype: u16) {
        let i = match qtype {
            1 => 0,
            28 => 1,
            5 => 2,
            33 => 3,
            16 => 4,
            12 => 5,
            6 => 6,
            _ => 7,
        };
        self.queries[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reply about to be sent: its code (read from the header)
    /// and how long the query took.
    pub fn reply(&self, reply: &[u8], source: Source, took: Duration) {
        let code = reply.get(3).map_or(usize::MAX, |b| usize::from(b & 0xf));
        self.responses[code.min(RCODES.len() - 1)].fetch_add(1, Ordering::Relaxed);
        let counter = match source {
            Source::Zone => Some(&self.zone_answers),
            Source::Forwarded => Some(&self.forwarded),
            Source::Local => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(took);
    }

    pub fn ignored(&self) {
        self.ignored.fetch_add(1, Ordering::Relaxed);
    }

    pub fn overloaded(&self) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> DnsCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DnsCounts {
            queries: QUERY_TYPES
                .iter()
                .zip(&self.queries)
                .map(|(t, c)| (*t, load(c)))
                .collect(),
            responses: RCODES.iter().zip(&self.responses).map(|(t, c)| (*t, load(c))).collect(),
            zone_answers: load(&self.zone_answers),
            forwarded: load(&self.forwarded),
            ignored: load(&self.ignored),
            overloaded: load(&self.overloaded),
            latency: self.latency.snapshot(),
        }
    }
}
