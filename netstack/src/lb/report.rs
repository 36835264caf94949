//! `/v1/services` (and so `netlet services`): every Service's frontends and
//! backends as the BPF maps hold them, read back from the kernel, with the
//! Service each frontend belongs to. Frontends no Service owns are shown
//! too: they are what an update left half-done, or an earlier agent's.
//! LoadBalancer IPs from netlet's pool come with each Service, with
//! whether the node answers for them (read back from the kernel too) and
//! why a Service lacks one it should have.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use services::{Datapath, FrontendState, Protocol, Scope};

use super::lb_ips::{LbIpsSnapshot, SharedLbIps};
use super::sync::ServiceSync;

/// The datapath and its bookkeeping, shared by the module's loop (which
/// changes them) and the admin API (which reads them); None until loaded.
pub type SharedLb = Arc<Mutex<Option<(Datapath, ServiceSync)>>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReport {
    /// Empty for frontends no Service owns.
    pub namespace: String,
    pub name: String,
    pub frontends: Vec<FrontendReport>,
    /// LoadBalancer IPs netlet allocated to it from
    /// `services.loadBalancerPools`.
    #[serde(default, rename = "loadBalancerIPs", skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_ips: Vec<LoadBalancerIpReport>,
    /// Why it lacks a LoadBalancer IP it should have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIpReport {
    pub ip: String,
    /// Whether the node answers ARP / Neighbor Solicitations for it on its
    /// external interfaces (false until the Service's status shows it).
    pub announced: bool,
    /// Requests answered for it since it was announced.
    pub answers: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendReport {
    /// `10.43.0.1:80` or `[fd00:43::1]:80`.
    pub address: String,
    pub protocol: String,
    /// `internal` (sockets on this node) or `external` (packets from outside).
    pub scope: String,
    /// In slot order; empty means connections are refused (or dropped when
    /// `dropsWhenEmpty`).
    pub backends: Vec<String>,
    pub affinity_seconds: u32,
    pub drops_when_empty: bool,
    pub source_ranges: Vec<String>,
}

pub(super) fn routes(lb: SharedLb, lb_ips: SharedLbIps) -> Router {
    Router::new()
        .route("/v1/services", get(report))
        .with_state((lb, lb_ips))
}

async fn report(State((lb, lb_ips)): State<(SharedLb, SharedLbIps)>) -> axum::response::Response {
    // Reading every map entry is a few system calls per entry: off the
    // runtime's threads.
    let read = tokio::task::spawn_blocking(move || {
        let guard = lb.lock().unwrap_or_else(|e| e.into_inner());
        let Some((datapath, sync)) = guard.as_ref() else {
            return Err("Service load balancing is not loaded yet".to_string());
        };
        let states = datapath.read_maps().map_err(|e| e.to_string())?;
        let announced = datapath.read_announced().map_err(|e| e.to_string())?;
        let lb_ips = lb_ips.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(group(states, sync, &lb_ips, &announced))
    })
    .await;
    match read {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The frontends and LoadBalancer IPs under their Services, sorted by
/// namespace and name.
fn group(
    states: Vec<FrontendState>,
    sync: &ServiceSync,
    lb_ips: &LbIpsSnapshot,
    announced: &[(std::net::IpAddr, u64)],
) -> Vec<ServiceReport> {
    let owners = sync.owners();
    let mut services: std::collections::BTreeMap<(String, String), ServiceReport> = Default::default();
    for state in states {
        let (namespace, name) = owners
            .get(&state.frontend)
            .map(|k| (k.namespace.clone().unwrap_or_default(), k.name.clone()))
            .unwrap_or_default();
        entry(&mut services, namespace, name).frontends.push(frontend(&state));
    }
    for (key, (addresses, conflicts)) in &lb_ips.services {
        let report = entry(
            &mut services,
            key.namespace.clone().unwrap_or_default(),
            key.name.clone(),
        );
        report.load_balancer_ips = addresses
            .iter()
            .map(|a| {
                let answered = announced.iter().find(|(b, _)| b == a);
                LoadBalancerIpReport {
                    ip: a.to_string(),
                    announced: answered.is_some(),
                    answers: answered.map(|(_, n)| *n).unwrap_or(0),
                }
            })
            .collect();
        report.load_balancer_errors = conflicts.iter().map(ToString::to_string).collect();
    }
    services.into_values().collect()
}

/// Service `namespace`/`name`'s report, empty until filled.
fn entry(
    services: &mut std::collections::BTreeMap<(String, String), ServiceReport>,
    namespace: String,
    name: String,
) -> &mut ServiceReport {
    services
        .entry((namespace.clone(), name.clone()))
        .or_insert_with(|| ServiceReport {
            namespace,
            name,
            frontends: Vec::new(),
            load_balancer_ips: Vec::new(),
            load_balancer_errors: Vec::new(),
        })
}

fn frontend(s: &FrontendState) -> FrontendReport {
    let f = &s.frontend;
    FrontendReport {
        address: std::net::SocketAddr::new(f.address, f.port).to_string(),
        protocol: match f.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
        .to_string(),
        scope: match f.scope {
            Scope::Internal => "internal",
            Scope::External => "external",
        }
        .to_string(),
        backends: s
            .backends
            .iter()
            .map(|b| std::net::SocketAddr::new(b.address, b.port).to_string())
            .collect(),
        affinity_seconds: s.affinity_timeout,
        drops_when_empty: s.drops_when_empty,
        source_ranges: s.source_ranges.iter().map(ToString::to_string).collect(),
    }
}
