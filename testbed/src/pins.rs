//! A directory on the bpf filesystem for one test's pinned maps and links,
//! removed on drop (also when the test panics): unpinning a link detaches
//! its program, and the maps go with the last reference.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl PinDir {
    /// `/sys/fs/bpf/netlet-<prefix>-<pid>-<n>`, not created: the code
    /// under test creates it (and mounts the bpf filesystem if needed).
    pub fn new(prefix: &str) -> PinDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        PinDir {
            path: PathBuf::from(format!("/sys/fs/bpf/netlet-{prefix}-{}-{n}", std::process::id())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("testbed: {} is left behind: {e}", self.path.display());
            }
        }
    }
}
