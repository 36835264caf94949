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
//!
//! `NETLET_VM_KERNEL=/path/boot/vmlinuz-<release>` boots another kernel:
//! one unpacked from a Debian kernel package (`dpkg-deb -x`), its modules
//! beside it under `lib/modules/<release>` or `usr/lib/modules/<release>`
//! of the same root. The agent's NetworkPolicy and Services TC programs
//! need TCX links (Linux 6.6+), which bookworm's 6.1 cloud kernel lacks.

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
    #[error("API: {0}")]
    Api(#[source] kube::Error),
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
    /// Where the kernel's `lib/modules` is (`modinfo -b`); None: `/`.
    pub modules_base: Option<PathBuf>,
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
        let mut modules_base = None;
        let kernel = match std::env::var_os("NETLET_VM_KERNEL") {
            Some(path) => match unpacked_kernel(std::path::Path::new(&path)) {
                Ok((kernel, release, base)) => {
                    modules_base = Some(base);
                    Some((kernel, release))
                }
                Err(e) => {
                    missing.push(format!("NETLET_VM_KERNEL: {e}"));
                    None
                }
            },
            None => {
                let kernel = cluster::find_cloud_kernel(std::path::Path::new("/boot"));
                if kernel.is_none() {
                    missing.push("/boot/vmlinuz-*-cloud-amd64 and its modules (linux-image-cloud-amd64)".into());
                }
                kernel
            }
        };
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
            modules_base,
        })
    }
}

/// A kernel `vmlinuz-<release>` unpacked from a package into some root:
/// (vmlinuz, release, the directory holding its `lib/modules`), with
/// `modules.dep` made by `depmod` if the package left it out.
fn unpacked_kernel(vmlinuz: &std::path::Path) -> Result<(PathBuf, String, PathBuf), String> {
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .ok_or_else(|| format!("{} is not named vmlinuz-<release>", vmlinuz.display()))?
        .to_string();
    let root = vmlinuz
        .parent()
        .and_then(|boot| boot.parent())
        .ok_or_else(|| format!("{} is not in <root>/boot", vmlinuz.display()))?;
    let base = [root.to_path_buf(), root.join("usr")]
        .into_iter()
        .find(|b| b.join("lib/modules").join(&release).is_dir())
        .ok_or_else(|| format!("no lib/modules/{release} under {}", root.display()))?;
    if !base.join("lib/modules").join(&release).join("modules.dep").is_file() {
        let status = std::process::Command::new("depmod")
            .arg("-b")
            .arg(&base)
            .arg(&release)
            .status()
            .map_err(|e| format!("running depmod: {e}"))?;
        if !status.success() {
            return Err(format!("depmod -b {} {release}: {status}", base.display()));
        }
    }
    Ok((vmlinuz.to_path_buf(), release, base))
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
