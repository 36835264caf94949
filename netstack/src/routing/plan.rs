//! What node-to-node routing should look like, from the Nodes alone: plain
//! Rust, no kernel, so unit tests drive it.
//!
//! - native: `<peer podCIDR> via <peer InternalIP of that family>`.
//! - vxlan: per family one device; per peer an FDB entry (the peer's VTEP
//!   MAC -> its InternalIP), a permanent neighbour entry (the peer's
//!   gateway -> its VTEP MAC) and `<peer podCIDR> via <peer gateway> dev
//!   <device> onlink`. The peer's gateway is the first address (network
//!   address) of its podCIDR, as flannel does; it need not be assigned
//!   anywhere: it only names the next hop, whose MAC the neighbour entry
//!   gives.
//!
//! VTEP MACs are derived from the underlay address (see [`vtep_mac`]), so
//! a Node's InternalIPs and podCIDRs are all a peer needs to know.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use dualstack::{Cidr, IpFamily};
use k8s_openapi::api::core::v1::Node;

use crate::config::RoutingMode;

/// What the plan needs of one Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub internal_ips: Vec<IpAddr>,
    pub pod_cidrs: Vec<Cidr>,
}

impl NodeView {
    pub fn of(node: &Node) -> NodeView {
        let internal_ips = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        NodeView {
            name: node.metadata.name.clone().unwrap_or_default(),
            internal_ips,
            pod_cidrs: crate::cni::blocks::node_blocks(node),
        }
    }

    pub fn internal_ip(&self, family: IpFamily) -> Option<IpAddr> {
        self.internal_ips.iter().copied().find(|ip| IpFamily::of(ip) == family)
    }
}

/// The VXLAN device of a family.
pub fn device_name(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "netlet-vx4",
        IpFamily::V6 => "netlet-vx6",
    }
}

/// VXLAN header overhead over the underlay: outer IP + UDP + VXLAN +
/// inner Ethernet.
pub fn vxlan_overhead(family: IpFamily) -> u32 {
    match family {
        IpFamily::V4 => 50,
        IpFamily::V6 => 70,
    }
}

