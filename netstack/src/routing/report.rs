//! `/v1/nodes` (and so `netlet nodes`): every peer Node, its addresses and
//! podCIDRs, and per podCIDR the route (and tunnel entries) this node has
//! for it, as read back from the kernel after the last pass; metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::apply::{tagged, Installed};
use super::plan::{device_name, Plan};
use crate::metrics::{MetricType, MetricsPage};
use crate::module::MetricsSource;
use crate::wire::overlay::mac_string;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodesReport {
    /// `native` or `vxlan`.
    pub mode: String,
    pub node: String,
    /// This node's VXLAN devices.
    #[serde(default)]
    pub tunnels: Vec<TunnelReport>,
    pub peers: Vec<PeerReport>,
    /// Problems of this node itself, and the last pass's failures.
    #[serde(default)]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelReport {
    pub device: String,
    pub local: String,
    pub mac: String,
    pub mtu: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerReport {
    pub name: String,
    #[serde(rename = "internalIPs")]
    pub internal_ips: Vec<String>,
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<String>,
    pub routes: Vec<RouteReport>,
    #[serde(default)]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteReport {
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    pub via: String,
    /// The VXLAN device (vxlan mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The peer's VTEP MAC and underlay address (vxlan mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<String>,
    /// Whether the kernel has the route (and, for vxlan, the FDB and
    /// neighbour entries) as planned.
    pub installed: bool,
}

/// Built from the plan and what the pass found installed.
pub fn build(mode: &str, node: &str, plan: &Plan, installed: &Installed, errors: &[String]) -> NodesReport {
    let index_of = |f| installed.tunnels.iter().find(|t| t.0 == f).map(|t| t.1);
    let tunnels = plan
        .tunnels
        .iter()
        .map(|t| TunnelReport {
            device: device_name(t.family).to_string(),
            local: t.local.to_string(),
            mac: mac_string(&t.mac),
            mtu: installed.tunnels.iter().find(|i| i.0 == t.family).map_or(0, |i| i.2),
        })
        .collect();
    let peers = plan
        .peers
        .iter()
        .map(|p| PeerReport {
            name: p.name.clone(),
            internal_ips: p.internal_ips.iter().map(ToString::to_string).collect(),
            pod_cidrs: p.pod_cidrs.iter().map(ToString::to_string).collect(),
            routes: p
                .routes
                .iter()
                .map(|r| {
                    let fdb = r.device.and_then(|f| p.fdb.iter().find(|e| e.family == f));
                    let neighbour = p.neighbours.iter().find(|n| n.ip == r.gateway);
                    let route_ok = tagged(r, index_of).is_some_and(|t| installed.routes.contains(&t));
                    let fdb_ok = fdb.is_none_or(|e| installed.fdb.contains(&(e.family, e.mac, e.remote)));
                    let neighbour_ok =
                        neighbour.is_none_or(|n| installed.neighbours.contains(&(n.family, n.ip, n.mac)));
                    RouteReport {
                        pod_cidr: r.destination.to_string(),
                        via: r.gateway.to_string(),
                        device: r.device.map(|f| device_name(f).to_string()),
                        vtep: fdb.map(|e| format!("{} at {}", mac_string(&e.mac), e.remote)),
                        installed: route_ok && fdb_ok && neighbour_ok,
                    }
                })
                .collect(),
            problems: p.problems.clone(),
        })
        .collect();
    NodesReport {
        mode: mode.to_string(),
        node: node.to_string(),
        tunnels,
        peers,
        problems: plan.problems.iter().chain(errors).cloned().collect(),
    }
}

pub type SharedReport = Arc<Mutex<NodesReport>>;

pub(super) fn routes(report: SharedReport) -> Router {
    Router::new().route("/v1/nodes", get(serve)).with_state(report)
}

async fn serve(State(report): State<SharedReport>) -> Json<NodesReport> {
    Json(report.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

#[derive(Default)]
pub struct RoutingMetrics {
    pub peers: AtomicU64,
    pub errors: AtomicU64,
}

impl MetricsSource for RoutingMetrics {
    fn render(&self, page: &mut MetricsPage) {
        page.family(
            "netlet_routing_peers",
            "Other Nodes this node routes pod traffic to.",
            MetricType::Gauge,
        );
        page.sample("netlet_routing_peers", &[], self.peers.load(Ordering::Relaxed) as f64);
        page.family(
            "netlet_routing_errors_total",
            "Route, tunnel, FDB or neighbour changes that failed (netlet nodes says which).",
            MetricType::Counter,
        );
        page.sample(
            "netlet_routing_errors_total",
            &[],
            self.errors.load(Ordering::Relaxed) as f64,
        );
    }
}
