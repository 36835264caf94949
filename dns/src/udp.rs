//! DNS over UDP on a thread of its own per socket, reading and writing in
//! batches (recvmmsg/sendmmsg): one system call for up to [`BATCH`]
//! datagrams each way. This is the path nearly every pod query takes, so
//! it stays off the async runtime: handing each datagram between runtime
//! threads cost more than answering it (about half the time under load,
//! measured with `make bench-dns`). Only queries that wait on an upstream
//! go to the runtime.

use std::mem::MaybeUninit;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::handler::{Handler, Outcome, Transport};
use crate::metrics::Source;
use crate::serve::{complete, servfail, MAX_FORWARDS};

/// Datagrams read or written per system call.
const BATCH: usize = 32;
/// Room for one query. EDNS lets a client send more, but a query is a
/// header, one question and an OPT; a longer datagram is cut here and then
/// fails to parse (FORMERR), which is what it deserves.
const SLOT: usize = 4096;
/// How often an idle thread looks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// A UDP server thread; it stops, and its socket closes, when this is
/// dropped.
pub struct UdpServer {
    stop: Arc<AtomicBool>,
    socket: Arc<UdpSocket>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes a thread waiting in recvmmsg at once (it returns nothing),
        // so the port is closed when this returns: a query sent after it
        // is refused, not swallowed.
        // SAFETY: shutdown on a descriptor this value keeps open.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RD) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `socket` from a new thread. Forwarded queries run on `runtime`.
pub fn serve_udp(
    socket: UdpSocket,
    handler: Arc<Handler>,
    runtime: tokio::runtime::Handle,
) -> std::io::Result<UdpServer> {
    socket.set_read_timeout(Some(STOP_CHECK))?;
    let stop = Arc::new(AtomicBool::new(false));
    let name = format!("dns-udp-{}", socket.local_addr()?.port());
    let socket = Arc::new(socket);
    let (thread_socket, thread_stop) = (socket.clone(), stop.clone());
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let local = thread_socket.local_addr().ok();
        if let Err(e) = run(thread_socket, &handler, &runtime, &thread_stop) {
            tracing::error!(?local, error = %e, "DNS over UDP stopped");
        }
    })?;
    Ok(UdpServer {
        stop,
        socket,
        thread: Some(thread),
    })
}

fn run(
    socket: Arc<UdpSocket>,
    handler: &Arc<Handler>,
    runtime: &tokio::runtime::Handle,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
    let mut batch = Batch::new();
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Relaxed) {
        let n = match batch.receive(&socket) {
            Ok(n) => n,
            Err(e) if is_transient(&e) => continue,
            Err(e) => return Err(e),
        };
        let started = Instant::now();
        for i in 0..n {
            let Some((msg, peer)) = batch.datagram(i) else { continue };
            match handler.handle(msg, Transport::Udp) {
                Outcome::Reply(reply, source) => {
                    handler.metrics().reply(&reply, source, started.elapsed());
                    replies.push((reply, peer));
                }
                Outcome::Ignore => {}
                pending => match forwards.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (socket, handler, query) = (socket.clone(), handler.clone(), msg.to_vec());
                        runtime.spawn(async move {
                            let (reply, source) = complete(&handler, pending, &query).await;
                            if !reply.is_empty() {
                                handler.metrics().reply(&reply, source, started.elapsed());
                                // A UDP send does not wait for the peer.
                                let _ = socket.send_to(&reply, peer);
                            }
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        handler.metrics().overloaded();
                        let reply = servfail(msg);
                        handler.metrics().reply(&reply, Source::Local, started.elapsed());
                        replies.push((reply, peer));
                    }
                },
            }
        }
        send_all(&socket, &replies);
        replies.clear();
    }
    Ok(())
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    // WouldBlock/TimedOut: the stop check's timeout. Refused: an ICMP
    // error about an earlier reply, about one client, not the socket.
    matches!(e.kind(), WouldBlock | TimedOut | Interrupted | ConnectionRefused)
}

/// Receive buffers and their headers for one recvmmsg.
struct Batch {
    buffers: Vec<[u8; SLOT]>,
    addresses: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            buffers: vec![[0; SLOT]; BATCH],
            // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr.
            addresses: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            iovecs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            headers: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
        }
    }

    /// Waits for at least one datagram, then takes what else is queued,
    /// up to [`BATCH`]; returns how many.
    fn receive(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let h = &mut self.headers[i].msg_hdr;
            h.msg_name = (&mut self.addresses[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        // SAFETY: every header points at buffers owned by self that live
        // across the call; the kernel writes at most the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The `i`th datagram received and who sent it; None for one cut short.
    fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let m = &self.headers[i];
        if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let peer = from_storage(&self.addresses[i])?;
        Some((&self.buffers[i][..m.msg_len as usize], peer))
    }
}

/// Sends every reply, in as few sendmmsg calls as the kernel allows; a
/// reply the kernel refuses is dropped (the client asks again).
fn send_all(socket: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) {
    if replies.is_empty() {
        return;
    }
    let mut addresses: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
        replies.iter().map(|(_, peer)| to_storage(peer)).collect();
    let mut iovecs: Vec<libc::iovec> = replies
        .iter()
        .map(|(r, _)| libc::iovec {
            iov_base: r.as_ptr() as *mut libc::c_void,
            iov_len: r.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = (0..replies.len())
        .map(|i| {
            // SAFETY: all-zero is a valid mmsghdr; the fields that matter
            // are set next.
            let mut m: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            m.msg_hdr.msg_name = (&mut addresses[i].0 as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = addresses[i].1;
            m.msg_hdr.msg_iov = &mut iovecs[i];
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut sent = 0;
    while sent < headers.len() {
        // SAFETY: the headers point at addresses, iovecs and reply bytes
        // that all outlive the call.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                headers[sent..].as_mut_ptr(),
                (headers.len() - sent) as libc::c_uint,
                0,
            )
        };
        match n {
            n if n > 0 => sent += n as usize,
            // The first one failed (e.g. no route back): skip it.
            _ => sent += 1,
        }
    }
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_storage(peer: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut s: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let len = match peer {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // sockaddr.
            let a: &mut libc::sockaddr_in = unsafe { &mut *(&mut s as *mut libc::sockaddr_storage).cast() };
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_port = v4.port().to_be();
            a.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let a: &mut libc::sockaddr_in6 = unsafe { &mut *(&mut s as *mut libc::sockaddr_storage).cast() };
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_port = v6.port().to_be();
            a.sin6_addr.s6_addr = v6.ip().octets();
            a.sin6_flowinfo = v6.flowinfo();
            a.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (s, len as libc::socklen_t)
}
