//! Whether the agent's shared cache holds what was applied through the API.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use netstack::cache::{Cache, Cached};

use super::apply::Applied;

/// Whether `cache` holds `obj`. Kinds the cache does not watch count as held.
pub fn holds(cache: &Cache, obj: &Applied) -> bool {
    let ns = obj.namespace.as_deref();
    let name = obj.name.as_str();
    match obj.kind.as_str() {
        "Node" => has::<Node>(cache, ns, name),
        "Namespace" => has::<Namespace>(cache, ns, name),
        "Pod" => has::<Pod>(cache, ns, name),
        "Service" => has::<Service>(cache, ns, name),
        "EndpointSlice" => has::<EndpointSlice>(cache, ns, name),
        "NetworkPolicy" => has::<NetworkPolicy>(cache, ns, name),
        _ => true,
    }
}

fn has<K: Cached>(cache: &Cache, ns: Option<&str>, name: &str) -> bool {
    cache.get::<K>(ns, name).is_some()
}
