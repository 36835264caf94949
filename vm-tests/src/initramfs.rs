//! The VMs' root filesystem: an uncompressed cpio (newc) initramfs built
//! from this machine's files. busybox-static gives the shell and its
//! applets; `netlet`, iproute2's `ip` (for `ip netns`) and socat are the
//! host's own dynamically linked binaries, copied with the libraries and
//! loader `ldd` lists at the same paths; the kernel modules the VM needs
//! come from the cloud kernel's `/lib/modules`, with their dependencies,
//! loaded by `/init` in dependency order.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Error;

/// Modules the VMs load (with what they depend on), unless built in:
/// the NICs, veth for pods, vxlan for the overlay, dummy for cluster DNS,
/// and TC's clsact qdisc and BPF classifier for Services and policy.
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "veth",
    "vxlan",
    "dummy",
    "sch_ingress",
    "cls_bpf",
    "act_bpf",
];

/// Host binaries copied into the initramfs (under `/usr/local/bin`) when
/// present, besides netlet.
pub const HOST_BINARIES: &[&str] = &["ip", "socat"];

/// The system CA bundle, copied into the initramfs.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What goes into the initramfs.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `netlet` binary (stripped on the way in).
    pub netlet: PathBuf,
    /// The kernel release whose modules to take, e.g. `6.1.0-56-cloud-amd64`.
    pub kernel_release: String,
    /// Where that kernel's `lib/modules` is; None: `/`.
    pub modules_base: Option<PathBuf>,
}

