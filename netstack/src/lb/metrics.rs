//! What the Services datapath holds, and how often a map ran out of room:
//! frontends per family, backends, map capacity, and map-full failures
//! (which also leave the module degraded with the map's name in status).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::{MetricType, MetricsPage};
use crate::module::MetricsSource;

#[derive(Default)]
pub struct ServicesMetrics {
    frontends_v4: AtomicU64,
    frontends_v6: AtomicU64,
    backends: AtomicU64,
    map_entries: AtomicU64,
    map_full: AtomicU64,
}

impl ServicesMetrics {
    pub fn record(&self, datapath: &services::Datapath, map_full: bool) {
        let (mut v4, mut v6) = (0, 0);
        for (frontend, _) in datapath.frontends() {
            match frontend.address.is_ipv4() {
                true => v4 += 1,
                false => v6 += 1,
            }
        }
        self.frontends_v4.store(v4, Ordering::Relaxed);
        self.frontends_v6.store(v6, Ordering::Relaxed);
        self.backends.store(datapath.backend_count() as u64, Ordering::Relaxed);
        self.map_entries
            .store(u64::from(datapath.map_entries()), Ordering::Relaxed);
        if map_full {
            self.map_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl MetricsSource for ServicesMetrics {
    fn render(&self, page: &mut MetricsPage) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        page.family(
            "netlet_services_frontends",
            "Service frontends (address, port, protocol) in the BPF maps.",
            MetricType::Gauge,
        )
        .sample(
            "netlet_services_frontends",
            &[("family", "IPv4")],
            get(&self.frontends_v4),
        )
        .sample(
            "netlet_services_frontends",
            &[("family", "IPv6")],
            get(&self.frontends_v6),
        );
        page.family(
            "netlet_services_backends",
            "Distinct backends in the BPF maps.",
            MetricType::Gauge,
        )
        .sample("netlet_services_backends", &[], get(&self.backends));
        page.family(
            "netlet_services_map_entries",
            "Capacity of each Services BPF map (services.mapEntries).",
            MetricType::Gauge,
        )
        .sample("netlet_services_map_entries", &[], get(&self.map_entries));
        page.family(
            "netlet_services_map_full_total",
            "Updates refused because a Services BPF map was full.",
            MetricType::Counter,
        )
        .sample("netlet_services_map_full_total", &[], get(&self.map_full));
    }
}
