//! The one shared watch cache of the Kubernetes API.
//!
//! One watcher per kind feeds one store per kind; modules read the stores
//! through [`Cache`] and learn what changed from a [`Subscription`]. No module
//! opens a watch of its own, so the API server sees six watches per node
//! whatever the number of modules.

mod kind;
mod notify;
mod slices;
mod trim;
mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{ObjectRef, Store};

pub use kind::{Cached, Kind};
pub use notify::{Changes, ObjectKey, Subscription};
pub use slices::{key_of, SliceIndex, Touched};
pub use watch::CacheWatchers;

pub(crate) struct Stores {
    nodes: Store<Node>,
    namespaces: Store<Namespace>,
    pods: Store<Pod>,
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    network_policies: Store<NetworkPolicy>,
}

/// Per-kind watch statistics, for status and metrics.
#[derive(Default)]
pub(crate) struct KindStats {
    synced: AtomicBool,
    events: AtomicU64,
    relists: AtomicU64,
    errors: AtomicU64,
}

/// A snapshot of one kind's watch, as status and metrics report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KindReport {
    pub kind: String,
    pub objects: usize,
    pub synced: bool,
    pub events: u64,
    /// Times the watch had to list again after its first list (410 Gone,
    /// or a watch that could not resume).
    pub relists: u64,
    pub errors: u64,
}

pub(crate) struct Inner {
    stores: Stores,
    stats: [KindStats; Kind::ALL.len()],
    hub: notify::Hub,
    pod_node: String,
    pod_scope: PodScope,
    /// Woken each time a kind's first list completes.
    synced: tokio::sync::Notify,
}

/// Which Pods the cache watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodScope {
    /// Only this node's: all the CNI, Services and DNS modules need.
    ThisNode,
    /// Every Pod of the cluster, for NetworkPolicy peers.
    Cluster,
}

/// The read handle of the shared cache. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    /// Every object of kind `K`.
    pub fn list<K: Cached>(&self) -> Vec<Arc<K>> {
        K::store(self).state()
    }

    /// One object by namespace (None for cluster-scoped kinds) and name.
    pub fn get<K: Cached>(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let mut r = ObjectRef::<K>::new(name);
        if let Some(ns) = namespace {
            r = r.within(ns);
        }
        K::store(self).get(&r)
    }

    pub fn len(&self, kind: Kind) -> usize {
        let s = &self.inner.stores;
        match kind {
            Kind::Node => s.nodes.len(),
            Kind::Namespace => s.namespaces.len(),
            Kind::Pod => s.pods.len(),
            Kind::Service => s.services.len(),
            Kind::EndpointSlice => s.endpoint_slices.len(),
            Kind::NetworkPolicy => s.network_policies.len(),
        }
    }

    /// This node's name. Its Pods are in the cache whatever the
    /// [`PodScope`]; [`Cache::is_local`] tells them from others.
    pub fn node_name(&self) -> &str {
        &self.inner.pod_node
    }

    /// Whether `pod` is scheduled to this node.
    pub fn is_local(&self, pod: &Pod) -> bool {
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.node_name())
    }

    /// A Pod of this node by namespace and name.
    pub fn local_pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.get::<Pod>(Some(namespace), name).filter(|p| self.is_local(p))
    }

    /// Subscribes to changes of `kinds`. The first [`Subscription::changed`]
    /// reports every subscribed kind as resynced.
    pub fn subscribe(&self, kinds: &[Kind]) -> Subscription {
        self.inner.hub.subscribe(kinds)
    }

    /// Whether the initial list of every kind has arrived.
    pub fn is_synced(&self) -> bool {
        self.inner.stats.iter().all(|s| s.synced.load(Ordering::Acquire))
    }

    /// Waits until [`Cache::is_synced`]. Any number of tasks may wait at
    /// once. (kube's `Store::wait_until_ready` wakes only the last task
    /// that polled it, so a second module waiting beside the first would
    /// wait forever.)
    pub async fn wait_synced(&self) {
        loop {
            // Registered before the check, so a sync in between still wakes us.
            let synced = self.inner.synced.notified();
            if self.is_synced() {
                return;
            }
            synced.await;
        }
    }

    pub fn report(&self) -> Vec<KindReport> {
        Kind::ALL
            .iter()
            .map(|&kind| {
                let st = &self.inner.stats[kind.index()];
                KindReport {
                    kind: kind.to_string(),
                    objects: self.len(kind),
                    synced: st.synced.load(Ordering::Acquire),
                    events: st.events.load(Ordering::Relaxed),
                    relists: st.relists.load(Ordering::Relaxed),
                    errors: st.errors.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}
