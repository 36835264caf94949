//! TC attachment on kernels with and without TCX. TCX (6.6+) gives bpf
//! links, pinned like any other. Before it, a program goes on a clsact
//! qdisc as a cls_bpf filter through netlink: not a bpf link, but one that
//! stays with no process holding it. Such a filter is put at a fixed
//! priority and handle, so that the next agent replaces it in place (one
//! netlink change: packets always meet a program), and recorded where its
//! link would be pinned by a marker directory:
//!
//! ```text
//! <links>/<program>-<interface>/nl-<ifindex>-<priority>   a cls_bpf filter
//! ```

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::{Link, ProgramError, SchedClassifier, TcAttachType};

/// How TC programs are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcMode {
    /// TCX bpf links (kernel 6.6+), pinned.
    Tcx,
    /// cls_bpf filters on a clsact qdisc, added through netlink.
    Netlink,
}

impl std::fmt::Display for TcMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TcMode::Tcx => "tcx",
            TcMode::Netlink => "netlink",
        })
    }
}

/// The filter handle of every netlink attachment (one filter per priority).
const HANDLE: TcHandle = TcHandle::new(0, 1);

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_TCX_INGRESS: u32 = 46;

/// `union bpf_attr` for BPF_LINK_CREATE, the rest zero.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    rest: [u64; 6],
}

/// Whether the kernel has TCX, asked with the loaded SchedClassifier
/// `program`: a TCX link on ifindex 0 fails with ENODEV where TCX exists,
/// and with EINVAL (an attach type it does not know) where it does not.
pub fn probe(program: &SchedClassifier) -> TcMode {
    let Ok(fd) = program.fd() else {
        return TcMode::Tcx;
    };
    probe_fd(fd.as_fd())
}

fn probe_fd(prog: BorrowedFd<'_>) -> TcMode {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: 0,
        attach_type: BPF_TCX_INGRESS,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            &mut attr as *mut LinkCreateAttr,
            std::mem::size_of::<LinkCreateAttr>(),
        )
    };
    if ret >= 0 {
        // SAFETY: the kernel just returned this fd to us.
        drop(unsafe { OwnedFd::from_raw_fd(ret as i32) });
        return TcMode::Tcx;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENODEV) => TcMode::Tcx,
        _ => TcMode::Netlink,
    }
}

/// Puts `program` on `interface` as the cls_bpf filter at `priority`:
/// adds the clsact qdisc if missing, creates the filter, or replaces the
/// program of the one there (an earlier agent's) in place. The filter
/// stays when `program` is dropped. Records it at `marker`.
pub fn attach_netlink(
    program: &mut SchedClassifier,
    interface: &str,
    attach_type: TcAttachType,
    priority: u16,
    marker: &Path,
) -> Result<(), ProgramError> {
    // clsact may be there already (ours, or another tool's).
    let _ = aya::programs::tc::qdisc_add_clsact(interface);
    let options = || {
        TcAttachOptions::Netlink(NlOptions {
            priority,
            handle: HANDLE,
            classid: None,
        })
    };
    let id = match program.attach_with_options(interface, attach_type, options()) {
        Ok(id) => id,
        Err(created) => {
            // There is one already: change its program (no NLM_F_CREATE).
            let there =
                SchedClassifierLink::attached(interface, attach_type, priority, HANDLE, None).map_err(|_| created)?;
            program.attach_to_link(there)?
        }
    };
    // Dropped, the link would detach the filter: it is to stay.
    std::mem::forget(program.take_link(id)?);
    let ifindex = nix::net::if_::if_nametoindex(interface).unwrap_or(0);
    mark(marker, ifindex, priority).map_err(ProgramError::IOError)
}

fn mark(marker: &Path, ifindex: u32, priority: u16) -> std::io::Result<()> {
    if marker.is_file() || marker.is_symlink() {
        std::fs::remove_file(marker)?;
    }
    let _ = std::fs::remove_dir_all(marker);
    std::fs::create_dir_all(marker.join(format!("nl-{ifindex}-{priority}")))
}

/// The ifindex and priority a marker made by [`attach_netlink`] records,
/// `None` if `pin` is none (a pinned link, or nothing).
pub fn marked(pin: &Path) -> Option<(u32, u16)> {
    let entries = std::fs::read_dir(pin).ok()?;
    entries.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let (ifindex, priority) = name.strip_prefix("nl-")?.split_once('-')?;
        Some((ifindex.parse().ok()?, priority.parse().ok()?))
    })
}

/// The ifindex of the interface a marker records, `Some(0)` when that
/// interface is gone (from the calling thread's network namespace),
/// `None` when `pin` is no marker.
pub fn marked_ifindex(pin: &Path) -> Option<u32> {
    let (ifindex, _) = marked(pin)?;
    Some(if index_name(ifindex).is_some() { ifindex } else { 0 })
}

/// The name of the interface `ifindex` in the calling thread's network
/// namespace. (nix's `if_indextoname` takes a NULL return for success.)
fn index_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    Some(
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Removes the pin at `pin`: a pinned link (which detaches it, nothing
/// else holding it), or a marker, whose filter of `attach_type` is
/// deleted first. Nothing there is no error.
pub fn remove_pin(pin: &Path, attach_type: TcAttachType) -> std::io::Result<()> {
    if let Some((ifindex, priority)) = marked(pin) {
        let named = |name: &str| {
            pin.file_name()
                .is_some_and(|f| f.to_string_lossy().ends_with(&format!("-{name}")))
        };
        // An ifindex of a gone interface may come back on another one.
        if let Some(name) = index_name(ifindex).filter(|n| named(n)) {
            if let Ok(link) = SchedClassifierLink::attached(&name, attach_type, priority, HANDLE, None) {
                // Gone already (with its qdisc, say) is fine.
                let _ = link.detach();
            }
        }
        return std::fs::remove_dir_all(pin);
    }
    match std::fs::remove_file(pin) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => std::fs::remove_dir_all(pin),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_records_its_filter() {
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("prog-eth0");
        assert_eq!(marked(&pin), None);
        mark(&pin, 7, 50).unwrap();
        assert_eq!(marked(&pin), Some((7, 50)));
        mark(&pin, 8, 50).unwrap();
        assert_eq!(marked(&pin), Some((8, 50)));
        std::fs::remove_dir_all(&pin).unwrap();
    }
}
