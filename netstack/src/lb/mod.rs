//! The Services module: keeps the eBPF datapath (`services` crate) in step
//! with the Services and EndpointSlices of the shared cache, writing only
//! what each change touches; and, given `services.loadBalancerPools`,
//! gives LoadBalancer Services their IPs and announces them on the link.
//!
//! Allocating LoadBalancer IPs writes Service statuses, which in a
//! cluster of many nodes exactly one agent may do. For now only a node
//! whose config has a pool allocates (configure it on one node). The way
//! to many nodes is a coordination.k8s.io Lease: every agent with a pool
//! runs for it, the holder allocates and writes statuses (and gives the
//! Lease up on shutdown), and announcing becomes per address, by one node
//! chosen among those with a ready endpoint, since two nodes answering ARP
//! for one address would split its traffic.

mod devices;
mod health;
mod lb_ips;
mod metrics;
mod report;
mod sync;

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;

use crate::cache::{Changes, Kind};
use crate::module::{MetricsSource, Module, ModuleContext, ModuleError};
use lb_ips::{LoadBalancerIps, SharedLbIps};
use metrics::ServicesMetrics;
use report::SharedLb;
pub use report::{FrontendReport, LoadBalancerIpReport, ServiceReport};
use sync::ServiceSync;

/// How long after a failed pass the next full one comes.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

pub struct ServicesModule {
    metrics: Arc<ServicesMetrics>,
    lb: SharedLb,
    lb_ips: SharedLbIps,
}

impl Default for ServicesModule {
    fn default() -> Self {
        let (lb, lb_ips) = (SharedLb::default(), SharedLbIps::default());
        ServicesModule {
            metrics: Arc::new(ServicesMetrics::new(lb.clone(), lb_ips.clone())),
            lb,
            lb_ips,
        }
    }
}

impl Module for ServicesModule {
    fn name(&self) -> &'static str {
        "services"
    }

    fn run(self: Box<Self>, ctx: ModuleContext) -> BoxFuture<'static, Result<(), ModuleError>> {
        Box::pin(run(ctx, self.metrics, self.lb, self.lb_ips))
    }

    fn metrics(&self) -> Option<Arc<dyn MetricsSource>> {
        Some(self.metrics.clone())
    }

    fn routes(&self) -> Option<axum::Router> {
        Some(report::routes(self.lb.clone(), self.lb_ips.clone()))
    }
}

