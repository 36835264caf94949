//! What a Service asks of the datapath, worked out from the Service and
//! its EndpointSlices, with no kernel in sight: one frontend per address
//! and port (ClusterIPs, externalIPs and LoadBalancer ingress IPs, in the
//! Service's families) and the backends each may be sent to.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The `IPPROTO_*` number the BPF programs see.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => crate::maps::PROTO_TCP,
            Protocol::Udp => crate::maps::PROTO_UDP,
            Protocol::Sctp => crate::maps::PROTO_SCTP,
        }
    }
}

/// Who a frontend entry serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Sockets on the node: pods and the node's own processes.
    Internal,
    /// Packets from outside the node (NodePorts, externalIPs and
    /// LoadBalancer IPs), subject to `externalTrafficPolicy`.
    External,
}

impl Scope {
    /// The number lb.h gives it.
    pub fn number(self) -> u8 {
        match self {
            Scope::Internal => crate::maps::SCOPE_INTERNAL,
            Scope::External => crate::maps::SCOPE_EXTERNAL,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub scope: Scope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    pub address: IpAddr,
    pub port: u16,
    /// On another node (its endpoint's `nodeName` is not this node's):
    /// traffic from outside sent there is SNATed to this node's address so
    /// that the reply comes back through it. An endpoint without a
    /// `nodeName` counts as local.
    pub remote: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendPlan {
    pub frontend: Frontend,
    /// Sorted, no duplicates; empty means connections are refused.
    pub backends: Vec<Backend>,
    /// `sessionAffinity: ClientIP`: seconds a client keeps its backend;
    /// 0 for none.
    pub affinity_timeout: u32,
    /// `loadBalancerSourceRanges` of the frontend's family, for a
    /// LoadBalancer IP reached from outside; empty admits every source.
    pub source_ranges: Vec<dualstack::Cidr>,
    /// With no backends, drop rather than refuse: traffic from outside
    /// under `externalTrafficPolicy: Local`, which must not be answered by
    /// a node without endpoints (the load balancer's health check steers
    /// it elsewhere).
    pub drop_when_empty: bool,
}

impl FrontendPlan {
    /// `frontend` sent to `backends` as given, with nothing else asked: no
    /// affinity, no source ranges, refusing when there are no backends.
    pub fn to(frontend: Frontend, backends: impl IntoIterator<Item = (IpAddr, u16)>) -> FrontendPlan {
        FrontendPlan {
            frontend,
            backends: backends
                .into_iter()
                .map(|(address, port)| Backend {
                    address,
                    port,
                    remote: false,
                })
                .collect(),
            affinity_timeout: 0,
            source_ranges: Vec::new(),
            drop_when_empty: false,
        }
    }
}

/// kube-proxy's default for `sessionAffinityConfig.clientIP.timeoutSeconds`.
const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

/// The node the plan is for: its name (for `internalTrafficPolicy:
/// Local`) and its addresses (where NodePorts are served).
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    pub name: &'a str,
    pub addresses: &'a [IpAddr],
}

/// The frontends of `service` and their backends from `slices` (the
/// Service's own EndpointSlices) on `node`: each ClusterIP, externalIP and
/// LoadBalancer ingress IP at the Service port, and each node address of
/// the Service's families at the NodePort. Headless and ExternalName
/// Services have none.
pub fn plan(service: &Service, slices: &[&EndpointSlice], node: NodeView) -> Vec<FrontendPlan> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let parsed = |list: &[String]| -> Vec<IpAddr> { list.iter().filter_map(|a| a.parse().ok()).collect() };
    let cluster_ips: BTreeSet<IpAddr> = parsed(spec.cluster_ips.as_deref().unwrap_or_default())
        .into_iter()
        .chain(spec.cluster_ip.as_deref().and_then(|a| a.parse().ok()))
        .collect();
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let load_balancer_ips: BTreeSet<IpAddr> = ingress
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    let service_addresses: BTreeSet<IpAddr> = cluster_ips
        .iter()
        .copied()
        .chain(parsed(spec.external_ips.as_deref().unwrap_or_default()))
        .chain(load_balancer_ips.iter().copied())
        .collect();
    let source_ranges: Vec<dualstack::Cidr> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    // NodePorts are served on this node's addresses of the Service's
    // families (a headless Service has no ClusterIP and no NodePort).
    let node_addresses: Vec<IpAddr> = node
        .addresses
        .iter()
        .copied()
        .filter(|a| cluster_ips.iter().any(|c| c.is_ipv4() == a.is_ipv4()))
        .collect();
    // internalTrafficPolicy: Local keeps ClusterIP traffic on this node;
    // externalTrafficPolicy: Local does the same for traffic from outside.
    let local_only = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let affinity_timeout = match spec.session_affinity.as_deref() {
        Some("ClientIP") => spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_SECONDS),
        _ => 0,
    };

