//! What the compiler is given: the cache's Pods, Namespaces and
//! NetworkPolicies. A pod of this node is known by its interface before
//! kubelet writes its IPs into the Pod status, so those come from the CNI
//! attachments; otherwise its peers' policies would see it as an outside
//! address for the first moments of its life.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, PodIP, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::cache::Cache;
use crate::cni::handler::Attachment;

/// The objects of one compilation: the cache's own pods (copied only where
/// an address is filled in) and policies, copies of the namespaces.
pub(super) struct Snapshot {
    pub pods: Vec<Arc<Pod>>,
    pub namespaces: Vec<Namespace>,
    pub policies: Vec<Arc<NetworkPolicy>>,
}

impl Snapshot {
    pub fn take<'a>(cache: &Cache, attachments: impl Iterator<Item = &'a Attachment>) -> Snapshot {
        let addresses: BTreeMap<(&str, &str), &Attachment> = attachments
            .filter_map(|a| {
                let (namespace, name) = a.pod.as_deref()?.split_once('/')?;
                Some(((namespace, name), a))
            })
            .collect();
        let pods = (cache.list::<Pod>().iter())
            .map(|pod| {
                let name = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref());
                let attached = match name {
                    (Some(ns), Some(name)) => addresses.get(&(ns, name)).copied(),
                    _ => None,
                };
                match attached.filter(|a| same_pod(a, pod) && cache.is_local(pod) && !has_ips(pod)) {
                    Some(attachment) => Arc::new(with_ips(pod, &attachment.addresses)),
                    None => pod.clone(),
                }
            })
            .collect();
        Snapshot {
            pods,
            namespaces: cache.list::<Namespace>().iter().map(|n| Namespace::clone(n)).collect(),
            policies: cache.list::<NetworkPolicy>(),
        }
    }

    pub fn cluster(&self) -> policy::ClusterState<'_, Arc<Pod>, Arc<NetworkPolicy>> {
        policy::ClusterState {
            pods: &self.pods,
            namespaces: &self.namespaces,
            policies: &self.policies,
        }
    }
}

/// An attachment made for a namesake that has been replaced is not this
/// pod's (when the runtime passed the UID that tells them apart).
fn same_pod(attachment: &Attachment, pod: &Pod) -> bool {
    match (&attachment.pod_uid, &pod.metadata.uid) {
        (Some(ours), Some(theirs)) => ours == theirs,
        _ => true,
    }
}

/// Whether kubelet has reported the pod's addresses.
fn has_ips(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .is_some_and(|s| s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty()) || s.pod_ip.is_some())
}

/// The pod with `addresses` in `status.podIPs`.
fn with_ips(pod: &Pod, addresses: &[IpAddr]) -> Pod {
    let mut pod = pod.clone();
    let status = pod.status.get_or_insert_with(PodStatus::default);
    status.pod_ips = Some(addresses.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
    pod
}
