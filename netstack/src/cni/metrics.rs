//! CNI request counts by verb and result, and their latency.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::metrics::{HistogramSnapshot, MetricType, MetricsPage};
use crate::module::MetricsSource;

/// Latency buckets, in seconds: an ADD that wires a pod takes milliseconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
pub struct CniMetrics {
    /// (verb, result) -> count; result is "ok" or the CNI error code.
    requests: Mutex<BTreeMap<(&'static str, String), u64>>,
    latency: Mutex<BTreeMap<&'static str, HistogramSnapshot>>,
}

impl CniMetrics {
    pub fn observe(&self, verb: &'static str, result: Result<(), u32>, took: Duration) {
        let result = match result {
            Ok(()) => "ok".to_string(),
            Err(code) => format!("error_{code}"),
        };
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((verb, result))
            .or_default() += 1;
        self.latency
            .lock()
            .expect("metrics lock")
            .entry(verb)
            .or_insert_with(|| HistogramSnapshot::with_bounds(&BUCKETS))
            .observe(took.as_secs_f64());
    }
}

impl MetricsSource for CniMetrics {
    fn render(&self, page: &mut MetricsPage) {
        page.family(
            "netlet_cni_requests_total",
            "CNI requests by verb and result.",
            MetricType::Counter,
        );
        for ((verb, result), n) in self.requests.lock().expect("metrics lock").iter() {
            page.sample(
                "netlet_cni_requests_total",
                &[("verb", verb), ("result", result)],
                *n as f64,
            );
        }
        page.family(
            "netlet_cni_request_duration_seconds",
            "Time the agent took per CNI request.",
            MetricType::Histogram,
        );
        for (verb, h) in self.latency.lock().expect("metrics lock").iter() {
            page.histogram("netlet_cni_request_duration_seconds", &[("verb", verb)], h);
        }
    }
}
