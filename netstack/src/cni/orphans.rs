//! Leases of pods this node no longer runs. The runtime DELs a pod's
//! interfaces when it removes the pod's sandbox; when that DEL never comes
//! (the runtime's state was wiped, or it crashed between removing the
//! sandbox and calling us), the lease would hold its addresses for good.
//! So a pod interface whose pod has been absent from the watch cache (or
//! replaced by a namesake, or finished) for a grace period is released.
//!
//! Only attachments that name a pod are judged: an interface added without
//! `K8S_POD_NAME` (e.g. by `ctr run --cni`) has nothing to compare with,
//! and only the runtime's DEL or GC releases it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam::LeaseKey;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::handler::{Attachment, Handler};
use crate::cache::Cache;

/// Checks every `grace / 4` (between 100 ms and 30 s) and releases what has
/// been orphaned for `grace`. Returns when `cancel` fires.
pub async fn collect(handler: Arc<Mutex<Handler>>, cache: Cache, grace: Duration, cancel: CancellationToken) {
    let period = (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut orphaned_since: HashMap<LeaseKey, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        // A cache that is relisting may miss pods that exist.
        if !cache.is_synced() {
            continue;
        }
        let attachments = match handler.lock().await.attachments() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e.msg, "cannot list pod interfaces for orphan collection");
                continue;
            }
        };
        let now = Instant::now();
        let orphans: Vec<Attachment> = attachments.into_iter().filter(|a| is_orphan(&cache, a)).collect();
        orphaned_since.retain(|key, _| orphans.iter().any(|a| &a.key == key));
        for orphan in orphans {
            let since = *orphaned_since.entry(orphan.key.clone()).or_insert(now);
            if now.duration_since(since) < grace {
                continue;
            }
            orphaned_since.remove(&orphan.key);
            match handler.lock().await.release_orphan(&orphan).await {
                Ok(true) => tracing::info!(
                    attachment = %orphan.key, pod = ?orphan.pod, addresses = ?orphan.addresses,
                    "released the interface of a pod this node no longer runs"
                ),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(attachment = %orphan.key, error = %e.msg, "cannot release an orphaned interface")
                }
            }
        }
    }
}

/// Whether the pod `attachment` names is gone from this node: not in the
/// cache, replaced by a pod of the same name, or finished.
fn is_orphan(cache: &Cache, attachment: &Attachment) -> bool {
    let Some((namespace, name)) = attachment.pod.as_deref().and_then(|p| p.split_once('/')) else {
        return false;
    };
    // A namesake on another node (a StatefulSet pod rescheduled) does not
    // keep this node's lease alive.
    let Some(pod) = cache.local_pod(namespace, name) else {
        return true;
    };
    let replaced = match (&attachment.pod_uid, &pod.metadata.uid) {
        (Some(ours), Some(theirs)) => ours != theirs,
        _ => false,
    };
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
    replaced || finished
}
