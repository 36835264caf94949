//! The upstream NetworkPolicy e2e model as data: namespaces x, y, z, each
//! with pods a, b, c (label `pod=<name>`) serving 80 and 81 on TCP, UDP and
//! SCTP under names like `serve-80-tcp`; and a reachability matrix helper
//! in the style of upstream's truth tables.

use std::fmt::Write as _;

use dualstack::IpFamily;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use crate::{compile, verdict, ClusterState, Compiled, Endpoint, Flow, IdentityTable, NamespacedName, Protocol};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// `x/a` style names of all nine pods, in matrix order.
pub fn all_pods() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |pod| format!("{ns}/{pod}")))
        .collect()
}

/// The IPv4 and IPv6 address of a model pod: `10.0.<ns>.<pod>` and
/// `fd00::<ns>:<pod>`, numbering from 1.
pub fn pod_ips(namespace: &str, pod: &str) -> (String, String) {
    let n = NAMESPACES.iter().position(|x| *x == namespace).unwrap() + 1;
    let p = PODS.iter().position(|x| *x == pod).unwrap() + 1;
    (format!("10.0.{n}.{p}"), format!("fd00::{n}:{p}"))
}

pub struct Model {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub policies: Vec<NetworkPolicy>,
    identities: IdentityTable,
}

