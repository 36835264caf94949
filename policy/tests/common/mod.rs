//! Shared by the policy integration tests: Kubernetes objects written the
//! short way, and a cluster that compiles, plans and applies them.
#![allow(dead_code)] // each test binary uses its own part

pub mod frames;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use policy::{
    compile, plan, Applied, ClusterState, Compiled, Datapath, EndpointPod, IdentityTable, LocalEndpoint,
    NamespacedName, Plan,
};
use serde_json::json;

/// A running pod `ns/name` labelled `app=<app>` with these IPs.
pub fn pod(namespace: &str, name: &str, app: &str, ips: &[&str]) -> Pod {
    let ips: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": namespace, "name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIPs": ips}
    }))
    .unwrap()
}

pub fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

pub fn policy(namespace: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": namespace, "name": name}, "spec": spec})).unwrap()
}

/// Pods and policies as the API would hold them; the pods named in
/// `local` are on this node, each behind a veth.
pub struct Cluster {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub policies: Vec<NetworkPolicy>,
    identities: IdentityTable,
    /// (pod name in namespace x, host-side veth ifindex); `None` as pod:
    /// a container without a pod.
    pub local: Vec<(Option<String>, u32)>,
}

impl Cluster {
    pub fn new(pods: Vec<Pod>) -> Cluster {
        Cluster {
            namespaces: vec![namespace("x")],
            pods,
            policies: vec![],
            identities: IdentityTable::default(),
            local: vec![],
        }
    }

    /// Adds or replaces a policy of namespace x.
    pub fn set_policy(&mut self, name: &str, spec: serde_json::Value) {
        self.policies.retain(|p| p.metadata.name.as_deref() != Some(name));
        self.policies.push(policy("x", name, spec));
    }

    pub fn remove_policy(&mut self, name: &str) {
        self.policies.retain(|p| p.metadata.name.as_deref() != Some(name));
    }

    pub fn compile(&mut self) -> Compiled {
        let local: Vec<String> = self.local.iter().filter_map(|(pod, _)| pod.clone()).collect();
        let cluster = ClusterState {
            pods: &self.pods,
            namespaces: &self.namespaces,
            policies: &self.policies,
        };
        let is_local = |p: &Pod| local.iter().any(|name| p.metadata.name.as_deref() == Some(name));
        let compiled = compile(&cluster, is_local, &self.identities);
        self.identities = compiled.identities.clone();
        compiled
    }

    pub fn endpoints(&self) -> Vec<LocalEndpoint> {
        (self.local.iter())
            .map(|(pod, ifindex)| LocalEndpoint {
                ifindex: *ifindex,
                pod: match pod {
                    Some(name) => EndpointPod::Pod(NamespacedName::new("x", name)),
                    None => EndpointPod::Unmanaged,
                },
            })
            .collect()
    }

    /// Compiles, plans on the datapath's slots and applies.
    pub fn apply(&mut self, dp: &mut Datapath) -> (Compiled, Plan, Applied) {
        let compiled = self.compile();
        let plan = plan(&compiled, &self.endpoints(), dp.slots());
        let applied = dp.apply(&plan).unwrap();
        (compiled, plan, applied)
    }
}

/// The identity `compiled` gives pod x/`name`.
pub fn identity(compiled: &Compiled, name: &str) -> policy::Identity {
    compiled.pods[&NamespacedName::new("x", name)].identity
}

/// An error with its causes, for panics that say everything.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}
