//! Which EndpointSlices belong to which Service. A deleted slice is gone
//! from the cache, but its Service must still be redone; so modules that
//! follow Services with their endpoints keep this index beside the cache.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Cache, Changes, Kind, ObjectKey};

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Services a batch of changes touches: all of them (in the cache)
/// after a resync of Services or slices, else the changed Services and
/// those whose slices changed. `full` says which it was.
pub struct Touched {
    pub services: BTreeSet<ObjectKey>,
    pub full: bool,
}

#[derive(Default)]
pub struct SliceIndex {
    slice_service: HashMap<ObjectKey, ObjectKey>,
    service_slices: HashMap<ObjectKey, BTreeSet<ObjectKey>>,
}

impl SliceIndex {
    /// Rebuilds the index from every slice in the cache.
    pub fn reindex(&mut self, cache: &Cache) {
        self.slice_service.clear();
        self.service_slices.clear();
        for slice in cache.list::<EndpointSlice>() {
            if let Some(service) = service_of(&slice) {
                let key = key_of(&slice.metadata);
                self.slice_service.insert(key.clone(), service.clone());
                self.service_slices.entry(service).or_default().insert(key);
            }
        }
    }

    /// Records which Service the slice at `key` belongs to now; returns
    /// the Services to redo (the one it left and the one it joined).
    pub fn update(&mut self, cache: &Cache, key: &ObjectKey) -> Vec<ObjectKey> {
        let now = cache
            .get::<EndpointSlice>(key.namespace.as_deref(), &key.name)
            .and_then(|s| service_of(&s));
        let before = self.slice_service.remove(key);
        if let Some(b) = &before {
            if let Some(set) = self.service_slices.get_mut(b) {
                set.remove(key);
            }
        }
        if let Some(n) = &now {
            self.slice_service.insert(key.clone(), n.clone());
            self.service_slices.entry(n.clone()).or_default().insert(key.clone());
        }
        before.into_iter().chain(now).collect()
    }

    /// The Services `changes` touch; see [`Touched`].
    pub fn touched(&mut self, cache: &Cache, changes: &Changes) -> Touched {
        let full = changes.resynced.contains(&Kind::Service) || changes.resynced.contains(&Kind::EndpointSlice);
        let mut services = BTreeSet::new();
        if full {
            self.reindex(cache);
            services.extend(cache.list::<Service>().iter().map(|s| key_of(&s.metadata)));
            return Touched { services, full };
        }
        for (kind, key) in &changes.objects {
            match kind {
                Kind::Service => {
                    services.insert(key.clone());
                }
                Kind::EndpointSlice => services.extend(self.update(cache, key)),
                _ => {}
            }
        }
        Touched { services, full }
    }

    /// The slices of the Service at `key` that are in the cache.
    pub fn slices(&self, cache: &Cache, key: &ObjectKey) -> Vec<Arc<EndpointSlice>> {
        self.service_slices
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|s| cache.get::<EndpointSlice>(s.namespace.as_deref(), &s.name))
            .collect()
    }
}

pub fn key_of(meta: &ObjectMeta) -> ObjectKey {
    ObjectKey {
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

fn service_of(slice: &EndpointSlice) -> Option<ObjectKey> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ObjectKey {
        namespace: slice.metadata.namespace.clone(),
        name: name.clone(),
    })
}
