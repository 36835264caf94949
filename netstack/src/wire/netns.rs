//! Running netlink work inside another network namespace. A namespace
//! belongs to a thread, so the work runs on a thread of its own with a
//! current-thread runtime, never on the agent's shared runtime.

use std::future::Future;
use std::path::Path;

use nix::sched::{setns, CloneFlags};

use super::{Netlink, WireError};

/// Runs `f` with a netlink handle opened inside the namespace at `path`.
pub(super) async fn run_in<F, Fut, T>(path: &Path, f: F) -> Result<T, WireError>
where
    F: FnOnce(Netlink) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let path = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netlet-netns".into())
        .spawn(move || {
            let result = enter(&path).and_then(|()| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| WireError::Netns {
                        path: path.clone(),
                        source,
                    })?;
                rt.block_on(async {
                    let nl = Netlink::connect().map_err(|source| WireError::Netns {
                        path: path.clone(),
                        source,
                    })?;
                    Ok(f(nl).await)
                })
            });
            let _ = tx.send(result);
        })
        .map_err(|source| WireError::Netns {
            path: Path::new("thread").to_path_buf(),
            source,
        })?;
    rx.await.expect("the namespace thread always answers")
}

fn enter(path: &Path) -> Result<(), WireError> {
    let file = std::fs::File::open(path).map_err(|source| WireError::Netns {
        path: path.to_path_buf(),
        source,
    })?;
    setns(file, CloneFlags::CLONE_NEWNET).map_err(|e| WireError::Netns {
        path: path.to_path_buf(),
        source: std::io::Error::from(e),
    })
}
