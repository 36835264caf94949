//! Time to apply one Service change with 1,000 / 5,000 / 10,000 Services
//! present: netlet's eBPF datapath against kube-proxy's iptables mode (the
//! same Services and endpoints as an iptables ruleset built the way
//! kube-proxy builds it, changed by partial sync as kube-proxy 1.27+ does),
//! measured in one run. The change is the same on both sides: one more
//! endpoint for one Service, a different Service each time.
//!
//! netlet's side is the work its Services module does for a change: plan
//! the Service from the Service and its EndpointSlices, then write the map
//! entries that differ. Its programs are attached to a cgroup of this run's
//! own and its maps pinned apart, so the machine is not affected.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::kube_proxy::{self, cluster_ip, pod_ip, Percentiles};
use clap::Parser;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use services::{Datapath, DatapathOptions};

#[derive(Parser)]
struct Args {
    /// Service counts to measure at.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    services: Vec<usize>,
    #[arg(long, default_value_t = 2)]
    endpoints: usize,
    /// Changes timed at each count.
    #[arg(long, default_value_t = 100)]
    repeats: usize,
}

const TARGET_PORT: u16 = 8080;
const NODE: services::NodeView = services::NodeView {
    name: "bench-node",
    addresses: &[],
};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("service-update loads BPF programs and uses network namespaces: run it as root");
    }
    println!(
        "service-update: one Service change ({} endpoints each, one added), {} changes per size",
        args.endpoints, args.repeats
    );
    for &n in &args.services {
        let netlet = time_netlet(n, args.endpoints, args.repeats)?;
        let iptables = kube_proxy::time_one_change(n, args.endpoints, args.repeats, 1)?;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("  {n} Services:");
        println!(
            "    netlet eBPF            p50 {:9.1} µs   p99 {:9.1} µs   (initial load of all {:6.1} ms)",
            us(netlet.change.p50),
            us(netlet.change.p99),
            netlet.initial.as_secs_f64() * 1e3
        );
        println!(
            "    iptables partial sync  p50 {:9.1} µs   p99 {:9.1} µs   (initial load of all {:6.1} ms)",
            us(iptables.partial.p50),
            us(iptables.partial.p99),
            iptables.initial_load.as_secs_f64() * 1e3
        );
        println!(
            "    iptables full sync         {:9.1} ms   (one, for scale)",
            iptables.full.p50.as_secs_f64() * 1e3
        );
        println!(
            "    netlet is {:.0}x faster than iptables partial sync at p50 (target: at least 100x, under 200 µs at 10,000)",
            us(iptables.partial.p50) / us(netlet.change.p50)
        );
    }
    Ok(())
}

struct NetletTimes {
    initial: Duration,
    change: Percentiles,
}

fn service(i: usize) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
        "spec": {"clusterIP": cluster_ip(i), "clusterIPs": [cluster_ip(i)],
                 "ports": [{"name": "http", "port": 80, "targetPort": TARGET_PORT}]},
    }))
    .expect("a valid Service")
}

fn slice(i: usize, pods: &[usize]) -> EndpointSlice {
    let endpoints: Vec<_> = pods
        .iter()
        .map(|&p| json!({"addresses": [pod_ip(p)], "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}-x"), "namespace": "bench",
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": TARGET_PORT, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("a valid EndpointSlice")
}

fn time_netlet(n: usize, per_service: usize, repeats: usize) -> anyhow::Result<NetletTimes> {
    let cgroup = testbed::Cgroup::new("bench").context("cannot create a cgroup")?;
    let pins = testbed::PinDir::new("bench");
    let entries = u32::try_from((n * (per_service + 2) + repeats) * 2).context("too many Services")?;
    let mut datapath = Datapath::load(&DatapathOptions {
        pin_dir: pins.path().to_path_buf(),
        cgroup: cgroup.path().to_path_buf(),
        map_entries: entries,
        devices: Vec::new(),
    })?;
    let services: Vec<Service> = (0..n).map(service).collect();
    let mut pods: Vec<Vec<usize>> = (0..n)
        .map(|i| (0..per_service).map(|j| i * per_service + j).collect())
        .collect();
    let mut next_pod = n * per_service;

    let start = Instant::now();
    for (i, svc) in services.iter().enumerate() {
        for plan in services::plan(svc, &[&slice(i, &pods[i])], NODE) {
            datapath.apply(&plan)?;
        }
    }
    let initial = start.elapsed();

    let mut times = Vec::with_capacity(repeats);
    for r in 0..repeats {
        // The same spread of changed Services as the iptables side.
        let i = (r * 7919) % n;
        pods[i].push(next_pod);
        next_pod += 1;
        let changed = slice(i, &pods[i]);
        let start = Instant::now();
        for plan in services::plan(&services[i], &[&changed], NODE) {
            datapath.apply(&plan)?;
        }
        times.push(start.elapsed());
    }
    Ok(NetletTimes {
        initial,
        change: Percentiles::of(&times),
    })
}