impl Model {
    pub fn new() -> Model {
        let namespaces = NAMESPACES
            .iter()
            .map(|ns| from_json(json!({"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}})))
            .collect();
        let pods = NAMESPACES
            .iter()
            .flat_map(|ns| PODS.iter().map(move |pod| model_pod(ns, pod)))
            .collect();
        Model {
            namespaces,
            pods,
            policies: vec![],
            identities: IdentityTable::default(),
        }
    }

    /// Adds or replaces (by namespace/name) a policy given as its manifest.
    pub fn apply(&mut self, manifest: serde_json::Value) -> &mut Model {
        let policy: NetworkPolicy = from_json(manifest);
        self.delete_policy(
            policy.metadata.namespace.as_deref().unwrap(),
            policy.metadata.name.as_deref().unwrap(),
        );
        self.policies.push(policy);
        self
    }

    pub fn delete_policy(&mut self, namespace: &str, name: &str) {
        self.policies
            .retain(|p| (p.metadata.namespace.as_deref(), p.metadata.name.as_deref()) != (Some(namespace), Some(name)));
    }

    pub fn set_pod_label(&mut self, pod: &str, key: &str, value: &str) {
        let (namespace, name) = pod.split_once('/').unwrap();
        let pod = (self.pods.iter_mut())
            .find(|p| p.metadata.namespace.as_deref() == Some(namespace) && p.metadata.name.as_deref() == Some(name))
            .unwrap();
        pod.metadata
            .labels
            .get_or_insert_default()
            .insert(key.into(), value.into());
    }

    pub fn set_namespace_label(&mut self, namespace: &str, key: &str, value: &str) {
        let ns = (self.namespaces.iter_mut())
            .find(|n| n.metadata.name.as_deref() == Some(namespace))
            .unwrap();
        ns.metadata
            .labels
            .get_or_insert_default()
            .insert(key.into(), value.into());
    }

    /// Compiles with every pod local (a one-node cluster), keeping identity
    /// numbers across compilations like the agent does.
    pub fn compile(&mut self) -> Compiled {
        self.compile_for(|_| true)
    }

    pub fn compile_for(&mut self, is_local: impl Fn(&Pod) -> bool) -> Compiled {
        let cluster = ClusterState {
            pods: &self.pods,
            namespaces: &self.namespaces,
            policies: &self.policies,
        };
        let compiled = compile(&cluster, is_local, &self.identities);
        self.identities = compiled.identities.clone();
        compiled
    }
}

fn model_pod(namespace: &str, name: &str) -> Pod {
    let (v4, v6) = pod_ips(namespace, name);
    let ports: Vec<serde_json::Value> = [80, 81]
        .iter()
        .flat_map(|port| {
            Protocol::ALL.iter().map(move |protocol| {
                let name = format!("serve-{port}-{}", protocol.as_k8s().to_lowercase());
                json!({"name": name, "containerPort": port, "protocol": protocol.as_k8s()})
            })
        })
        .collect();
    from_json(json!({
        "metadata": {"namespace": namespace, "name": name, "labels": {"pod": name}},
        "spec": {"containers": [{"name": "server", "ports": ports}]},
        "status": {"phase": "Running", "podIP": v4, "podIPs": [{"ip": v4}, {"ip": v6}]}
    }))
}

pub fn from_json<T: k8s_openapi::serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// `x/a` as a flow endpoint.
pub fn pod(name: &str) -> Endpoint {
    let (namespace, name) = name.split_once('/').unwrap();
    Endpoint::Pod(NamespacedName::new(namespace, name))
}

pub fn ip(address: &str) -> Endpoint {
    Endpoint::Ip(address.parse().unwrap())
}

pub fn flow(from: Endpoint, to: Endpoint, port: u16, protocol: Protocol) -> Flow {
    Flow {
        from,
        to,
        port,
        protocol,
        family: IpFamily::V4,
    }
}

pub fn allowed(compiled: &Compiled, flow: &Flow) -> bool {
    verdict(compiled, flow).unwrap().allowed()
}

/// An expected 9×9 matrix, built like upstream's `Reachability`: start from
/// everything allowed or denied, then adjust rows (egress of a pod) and
/// columns (ingress to a pod). Loopback is always allowed.
#[derive(Clone, PartialEq, Eq)]
pub struct Reachability {
    pods: Vec<String>,
    /// `cells[from][to]`.
    cells: Vec<Vec<bool>>,
}

impl Reachability {
    pub fn all(allowed: bool) -> Reachability {
        let pods = all_pods();
        let cells = vec![vec![allowed; pods.len()]; pods.len()];
        Reachability { pods, cells }
    }

    fn at(&self, pod: &str) -> usize {
        self.pods
            .iter()
            .position(|p| p == pod)
            .unwrap_or_else(|| panic!("no model pod {pod}"))
    }

    pub fn expect(mut self, from: &str, to: &str, allowed: bool) -> Reachability {
        let (f, t) = (self.at(from), self.at(to));
        self.cells[f][t] = allowed;
        self
    }

    /// Sets the whole column of `to`.
    pub fn ingress_to(mut self, to: &str, allowed: bool) -> Reachability {
        let t = self.at(to);
        self.cells.iter_mut().for_each(|row| row[t] = allowed);
        self
    }

    /// Sets the whole row of `from`.
    pub fn egress_from(mut self, from: &str, allowed: bool) -> Reachability {
        let f = self.at(from);
        self.cells[f].iter_mut().for_each(|cell| *cell = allowed);
        self
    }

    /// Applies `change` to every model pod of `namespace`.
    pub fn for_namespace(self, namespace: &str, change: impl Fn(Reachability, &str) -> Reachability) -> Reachability {
        PODS.iter()
            .fold(self, |r, pod| change(r, &format!("{namespace}/{pod}")))
    }

    fn with_loopback(mut self) -> Reachability {
        (0..self.pods.len()).for_each(|i| self.cells[i][i] = true);
        self
    }

    /// What `compiled` says for every pair.
    pub fn observed(compiled: &Compiled, port: u16, protocol: Protocol, family: IpFamily) -> Reachability {
        let mut observed = Reachability::all(false);
        for (f, from) in all_pods().iter().enumerate() {
            for (t, to) in all_pods().iter().enumerate() {
                let flow = Flow {
                    family,
                    ..flow(pod(from), pod(to), port, protocol)
                };
                observed.cells[f][t] = allowed(compiled, &flow);
            }
        }
        observed
    }
}

impl std::fmt::Display for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = String::from("from\\to");
        self.pods.iter().for_each(|p| write!(text, " {p}").unwrap());
        for (from, row) in self.pods.iter().zip(&self.cells) {
            write!(text, "\n{from:>7}").unwrap();
            row.iter()
                .for_each(|ok| write!(text, "  {} ", if *ok { '.' } else { 'X' }).unwrap());
        }
        f.write_str(&text)
    }
}

impl std::fmt::Debug for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{self}\n")
    }
}

/// Asserts the full matrix for one port/protocol over IPv4, and over IPv6
/// too unless the expectation depends on v4 addresses (ipBlock tests).
#[track_caller]
pub fn assert_reachability(compiled: &Compiled, port: u16, protocol: Protocol, expected: Reachability) {
    for family in IpFamily::ALL {
        assert_reachability_in(compiled, port, protocol, family, expected.clone());
    }
}

#[track_caller]
pub fn assert_reachability_in(
    compiled: &Compiled,
    port: u16,
    protocol: Protocol,
    family: IpFamily,
    expected: Reachability,
) {
    let expected = expected.with_loopback();
    let observed = Reachability::observed(compiled, port, protocol, family);
    assert_eq!(
        observed, expected,
        "{port}/{protocol} over {family} ('.' allowed, 'X' denied)"
    );
}
