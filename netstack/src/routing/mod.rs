//! Node-to-node pod routing: how a pod reaches the pods of other nodes.
//!
//! `routing.mode` chooses per cluster:
//! - `native`: a route to each other Node's podCIDRs via its InternalIP of
//!   the same family. Needs the nodes on one L2 segment (on-link; the
//!   kernel refuses a gateway that is not, and the peer's report says so).
//! - `vxlan`: one VXLAN device per family (`netlet-vx4`, `netlet-vx6`)
//!   over the Node's InternalIP of that family, without learning; per peer
//!   an FDB entry, a neighbour entry and an onlink route (see [`plan`]).
//!   VTEP MACs are derived from the underlay address, so nothing but the
//!   Node objects is shared between nodes.
//!
//! Every route the module writes carries route protocol
//! [`apply::ROUTE_PROTOCOL`]; the VXLAN devices are the module's alone. So
//! each pass (level-triggered, from the whole Node list) removes what it
//! finds of its own that no Node calls for: nodes gone or changed, and an
//! earlier agent's leftovers on the first pass. Pod traffic is routed, never
//! translated: the peer sees the pod's own address.
//!
//! With `none` the module runs too, for one thing: a node switched back
//! from native or vxlan must not keep the tunnels and routes of the mode it
//! left, so it removes them once (see [`remove_leftovers`]).

mod apply;
mod plan;
mod report;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;

use crate::cache::Kind;
use crate::config::RoutingMode;
use crate::module::{MetricsSource, Module, ModuleContext, ModuleError};
use crate::wire::Netlink;
pub use apply::ROUTE_PROTOCOL;
pub use plan::{device_name, plan, vtep_mac, NodeView, Plan};
pub use report::{NodesReport, PeerReport, RouteReport, TunnelReport};
use report::{RoutingMetrics, SharedReport};

/// How long after a failed pass the next one comes.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// A full pass this often anyway, to repair what someone else changed.
const RESYNC_EVERY: Duration = Duration::from_secs(60);

pub struct RoutingModule {
    mode: RoutingMode,
    report: SharedReport,
    metrics: Arc<RoutingMetrics>,
}

impl RoutingModule {
    /// The module for `routing.mode` `mode`.
    pub fn for_mode(mode: RoutingMode) -> RoutingModule {
        RoutingModule {
            mode,
            report: SharedReport::default(),
            metrics: Arc::default(),
        }
    }
}

impl Module for RoutingModule {
    fn name(&self) -> &'static str {
        "routing"
    }

    fn run(self: Box<Self>, ctx: ModuleContext) -> BoxFuture<'static, Result<(), ModuleError>> {
        Box::pin(run(ctx, self.report, self.metrics))
    }

    fn metrics(&self) -> Option<Arc<dyn MetricsSource>> {
        Some(self.metrics.clone())
    }

    /// `/v1/nodes`, unless there are no peers to route to (`none`): then
    /// `netlet nodes` says how to turn routing on.
    fn routes(&self) -> Option<axum::Router> {
        (self.mode != RoutingMode::None).then(|| report::routes(self.report.clone()))
    }
}

async fn run(ctx: ModuleContext, shared: SharedReport, metrics: Arc<RoutingMetrics>) -> Result<(), ModuleError> {
    tokio::select! {
        _ = ctx.cancel.cancelled() => return Ok(()),
        _ = ctx.cache.wait_synced() => {}
    }
    let nl = Netlink::connect()?;
    let config = &ctx.config;
    let families = config.cluster_cidr.families();
    let mode = config.routing.mode;
    if mode == RoutingMode::None {
        return remove_leftovers(&ctx, &nl).await;
    }
    tracing::info!(%mode, vni = config.routing.vni, port = config.routing.port, "node-to-node pod routing");
    let mut changes = ctx.cache.subscribe(&[Kind::Node]);
    let mut behind = false;
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(()),
            _ = changes.changed() => {}
            _ = tokio::time::sleep(RETRY_AFTER), if behind => {}
            _ = tokio::time::sleep(RESYNC_EVERY) => {}
        }
        let start = Instant::now();
        let nodes: Vec<NodeView> = ctx.cache.list::<Node>().iter().map(|n| NodeView::of(n)).collect();
        let plan = plan::plan(mode, &config.node_name, &families, &nodes);
        let (installed, errors) = apply::apply(&nl, &config.routing, &plan).await;
        metrics.peers.store(plan.peers.len() as u64, Ordering::Relaxed);
        metrics.errors.fetch_add(errors.len() as u64, Ordering::Relaxed);
        let report = report::build(&mode.to_string(), &config.node_name, &plan, &installed, &errors);
        *shared.lock().unwrap_or_else(|e| e.into_inner()) = report;
        behind = !errors.is_empty();
        let result = match errors.is_empty() {
            true => Ok(()),
            false => {
                tracing::warn!(errors = ?errors, "node routing pass failed in part; retrying in {RETRY_AFTER:?}");
                Err(errors.join("; "))
            }
        };
        ctx.status.record_reconcile(start.elapsed(), result);
    }
}

/// `routing.mode: none`: one pass towards an empty plan removes the VXLAN
/// devices (their FDB and neighbour entries go with them) and every route
/// tagged [`ROUTE_PROTOCOL`], what a native or vxlan agent left on this
/// node; retried until it succeeds. Then nothing is left to watch: other
/// nodes' changes do not concern a node that routes to none of them.
async fn remove_leftovers(ctx: &ModuleContext, nl: &Netlink) -> Result<(), ModuleError> {
    loop {
        let start = Instant::now();
        let (_, errors) = apply::apply(nl, &ctx.config.routing, &Plan::default()).await;
        let done = errors.is_empty();
        if !done {
            tracing::warn!(
                ?errors,
                "removing an earlier routing mode's devices and routes failed in part; retrying in {RETRY_AFTER:?}"
            );
        }
        ctx.status
            .record_reconcile(start.elapsed(), if done { Ok(()) } else { Err(errors.join("; ")) });
        if done {
            ctx.cancel.cancelled().await;
            return Ok(());
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(RETRY_AFTER) => {}
        }
    }
}
