//! The kinds of Kubernetes object the shared cache watches, and how each is
//! stored.

use std::fmt;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::Store;
use kube::Resource;
use serde::de::DeserializeOwned;

use super::trim;
use super::Cache;

/// One watched kind. The order is the order of status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Node,
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    NetworkPolicy,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Node,
        Kind::Namespace,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::NetworkPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::NetworkPolicy => "NetworkPolicy",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kubernetes type the cache holds. Modules name the type they want
/// (`cache.list::<Service>()`), never a watcher.
pub trait Cached: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static {
    const KIND: Kind;

    /// The cache's store of this kind.
    fn store(cache: &Cache) -> &Store<Self>;

    /// Drops the parts of an object no netlet module reads, before it is
    /// stored. Every kind loses its managed fields and last-applied
    /// annotation; kinds with large irrelevant parts lose those too.
    fn trim(&mut self) {
        trim::metadata(self.meta_mut());
    }
}

impl Cached for Node {
    const KIND: Kind = Kind::Node;
    fn store(cache: &Cache) -> &Store<Self> {
        &cache.inner.stores.nodes
    }
    fn trim(&mut self) {
        trim::metadata(self.meta_mut());
        trim::node(self);
    }
}

impl Cached for Namespace {
    const KIND: Kind = Kind::Namespace;
    fn store(cache: &Cache) -> &Store<Self> {
        &cache.inner.stores.namespaces
    }
}

impl Cached for Pod {
    const KIND: Kind = Kind::Pod;
    fn store(cache: &Cache) -> &Store<Self> {
        &cache.inner.stores.pods
    }
    fn trim(&mut self) {
        trim::metadata(self.meta_mut());
        trim::pod(self);
    }
}

impl Cached for Service {
    const KIND: Kind = Kind::Service;
    fn store(cache: &Cache) -> &Store<Self> {
        &cache.inner.stores.services
    }
}

impl Cached for EndpointSlice {
    const KIND: Kind = Kind::EndpointSlice;
    fn store(cache: &Cache) -> &Store<Self> {
        &cache.inner.stores.endpoint_slices
    }
}

impl Cached for NetworkPolicy {
    const KIND: Kind = Kind::NetworkPolicy;
    fn store(cache: &Cache) -> &Store<Self> {
        &cache.inner.stores.network_policies
    }
}
