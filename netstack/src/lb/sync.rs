//! Which Services a batch of cache changes touches, and the frontends each
//! one owns in the datapath, so a change rewrites one Service's entries
//! and nothing else (a change of this node's addresses, which NodePorts
//! are served on, redoes them all).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use services::{Datapath, DatapathError, Frontend};

use super::health::Health;

use crate::cache::{key_of, Cache, Changes, ObjectKey, SliceIndex};

#[derive(Default)]
pub struct ServiceSync {
    /// The frontends each Service has in the datapath.
    owned: HashMap<ObjectKey, BTreeSet<Frontend>>,
    slices: SliceIndex,
    /// This node's addresses, where NodePorts are served; when they change
    /// every Service is redone.
    node_addresses: Vec<IpAddr>,
    /// Addresses and ports this node serves itself (the cluster DNS
    /// server): a Service frontend there would take its traffic away.
    served_locally: BTreeSet<(IpAddr, u16)>,
    /// healthCheckNodePorts to serve, per Service.
    health: HashMap<ObjectKey, (u16, Health)>,
    health_changed: bool,
}

impl ServiceSync {
    /// Leaves frontends at `addresses`:`port` (both protocols) alone: this
    /// node answers there itself. A `kube-dns` Service holding the cluster
    /// DNS address would otherwise send pods' queries past the local DNS
    /// server, to its endpoints or nowhere.
    pub fn serving_locally(mut self, addresses: &[IpAddr], port: u16) -> ServiceSync {
        self.served_locally = addresses.iter().map(|a| (*a, port)).collect();
        self
    }

    /// Brings the datapath up to date with `changes`; returns whether that
    /// took a full pass over every Service.
    pub fn apply(&mut self, cache: &Cache, datapath: &mut Datapath, changes: &Changes) -> Result<bool, DatapathError> {
        let addresses = node_addresses(cache);
        let moved = addresses != self.node_addresses;
        self.node_addresses = addresses;
        let touched = self.slices.touched(cache, changes);
        let full = moved || touched.full;
        let mut dirty = touched.services;
        if full {
            if !touched.full {
                dirty.extend(cache.list::<Service>().iter().map(|s| key_of(&s.metadata)));
            }
            dirty.extend(self.owned.keys().cloned());
        }
        for service in &dirty {
            self.sync_service(cache, datapath, service)?;
        }
        if full {
            // Frontends no Service owns: an earlier agent's, for Services
            // deleted while no agent ran.
            let owned: BTreeSet<Frontend> = self.owned.values().flatten().copied().collect();
            let stale: Vec<Frontend> = datapath
                .frontends()
                .map(|(f, _)| *f)
                .filter(|f| !owned.contains(f))
                .collect();
            for frontend in stale {
                datapath.remove(&frontend)?;
            }
        }
        Ok(full)
    }

    fn sync_service(&mut self, cache: &Cache, datapath: &mut Datapath, key: &ObjectKey) -> Result<(), DatapathError> {
        let service = cache.get::<Service>(key.namespace.as_deref(), &key.name);
        let slices = self.slices.slices(cache, key);
        let slices: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
        let node = services::NodeView {
            name: cache.node_name(),
            addresses: &self.node_addresses,
        };
        let mut plans = service
            .as_deref()
            .map(|s| services::plan(s, &slices, node))
            .unwrap_or_default();
        plans.retain(|p| {
            let f = &p.frontend;
            !self.served_locally.contains(&(f.address, f.port))
        });
        let wanted: BTreeSet<Frontend> = plans.iter().map(|p| p.frontend).collect();
        for plan in &plans {
            datapath.apply(plan)?;
        }
        for gone in self
            .owned
            .get(key)
            .into_iter()
            .flatten()
            .filter(|f| !wanted.contains(f))
        {
            datapath.remove(gone)?;
        }
        if wanted.is_empty() {
            self.owned.remove(key);
        } else {
            self.owned.insert(key.clone(), wanted);
        }
        let check = service
            .as_deref()
            .and_then(|s| health_check(s, &slices, cache.node_name()));
        let before = self.health.get(key).cloned();
        if before != check {
            self.health_changed = true;
            match check {
                Some(c) => self.health.insert(key.clone(), c),
                None => self.health.remove(key),
            };
        }
        Ok(())
    }

    /// The Node's addresses as the last `apply` saw them.
    pub fn node_addresses(&self) -> &[IpAddr] {
        &self.node_addresses
    }

    /// Which Service each frontend in the datapath belongs to.
    pub fn owners(&self) -> HashMap<Frontend, ObjectKey> {
        self.owned
            .iter()
            .flat_map(|(key, frontends)| frontends.iter().map(move |f| (*f, key.clone())))
            .collect()
    }

    /// The health check ports to serve, if they changed since last asked.
    pub fn take_health(&mut self) -> Option<HashMap<u16, Health>> {
        if !std::mem::take(&mut self.health_changed) {
            return None;
        }
        Some(self.health.values().cloned().collect())
    }
}

/// A LoadBalancer Service with `externalTrafficPolicy: Local` has its
/// `healthCheckNodePort` answered with the count of this node's ready
/// endpoints.
fn health_check(service: &Service, slices: &[&EndpointSlice], node: &str) -> Option<(u16, Health)> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() != Some("LoadBalancer") || spec.external_traffic_policy.as_deref() != Some("Local") {
        return None;
    }
    let port = u16::try_from(spec.health_check_node_port?).ok()?;
    let local: BTreeSet<&String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.node_name.as_deref() == Some(node))
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .flat_map(|e| e.addresses.iter())
        .collect();
    Some((
        port,
        Health {
            namespace: service.metadata.namespace.clone().unwrap_or_default(),
            name: service.metadata.name.clone().unwrap_or_default(),
            local_endpoints: local.len(),
        },
    ))
}

/// The InternalIP and ExternalIP addresses of this node's Node, sorted.
pub(super) fn node_addresses(cache: &Cache) -> Vec<IpAddr> {
    let node = cache.get::<Node>(None, cache.node_name());
    let mut addresses: Vec<IpAddr> = node
        .iter()
        .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}