async fn run(
    ctx: ModuleContext,
    metrics: Arc<ServicesMetrics>,
    lb: SharedLb,
    shared_lb_ips: SharedLbIps,
) -> Result<(), ModuleError> {
    tokio::select! {
        _ = ctx.cancel.cancelled() => return Ok(()),
        _ = ctx.cache.wait_synced() => {}
    }
    let c = &ctx.config.services;
    let mut node_addresses = sync::node_addresses(&ctx.cache);
    let devices = match c.devices.is_empty() {
        false => c.devices.clone(),
        true => detected_devices(&node_addresses).await,
    };
    let options = services::DatapathOptions {
        pin_dir: c.pin_dir.clone(),
        cgroup: c.cgroup.clone(),
        map_entries: c.map_entries,
        devices: devices.clone(),
    };
    let datapath = services::Datapath::load(&options)?;
    tracing::info!(
        cgroup = %c.cgroup.display(), pins = %c.pin_dir.display(), devices = ?devices,
        "Service load balancing attached"
    );
    let mut sync = ServiceSync::default();
    if ctx.config.dns.enabled {
        sync = sync.serving_locally(&ctx.config.cluster_dns, ctx.config.dns.port);
    }
    *lb.lock().unwrap_or_else(|e| e.into_inner()) = Some((datapath, sync));
    let _unload = Unload(lb.clone());
    let mut health = health::HealthServers::default();
    let mut lb_ips = (!c.load_balancer_pools.is_empty()).then(|| {
        tracing::info!(pools = %c.load_balancer_pools, "allocating LoadBalancer IPs");
        LoadBalancerIps::new(c.load_balancer_pools.clone())
    });
    // The first look reports both kinds resynced: a full pass, which also
    // drops whatever an earlier agent left for Services now gone.
    let mut changes = ctx.cache.subscribe(&[Kind::Service, Kind::EndpointSlice, Kind::Node]);
    // After a failed pass, everything is looked at again a little later
    // (room may have been made in a full map, a port freed), until a full
    // pass succeeds: a failure must not leave a Service stale until it
    // happens to change again.
    let mut behind = false;
    loop {
        let batch = tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(()),
            c = changes.changed() => c,
            _ = tokio::time::sleep(RETRY_AFTER), if behind => {
                let mut all = Changes::default();
                all.resynced.extend([Kind::Service, Kind::EndpointSlice]);
                all
            }
        };
        let start = Instant::now();
        // LoadBalancer IPs first: the statuses written come back as Service
        // changes, whose frontends the next batch applies and announces.
        let services_changed =
            batch.resynced.contains(&Kind::Service) || batch.objects.iter().any(|(kind, _)| *kind == Kind::Service);
        let (mut allocated, mut announced) = (Ok(()), None);
        if services_changed {
            let services = ctx.cache.list::<Service>();
            if let Some(lb_ips) = lb_ips.as_mut() {
                allocated = allocate(lb_ips, &services, &ctx.client).await;
                *shared_lb_ips.lock().unwrap_or_else(|e| e.into_inner()) = lb_ips.snapshot();
            }
            // Without a pool, nothing: an earlier agent's announcements go.
            announced = Some(lb_ips.as_ref().map(|l| l.announced(&services)).unwrap_or_default());
        }
        // Held for the update only, never across an await.
        let (applied, health_ports, addresses) = {
            let mut guard = lb.lock().unwrap_or_else(|e| e.into_inner());
            let (datapath, sync) = guard.as_mut().expect("loaded above");
            let applied = sync.apply(&ctx.cache, datapath, &batch);
            // Traffic from outside to a backend on another node leaves
            // with the Node's address (SNAT), the reply coming back here.
            let applied = applied.and_then(|full| datapath.set_snat_addresses(sync.node_addresses()).map(|_| full));
            // After the frontends, so an address draws traffic only once it
            // is served; withdrawn even when some frontend failed.
            let announce = announced.as_ref().map_or(Ok(false), |a| datapath.set_announced(a));
            let applied = applied.and_then(|full| announce.map(|_| full));
            let map_full = matches!(applied, Err(services::DatapathError::MapFull { .. }));
            metrics.record(datapath, map_full);
            (applied, sync.take_health(), sync.node_addresses().to_vec())
        };
        // A full pass that succeeds catches up on every earlier failure.
        let caught_up = applied.as_ref().is_ok_and(|full| *full) && allocated.is_ok();
        let mut result = applied.map(drop).map_err(|e| e.to_string()).and(allocated);
        if let Some(ports) = health_ports {
            result = result.and(health.set(ports).await);
        }
        // Without services.devices, the external interfaces are those
        // holding the Node's addresses: they follow when the addresses move.
        if c.devices.is_empty() && addresses != node_addresses {
            node_addresses = addresses;
            let devices = detected_devices(&node_addresses).await;
            let mut guard = lb.lock().unwrap_or_else(|e| e.into_inner());
            let (datapath, _) = guard.as_mut().expect("loaded above");
            if datapath.devices() != devices {
                tracing::info!(?devices, "the Node's addresses moved; external interfaces follow");
                result = result.and(datapath.set_devices(&devices).map_err(|e| e.to_string()));
            }
        }
        if let Err(e) = &result {
            tracing::warn!(error = %e, "Service datapath update failed; retrying in {RETRY_AFTER:?}");
        }
        behind = result.is_err() || (behind && !caught_up);
        ctx.status.record_reconcile(start.elapsed(), result);
    }
}

/// Brings LoadBalancer IP allocations up to date with `services` and writes
/// the statuses that changed. A write that fails is retried with the next
/// pass (the allocation stays held meanwhile).
async fn allocate(
    lb_ips: &mut LoadBalancerIps,
    services: &[Arc<Service>],
    client: &kube::Client,
) -> Result<(), String> {
    let mut failed = Vec::new();
    for write in lb_ips.reconcile(services) {
        if let Err(e) = lb_ips::write_status(client, &write).await {
            failed.push(format!("writing the status of Service {}: {e}", write.service));
        }
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(failed.join("; ")),
    }
}

/// The non-loopback interfaces holding `addresses`, sorted; none (with a
/// warning) when they cannot be listed.
async fn detected_devices(addresses: &[std::net::IpAddr]) -> Vec<String> {
    let mut devices = devices::holding(addresses).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list this node's interfaces; no load balancing from outside");
        Vec::new()
    });
    devices.sort();
    devices
}

/// Drops the datapath (its programs stay pinned and attached) when the
/// module stops, however it stops, rather than when the admin API lets go.
struct Unload(SharedLb);

impl Drop for Unload {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
