//! The kernel side of a named network namespace, done as `ip netns` does
//! it: a namespace is kept alive by a bind mount of its nsfs file at
//! `/run/netns/NAME`, and removed by unmounting and unlinking that file.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::Pid;

use crate::error::{sys, Error};

pub(crate) const RUN_DIR: &str = "/run/netns";

/// Whether this process has made `/run/netns` a shared mount point.
static RUN_DIR_READY: Mutex<bool> = Mutex::new(false);

/// Makes `/run/netns` a shared mount point (binding it onto itself first
/// if it is a plain directory). Shared propagation means that unmounting a
/// namespace here also unmounts the copies other mount namespaces hold
/// (`ip netns exec` makes one per command), which would otherwise keep the
/// namespace alive after we removed it.
fn prepare_run_dir() -> Result<(), Error> {
    let mut ready = RUN_DIR_READY.lock().unwrap_or_else(PoisonError::into_inner);
    if *ready {
        return Ok(());
    }
    std::fs::create_dir_all(RUN_DIR).map_err(|source| Error::Io {
        what: "create",
        path: RUN_DIR.into(),
        source,
    })?;
    let make_shared = || {
        mount(
            None::<&str>,
            RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => {}
        // EINVAL: not a mount point yet.
        Err(Errno::EINVAL) => {
            mount(
                Some(RUN_DIR),
                RUN_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys("bind-mount /run/netns onto itself"))?;
            make_shared().map_err(sys("make /run/netns a shared mount"))?;
        }
        Err(e) => return Err(sys("make /run/netns a shared mount")(e)),
    }
    *ready = true;
    Ok(())
}

/// Creates a network namespace bound at `path` (which must not exist),
/// with `lo` up. On failure nothing is left behind.
pub(crate) fn create(path: &Path) -> Result<(), Error> {
    prepare_run_dir()?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(path)
        .map_err(|source| Error::Io {
            what: "create",
            path: path.to_path_buf(),
            source,
        })?;
    let target = path.to_path_buf();
    // unshare moves only the calling thread, so a throwaway thread makes the
    // namespace; the bind mount keeps it alive after the thread ends.
    let made = std::thread::spawn(move || -> Result<(), Error> {
        let shown = target.display();
        unshare(CloneFlags::CLONE_NEWNET).map_err(sys(format!("create a network namespace for {shown}")))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!("bind-mount the new network namespace at {shown}")))?;
        loopback_up().map_err(sys(format!("bring up lo in {shown}")))
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    if made.is_err() {
        let _ = remove(path);
    }
    made
}

/// Sets IFF_UP on `lo` of the calling thread's network namespace.
fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = Errno::result(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOC[GS]IFFLAGS read and write `req`, which outlives the calls.
    unsafe {
        Errno::result(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        Errno::result(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

/// Unmounts and unlinks `path`. The kernel frees the namespace once no
/// process, thread or socket uses it any more.
pub(crate) fn remove(path: &Path) -> Result<(), Error> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a half-made namespace); ENOENT: gone.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(sys(format!("unmount {}", path.display()))(e)),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            what: "remove",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Moves the calling thread into the namespace at `path`.
pub(crate) fn enter(path: &Path) -> Result<(), Error> {
    let file = File::open(path).map_err(|source| Error::Io {
        what: "open network namespace",
        path: path.to_path_buf(),
        source,
    })?;
    setns(file, CloneFlags::CLONE_NEWNET).map_err(sys(format!("enter network namespace {}", path.display())))
}

/// [`enter`] for a forked child before exec: only async-signal-safe calls,
/// no allocation.
pub(crate) fn enter_raw(path: &CStr) -> std::io::Result<()> {
    // SAFETY: open/setns/close on a NUL-terminated path we own; the fd is
    // closed on every path.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let rc = libc::setns(fd, libc::CLONE_NEWNET);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Processes (other than this one) whose main thread is in the namespace
/// at `path`, found as `ip netns pids` finds them: by the nsfs inode.
pub(crate) fn pids_inside(path: &Path) -> Vec<Pid> {
    let Ok(ns) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let me = std::process::id();
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| (m.dev(), m.ino()) == (ns.dev(), ns.ino()))
        })
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .collect()
}
