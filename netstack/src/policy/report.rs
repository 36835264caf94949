//! NetworkPolicy enforcement seen from outside: `/v1/policy` (what is
//! enforced on which pod, invalid policies, counters), `/v1/policy/trace`
//! (one flow's verdict, explained from the compiled state the datapath was
//! written from) and `/v1/policy/drops` (drop events, optionally followed).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use policy::{Direction, Endpoint, Flow, Protocol};
use serde::{Deserialize, Serialize};

use super::PolicyShared;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    /// Whether the datapath is loaded and synced.
    pub enforcing: bool,
    pub policies: usize,
    pub identities: usize,
    /// Invalid policies: each isolates what it selects and allows nothing.
    pub errors: Vec<String>,
    pub pods: Vec<PodPolicyReport>,
    /// (namespace/policy, flows it allowed)
    pub allowed_by_policy: Vec<(String, u64)>,
    /// When the steps of the last syncs happened, oldest first.
    #[serde(default)]
    pub recent_syncs: Vec<super::SyncTimes>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodPolicyReport {
    /// `namespace/name`; none for a container without a Kubernetes pod.
    pub pod: Option<String>,
    pub interface: String,
    pub identity: u32,
    pub ingress: DirectionReport,
    pub egress: DirectionReport,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectionReport {
    /// Empty when no policy isolates the pod in this direction.
    pub isolated_by: Vec<String>,
    pub rules: usize,
    /// New flows let through.
    pub allowed: u64,
    /// Packets dropped.
    pub dropped: u64,
}

/// One dropped packet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DropRecord {
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub pod: Option<String>,
    /// The pod's direction: Ingress (to the pod) or Egress (from it).
    pub direction: String,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub protocol: String,
    pub reason: String,
}

impl DropRecord {
    pub(super) fn new(event: &policy::DropEvent, pod: Option<String>) -> DropRecord {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        DropRecord {
            time,
            pod,
            direction: event.direction.to_string(),
            source: SocketAddr::new(event.source.unwrap_or(UNKNOWN), event.source_port),
            destination: SocketAddr::new(event.destination.unwrap_or(UNKNOWN), event.destination_port),
            protocol: protocol_name(event.protocol),
            reason: event.reason.to_string(),
        }
    }
}

impl std::fmt::Display for DropRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pod = self.pod.as_deref().unwrap_or("(no pod)");
        write!(
            f,
            "{} {pod} {}: {} -> {} {}",
            self.direction, self.reason, self.source, self.destination, self.protocol
        )
    }
}

/// For a dropped packet whose addresses could not be read (not IP).
const UNKNOWN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

fn protocol_name(number: u8) -> String {
    match number {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        n => format!("proto-{n}"),
    }
}

/// A flow's verdict and its explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceReport {
    pub allowed: bool,
    pub explanation: String,
}

pub(super) fn routes(shared: Arc<PolicyShared>) -> Router {
    Router::new()
        .route("/v1/policy", get(report))
        .route("/v1/policy/trace", get(trace))
        .route("/v1/policy/drops", get(drops))
        .with_state(shared)
}

async fn report(State(shared): State<Arc<PolicyShared>>) -> Json<PolicyReport> {
    Json(shared.report())
}

