//! Multi-node tests: QEMU VMs (one netlet per VM) on a private virtual
//! network, with the API stand-in on the host side.
//!
//! - [`initramfs`]: the VMs' root filesystem, built from this machine's
//!   busybox-static, netlet binary and cloud kernel modules.
//! - [`vm`]: one QEMU (TCG) VM, its NICs and its serial-console control
//!   channel.
//! - [`cluster`]: the stand-in, Node objects, N VMs, agents and pods.
//!
//! Needs root, `qemu-system-x86_64`, `linux-image-cloud-amd64`,
//! `busybox-static`, `cpio` and `kmod` (`scripts/install-deps.sh vm`), and
//! a built `netlet` (`$NETLET_BIN`, else `$CARGO_TARGET_DIR/debug/netlet`,
//! else the workspace's `target/debug/netlet`).

pub mod cluster;
pub mod initramfs;
pub mod vm;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("missing: {0}; run scripts/install-deps.sh vm")]
    Missing(String),
    #[error("{0}")]
    Command(String),
    #[error("VM {node}: {what}\n--- console ---\n{console}")]
    Vm {
        node: String,
        what: String,
        console: String,
    },
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// What this machine provides for the VMs.
#[derive(Debug, Clone)]
pub struct Host {
    pub netlet: PathBuf,
    pub kernel: PathBuf,
    pub kernel_release: String,
}

/// The netlet binary the VMs run.
pub fn netlet_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("NETLET_BIN") {
        return bin.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/netlet")
}

impl Host {
    /// What is missing, or the host.
    pub fn detect() -> Result<Host, String> {
        let mut missing = Vec::new();
        if initramfs::which("qemu-system-x86_64").is_none() {
            missing.push("qemu-system-x86_64 (qemu-system-x86)".to_string());
        }
        for (tool, package) in [("cpio", "cpio"), ("modinfo", "kmod"), ("busybox", "busybox-static")] {
            if initramfs::which(tool).is_none() {
                missing.push(format!("{tool} ({package})"));
            }
        }
        let kernel = cluster::find_cloud_kernel(std::path::Path::new("/boot"));
        if kernel.is_none() {
            missing.push("/boot/vmlinuz-*-cloud-amd64 and its modules (linux-image-cloud-amd64)".into());
        }
        let netlet = netlet_binary();
        if !netlet.is_file() {
            missing.push(format!(
                "{} (cargo build -p netlet, or set NETLET_BIN)",
                netlet.display()
            ));
        }
        if !missing.is_empty() {
            return Err(missing.join(", "));
        }
        let (kernel, kernel_release) = kernel.expect("checked");
        Ok(Host {
            netlet,
            kernel,
            kernel_release,
        })
    }
}

/// For a VM test: the host if it may go on. Without root, QEMU or the
/// cloud kernel it prints one "skipped" line and returns None, unless
/// `NETLET_REQUIRE_PRIV=1` (CI), where it panics instead.
pub fn require_vm_host(test: &str) -> Option<Host> {
    if !testbed::require_privileges(test) {
        return None;
    }
    match Host::detect() {
        Ok(host) => Some(host),
        Err(missing) => {
            if std::env::var("NETLET_REQUIRE_PRIV").as_deref() == Ok("1") {
                panic!("VM TEST NOT RUN: {test} needs {missing}; NETLET_REQUIRE_PRIV=1 forbids skipping it");
            }
            eprintln!("skipped: {test} needs {missing} (scripts/install-deps.sh vm)");
            None
        }
    }
}
