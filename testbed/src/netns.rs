//! Named network namespaces, as `ip netns` sees them (`/run/netns/NAME`).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{setns, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
}

/// A network namespace removed on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates `nl-<prefix>-<pid>-<n>` with `lo` up.
    pub fn new(prefix: &str) -> Result<Netns, Error> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("nl-{prefix}-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `argv` inside the namespace (`ip netns exec`).
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec {}: {e}", self.name))
    }

    /// Runs `f` on a fresh thread that has entered the namespace. A netns
    /// belongs to a thread, so the caller's thread (maybe a runtime worker)
    /// never changes namespace.
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
                setns(file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// PIDs of processes inside the namespace.
    fn pids(&self) -> Vec<i32> {
        let out = Command::new("ip").args(["netns", "pids", &self.name]).output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        if let Err(e) = run(&["ip", "netns", "delete", &self.name]) {
            // Drop cannot fail; say so loudly so a leak is noticed.
            eprintln!("testbed: cannot remove network namespace {}: {e}", self.name);
        }
    }
}

pub(crate) fn run(argv: &[&str]) -> Result<(), Error> {
    let cmd = argv.join(" ");
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|source| Error::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists(name: &str) -> bool {
        std::path::Path::new("/run/netns").join(name).exists()
    }

    #[test]
    fn created_isolated_and_removed_on_drop() {
        if !crate::require_privileges("netns::created_isolated_and_removed_on_drop") {
            return;
        }
        let ns = Netns::new("t").unwrap();
        let name = ns.name().to_string();
        assert!(exists(&name));
        let out = ns.exec(&["ip", "-o", "link"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().count(), 1, "only lo: {text}");
        assert!(text.contains("lo:") && text.contains("UP"), "{text}");
        drop(ns);
        assert!(!exists(&name));
    }

    #[test]
    fn removed_when_a_test_panics() {
        if !crate::require_privileges("netns::removed_when_a_test_panics") {
            return;
        }
        let mut name = String::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let ns = Netns::new("p").unwrap();
            name = ns.name().to_string();
            panic!("test body failed");
        }));
        assert!(result.is_err());
        assert!(!name.is_empty() && !exists(&name));
    }

    #[test]
    fn run_enters_the_namespace_on_its_own_thread() {
        if !crate::require_privileges("netns::run_enters_the_namespace_on_its_own_thread") {
            return;
        }
        let ns = Netns::new("r").unwrap();
        let own = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let inside = ns.run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap());
        assert_ne!(own, inside);
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            own,
            "caller's thread unchanged"
        );
        // A socket bound inside sees only the namespace's loopback.
        let port = ns.run(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        assert!(port > 0);
    }
}
