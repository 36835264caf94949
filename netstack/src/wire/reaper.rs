//! Deleting pod interfaces off the request path.
//!
//! Deleting a veth makes the caller wait for an RCU barrier in the kernel
//! (15-40 ms here), most of what a CNI DEL would otherwise cost. So DEL
//! only retires the host side: down (which removes its routes in both
//! families, so its addresses can be leased again at once) and moved into
//! [`RETIRED_GROUP`]. This reaper then deletes the whole group in one
//! request, one barrier for however many DELs came in meanwhile, on a
//! thread of its own so the wait stalls neither the agent's runtime nor
//! its netlink connection. A retired link carries no traffic; one left by
//! a crash is removed at the next start like any unattached pod interface.

use tokio::sync::{mpsc, oneshot};

use super::Netlink;

/// The link group (`ip link show group`) of retired pod interfaces. Any
/// number other software is unlikely to pick: "nl" and "rt" in ASCII.
pub const RETIRED_GROUP: u32 = 0x6e6c_7274;

/// A request to the reaper thread: delete the group, and say so if asked.
type Pass = Option<oneshot::Sender<()>>;

pub struct Reaper {
    tx: mpsc::UnboundedSender<Pass>,
}

impl Reaper {
    /// Starts the reaper thread in the calling thread's network namespace
    /// (a new thread starts in its creator's namespace).
    pub fn start() -> std::io::Result<Reaper> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("netlet-reaper".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                rt.block_on(async move {
                    match Netlink::connect() {
                        Ok(nl) => {
                            let _ = ready_tx.send(Ok(()));
                            reap(nl, rx).await;
                        }
                        Err(e) => drop(ready_tx.send(Err(e))),
                    }
                });
            })?;
        ready_rx.recv().map_err(std::io::Error::other)??;
        Ok(Reaper { tx })
    }

    /// Asks for a deletion pass soon; does not wait for it.
    pub fn wake(&self) {
        let _ = self.tx.send(None);
    }

    /// Waits for a deletion pass that starts after this call, so every
    /// link retired before it is gone.
    pub async fn settle(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Some(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn reap(nl: Netlink, mut rx: mpsc::UnboundedReceiver<Pass>) {
    while let Some(first) = rx.recv().await {
        // Everything queued by now is served by this one pass.
        let mut waiting: Vec<oneshot::Sender<()>> = first.into_iter().collect();
        while let Ok(next) = rx.try_recv() {
            waiting.extend(next);
        }
        if let Err(e) = nl.delete_group(RETIRED_GROUP).await {
            tracing::warn!(error = %e, "cannot delete retired pod interfaces; the next start removes them");
        }
        for w in waiting {
            let _ = w.send(());
        }
    }
}
