//! NetworkPolicy series on `/metrics`: verdicts per pod and direction,
//! flows allowed per policy, invalid policies, and how long enforcement
//! syncs take (a policy change in the API to the maps written).

use std::sync::{Arc, Mutex};

use super::enforcer::Synced;
use super::report::{DirectionReport, PolicyReport};
use super::PolicyShared;
use crate::metrics::{HistogramSnapshot, MetricType, MetricsPage};
use crate::module::MetricsSource;

/// Seconds.
const SYNC_BUCKETS: [f64; 10] = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5];

pub(super) struct PolicyMetrics {
    syncs: Mutex<HistogramSnapshot>,
}

impl Default for PolicyMetrics {
    fn default() -> Self {
        PolicyMetrics {
            syncs: Mutex::new(HistogramSnapshot::with_bounds(&SYNC_BUCKETS)),
        }
    }
}

impl PolicyMetrics {
    pub fn observe(&self, synced: &Synced) {
        let mut h = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
        h.observe(synced.took.as_secs_f64());
    }
}

pub(super) struct Source(pub Arc<PolicyShared>);

impl MetricsSource for Source {
    fn render(&self, page: &mut MetricsPage) {
        let report = self.0.report();
        per_pod_and_direction(
            page,
            "netlet_policy_flows_allowed_total",
            "New flows NetworkPolicy enforcement let through, per pod and direction.",
            &report,
            |d| d.allowed,
        );
        per_pod_and_direction(
            page,
            "netlet_policy_packets_dropped_total",
            "Packets NetworkPolicy enforcement dropped, per pod and direction.",
            &report,
            |d| d.dropped,
        );
        page.family(
            "netlet_policy_policy_flows_allowed_total",
            "New flows each NetworkPolicy allowed (a flow several allow counts for one).",
            MetricType::Counter,
        );
        for (policy, n) in &report.allowed_by_policy {
            let (namespace, name) = policy.split_once('/').unwrap_or(("", policy));
            page.sample(
                "netlet_policy_policy_flows_allowed_total",
                &[("namespace", namespace), ("policy", name)],
                *n as f64,
            );
        }
        page.family(
            "netlet_policy_invalid_policies",
            "NetworkPolicy problems found (each such policy allows nothing).",
            MetricType::Gauge,
        )
        .sample("netlet_policy_invalid_policies", &[], report.errors.len() as f64);
        let syncs = self.0.metrics.syncs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        page.family(
            "netlet_policy_sync_duration_seconds",
            "Compiling what changed and writing the changed map entries.",
            MetricType::Histogram,
        )
        .histogram("netlet_policy_sync_duration_seconds", &[], &syncs);
    }
}

/// A counter family with one series per enforced pod and direction.
fn per_pod_and_direction(
    page: &mut MetricsPage,
    name: &str,
    help: &str,
    report: &PolicyReport,
    value: impl Fn(&DirectionReport) -> u64,
) {
    page.family(name, help, MetricType::Counter);
    for pod in &report.pods {
        let full = pod.pod.as_deref().unwrap_or("");
        let (namespace, pod_name) = full.split_once('/').unwrap_or(("", full));
        for (direction, d) in [("Ingress", &pod.ingress), ("Egress", &pod.egress)] {
            let labels = [("namespace", namespace), ("pod", pod_name), ("direction", direction)];
            page.sample(name, &labels, value(d) as f64);
        }
    }
}
