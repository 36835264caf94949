//! Drop events from the datapath's ring buffer, named after the pods they
//! concern: the last few are kept for `GET /v1/policy/drops`, and every
//! new one goes to the followers of `netlet policy drops --follow`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::report::DropRecord;
use super::PolicyShared;

/// Events kept for a reader that was not following.
const KEPT: usize = 1024;

pub(super) struct DropLog {
    recent: Mutex<VecDeque<DropRecord>>,
    live: tokio::sync::broadcast::Sender<DropRecord>,
}

impl Default for DropLog {
    fn default() -> Self {
        DropLog {
            recent: Mutex::new(VecDeque::with_capacity(KEPT)),
            live: tokio::sync::broadcast::channel(KEPT).0,
        }
    }
}

impl DropLog {
    fn push(&self, record: DropRecord) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(record.clone());
        // Nobody following is the usual case, not an error.
        let _ = self.live.send(record);
    }

    /// The kept events, oldest first, and a receiver of every later one
    /// (taken under the same lock, so none falls in between).
    pub fn follow(&self) -> (Vec<DropRecord>, tokio::sync::broadcast::Receiver<DropRecord>) {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        (recent.iter().cloned().collect(), self.live.subscribe())
    }
}

/// Moves events from the ring buffer to the log until `cancel` fires.
pub(super) async fn collect(mut events: policy::DropEvents, shared: Arc<PolicyShared>, cancel: CancellationToken) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = events.next() => e,
        };
        match event {
            Ok(event) => {
                let pod = shared
                    .lock()
                    .as_ref()
                    .and_then(|e| {
                        e.interfaces()
                            .find(|i| i.ifindex == event.ifindex)
                            .map(|i| i.attachment.pod.clone())
                    })
                    .flatten();
                shared.drops.push(DropRecord::new(&event, pod));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read NetworkPolicy drop events; no more will be reported");
                return;
            }
        }
    }
}