/// A node's VTEP MAC, derived from its underlay address: locally
/// administered, unicast (`0e:4e` + the four IPv4 bytes; `0e:6e` + the
/// IPv6 address folded to four bytes by XOR). Deterministic, so no node
/// needs to publish its MAC; unique among IPv4 nodes, and among IPv6 nodes
/// unless two fold alike (the plan reports such a clash).
pub fn vtep_mac(underlay: IpAddr) -> [u8; 6] {
    match underlay {
        IpAddr::V4(a) => {
            let o = a.octets();
            [0x0e, 0x4e, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            let mut f = [0u8; 4];
            for (i, b) in o.iter().enumerate() {
                f[i % 4] ^= b;
            }
            [0x0e, 0x6e, f[0], f[1], f[2], f[3]]
        }
    }
}

/// One route the module owns. `device` is the VXLAN device's family
/// (None: native, the kernel finds the interface from the gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteSpec {
    pub destination: Cidr,
    pub gateway: IpAddr,
    pub device: Option<IpFamily>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbSpec {
    pub family: IpFamily,
    pub mac: [u8; 6],
    pub remote: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NeighbourSpec {
    pub family: IpFamily,
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// This node's tunnel of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSpec {
    pub family: IpFamily,
    pub local: IpAddr,
    pub mac: [u8; 6],
}

/// One peer: what the plan gives it, and why it gives it less.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPlan {
    pub name: String,
    pub internal_ips: Vec<IpAddr>,
    pub pod_cidrs: Vec<Cidr>,
    pub routes: Vec<RouteSpec>,
    pub fdb: Vec<FdbSpec>,
    pub neighbours: Vec<NeighbourSpec>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub tunnels: Vec<TunnelSpec>,
    pub peers: Vec<PeerPlan>,
    /// About this node itself (e.g. no InternalIP for a family).
    pub problems: Vec<String>,
}

impl Plan {
    pub fn routes(&self) -> impl Iterator<Item = &RouteSpec> {
        self.peers.iter().flat_map(|p| &p.routes)
    }

    pub fn fdb(&self) -> impl Iterator<Item = &FdbSpec> {
        self.peers.iter().flat_map(|p| &p.fdb)
    }

    pub fn neighbours(&self) -> impl Iterator<Item = &NeighbourSpec> {
        self.peers.iter().flat_map(|p| &p.neighbours)
    }
}

/// The plan for node `me` among `nodes` (which may include `me`), for the
/// pod `families` of the cluster.
pub fn plan(mode: RoutingMode, me: &str, families: &[IpFamily], nodes: &[NodeView]) -> Plan {
    let mut out = Plan::default();
    if mode == RoutingMode::None {
        return out;
    }
    let mut sorted: Vec<&NodeView> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let this = sorted.iter().find(|n| n.name == me).copied();
    if mode == RoutingMode::Vxlan {
        for &family in families {
            match this.and_then(|n| n.internal_ip(family)) {
                Some(local) => out.tunnels.push(TunnelSpec {
                    family,
                    local,
                    mac: vtep_mac(local),
                }),
                None => out.problems.push(format!(
                    "this Node has no {family} InternalIP: no {family} tunnel, {family} pods of other nodes unreachable"
                )),
            }
        }
    }
    // A podCIDR routes to one node only: this node's own, then the first
    // peer by name that claims it.
    let mut taken: BTreeSet<Cidr> = this.map(|n| n.pod_cidrs.iter().copied().collect()).unwrap_or_default();
    let mut macs: BTreeMap<[u8; 6], String> = BTreeMap::new();
    for t in &out.tunnels {
        macs.insert(t.mac, me.to_string());
    }
    for node in sorted.into_iter().filter(|n| n.name != me) {
        let mut peer = PeerPlan {
            name: node.name.clone(),
            internal_ips: node.internal_ips.clone(),
            pod_cidrs: node.pod_cidrs.clone(),
            routes: Vec::new(),
            fdb: Vec::new(),
            neighbours: Vec::new(),
            problems: Vec::new(),
        };
        if node.pod_cidrs.is_empty() {
            peer.problems.push("no podCIDRs yet".to_string());
        }
        for cidr in &node.pod_cidrs {
            let family = IpFamily::of(&cidr.addr());
            if !families.contains(&family) {
                peer.problems
                    .push(format!("podCIDR {cidr}: not a family of this cluster"));
                continue;
            }
            if taken.iter().any(|t| t.contains(cidr) || cidr.contains(t)) {
                peer.problems
                    .push(format!("podCIDR {cidr} overlaps another node's; not routed"));
                continue;
            }
            let Some(underlay) = node.internal_ip(family) else {
                peer.problems
                    .push(format!("podCIDR {cidr}: the Node has no {family} InternalIP"));
                continue;
            };
            match mode {
                RoutingMode::Native => peer.routes.push(RouteSpec {
                    destination: *cidr,
                    gateway: underlay,
                    device: None,
                }),
                RoutingMode::Vxlan => {
                    if !out.tunnels.iter().any(|t| t.family == family) {
                        peer.problems
                            .push(format!("podCIDR {cidr}: this node has no {family} tunnel"));
                        continue;
                    }
                    let mac = vtep_mac(underlay);
                    match macs.get(&mac) {
                        Some(owner) if *owner != node.name => {
                            peer.problems.push(format!(
                                "podCIDR {cidr}: VTEP MAC {} of {underlay} is also {owner}'s",
                                crate::wire::overlay::mac_string(&mac)
                            ));
                            continue;
                        }
                        _ => {
                            macs.insert(mac, node.name.clone());
                        }
                    }
                    let gateway = cidr.network();
                    peer.fdb.push(FdbSpec {
                        family,
                        mac,
                        remote: underlay,
                    });
                    peer.neighbours.push(NeighbourSpec {
                        family,
                        ip: gateway,
                        mac,
                    });
                    peer.routes.push(RouteSpec {
                        destination: *cidr,
                        gateway,
                        device: Some(family),
                    });
                }
                RoutingMode::None => unreachable!("returned above"),
            }
            taken.insert(*cidr);
        }
        peer.fdb.dedup();
        out.peers.push(peer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ips: &[&str], cidrs: &[&str]) -> NodeView {
        NodeView {
            name: name.to_string(),
            internal_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            pod_cidrs: cidrs.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn cluster() -> Vec<NodeView> {
        vec![
            node("a", &["192.0.2.1", "fd00::1"], &["10.0.0.0/24", "fd00:10::/64"]),
            node("b", &["192.0.2.2", "fd00::2"], &["10.0.1.0/24", "fd00:10:0:1::/64"]),
            node("c", &["192.0.2.3"], &["10.0.2.0/24", "fd00:10:0:2::/64"]),
        ]
    }

    const BOTH: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

    #[test]
    fn none_plans_nothing() {
        assert_eq!(plan(RoutingMode::None, "a", &BOTH, &cluster()), Plan::default());
    }

    #[test]
    fn native_routes_via_the_peers_internal_ip_of_the_family() {
        let p = plan(RoutingMode::Native, "a", &BOTH, &cluster());
        assert!(p.tunnels.is_empty());
        let routes: Vec<String> = p
            .routes()
            .map(|r| format!("{} via {}", r.destination, r.gateway))
            .collect();
        assert_eq!(
            routes,
            [
                "10.0.1.0/24 via 192.0.2.2",
                "fd00:10:0:1::/64 via fd00::2",
                "10.0.2.0/24 via 192.0.2.3"
            ]
        );
        let c = &p.peers[1];
        assert_eq!(c.name, "c");
        assert_eq!(
            c.problems,
            ["podCIDR fd00:10:0:2::/64: the Node has no IPv6 InternalIP"]
        );
        assert_eq!(p.fdb().count(), 0);
    }

    #[test]
    fn vxlan_gives_each_peer_fdb_neighbour_and_onlink_route() {
        let p = plan(RoutingMode::Vxlan, "b", &BOTH, &cluster());
        assert_eq!(p.tunnels.len(), 2);
        assert_eq!(p.tunnels[0].local, "192.0.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.tunnels[0].mac, [0x0e, 0x4e, 192, 0, 2, 2]);
        let a = &p.peers[0];
        assert_eq!(a.name, "a");
        assert_eq!(
            a.fdb[0],
            FdbSpec {
                family: IpFamily::V4,
                mac: [0x0e, 0x4e, 192, 0, 2, 1],
                remote: "192.0.2.1".parse().unwrap()
            }
        );
        assert_eq!(a.neighbours[0].ip, "10.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(a.routes[0].gateway, "10.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(a.routes[0].device, Some(IpFamily::V4));
        assert_eq!(a.routes[1].gateway, "fd00:10::".parse::<IpAddr>().unwrap());
        assert_eq!(a.fdb[1].mac, vtep_mac("fd00::1".parse().unwrap()));
        assert_eq!(p.routes().count(), 3, "c has no IPv6 underlay");
    }

    #[test]
    fn a_node_without_an_underlay_of_a_family_has_no_tunnel_of_it() {
        let p = plan(RoutingMode::Vxlan, "c", &BOTH, &cluster());
        assert_eq!(p.tunnels.iter().map(|t| t.family).collect::<Vec<_>>(), [IpFamily::V4]);
        assert!(p.problems[0].contains("no IPv6 InternalIP"), "{:?}", p.problems);
        assert!(p.peers[0].problems[0].contains("no IPv6 tunnel"));
    }

    #[test]
    fn overlapping_pod_cidrs_are_routed_once() {
        let mut nodes = cluster();
        nodes.push(node("d", &["192.0.2.4"], &["10.0.1.128/25"]));
        nodes.push(node("e", &["192.0.2.5"], &["10.0.0.0/24"]));
        let p = plan(RoutingMode::Native, "a", &[IpFamily::V4], &nodes);
        let d = p.peers.iter().find(|p| p.name == "d").unwrap();
        assert!(d.routes.is_empty() && d.problems[0].contains("overlaps"));
        let e = p.peers.iter().find(|p| p.name == "e").unwrap();
        assert!(e.routes.is_empty(), "this node's own podCIDR");
    }

    #[test]
    fn vtep_macs_are_local_unicast_and_distinct() {
        let macs: BTreeSet<[u8; 6]> = ["192.0.2.1", "192.0.2.2", "fd00::1", "fd00::2", "fd00::1:0:0:1"]
            .iter()
            .map(|s| vtep_mac(s.parse().unwrap()))
            .collect();
        assert_eq!(macs.len(), 5);
        assert!(
            macs.iter().all(|m| m[0] & 0x03 == 0x02),
            "locally administered, unicast"
        );
        assert_eq!(
            vtep_mac("192.0.2.1".parse().unwrap()),
            vtep_mac("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn a_peer_without_pod_cidrs_says_so() {
        let mut nodes = cluster();
        nodes.push(node("z", &["192.0.2.9"], &[]));
        let p = plan(RoutingMode::Vxlan, "a", &BOTH, &nodes);
        let z = p.peers.iter().find(|p| p.name == "z").unwrap();
        assert_eq!(z.problems, ["no podCIDRs yet"]);
    }
}
