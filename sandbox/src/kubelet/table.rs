//! What the kubelet did for each pod, shared with whoever reports on it
//! (the sandbox prints it).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::cni::CniFailure;

/// One pod's network as the kubelet set it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodReport {
    /// The pod's network namespace (`/run/netns/NAME`). After a failed
    /// setup, the name of the attempt's namespace, which is removed.
    pub netns: String,
    /// From the CNI result, IPv4 first.
    pub ips: Vec<IpAddr>,
    /// Why the last network setup failed; the kubelet retries with backoff.
    pub cni_error: Option<CniFailure>,
    /// `port/PROTO` of each echo server.
    pub servers: Vec<String>,
}

/// Reports keyed by `namespace/name`. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct PodTable(Arc<Mutex<BTreeMap<String, PodReport>>>);

impl PodTable {
    pub fn get(&self, key: &str) -> Option<PodReport> {
        self.lock().get(key).cloned()
    }

    pub fn all(&self) -> BTreeMap<String, PodReport> {
        self.lock().clone()
    }

    pub(crate) fn set(&self, key: &str, report: PodReport) {
        self.lock().insert(key.to_string(), report);
    }

    pub(crate) fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PodReport>> {
        // The map stays consistent even if a holder panicked: every change
        // is a single insert or remove.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
