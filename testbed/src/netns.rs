//! Named network namespaces, as `ip netns` sees them (`/run/netns/NAME`),
//! owned by a value that removes them on drop.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::signal::{kill, Signal};

use crate::nsfs::{self, RUN_DIR};
use crate::Error;

/// A network namespace, removed on drop together with every process inside.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    remove_on_drop: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `nl-<prefix>-<pid>-<n>`: unique among live processes, short because
/// tests derive interface names from it.
fn unique_name(prefix: &str, pid: u32, n: u32) -> String {
    format!("nl-{prefix}-{pid}-{n}")
}

/// A prefix becomes part of a file name under /run/netns.
fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Netns {
    /// Creates `nl-<prefix>-<pid>-<n>` with `lo` up. `prefix` is made of
    /// ASCII letters, digits, `-` and `_`.
    pub fn new(prefix: &str) -> Result<Netns, Error> {
        if !valid_prefix(prefix) {
            return Err(Error::InvalidPrefix(prefix.to_string()));
        }
        loop {
            let name = unique_name(prefix, std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
            let path = Path::new(RUN_DIR).join(&name);
            if path.exists() {
                // Left behind by a killed process that had our pid.
                tracing::warn!(netns = %name, "stale network namespace; skipping its name");
                continue;
            }
            nsfs::create(&path)?;
            tracing::debug!(netns = %name, "network namespace created");
            return Ok(Netns {
                name,
                path,
                remove_on_drop: true,
            });
        }
    }

    /// Takes ownership of an existing named namespace (`/run/netns/NAME`):
    /// it is removed when the returned value drops.
    pub fn adopt(name: &str) -> Result<Netns, Error> {
        let path = Path::new(RUN_DIR).join(name);
        if name.contains('/') || !path.exists() {
            return Err(Error::NotFound(name.to_string()));
        }
        Ok(Netns {
            name: name.to_string(),
            path,
            remove_on_drop: true,
        })
    }

    /// Leaves the namespace in place (drop no longer removes it) and
    /// returns its name, e.g. for state that must outlive this process.
    pub fn persist(mut self) -> String {
        self.remove_on_drop = false;
        std::mem::take(&mut self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, the form CNI_NETNS takes.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// A command that runs inside the namespace (its network namespace
    /// only: unlike `ip netns exec`, `/sys` is not remounted). Processes
    /// spawned from it that are still alive when the namespace drops are
    /// killed.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let path = CString::new(self.path.as_os_str().as_bytes()).expect("netns paths contain no NUL");
        let mut cmd = Command::new(program);
        // SAFETY: enter_raw makes only async-signal-safe calls and does not
        // allocate, as required between fork and exec.
        unsafe { cmd.pre_exec(move || nsfs::enter_raw(&path)) };
        cmd
    }

    /// Runs `argv` inside the namespace and waits for it. Panics if the
    /// program cannot be started (this is test support: a missing tool is
    /// a broken test machine).
    pub fn exec(&self, argv: &[&str]) -> Output {
        let (program, args) = argv.split_first().expect("exec needs a program to run");
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in network namespace {}: {e}", self.name))
    }

    /// Runs `f` on a fresh thread that has entered the namespace, and
    /// returns its result. A network namespace belongs to a thread, so the
    /// caller's thread (maybe an async runtime worker) never changes
    /// namespace. Sockets made by `f` stay in the namespace wherever they
    /// are used afterwards. A panic in `f` resumes in the caller.
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        run_in(&self.path, f).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// [`Netns::run`] for a namespace this process does not own, given by its
/// path (e.g. `/run/netns/NAME` or `/proc/PID/ns/net`). Fails if the
/// namespace cannot be entered.
pub fn run_in<F, R>(path: &Path, f: F) -> Result<R, Error>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| nsfs::enter(path).map(|()| f()))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.remove_on_drop {
            return;
        }
        for pid in nsfs::pids_inside(&self.path) {
            let _ = kill(pid, Signal::SIGKILL);
        }
        match nsfs::remove(&self.path) {
            Ok(()) => tracing::debug!(netns = %self.name, "network namespace removed"),
            // Drop cannot fail; say so on stderr, which a test run shows,
            // so that a leak is noticed.
            Err(e) => eprintln!("testbed: network namespace {} is left behind: {e}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_prefix_pid_and_counter() {
        assert_eq!(unique_name("pod", 4242, 7), "nl-pod-4242-7");
    }

    #[test]
    fn prefixes_must_be_file_name_safe() {
        assert!(valid_prefix("pod_a-1"));
        for bad in ["", "a/b", "..", "a b", "ä"] {
            assert!(!valid_prefix(bad), "{bad:?}");
        }
        assert!(matches!(Netns::new("a/b"), Err(Error::InvalidPrefix(_))));
    }

    #[test]
    fn adopting_a_missing_namespace_is_an_error() {
        let e = Netns::adopt("nl-no-such-namespace").unwrap_err();
        assert!(e.to_string().contains("nl-no-such-namespace does not exist"), "{e}");
        assert!(matches!(Netns::adopt("../etc"), Err(Error::NotFound(_))));
    }
}