    let mut plans = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
            continue;
        };
        let at_service = u16::try_from(port.port)
            .ok()
            .map(|n| service_addresses.iter().map(move |&a| (a, n)));
        let at_node = port
            .node_port
            .and_then(|n| u16::try_from(n).ok())
            .map(|n| node_addresses.iter().map(move |&a| (a, n)));
        for (address, number) in at_service.into_iter().flatten().chain(at_node.into_iter().flatten()) {
            let cluster_ip = cluster_ips.contains(&address);
            let only_on = (local_only && cluster_ip).then_some(node.name);
            let frontend = Frontend {
                address,
                port: number,
                protocol,
                scope: Scope::Internal,
            };
            plans.push(FrontendPlan {
                frontend,
                backends: backends(port, protocol, address.is_ipv4(), slices, node.name, only_on),
                affinity_timeout,
                source_ranges: Vec::new(),
                drop_when_empty: false,
            });
            // Everything but a ClusterIP can be reached from outside too.
            if !cluster_ip {
                plans.push(FrontendPlan {
                    frontend: Frontend {
                        scope: Scope::External,
                        ..frontend
                    },
                    backends: backends(
                        port,
                        protocol,
                        address.is_ipv4(),
                        slices,
                        node.name,
                        external_local.then_some(node.name),
                    ),
                    affinity_timeout,
                    // As kube-proxy: the ranges guard LoadBalancer IPs.
                    source_ranges: match load_balancer_ips.contains(&address) {
                        true => source_ranges
                            .iter()
                            .filter(|r| r.addr().is_ipv4() == address.is_ipv4())
                            .copied()
                            .collect(),
                        false => Vec::new(),
                    },
                    drop_when_empty: external_local,
                });
            }
        }
    }
    plans
}

/// Ready endpoints of the port's family (only those on node `only_on`, if
/// given); if there are none, those that are serving while terminating, so
/// a rollout's last pods still answer. Those on another node than `this`
/// are marked remote.
fn backends(
    port: &ServicePort,
    protocol: Protocol,
    ipv4: bool,
    slices: &[&EndpointSlice],
    this: &str,
    only_on: Option<&str>,
) -> Vec<Backend> {
    let family = if ipv4 { "IPv4" } else { "IPv6" };
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for slice in slices.iter().filter(|s| s.address_type == family) {
        // The slice's port of the same name (and protocol) carries the
        // target port resolved, named or numeric.
        let Some(target) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or("")
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(target_port) = target.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            if only_on.is_some() && endpoint.node_name.as_deref() != only_on {
                continue;
            }
            let set = match usable(endpoint) {
                Some(true) => &mut ready,
                Some(false) => &mut terminating,
                None => continue,
            };
            for address in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                set.insert(Backend {
                    address,
                    port: target_port,
                    remote: endpoint.node_name.as_deref().is_some_and(|n| n != this),
                });
            }
        }
    }
    let chosen = if ready.is_empty() { terminating } else { ready };
    chosen.into_iter().collect()
}

