//! The enforcement state of this node: the loaded datapath, the pod
//! interfaces it is attached to, and the last compilation. Every change
//! (an object in the cache, an interface wired or unwired) goes through
//! [`Enforcer::sync`]: compile, plan the map entries, write the
//! difference. The compiler is given the whole state each time (level-
//! triggered: nothing depends on which events arrived) and redoes only
//! what changed since the last sync; the maps see only what differs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use policy::{Compiled, Compiler, Datapath, EndpointPod, LocalEndpoint, NamespacedName, Plan};

use super::snapshot::Snapshot;
use super::timing::Steps;
use crate::cache::Cache;
use crate::cni::handler::Attachment;

/// A pod interface under enforcement.
#[derive(Debug, Clone)]
pub(super) struct Interface {
    pub attachment: Attachment,
    pub ifindex: u32,
}

pub(super) struct Enforcer {
    pub datapath: Datapath,
    /// By host-side interface name.
    interfaces: BTreeMap<String, Interface>,
    /// Keeps what a change does not touch between syncs.
    compiler: Compiler,
    compiled: Arc<Compiled>,
}

/// What one sync did, for logs and the enforcement-latency figures.
#[derive(Debug, Clone, Copy)]
pub(super) struct Synced {
    pub took: Duration,
    pub written: usize,
    pub removed: usize,
    pub steps: Steps,
}

impl Enforcer {
    /// Takes over `datapath` with nothing compiled yet: the pinned maps keep
    /// enforcing what the previous agent wrote until the first sync.
    pub fn new(datapath: Datapath) -> Enforcer {
        Enforcer {
            datapath,
            interfaces: BTreeMap::new(),
            compiler: Compiler::default(),
            compiled: Arc::default(),
        }
    }

    /// Takes `attachment`'s host interface under enforcement: the next
    /// sync writes its entry, and [`Enforcer::attach`] then puts the
    /// programs on it. Entry first: programs of a new build come with empty
    /// maps, and would drop everything until the entry is there.
    pub fn add(&mut self, attachment: &Attachment) -> Result<(), String> {
        let ifname = &attachment.host_ifname;
        let ifindex = nix::net::if_::if_nametoindex(ifname.as_str())
            .map_err(|e| format!("pod interface {ifname} is not there: {e}"))?;
        let interface = Interface {
            attachment: attachment.clone(),
            ifindex,
        };
        self.interfaces.insert(ifname.clone(), interface);
        Ok(())
    }

    /// Attaches the programs to `attachment`'s host interface, replacing
    /// an earlier agent's atomically.
    pub fn attach(&mut self, attachment: &Attachment) -> Result<(), String> {
        let ifname = &attachment.host_ifname;
        let ifindex = self
            .datapath
            .attach(ifname)
            .map_err(|e| format!("cannot attach NetworkPolicy enforcement to {ifname}: {e}"))?;
        match self.interfaces.get(ifname) {
            Some(i) if i.ifindex == ifindex => Ok(()),
            _ => Err(format!(
                "pod interface {ifname} was replaced while it was being attached"
            )),
        }
    }

    pub fn detach(&mut self, attachment: &Attachment) {
        if self.interfaces.remove(&attachment.host_ifname).is_some() {
            if let Err(e) = self.datapath.detach(&attachment.host_ifname) {
                tracing::warn!(interface = %attachment.host_ifname, error = %e, "cannot unpin NetworkPolicy links");
            }
        }
    }

    /// Compiles the cache's state and writes what changed.
    pub fn sync(&mut self, cache: &Cache) -> Result<Synced, String> {
        let start = Instant::now();
        let snapshot = Snapshot::take(cache, self.interfaces.values().map(|i| &i.attachment));
        let compiled = (self.compiler).compile(&snapshot.cluster(), |pod| cache.is_local(pod));
        let endpoints: Vec<LocalEndpoint> = self.interfaces.values().map(endpoint).collect();
        let compiled_at = Instant::now();
        // The datapath's slots: after a restart, the previous agent's.
        let plan: Plan = policy::plan(&compiled, &endpoints, self.datapath.slots());
        let planned = Instant::now();
        let applied = self.datapath.apply(&plan).map_err(|e| e.to_string())?;
        let steps = Steps {
            started: start,
            compiled: compiled_at,
            planned,
            applied: Instant::now(),
        };
        self.compiled = Arc::new(compiled);
        Ok(Synced {
            took: steps.applied - start,
            written: applied.written,
            removed: applied.removed,
            steps,
        })
    }

    pub fn compiled(&self) -> Arc<Compiled> {
        self.compiled.clone()
    }

    pub fn interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.values()
    }
}

/// The datapath's view of an interface: a Kubernetes pod's, or a
/// container's that no policy can select (added without `K8S_POD_NAME`).
fn endpoint(interface: &Interface) -> LocalEndpoint {
    let pod = match interface.attachment.pod.as_deref().and_then(|p| p.split_once('/')) {
        Some((namespace, name)) => EndpointPod::Pod(NamespacedName::new(namespace, name)),
        None => EndpointPod::Unmanaged,
    };
    LocalEndpoint {
        ifindex: interface.ifindex,
        pod,
    }
}
