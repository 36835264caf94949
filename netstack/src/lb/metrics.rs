//! What the Services datapath holds, and how often a map ran out of room:
//! frontends per family, backends, Maglev tables, map capacity, and
//! map-full failures (which also leave the module degraded with the map's
//! name in status);
//! LoadBalancer IPs allocated from the pool, and the Services' requests
//! for them that cannot be met (by reason).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::lb_ips::SharedLbIps;
use super::report::SharedLb;

use crate::metrics::{MetricType, MetricsPage};
use crate::module::MetricsSource;

#[derive(Default)]
pub struct ServicesMetrics {
    /// Read at scrape time for the per-Service no-endpoint counts.
    lb: SharedLb,
    lb_ips: SharedLbIps,
    frontends_v4: AtomicU64,
    frontends_v6: AtomicU64,
    backends: AtomicU64,
    maglev_tables: AtomicU64,
    map_entries: AtomicU64,
    map_full: AtomicU64,
}

impl ServicesMetrics {
    pub fn new(lb: SharedLb, lb_ips: SharedLbIps) -> ServicesMetrics {
        ServicesMetrics {
            lb,
            lb_ips,
            ..Default::default()
        }
    }

    /// The LoadBalancer IP series, from the last pass's snapshot.
    fn render_lb_ips(&self, page: &mut MetricsPage) {
        let snapshot = self.lb_ips.lock().unwrap_or_else(|e| e.into_inner()).clone();
        page.family(
            "netlet_services_load_balancer_ips",
            "LoadBalancer IPs allocated from services.loadBalancerPools.",
            MetricType::Gauge,
        );
        for (family, allocated, _) in &snapshot.usage {
            page.sample(
                "netlet_services_load_balancer_ips",
                &[("family", family.as_k8s())],
                *allocated as f64,
            );
        }
        page.family(
            "netlet_services_load_balancer_pool_size",
            "Addresses in services.loadBalancerPools.",
            MetricType::Gauge,
        );
        for (family, _, size) in &snapshot.usage {
            page.sample(
                "netlet_services_load_balancer_pool_size",
                &[("family", family.as_k8s())],
                *size as f64,
            );
        }
        page.family(
            "netlet_services_load_balancer_errors",
            "LoadBalancer IPs that Services should have and do not, by reason (netlet services says which and why).",
            MetricType::Gauge,
        );
        for reason in services::lb_ips::Conflict::REASONS {
            let n = snapshot
                .services
                .values()
                .flat_map(|(_, conflicts)| conflicts)
                .filter(|c| c.reason() == reason)
                .count();
            page.sample("netlet_services_load_balancer_errors", &[("reason", reason)], n as f64);
        }
    }

    /// Connections and packets turned away for want of an endpoint, per
    /// Service (namespace, name), read from the datapath's counters.
    fn no_endpoint_counts(&self) -> BTreeMap<(String, String), u64> {
        let guard = self.lb.lock().unwrap_or_else(|e| e.into_inner());
        let Some((datapath, sync)) = guard.as_ref() else {
            return BTreeMap::new();
        };
        let owners = sync.owners();
        let mut out = BTreeMap::new();
        for (frontend, n) in datapath.empty_counts().unwrap_or_default() {
            if let Some(key) = owners.get(&frontend) {
                *out.entry((key.namespace.clone().unwrap_or_default(), key.name.clone()))
                    .or_default() += n;
            }
        }
        out
    }

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
        self.maglev_tables
            .store(datapath.maglev_table_count() as u64, Ordering::Relaxed);
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
            "netlet_services_maglev_tables",
            "Maglev tables in the BPF maps (4 KiB each): one per distinct set of backends behind NodePorts, externalIPs and LoadBalancer IPs.",
            MetricType::Gauge,
        )
        .sample("netlet_services_maglev_tables", &[], get(&self.maglev_tables));
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
        page.family(
            "netlet_services_no_endpoint_total",
            "Connections and packets to a Service turned away because it had no usable endpoint (refused, or dropped under externalTrafficPolicy: Local).",
            MetricType::Counter,
        );
        for ((namespace, name), n) in self.no_endpoint_counts() {
            page.sample(
                "netlet_services_no_endpoint_total",
                &[("namespace", &namespace), ("name", &name)],
                n as f64,
            );
        }
        self.render_lb_ips(page);
    }
}