/// Some(true): ready; Some(false): serving but terminating (a fallback);
/// None: not to be used. An unset condition counts as its default:
/// ready and serving unless said otherwise, not terminating.
fn usable(endpoint: &Endpoint) -> Option<bool> {
    let c = endpoint.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    if ready && !terminating {
        Some(true)
    } else if serving && terminating {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::serde_json::{self, json};

    const NODE: NodeView = NodeView {
        name: "n1",
        addresses: &[],
    };

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "demo"}, "spec": spec})).unwrap()
    }

    fn slice(family: &str, ports: serde_json::Value, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(
            json!({"metadata": {"name": "web-x"}, "addressType": family, "ports": ports, "endpoints": endpoints}),
        )
        .unwrap()
    }

    #[test]
    fn each_cluster_ip_and_port_gets_the_ready_endpoints_of_its_family() {
        let svc = service(json!({
            "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10", "fd00:43::a"],
            "ports": [{"name": "http", "port": 80, "targetPort": "web"}, {"name": "dns", "port": 53, "protocol": "UDP"}],
        }));
        let v4 = slice(
            "IPv4",
            json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            json!([{"addresses": ["10.42.0.2"]}, {"addresses": ["10.42.0.3"], "conditions": {"ready": false}}]),
        );
        let v6 = slice(
            "IPv6",
            json!([{"name": "http", "port": 8080}]),
            json!([{"addresses": ["fd00:42::2"]}]),
        );
        let plans = plan(&svc, &[&v4, &v6], NODE);
        let find = |addr: &str, port: u16| {
            plans
                .iter()
                .find(|p| p.frontend.address == addr.parse::<IpAddr>().unwrap() && p.frontend.port == port)
                .unwrap()
                .backends
                .clone()
        };
        let b = |a: &str, p: u16| Backend {
            address: a.parse().unwrap(),
            port: p,
            remote: false,
        };
        assert_eq!(plans.len(), 4);
        assert_eq!(find("10.43.0.10", 80), [b("10.42.0.2", 8080)]);
        assert_eq!(find("10.43.0.10", 53), [b("10.42.0.2", 5353)]);
        assert_eq!(find("fd00:43::a", 80), [b("fd00:42::2", 8080)]);
        assert!(find("fd00:43::a", 53).is_empty(), "no IPv6 endpoint serves dns");
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let svc = service(json!({"clusterIP": "10.43.0.11", "ports": [{"port": 80}]}));
        let going = slice(
            "IPv4",
            json!([{"port": 8080}]),
            json!([{"addresses": ["10.42.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                   {"addresses": ["10.42.0.8"], "conditions": {"ready": false, "serving": false, "terminating": true}}]),
        );
        assert_eq!(plan(&svc, &[&going], NODE)[0].backends.len(), 1);
        let fresh = slice("IPv4", json!([{"port": 8080}]), json!([{"addresses": ["10.42.0.7"]}]));
        let both = plan(&svc, &[&going, &fresh], NODE);
        assert_eq!(both[0].backends[0].address, "10.42.0.7".parse::<IpAddr>().unwrap());
        assert_eq!(both[0].backends.len(), 1);
    }

    #[test]
    fn external_and_load_balancer_ips_are_frontends_too_headless_has_none() {
        let mut svc =
            service(json!({"clusterIP": "10.43.0.12", "externalIPs": ["192.0.2.7"], "ports": [{"port": 80}]}));
        svc.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.4"}]}})).unwrap();
        let addrs: Vec<String> = plan(&svc, &[], NODE)
            .iter()
            .map(|p| format!("{} {:?}", p.frontend.address, p.frontend.scope))
            .collect();
        assert_eq!(
            addrs,
            [
                "10.43.0.12 Internal",
                "192.0.2.7 Internal",
                "192.0.2.7 External",
                "198.51.100.4 Internal",
                "198.51.100.4 External"
            ],
            "a ClusterIP is never reached from outside; the others are"
        );
        assert!(plan(
            &service(json!({"clusterIP": "None", "ports": [{"port": 80}]})),
            &[],
            NODE
        )
        .is_empty());
        assert!(plan(
            &service(json!({"type": "ExternalName", "externalName": "example.org"})),
            &[],
            NODE
        )
        .is_empty());
    }

    #[test]
    fn local_internal_traffic_stays_on_the_node_and_affinity_has_its_timeout() {
        let svc = service(json!({
            "clusterIP": "10.43.0.13", "externalIPs": ["192.0.2.8"], "ports": [{"port": 80}],
            "internalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
        }));
        let s = slice(
            "IPv4",
            json!([{"port": 8080}]),
            json!([{"addresses": ["10.42.0.2"], "nodeName": "n1"}, {"addresses": ["10.42.1.2"], "nodeName": "n2"}]),
        );
        let plans = plan(&svc, &[&s], NODE);
        assert_eq!(plans[0].frontend.address.to_string(), "10.43.0.13");
        assert_eq!(
            plans[0].backends.len(),
            1,
            "only this node's endpoint for the ClusterIP"
        );
        assert_eq!(plans[1].backends.len(), 2, "externalIPs are not internal traffic");
        assert_eq!(plans[0].affinity_timeout, 10800);
        assert!(
            plan(
                &svc,
                &[&s],
                NodeView {
                    name: "n3",
                    addresses: &[]
                }
            )[0]
            .backends
            .is_empty(),
            "no local endpoint: refused"
        );
        let mut timed = svc.clone();
        timed.spec.as_mut().unwrap().session_affinity_config =
            serde_json::from_value(json!({"clientIP": {"timeoutSeconds": 60}})).unwrap();
        assert_eq!(plan(&timed, &[&s], NODE)[0].affinity_timeout, 60);
    }

    #[test]
    fn node_ports_are_served_on_the_node_addresses_of_the_service_families() {
        let mut svc = service(json!({
            "type": "NodePort", "clusterIP": "10.43.0.14", "clusterIPs": ["10.43.0.14"],
            "ports": [{"port": 80, "nodePort": 30080}],
        }));
        let s = slice(
            "IPv4",
            json!([{"port": 8080}]),
            json!([{"addresses": ["10.42.0.2"], "nodeName": "n1"}, {"addresses": ["10.42.1.2"], "nodeName": "n2"}]),
        );
        let addresses: [IpAddr; 2] = ["192.0.2.10".parse().unwrap(), "2001:db8::10".parse().unwrap()];
        let node = NodeView {
            name: "n1",
            addresses: &addresses,
        };
        let describe = |plans: Vec<FrontendPlan>| -> Vec<String> {
            plans
                .iter()
                .map(|p| {
                    let f = p.frontend;
                    format!("{}:{} {:?} {}", f.address, f.port, f.scope, p.backends.len())
                })
                .collect()
        };
        assert_eq!(
            describe(plan(&svc, &[&s], node)),
            [
                "10.43.0.14:80 Internal 2",
                "192.0.2.10:30080 Internal 2",
                "192.0.2.10:30080 External 2"
            ],
            "no IPv6 NodePort on an IPv4 Service"
        );
        // externalTrafficPolicy: Local: traffic from outside only to this
        // node's endpoints; the node's own traffic still to all.
        svc.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
        assert_eq!(
            describe(plan(&svc, &[&s], node)),
            [
                "10.43.0.14:80 Internal 2",
                "192.0.2.10:30080 Internal 2",
                "192.0.2.10:30080 External 1"
            ]
        );
    }

    #[test]
    fn source_ranges_guard_load_balancer_ips_from_outside() {
        let mut svc = service(json!({
            "type": "LoadBalancer", "clusterIP": "10.43.0.15",
            "loadBalancerSourceRanges": ["192.0.2.0/24", "2001:db8::/32"],
            "ports": [{"port": 80, "nodePort": 30080}],
        }));
        svc.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.80"}]}})).unwrap();
        let addresses: [IpAddr; 1] = ["198.51.100.1".parse().unwrap()];
        let node = NodeView {
            name: "n1",
            addresses: &addresses,
        };
        let guarded: Vec<String> = plan(&svc, &[], node)
            .iter()
            .filter(|p| !p.source_ranges.is_empty())
            .map(|p| format!("{} {:?} {:?}", p.frontend.address, p.frontend.scope, p.source_ranges))
            .collect();
        assert_eq!(
            guarded,
            ["203.0.113.80 External [192.0.2.0/24]"],
            "only the LoadBalancer IP from outside, with its family's ranges"
        );
    }

    #[test]
    fn endpoints_on_other_nodes_are_remote_backends() {
        let svc = service(json!({"clusterIP": "10.43.0.30", "ports": [{"port": 80}]}));
        let s = slice(
            "IPv4",
            json!([{"port": 8080}]),
            json!([{"addresses": ["10.42.0.2"], "nodeName": "n1"},
                   {"addresses": ["10.42.1.2"], "nodeName": "n2"},
                   {"addresses": ["10.42.9.2"]}]),
        );
        let remote: Vec<(String, bool)> = plan(&svc, &[&s], NODE)[0]
            .backends
            .iter()
            .map(|b| (b.address.to_string(), b.remote))
            .collect();
        assert_eq!(
            remote,
            [
                ("10.42.0.2".to_string(), false),
                ("10.42.1.2".to_string(), true),
                ("10.42.9.2".to_string(), false)
            ],
            "on another node: remote (SNATed from outside); no nodeName: taken as local"
        );
    }
}
