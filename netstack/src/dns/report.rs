//! The DNS server seen from outside: `/v1/dns` (where it listens, its
//! upstreams, the zone's size, what it counted) for `netlet dns`, and its
//! series on `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use dns::ClusterZone;

use super::DnsState;
use crate::metrics::{HistogramSnapshot, MetricType, MetricsPage};
use crate::module::MetricsSource;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsReport {
    /// Empty until the server has bound its sockets.
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<SocketAddr>,
    /// Upstreams found to forward back to us, no longer asked.
    pub looping_upstreams: Vec<SocketAddr>,
    /// Whether the zone has been filled from a synced cache; until then
    /// its names are answered SERVFAIL.
    pub zone_synced: bool,
    pub zone_services: usize,
    pub cache_entries: usize,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// (type, count)
    pub queries: Vec<(String, u64)>,
    /// (rcode, count)
    pub responses: Vec<(String, u64)>,
}

pub(super) fn routes(state: Arc<DnsState>) -> Router {
    Router::new().route("/v1/dns", get(report)).with_state(state)
}

async fn report(State(state): State<Arc<DnsState>>) -> Json<DnsReport> {
    Json(state.report())
}

impl DnsState {
    pub fn report(&self) -> DnsReport {
        let counts = self.metrics.snapshot();
        let mut r = DnsReport {
            queries: counts.queries.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            responses: counts.responses.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            ..Default::default()
        };
        if let Some(s) = self.serving.get() {
            r.listen = s.listen.clone();
            r.zone_synced = s.zone.is_synced();
            r.zone_services = s.zone.view(ClusterZone::service_count);
            if let Some(f) = &s.forwarder {
                let stats = f.stats();
                r.upstreams = f.upstreams();
                r.looping_upstreams = stats.looping_upstreams;
                r.cache_entries = stats.cache_entries;
                r.cache_hits = stats.cache_hits;
                r.cache_misses = stats.cache_misses;
            }
        }
        r
    }
}

fn histogram(h: &dns::metrics::HistogramSnapshot) -> HistogramSnapshot {
    HistogramSnapshot {
        bounds: h.bounds.clone(),
        counts: h.counts.clone(),
        count: h.count,
        sum: h.sum_seconds,
    }
}

impl MetricsSource for DnsState {
    fn render(&self, page: &mut MetricsPage) {
        let counts = self.metrics.snapshot();
        page.family(
            "netlet_dns_queries_total",
            "DNS queries received, by type.",
            MetricType::Counter,
        );
        for (t, n) in &counts.queries {
            page.sample("netlet_dns_queries_total", &[("type", t)], *n as f64);
        }
        page.family(
            "netlet_dns_responses_total",
            "DNS responses sent, by rcode.",
            MetricType::Counter,
        );
        for (rcode, n) in &counts.responses {
            page.sample("netlet_dns_responses_total", &[("rcode", rcode)], *n as f64);
        }
        page.family(
            "netlet_dns_answers_total",
            "DNS responses by where the answer came from.",
            MetricType::Counter,
        )
        .sample(
            "netlet_dns_answers_total",
            &[("source", "zone")],
            counts.zone_answers as f64,
        )
        .sample(
            "netlet_dns_answers_total",
            &[("source", "forwarded")],
            counts.forwarded as f64,
        );
        page.family(
            "netlet_dns_dropped_total",
            "DNS queries not answered: responses sent to us and runts (ignored), forwards over the in-flight bound (overloaded, answered SERVFAIL).",
            MetricType::Counter,
        )
        .sample("netlet_dns_dropped_total", &[("reason", "ignored")], counts.ignored as f64)
        .sample("netlet_dns_dropped_total", &[("reason", "overloaded")], counts.overloaded as f64);
        page.family(
            "netlet_dns_request_duration_seconds",
            "Time from a query's arrival to its reply.",
            MetricType::Histogram,
        )
        .histogram("netlet_dns_request_duration_seconds", &[], &histogram(&counts.latency));
        let Some(f) = self.serving.get().and_then(|s| s.forwarder.as_ref()) else {
            return;
        };
        let stats = f.stats();
        page.family(
            "netlet_dns_cache_hits_total",
            "Forwarded names answered from the cache.",
            MetricType::Counter,
        )
        .sample("netlet_dns_cache_hits_total", &[], stats.cache_hits as f64);
        page.family(
            "netlet_dns_cache_misses_total",
            "Forwarded names that had to go upstream.",
            MetricType::Counter,
        )
        .sample("netlet_dns_cache_misses_total", &[], stats.cache_misses as f64);
        page.family(
            "netlet_dns_cache_entries",
            "Answers in the forwarding cache.",
            MetricType::Gauge,
        )
        .sample("netlet_dns_cache_entries", &[], stats.cache_entries as f64);
        page.family(
            "netlet_dns_upstream_errors_total",
            "Upstream attempts without an answer (timeouts, errors, SERVFAIL, REFUSED).",
            MetricType::Counter,
        )
        .sample("netlet_dns_upstream_errors_total", &[], stats.upstream_errors as f64);
        page.family(
            "netlet_dns_upstream_duration_seconds",
            "Time an upstream took to answer.",
            MetricType::Histogram,
        )
        .histogram(
            "netlet_dns_upstream_duration_seconds",
            &[],
            &histogram(&stats.upstream_latency),
        );
    }
}
