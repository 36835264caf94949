//! The CNI module's calls into policy enforcement: an interface is
//! enforced before ADD answers, and forgotten when it goes.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::PolicyShared;
use crate::cni::handler::Attachment;
use crate::cni::InterfaceHook;

/// How long an ADD waits for the module to load before failing; the
/// runtime retries a failed ADD.
const LOAD_WAIT: Duration = Duration::from_secs(30);

pub struct PolicyHook {
    shared: Arc<PolicyShared>,
}

impl PolicyHook {
    pub(super) fn new(shared: Arc<PolicyShared>) -> PolicyHook {
        PolicyHook { shared }
    }

    async fn loaded(&self) -> Result<(), String> {
        let mut ready = self.shared.ready.subscribe();
        let loaded = tokio::time::timeout(LOAD_WAIT, ready.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok());
        match loaded {
            true => Ok(()),
            false => Err(format!(
                "NetworkPolicy enforcement is not loaded (waited {LOAD_WAIT:?}); see `netlet status`"
            )),
        }
    }

    fn wire(&self, attachment: &Attachment) -> Result<(), String> {
        let mut guard = self.shared.lock();
        let enforcer = guard.as_mut().ok_or("NetworkPolicy enforcement stopped")?;
        let cache = self.shared.cache.get().ok_or("NetworkPolicy enforcement stopped")?;
        enforcer.add(attachment)?;
        let enforced = enforcer
            .sync(cache)
            .map_err(|e| format!("cannot program NetworkPolicy for the pod: {e}"))
            .and_then(|synced| {
                self.shared.metrics.observe(&synced);
                enforcer.attach(attachment)
            });
        if enforced.is_err() {
            // Its entry goes with the next sync.
            enforcer.detach(attachment);
        }
        enforced
    }
}

impl InterfaceHook for PolicyHook {
    fn wired<'a>(&'a self, attachment: &'a Attachment) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.loaded().await?;
            self.wire(attachment)
        })
    }

    fn unwired<'a>(&'a self, attachment: &'a Attachment) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut guard = self.shared.lock();
            let (Some(enforcer), Some(cache)) = (guard.as_mut(), self.shared.cache.get()) else {
                return;
            };
            enforcer.detach(attachment);
            // Its entries go with the next sync if this one fails; until
            // then they name an interface that no longer passes anything.
            if let Err(e) = enforcer.sync(cache) {
                tracing::warn!(pod = ?attachment.pod, error = %e, "NetworkPolicy entries of a removed pod left for the next sync");
            }
        })
    }
}
