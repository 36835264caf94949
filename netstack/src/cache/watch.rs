//! The watchers that fill the cache: one kube-runtime watcher per kind, with
//! backoff on errors and a relist on 410 Gone (both handled by the watcher
//! itself; here they are counted and announced).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Cache, Cached, Inner, Kind, KindStats, ObjectKey, PodScope, Stores};

/// The writers of a new cache, ready to be started. Split from [`Cache`] so
/// that modules can be handed the read handle before any watch starts.
pub struct CacheWatchers {
    nodes: Writer<Node>,
    namespaces: Writer<Namespace>,
    pods: Writer<Pod>,
    services: Writer<Service>,
    endpoint_slices: Writer<EndpointSlice>,
    network_policies: Writer<NetworkPolicy>,
    cache: Cache,
}

impl CacheWatchers {
    /// A cache whose Pods are those scheduled to `node_name`, or with
    /// [`PodScope::Cluster`] every Pod (NetworkPolicy peers can be anywhere).
    pub fn new(node_name: &str, pod_scope: PodScope) -> CacheWatchers {
        let nodes = Writer::default();
        let namespaces = Writer::default();
        let pods = Writer::default();
        let services = Writer::default();
        let endpoint_slices = Writer::default();
        let network_policies = Writer::default();
        let inner = Inner {
            stores: Stores {
                nodes: nodes.as_reader(),
                namespaces: namespaces.as_reader(),
                pods: pods.as_reader(),
                services: services.as_reader(),
                endpoint_slices: endpoint_slices.as_reader(),
                network_policies: network_policies.as_reader(),
            },
            stats: Default::default(),
            hub: Default::default(),
            pod_node: node_name.to_string(),
            pod_scope,
            synced: tokio::sync::Notify::new(),
        };
        CacheWatchers {
            nodes,
            namespaces,
            pods,
            services,
            endpoint_slices,
            network_policies,
            cache: Cache { inner: Arc::new(inner) },
        }
    }

    pub fn cache(&self) -> Cache {
        self.cache.clone()
    }

    /// Starts one watch per kind on `tasks`; each ends when `cancel` fires.
    pub fn spawn(self, client: Client, tasks: &mut JoinSet<()>, cancel: CancellationToken) {
        let all = watcher::Config::default();
        let pods = match self.cache.inner.pod_scope {
            PodScope::ThisNode => {
                watcher::Config::default().fields(&format!("spec.nodeName={}", self.cache.inner.pod_node))
            }
            PodScope::Cluster => all.clone(),
        };
        let c = &self.cache;
        tasks.spawn(run(
            Api::all(client.clone()),
            all.clone(),
            self.nodes,
            c.clone(),
            cancel.clone(),
        ));
        tasks.spawn(run(
            Api::all(client.clone()),
            all.clone(),
            self.namespaces,
            c.clone(),
            cancel.clone(),
        ));
        tasks.spawn(run(
            Api::all(client.clone()),
            pods,
            self.pods,
            c.clone(),
            cancel.clone(),
        ));
        tasks.spawn(run(
            Api::all(client.clone()),
            all.clone(),
            self.services,
            c.clone(),
            cancel.clone(),
        ));
        tasks.spawn(run(
            Api::all(client.clone()),
            all.clone(),
            self.endpoint_slices,
            c.clone(),
            cancel.clone(),
        ));
        tasks.spawn(run(Api::all(client), all, self.network_policies, c.clone(), cancel));
    }
}

async fn run<K: Cached>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: Writer<K>,
    cache: Cache,
    cancel: CancellationToken,
) {
    let kind = K::KIND;
    let stats = &cache.inner.stats[kind.index()];
    let mut events = watcher::watcher(api, config).default_backoff().modify(K::trim).boxed();
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            next = events.next() => next,
        };
        match next {
            None => return,
            Some(Err(err)) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                // The watcher retries with backoff; the API being away is an
                // expected state (readiness reports it), not a crash.
                tracing::warn!(kind = %kind, error = %err, "watch failed; retrying with backoff");
            }
            Some(Ok(event)) => {
                writer.apply_watcher_event(&event);
                observe(&cache, stats, kind, &event);
            }
        }
    }
}

/// Counts an event and tells subscribers about it.
fn observe<K: Cached>(cache: &Cache, stats: &KindStats, kind: Kind, event: &Event<K>) {
    stats.events.fetch_add(1, Ordering::Relaxed);
    let hub = &cache.inner.hub;
    match event {
        Event::Apply(obj) | Event::Delete(obj) => hub.changed(kind, &key_of(obj)),
        Event::Init => {
            if stats.synced.load(Ordering::Acquire) {
                stats.relists.fetch_add(1, Ordering::Relaxed);
                tracing::info!(kind = %kind, "watch relisting");
            }
        }
        // Objects of a list are announced together once the store holds the
        // complete new list: deletions that happened while the watch was
        // away are only visible as a difference, so subscribers resync.
        Event::InitApply(_) => {}
        Event::InitDone => {
            if !stats.synced.swap(true, Ordering::AcqRel) {
                tracing::info!(kind = %kind, objects = cache.len(kind), "cache synced");
                cache.inner.synced.notify_waiters();
            }
            hub.resynced(kind);
        }
    }
}

fn key_of<K: Cached>(obj: &K) -> ObjectKey {
    ObjectKey {
        namespace: obj.namespace(),
        name: obj.name_any(),
    }
}
