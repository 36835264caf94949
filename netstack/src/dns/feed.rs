//! Keeps the cluster zone in step with the shared cache: Services with
//! their EndpointSlices, and this node's Pods (for verified pod records).
//! A change rewrites the one Service or Pod it is about.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use dns::SharedZone;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::cache::{key_of, Cache, Changes, Kind, ObjectKey, SliceIndex};

#[derive(Default)]
pub struct ZoneFeed {
    slices: SliceIndex,
    /// The addresses each Pod was last given to the zone with, to take
    /// them back when it changes or goes.
    pods: HashMap<ObjectKey, Vec<IpAddr>>,
}

impl ZoneFeed {
    pub fn apply(&mut self, cache: &Cache, zone: &SharedZone, changes: &Changes) {
        let touched = self.slices.touched(cache, changes);
        if touched.full {
            // Services the zone has but the cache no longer does were
            // deleted while the watch was away.
            let live: BTreeSet<(String, String)> = touched
                .services
                .iter()
                .map(|k| (k.namespace.clone().unwrap_or_default(), k.name.clone()))
                .collect();
            zone.update(|z| {
                for (ns, name) in z.service_keys() {
                    if !live.contains(&(ns.clone(), name.clone())) {
                        z.remove_service(&ns, &name);
                    }
                }
            });
        }
        for key in &touched.services {
            self.service(cache, zone, key);
        }
        if changes.resynced.contains(&Kind::Pod) {
            let live: BTreeSet<ObjectKey> = cache.list::<Pod>().iter().map(|p| key_of(&p.metadata)).collect();
            let gone: Vec<ObjectKey> = self.pods.keys().filter(|k| !live.contains(k)).cloned().collect();
            for key in gone.iter().chain(&live) {
                self.pod(cache, zone, key);
            }
        } else {
            for (_, key) in changes.objects.iter().filter(|(k, _)| *k == Kind::Pod) {
                self.pod(cache, zone, key);
            }
        }
    }

    fn service(&self, cache: &Cache, zone: &SharedZone, key: &ObjectKey) {
        let namespace = key.namespace.as_deref().unwrap_or_default();
        match cache.get::<Service>(Some(namespace), &key.name) {
            Some(service) => {
                let slices = self.slices.slices(cache, key);
                let slices: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
                zone.update(|z| z.set_service(&service, &slices));
            }
            None => zone.update(|z| z.remove_service(namespace, &key.name)),
        }
    }

    fn pod(&mut self, cache: &Cache, zone: &SharedZone, key: &ObjectKey) {
        let namespace = key.namespace.as_deref().unwrap_or_default();
        let now: Vec<IpAddr> = cache
            .get::<Pod>(Some(namespace), &key.name)
            .iter()
            .flat_map(|p| p.status.iter().flat_map(|s| s.pod_ips.iter().flatten()))
            .filter_map(|ip| ip.ip.parse().ok())
            .collect();
        let before = self.pods.remove(key).unwrap_or_default();
        if before != now {
            zone.update(|z| z.set_pod(namespace, &before, &now));
        }
        if !now.is_empty() {
            self.pods.insert(key.clone(), now);
        }
    }
}
