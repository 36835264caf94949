//! Test support shared by the plan and datapath unit tests: a small
//! cluster compiled for real, and a model of what the BPF programs look
//! up, to judge flows against a plan (or any state of the maps).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::*;
use crate::maps::map_address;
use crate::{compile, ClusterState, IdentityTable};

pub fn pod(namespace: &str, name: &str, app: &str, ips: &[&str]) -> Pod {
    let ips: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": namespace, "name": name, "labels": {"app": app}},
        "spec": {"nodeName": "here", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIPs": ips}
    }))
    .unwrap()
}

pub fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

pub fn policy(name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": "x", "name": name}, "spec": spec})).unwrap()
}

pub struct Cluster {
    pub pods: Vec<Pod>,
    pub policies: Vec<NetworkPolicy>,
    identities: IdentityTable,
}

impl Cluster {
    /// x/a (10.0.0.1, fd00::1), x/b (10.0.0.2, fd00::2), x/c (10.1.0.3,
    /// fd00:1::3): a and b local, c elsewhere.
    pub fn new() -> Cluster {
        Cluster {
            pods: vec![
                pod("x", "a", "a", &["10.0.0.1", "fd00::1"]),
                pod("x", "b", "b", &["10.0.0.2", "fd00::2"]),
                pod("x", "c", "c", &["10.1.0.3", "fd00:1::3"]),
            ],
            policies: vec![],
            identities: IdentityTable::default(),
        }
    }

    pub fn with(mut self, name: &str, spec: serde_json::Value) -> Cluster {
        self.policies.retain(|p| p.metadata.name.as_deref() != Some(name));
        self.policies.push(policy(name, spec));
        self
    }

    pub fn compile(&mut self) -> Compiled {
        let namespaces = [namespace("x")];
        let cluster = ClusterState {
            pods: &self.pods,
            namespaces: &namespaces,
            policies: &self.policies,
        };
        let local = |p: &Pod| p.metadata.name.as_deref() != Some("c");
        let compiled = compile(&cluster, local, &self.identities);
        self.identities = compiled.identities.clone();
        compiled
    }
}

pub fn endpoints() -> Vec<LocalEndpoint> {
    vec![
        LocalEndpoint {
            ifindex: 10,
            pod: EndpointPod::Pod(NamespacedName::new("x", "a")),
        },
        LocalEndpoint {
            ifindex: 11,
            pod: EndpointPod::Pod(NamespacedName::new("x", "b")),
        },
    ]
}

pub fn identity(compiled: &Compiled, name: &str) -> Identity {
    compiled.pods[&NamespacedName::new("x", name)].identity
}

/// What the BPF programs would find for `ip`: the longest ipcache prefix
/// containing it, compared bit by bit as the trie does (IPv4 v4-mapped).
pub fn lookup_ipcache(plan: &Plan, ip: IpAddr) -> Option<IpcacheEntry> {
    let addr = u128::from_be_bytes(map_address(ip));
    plan.ipcache
        .iter()
        .map(|(cidr, entry)| {
            let len = u32::from(cidr.prefix_len()) + if cidr.addr().is_ipv4() { 96 } else { 0 };
            (u128::from_be_bytes(map_address(cidr.addr())), len, entry)
        })
        .filter(|(net, len, _)| *len == 0 || (net ^ addr) >> (128 - len) == 0)
        .max_by_key(|(_, len, _)| *len)
        .map(|(_, _, entry)| *entry)
}

/// The programs' judgement of `local`'s policy in `direction` for traffic
/// with `remote` to destination port `port`.
pub fn datapath_allows(plan: &Plan, ifindex: u32, direction: Direction, remote: IpAddr, proto: u8, port: u16) -> bool {
    let endpoint = plan.endpoints[&ifindex];
    let isolated = match direction {
        Direction::Ingress => endpoint.isolated_ingress,
        Direction::Egress => endpoint.isolated_egress,
    };
    if !isolated {
        return true;
    }
    let found = lookup_ipcache(plan, remote).expect("every address has a class");
    let mut remotes = vec![Remote::Class(found.class), Remote::Any];
    if found.identity != Identity::WORLD {
        remotes.push(Remote::Pod(found.identity));
    }
    plan.rules.keys().any(|key| {
        key.local == endpoint.identity
            && key.direction == direction
            && remotes.contains(&key.remote)
            && match key.ports {
                RulePorts::Any => true,
                RulePorts::Prefix { protocol, prefix } => {
                    protocol == proto && (prefix.first()..=prefix.last()).contains(&port)
                }
            }
    })
}
