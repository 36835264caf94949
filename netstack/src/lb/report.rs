//! `/v1/services` (and so `netlet services`): every Service's frontends and
//! backends as the BPF maps hold them, read back from the kernel, with the
//! Service each frontend belongs to. Frontends no Service owns are shown
//! too: they are what an update left half-done, or an earlier agent's.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use services::{Datapath, FrontendState, Protocol, Scope};

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

pub(super) fn routes(lb: SharedLb) -> Router {
    Router::new().route("/v1/services", get(report)).with_state(lb)
}

async fn report(State(lb): State<SharedLb>) -> axum::response::Response {
    // Reading every map entry is a few system calls per entry: off the
    // runtime's threads.
    let read = tokio::task::spawn_blocking(move || {
        let guard = lb.lock().unwrap_or_else(|e| e.into_inner());
        let Some((datapath, sync)) = guard.as_ref() else {
            return Err("Service load balancing is not loaded yet".to_string());
        };
        let states = datapath.read_maps().map_err(|e| e.to_string())?;
        Ok(group(states, sync))
    })
    .await;
    match read {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The frontends under their Services, sorted by namespace and name.
fn group(states: Vec<FrontendState>, sync: &ServiceSync) -> Vec<ServiceReport> {
    let owners = sync.owners();
    let mut services: std::collections::BTreeMap<(String, String), Vec<FrontendReport>> = Default::default();
    for state in states {
        let key = owners
            .get(&state.frontend)
            .map(|k| (k.namespace.clone().unwrap_or_default(), k.name.clone()))
            .unwrap_or_default();
        services.entry(key).or_default().push(frontend(&state));
    }
    services
        .into_iter()
        .map(|((namespace, name), frontends)| ServiceReport {
            namespace,
            name,
            frontends,
        })
        .collect()
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
