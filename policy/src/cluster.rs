//! The compiler's input: a snapshot of the shared cache, in plain
//! Kubernetes types so that this crate does not depend on the cache.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::compiled::NamespacedName;
use crate::identity::IdentityKey;
use crate::ports::named_ports;
use crate::selector::Labels;

/// The label the API server puts on every namespace; policies commonly
/// select namespaces by it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// All pods, namespaces and NetworkPolicies of the cluster (not only this
/// node's: peers can be anywhere). Pods and policies may be given as
/// shared pointers (`Arc<Pod>`, as a watch cache holds them), which saves
/// copying them for every compilation.
#[derive(Debug)]
pub struct ClusterState<'a, P = Pod, Q = NetworkPolicy> {
    pub pods: &'a [P],
    pub namespaces: &'a [Namespace],
    pub policies: &'a [Q],
}

impl<P, Q> Clone for ClusterState<'_, P, Q> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P, Q> Copy for ClusterState<'_, P, Q> {}

/// A pod as policies see it.
#[derive(Debug, Clone)]
pub(crate) struct PodView<'a> {
    pub pod: &'a Pod,
    pub name: NamespacedName,
    pub key: IdentityKey,
    pub ips: Vec<IpAddr>,
}

impl<'a, P: Borrow<Pod>, Q> ClusterState<'a, P, Q> {
    /// The pods policies apply to, sorted by name. Host-network pods are
    /// left out (NetworkPolicy does not apply to them; their node address
    /// is reachable only through ipBlock), and so are finished pods, whose
    /// IPs may already belong to a new pod.
    pub(crate) fn pod_views(&self) -> Vec<PodView<'a>> {
        let mut views: Vec<PodView> = self
            .pods
            .iter()
            .map(Borrow::borrow)
            .filter(|pod| is_selectable(pod))
            .map(pod_view)
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    /// Labels of every namespace by name.
    pub(crate) fn namespace_labels(&self) -> BTreeMap<String, Labels> {
        (self.namespaces.iter())
            .filter_map(|ns| {
                Some((
                    ns.metadata.name.clone()?,
                    ns.metadata.labels.clone().unwrap_or_default(),
                ))
            })
            .map(|(name, labels)| {
                let labels = with_name_label(&name, labels);
                (name, labels)
            })
            .collect()
    }
}

/// Labels of `namespace`: the cached ones, or, for a namespace missing from
/// the cache (a watch lagging behind), at least the name label the API
/// server guarantees.
pub(crate) fn labels_of_namespace(all: &BTreeMap<String, Labels>, namespace: &str) -> Labels {
    all.get(namespace)
        .cloned()
        .unwrap_or_else(|| with_name_label(namespace, Labels::new()))
}

fn with_name_label(namespace: &str, mut labels: Labels) -> Labels {
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| namespace.to_string());
    labels
}

fn is_selectable(pod: &Pod) -> bool {
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !host_network && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn pod_view(pod: &Pod) -> PodView<'_> {
    let name = NamespacedName::new(
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default(),
    );
    let key = IdentityKey {
        namespace: name.namespace.clone(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        named_ports: named_ports(pod),
    };
    PodView {
        pod,
        name,
        key,
        ips: pod_ips(pod),
    }
}

/// `status.podIPs`, falling back to the older single `status.podIP`;
/// sorted, IPv4 first.
fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return vec![];
    };
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    let mut ips: Vec<IpAddr> = listed
        .chain(status.pod_ip.as_deref())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}