impl PolicyShared {
    pub(super) fn report(&self) -> PolicyReport {
        let guard = self.lock();
        let Some(enforcer) = guard.as_ref() else {
            return PolicyReport::default();
        };
        let compiled = enforcer.compiled();
        let counters = enforcer.datapath.endpoint_counters().unwrap_or_default();
        let pods = (enforcer.interfaces())
            .map(|interface| {
                let name = interface.attachment.pod.clone();
                let local = name
                    .as_deref()
                    .and_then(|n| n.split_once('/'))
                    .and_then(|(ns, n)| compiled.local_pods.get(&policy::NamespacedName::new(ns, n)));
                let count = counters.get(&interface.ifindex).copied().unwrap_or_default();
                let direction = |d: Direction| {
                    let (allowed, dropped) = match d {
                        Direction::Ingress => (count.ingress_allowed_flows, count.ingress_dropped_packets),
                        Direction::Egress => (count.egress_allowed_flows, count.egress_dropped_packets),
                    };
                    let (isolated_by, rules) = match (local, &name) {
                        (Some(l), _) => {
                            let policy = l.direction(d);
                            (
                                policy.isolated_by.iter().map(ToString::to_string).collect(),
                                policy.rules.len(),
                            )
                        }
                        // Fail closed: a pod the cache does not know yet.
                        (None, Some(_)) => (vec!["(pod not in the cache yet: all denied)".to_string()], 0),
                        (None, None) => (vec![], 0),
                    };
                    DirectionReport {
                        isolated_by,
                        rules,
                        allowed,
                        dropped,
                    }
                };
                PodPolicyReport {
                    identity: local.map_or(0, |l| l.identity.0),
                    ingress: direction(Direction::Ingress),
                    egress: direction(Direction::Egress),
                    interface: interface.attachment.host_ifname.clone(),
                    pod: name,
                }
            })
            .collect();
        let per_slot = enforcer.datapath.policy_counters().unwrap_or_default();
        let allowed_by_policy = (enforcer.datapath.slots().policies())
            .map(|(policy, slot)| (policy.to_string(), per_slot.get(&slot).copied().unwrap_or(0)))
            .collect();
        let cache = self.cache.get();
        PolicyReport {
            enforcing: true,
            policies: cache.map_or(0, |c| c.len(crate::cache::Kind::NetworkPolicy)),
            identities: compiled.identities.iter().count(),
            errors: compiled.policy_errors.iter().map(ToString::to_string).collect(),
            pods,
            allowed_by_policy,
            recent_syncs: self.recent_syncs.list(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct TraceQuery {
    from: String,
    to: String,
    /// `80/TCP`; the protocol defaults to TCP.
    port: String,
    /// For pod endpoints: which of their addresses (IPv4 unless `IPv6`).
    family: Option<String>,
}

async fn trace(State(shared): State<Arc<PolicyShared>>, Query(q): Query<TraceQuery>) -> Response {
    let flow = match parse_flow(&q) {
        Ok(flow) => flow,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let Some(compiled) = shared.lock().as_ref().map(|e| e.compiled()) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "NetworkPolicy enforcement is not loaded\n",
        )
            .into_response();
    };
    match policy::verdict(&compiled, &flow) {
        Ok(verdict) => Json(TraceReport {
            allowed: verdict.allowed(),
            explanation: verdict.to_string(),
        })
        .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

fn parse_flow(q: &TraceQuery) -> Result<Flow, String> {
    let endpoint = |s: &str| -> Result<Endpoint, String> {
        // A single-address CIDR is an address; a wider one has no one verdict.
        let s = match s.split_once('/') {
            Some((ip, "32" | "128")) if ip.parse::<IpAddr>().is_ok() => ip,
            _ => s,
        };
        s.parse().map_err(|e: policy::TraceError| e.to_string())
    };
    let (port, protocol) = q.port.split_once('/').unwrap_or((&q.port, "TCP"));
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {:?}: expected PORT or PORT/PROTOCOL, e.g. 80/TCP", q.port))?;
    let protocol = Protocol::from_k8s(&protocol.to_uppercase())
        .ok_or_else(|| format!("protocol {protocol:?}: expected TCP, UDP or SCTP"))?;
    let family = match q.family.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("ipv4" | "4") => dualstack::IpFamily::V4,
        Some("ipv6" | "6") => dualstack::IpFamily::V6,
        Some(other) => return Err(format!("family {other:?}: expected IPv4 or IPv6")),
    };
    Ok(Flow {
        from: endpoint(&q.from)?,
        to: endpoint(&q.to)?,
        port,
        protocol,
        family,
    })
}

#[derive(Debug, Deserialize)]
struct DropsQuery {
    #[serde(default)]
    follow: bool,
}

/// Newline-delimited JSON, one drop per line: the kept ones, then (with
/// `follow=true`) every new one until the client goes away.
async fn drops(State(shared): State<Arc<PolicyShared>>, Query(q): Query<DropsQuery>) -> Response {
    let (recent, live) = shared.drops.follow();
    let line = |r: &DropRecord| Ok::<_, Infallible>(serde_json::to_string(r).expect("serializable") + "\n");
    let past = futures::stream::iter(recent.iter().map(line).collect::<Vec<_>>());
    if !q.follow {
        return Body::from_stream(past).into_response();
    }
    let future = tokio_stream::wrappers::BroadcastStream::new(live)
        // A follower too slow for the stream misses events, not the rest.
        .filter_map(move |r| async move { r.ok().map(|r| line(&r)) });
    Body::from_stream(past.chain(future)).into_response()
}
