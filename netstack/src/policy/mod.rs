//! The NetworkPolicy module: keeps the enforcement datapath (`policy`
//! crate) on every pod interface of this node in step with the Pods,
//! Namespaces and NetworkPolicies of the whole cluster.
//!
//! Fail closed: the CNI handler calls [`PolicyHook`] inside ADD, which
//! attaches the programs and writes the pod's entry before the runtime can
//! start the pod, and an interface without an entry passes nothing. The
//! maps and links are pinned, so a restarting agent leaves enforcement in
//! place and the next one takes it over.

mod drops;
mod enforcer;
mod hook;
mod metrics;
mod report;
mod snapshot;
mod timing;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::cache::Kind;
use crate::cni::handler::Attachment;
use crate::module::{MetricsSource, Module, ModuleContext, ModuleError};
use crate::store::trees;
use enforcer::Enforcer;
pub use hook::PolicyHook;
pub use report::{DirectionReport, DropRecord, PodPolicyReport, PolicyReport, TraceReport};
pub use timing::SyncTimes;

/// What the module, its CNI hook and its admin endpoints share.
#[derive(Default)]
pub(crate) struct PolicyShared {
    /// `None` until the datapath is loaded and first synced, and after the
    /// module stops. Held for map updates only, never across an await.
    enforcer: Mutex<Option<Enforcer>>,
    /// Set once `enforcer` is; the CNI hook waits for it.
    ready: tokio::sync::watch::Sender<bool>,
    /// The cache the module syncs from, for the hook's syncs.
    cache: std::sync::OnceLock<crate::cache::Cache>,
    drops: drops::DropLog,
    metrics: metrics::PolicyMetrics,
    recent_syncs: timing::RecentSyncs,
}

impl PolicyShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Enforcer>> {
        self.enforcer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
pub struct PolicyModule {
    shared: Arc<PolicyShared>,
}

impl PolicyModule {
    /// The hook the CNI module must call for every pod interface.
    pub fn interface_hook(&self) -> Arc<PolicyHook> {
        Arc::new(PolicyHook::new(self.shared.clone()))
    }
}

impl Module for PolicyModule {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn run(self: Box<Self>, ctx: ModuleContext) -> BoxFuture<'static, Result<(), ModuleError>> {
        Box::pin(run(ctx, self.shared))
    }

    fn metrics(&self) -> Option<Arc<dyn MetricsSource>> {
        Some(Arc::new(metrics::Source(self.shared.clone())))
    }

    fn routes(&self) -> Option<axum::Router> {
        Some(report::routes(self.shared.clone()))
    }
}

async fn run(ctx: ModuleContext, shared: Arc<PolicyShared>) -> Result<(), ModuleError> {
    tokio::select! {
        _ = ctx.cancel.cancelled() => return Ok(()),
        _ = ctx.cache.wait_synced() => {}
    }
    let c = &ctx.config.policy;
    let options = policy::DatapathOptions {
        pin_dir: c.pin_dir.clone(),
        rule_entries: c.rule_entries,
        ipcache_entries: c.ipcache_entries,
        ct_entries: c.ct_entries,
    };
    let datapath = policy::Datapath::load(&options)?;
    let drop_events = datapath.drop_events()?;
    let mut enforcer = Enforcer::new(datapath);
    // The interfaces of the pods this node runs: their entries are written
    // first, then the programs are attached, replacing an earlier agent's
    // without a gap. Interfaces that went away meanwhile lose their pins.
    let attachments: Vec<Attachment> = (ctx.store.tree::<Attachment>(trees::CNI_ATTACHMENTS))
        .scan_prefix("")?
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    for attachment in &attachments {
        if let Err(e) = enforcer.add(attachment) {
            tracing::warn!(pod = ?attachment.pod, error = %e, "pod interface not enforced");
        }
    }
    let _ = shared.cache.set(ctx.cache.clone());
    let start = std::time::Instant::now();
    let first = enforcer.sync(&ctx.cache);
    ctx.status.record_reconcile(start.elapsed(), first.as_ref().map(drop));
    let first = first?;
    for attachment in &attachments {
        if let Err(e) = enforcer.attach(attachment) {
            tracing::warn!(pod = ?attachment.pod, error = %e, "pod interface not enforced");
        }
    }
    for gone in enforcer.datapath.prune_links() {
        tracing::info!(interface = %gone, "unpinned the NetworkPolicy links of a gone pod interface");
    }
    tracing::info!(
        pins = %c.pin_dir.display(), interfaces = attachments.len(), took = ?first.took,
        "NetworkPolicy enforcement loaded"
    );
    shared.metrics.observe(&first);
    *shared.lock() = Some(enforcer);
    let _unload = Unload(shared.clone());
    shared.ready.send_replace(true);
    tokio::spawn(drops::collect(drop_events, shared.clone(), ctx.cancel.clone()));

    let mut changes = ctx.cache.subscribe(&[Kind::Pod, Kind::Namespace, Kind::NetworkPolicy]);
    let mut behind = false;
    loop {
        // Each sync starts as soon as a change is in: there is no
        // debounce, because a change that comes while a sync runs is
        // picked up whole by the next one anyway.
        let change_seen = tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(()),
            c = changes.changed() => c.first_at,
            _ = tokio::time::sleep(RETRY_AFTER), if behind => None,
        };
        let woken = std::time::Instant::now();
        let result = shared.lock().as_mut().expect("loaded above").sync(&ctx.cache);
        ctx.status.record_reconcile(woken.elapsed(), result.as_ref().map(drop));
        match &result {
            Ok(synced) => {
                tracing::debug!(took = ?synced.took, written = synced.written, removed = synced.removed, "NetworkPolicy synced");
                shared.metrics.observe(synced);
                shared.recent_syncs.record(synced.steps.times(change_seen, woken));
            }
            Err(e) => tracing::warn!(error = %e, "NetworkPolicy update failed; retrying in {RETRY_AFTER:?}"),
        }
        behind = result.is_err();
    }
}

/// How long after a failed sync the next one comes.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Drops the enforcer (its programs stay pinned and attached) when the
/// module stops, however it stops.
struct Unload(Arc<PolicyShared>);

impl Drop for Unload {
    fn drop(&mut self) {
        self.0.ready.send_replace(false);
        *self.0.lock() = None;
    }
}
