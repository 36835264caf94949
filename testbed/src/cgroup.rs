//! A cgroup v2 directory of a test's own, so BPF programs attached to it
//! (Service translation, later policy) see only the processes the test puts
//! there, never the rest of the machine. Removed on drop, after killing
//! whatever is still inside.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where this machine mounts cgroup v2: the hybrid layout's `unified`
/// mount, or the pure v2 `/sys/fs/cgroup`.
pub fn cgroup2_root() -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if unified.join("cgroup.procs").exists() {
        unified.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Cgroup {
    /// Creates `netlet-<prefix>-<pid>-<n>` under the cgroup v2 root.
    pub fn new(prefix: &str) -> std::io::Result<Cgroup> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = cgroup2_root().join(format!("netlet-{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir(&path)?;
        Ok(Cgroup { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `cmd`'s process join this cgroup before it runs.
    pub fn adopt<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        let procs = std::ffi::CString::new(self.path.join("cgroup.procs").into_os_string().into_encoded_bytes())
            .expect("cgroup paths contain no NUL");
        // SAFETY: open, write and close are async-signal-safe, and nothing
        // here allocates, as required between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // cgroup.kill (5.14+) ends every process inside; rmdir needs it empty.
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        eprintln!("testbed: cgroup {} is left behind", self.path.display());
    }
}
