//! Which interface a pinned TCX link is on: aya does not say, and a pin
//! outlives its interface (a deleted veth leaves a defunct link behind,
//! and a new veth may come with the old name). Two bpf(2) calls, made
//! directly.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr` for BPF_OBJ_GET (the fields after it stay zero).
#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    pad: [u32; 3],
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_link_info` up to its `tcx` member (ifindex,
/// attach type), which starts the union at offset 16.
#[repr(C)]
#[derive(Default)]
struct TcxLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    pad: u32,
    ifindex: u32,
    attach_type: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised bpf_attr prefix of the size
    // passed; the kernel treats the rest as zero.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret)
}

/// The ifindex the TCX link pinned at `pin` is attached to: `Some(0)`
/// when its interface is gone, `None` when there is no such pin.
pub(super) fn pinned_link_ifindex(pin: &Path) -> Option<u32> {
    let path = CString::new(pin.as_os_str().as_bytes()).ok()?;
    let mut get = ObjGetAttr {
        pathname: path.as_ptr() as u64,
        ..Default::default()
    };
    let fd = bpf(BPF_OBJ_GET, &mut get).ok()?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut info = TcxLinkInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32,
        info_len: std::mem::size_of::<TcxLinkInfo>() as u32,
        info: &mut info as *mut TcxLinkInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).ok()?;
    Some(info.ifindex)
}
