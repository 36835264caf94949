//! The cluster DNS module: puts the clusterDNS addresses on this node
//! (`link`), serves UDP and TCP there with the `dns` crate, and keeps the
//! zone in step with the shared cache (`feed`). Names outside the zone go
//! to the node's resolvers through the forwarder.

mod feed;
mod link;
mod report;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dns::forward::{resolv_conf_upstreams, ForwardOptions, Forwarder};
use dns::metrics::DnsMetrics;
use dns::{ClusterZone, Handler, PodRecords, SharedZone};
use futures::future::BoxFuture;
use tokio::task::JoinSet;

use crate::cache::Kind;
use crate::config::{DnsConfig, PodRecordsMode};
use crate::module::{MetricsSource, Module, ModuleContext, ModuleError};
use crate::wire::netlink::Netlink;
use feed::ZoneFeed;
pub use link::DNS_LINK;
pub use report::DnsReport;

/// What the running server is, for the admin API and metrics.
pub struct Serving {
    pub listen: Vec<SocketAddr>,
    pub zone: Arc<SharedZone>,
    pub forwarder: Option<Arc<Forwarder>>,
}

/// State shared by the module, its metrics and its admin route.
#[derive(Default)]
pub struct DnsState {
    pub metrics: Arc<DnsMetrics>,
    pub serving: OnceLock<Serving>,
}

#[derive(Default)]
pub struct DnsModule {
    state: Arc<DnsState>,
}

impl Module for DnsModule {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn run(self: Box<Self>, ctx: ModuleContext) -> BoxFuture<'static, Result<(), ModuleError>> {
        Box::pin(run(ctx, self.state))
    }

    fn metrics(&self) -> Option<Arc<dyn MetricsSource>> {
        Some(self.state.clone())
    }

    fn routes(&self) -> Option<axum::Router> {
        Some(report::routes(self.state.clone()))
    }
}

async fn run(ctx: ModuleContext, state: Arc<DnsState>) -> Result<(), ModuleError> {
    let c = &ctx.config.dns;
    let addresses = ctx.config.cluster_dns.clone();
    if addresses.is_empty() {
        return Err("no clusterDNS address to serve cluster DNS on".into());
    }
    let zone = Arc::new(SharedZone::new(new_zone(&ctx.config.cluster_domain, c)));
    let forwarder = forwarder(c, &addresses).map(Arc::new);
    link::ensure(&Netlink::connect()?, &addresses).await?;
    // The addresses stay when the agent stops, like the rest of the
    // datapath: while no agent runs (a restart, an upgrade) a pod's query
    // meets a closed port on its own node and fails at once. Without them
    // it would follow the node's default route off the node.
    serve(&ctx, &state, zone, forwarder, &addresses).await
}

/// Takes the cluster DNS addresses off this node (the sandbox's teardown,
/// an uninstall).
pub async fn release(addresses: &[IpAddr]) -> Result<(), ModuleError> {
    Ok(link::remove(&Netlink::connect()?, addresses).await?)
}

async fn serve(
    ctx: &ModuleContext,
    state: &Arc<DnsState>,
    zone: Arc<SharedZone>,
    forwarder: Option<Arc<Forwarder>>,
    addresses: &[IpAddr],
) -> Result<(), ModuleError> {
    let forward = forwarder.clone().map(|f| f as Arc<dyn dns::handler::Forward>);
    let handler = Arc::new(Handler::new(zone.clone(), forward, state.metrics.clone()));
    // TCP acceptors, aborted when this returns; they end only by panicking.
    let mut servers = JoinSet::new();
    let mut udp_servers = Vec::new();
    let mut listen = Vec::new();
    for address in addresses {
        let at = SocketAddr::new(*address, ctx.config.dns.port);
        let (udp, tcp) = dns::serve::bind(at)
            .await
            .map_err(|e| format!("cannot serve DNS on {at}: {e}"))?;
        udp_servers.push(
            dns::udp::serve_udp(udp, handler.clone(), tokio::runtime::Handle::current())
                .map_err(|e| format!("cannot start DNS over UDP on {at}: {e}"))?,
        );
        servers.spawn(dns::serve::serve_tcp(tcp, handler.clone()));
        listen.push(at);
    }
    tracing::info!(?listen, upstreams = ?forwarder.as_ref().map(|f| f.upstreams()), "cluster DNS serving");
    // Stopped with the module if the probes are still waiting on upstreams.
    let _probes = forwarder
        .clone()
        .map(|f| tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move { f.check_loops().await })));
    let _ = state.serving.set(Serving {
        listen,
        zone: zone.clone(),
        forwarder,
    });

    tokio::select! {
        _ = ctx.cancel.cancelled() => return Ok(()),
        _ = ctx.cache.wait_synced() => {}
    }
    let mut feed = ZoneFeed::default();
    let mut changes = ctx.cache.subscribe(&[Kind::Service, Kind::EndpointSlice, Kind::Pod]);
    loop {
        let batch = tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(()),
            done = servers.join_next() => {
                return Err(format!("DNS over TCP stopped: {done:?}").into());
            }
            c = changes.changed() => c,
        };
        let start = Instant::now();
        feed.apply(&ctx.cache, &zone, &batch);
        zone.set_synced();
        ctx.status.record_reconcile(start.elapsed(), Ok::<(), String>(()));
    }
}

fn new_zone(domain: &str, c: &DnsConfig) -> ClusterZone {
    let mut zone = ClusterZone::new(domain, c.ttl);
    zone.set_pod_records(match c.pod_records {
        PodRecordsMode::Disabled => PodRecords::Disabled,
        PodRecordsMode::Insecure => PodRecords::Insecure,
        PodRecordsMode::Verified => PodRecords::Verified,
    });
    zone.set_endpoint_pod_names(c.endpoint_pod_names);
    zone
}

/// The forwarder for names outside the zone; without a usable upstream
/// those names are refused, and the cluster zone is served all the same.
fn forwarder(c: &DnsConfig, own: &[IpAddr]) -> Option<Forwarder> {
    let upstreams = match c.upstreams.is_empty() {
        false => c.upstreams.clone(),
        true => match std::fs::read_to_string(&c.resolv_conf) {
            Ok(text) => resolv_conf_upstreams(&text),
            Err(e) => {
                tracing::warn!(path = %c.resolv_conf.display(), error = %e, "cannot read the node's resolv.conf");
                Vec::new()
            }
        },
    };
    let options = ForwardOptions {
        upstreams,
        own_addresses: own.to_vec(),
        cache_entries: c.cache_entries,
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    match Forwarder::new(options) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "names outside the cluster zone will be refused");
            None
        }
    }
}