/// `/init`: mounts, modules, the two NICs named by MAC (`api0`: user-mode
/// network to the host, `eth0`: the node link), addresses from the kernel
/// command line (`netlet.node=`, `netlet.ip4=`, `netlet.ip6=`), then the
/// control loop on the serial console: each input line is `<id> <command>`;
/// the command's output follows, then `@@END <id> <exit code>`. Debian's
/// busybox-static prefers its applets to PATH in its shell, so iproute2 is
/// called by its path (`/usr/local/bin/ip`) where busybox's `ip` falls short.
const INIT: &str = r#"#!/bin/sh
export PATH=/usr/local/bin:/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /run/netns /var/run
dmesg -n 1
for m in $(cat /etc/modules.order); do insmod /lib/modules/$m.ko 2>/dev/null; done
for a in $(cat /proc/cmdline); do
  case $a in netlet.*=*) k=${a%%=*}; k=${k#netlet.}; eval "NL_$k=\${a#*=}";; esac
done
hostname "$NL_node"
echo "$NL_node" > /etc/hostname
ip link set lo up
i=0
while [ $i -lt 100 ]; do
  for d in /sys/class/net/*; do
    case $(cat $d/address) in
      *:01) ip link set ${d##*/} name api0 ;;
      *:02) ip link set ${d##*/} name eth0 ;;
    esac
  done
  [ -e /sys/class/net/api0 ] && [ -e /sys/class/net/eth0 ] && break
  i=$((i+1)); sleep 0.1
done
ip link set api0 up
ip addr add 10.0.2.15/24 dev api0
ip link set eth0 up
ip addr add "$NL_ip4" dev eth0
# busybox runs its own applets before PATH: iproute2 by its path (nodad).
/usr/local/bin/ip addr add "$NL_ip6" dev eth0 nodad
exec </dev/ttyS0 >/dev/ttyS0 2>&1
stty -echo -onlcr
echo "@@READY $(uname -r)"
while IFS= read -r line; do
  id=${line%% *}; cmd=${line#* }
  sh -c "$cmd" </dev/null 2>&1
  echo "@@END $id $?"
done
poweroff -f
"#;

/// Builds the initramfs at `out`.
pub fn build(spec: &Spec, out: &Path) -> Result<(), Error> {
    let stage = tempfile::tempdir().map_err(|e| Error::io("creating the initramfs staging directory", e))?;
    let root = stage.path();
    for dir in [
        "bin",
        "sbin",
        "usr/local/bin",
        "etc/netlet",
        "etc/cni/net.d",
        "opt/cni/bin",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var/log",
        "var/lib",
        "root",
        "lib/modules",
    ] {
        mkdir(&root.join(dir))?;
    }

    // busybox and its applets.
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| Error::Missing("busybox (Debian package busybox-static)".into()))?;
    copy(&busybox, &root.join("bin/busybox"))?;
    let list = run(Command::new(&busybox).arg("--list"), "busybox --list")?;
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox") {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).map_err(|e| Error::io(format!("linking {applet}"), e))?;
        }
    }
    std::os::unix::fs::symlink("/init", root.join("sbin/init")).map_err(|e| Error::io("linking sbin/init", e))?;

    // netlet (stripped: the debug build carries line tables), then the
    // host's binaries, and the libraries all of them need.
    let netlet = root.join("usr/local/bin/netlet");
    run(
        Command::new("strip").arg("-o").arg(&netlet).arg(&spec.netlet),
        "strip netlet",
    )
    .or_else(|_| copy(&spec.netlet, &netlet).map(|_| String::new()))?;
    let mut dynamic = vec![spec.netlet.clone()];
    for name in HOST_BINARIES {
        if let Some(path) = which(name) {
            copy(&path, &root.join("usr/local/bin").join(name))?;
            dynamic.push(path);
        }
    }
    let mut libs = BTreeSet::new();
    for binary in &dynamic {
        libs.extend(shared_libraries(binary)?);
    }
    for lib in libs {
        let to = root.join(lib.strip_prefix("/").unwrap_or(&lib));
        mkdir(to.parent().expect("a library path has a parent"))?;
        copy(&lib, &to)?;
    }

    // Kernel modules, dependencies first.
    let order = modules_in_order(&spec.kernel_release, spec.modules_base.as_deref(), MODULES)?;
    let mut names = String::new();
    for (name, file) in &order {
        let to = root.join("lib/modules").join(format!("{name}.ko"));
        // busybox's insmod takes plain modules only.
        match file.extension().and_then(|e| e.to_str()) {
            Some(tool @ ("xz" | "zst")) => {
                let tool = if tool == "xz" { "xz" } else { "zstd" };
                let out = std::fs::File::create(&to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
                let status = Command::new(tool)
                    .arg("-dc")
                    .arg(file)
                    .stdout(out)
                    .status()
                    .map_err(|e| Error::io(format!("running {tool}"), e))?;
                if !status.success() {
                    return Err(Error::Command(format!("{tool} -dc {}: {status}", file.display())));
                }
            }
            _ => copy(file, &to)?,
        }
        names.push_str(name);
        names.push('\n');
    }
    write(&root.join("etc/modules.order"), names.as_bytes())?;

    write(&root.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n")?;
    write(&root.join("etc/group"), b"root:x:0:\n")?;
    write(&root.join("etc/hosts"), b"127.0.0.1 localhost\n::1 localhost\n")?;
    write(&root.join("etc/resolv.conf"), b"")?;
    // The agent's kube client loads the system's CA certificates even for
    // a plain-HTTP API server.
    let ca = Path::new(CA_BUNDLE);
    if !ca.is_file() {
        return Err(Error::Missing(format!("{CA_BUNDLE} (Debian package ca-certificates)")));
    }
    mkdir(&root.join("etc/ssl/certs"))?;
    copy(ca, &root.join(CA_BUNDLE.trim_start_matches('/')))?;
    let init = root.join("init");
    write(&init, INIT.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("making /init executable", e))?;

    cpio(root, out)
}

/// The libraries (and the loader) `ldd` lists for `binary`, as absolute
/// paths; none for a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, Error> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| Error::io("running ldd", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// `wanted` and their dependencies (`modinfo -F depends`), as (name, file),
/// each after what it depends on; built-in modules are left out. `base`:
/// where the kernel's `lib/modules` is (`modinfo -b`), None for `/`.
pub fn modules_in_order(release: &str, base: Option<&Path>, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut done: Vec<(String, PathBuf)> = Vec::new();
    let mut seen = BTreeSet::new();
    let modinfo = |field: &str, name: &str| {
        let mut cmd = Command::new("modinfo");
        if let Some(base) = base {
            cmd.arg("-b").arg(base);
        }
        cmd.args(["-k", release, "-F", field, name]);
        run(&mut cmd, "modinfo")
    };
    fn visit(
        modinfo: &dyn Fn(&str, &str) -> Result<String, Error>,
        name: &str,
        seen: &mut BTreeSet<String>,
        done: &mut Vec<(String, PathBuf)>,
    ) -> Result<(), Error> {
        let name = name.replace('-', "_");
        if !seen.insert(name.clone()) {
            return Ok(());
        }
        let file = modinfo("filename", &name)?;
        let file = file.trim();
        if file.is_empty() || file.starts_with("(builtin)") {
            return Ok(());
        }
        let depends = modinfo("depends", &name)?;
        for dep in depends.trim().split(',').filter(|d| !d.is_empty()) {
            visit(modinfo, dep, seen, done)?;
        }
        done.push((name, PathBuf::from(file)));
        Ok(())
    }
    for name in wanted {
        visit(&modinfo, name, &mut seen, &mut done)?;
    }
    Ok(done)
}

/// `find . | cpio -o -H newc` in `root`, owned by root, into `out`.
fn cpio(root: &Path, out: &Path) -> Result<(), Error> {
    let file = std::fs::File::create(out).map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    let find = Command::new("find")
        .arg(".")
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("running find", e))?;
    let status = Command::new("cpio")
        .args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
        .current_dir(root)
        .stdin(find.stdout.expect("piped"))
        .stdout(file)
        .status()
        .map_err(|e| Error::Missing(format!("cpio (Debian package cpio): {e}")))?;
    if !status.success() {
        return Err(Error::Command(format!("cpio exited with {status}")));
    }
    Ok(())
}

/// The first `name` on PATH (and the sbin directories).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn run(cmd: &mut Command, what: &str) -> Result<String, Error> {
    let out = cmd.output().map_err(|e| Error::io(format!("running {what}"), e))?;
    if !out.status.success() {
        return Err(Error::Command(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mkdir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| Error::io(format!("copying {} to {}", from.display(), to.display()), e))
}

fn write(path: &Path, data: &[u8]) -> Result<(), Error> {
    std::fs::write(path, data).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_parses_as_a_shell_script() {
        let Some(sh) = which("sh") else { return };
        let out = Command::new(sh).args(["-n", "-c", INIT]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
