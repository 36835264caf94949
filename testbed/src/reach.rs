//! Reachability between namespaces, the way the upstream NetworkPolicy e2e
//! model checks it: every "pod" runs small servers that answer with the
//! pod's name over TCP and UDP, and probes run all at once, each with a
//! short timeout, so a matrix of hundreds of flows takes about one timeout.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::{run_in, Netns};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// How often an idle server looks at its stop flag, in ms.
const IDLE_CHECK_MS: i32 = 100;

/// Servers answering a name on some ports; they stop when dropped.
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Serves `name` on each of `ports` over TCP and UDP, IPv4 and IPv6,
/// inside `ns` (whose `net.ipv6.bindv6only` must be 0, the default). Panics if a port cannot be bound.
pub fn serve(ns: &Netns, name: &str, ports: &[u16]) -> Servers {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for &port in ports {
        // One dual-stack socket per protocol ([::] takes IPv4 too, as
        // v4-mapped addresses), bound inside the namespace and served from
        // any thread.
        let at = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        let (tcp, udp) = ns.run(|| {
            let tcp = TcpListener::bind(at).unwrap_or_else(|e| panic!("TCP {at} in {}: {e}", ns.name()));
            let udp = UdpSocket::bind(at).unwrap_or_else(|e| panic!("UDP {at} in {}: {e}", ns.name()));
            (tcp, udp)
        });
        let reply = format!("{name}\n").into_bytes();
        let (r, s) = (reply.clone(), stop.clone());
        threads.push(std::thread::spawn(move || serve_tcp(tcp, &r, &s)));
        let s = stop.clone();
        threads.push(std::thread::spawn(move || serve_udp(udp, &reply, &s)));
    }
    Servers { stop, threads }
}

/// Waits until `fd` is readable or the idle check is due.
fn readable(fd: &impl AsRawFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, its fd owned by the caller for the call.
    unsafe { libc::poll(&mut p, 1, IDLE_CHECK_MS) > 0 }
}

fn serve_tcp(listener: TcpListener, reply: &[u8], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if !readable(&listener) {
            continue;
        }
        if let Ok((mut conn, _)) = listener.accept() {
            let _ = conn.write_all(reply);
        }
    }
}

fn serve_udp(socket: UdpSocket, reply: &[u8], stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        if !readable(&socket) {
            continue;
        }
        if let Ok((_, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(reply, from);
        }
    }
}

/// One flow to try: from inside the namespace at `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Probe {
    pub from: PathBuf,
    pub to: SocketAddr,
    pub proto: Proto,
}

/// At most this many probes wait at once.
const PARALLEL: usize = 256;

/// Runs every probe, many at once, each given `timeout`; returns what
/// answered (the server's name) for each, or `None` when nothing did.
pub fn probe_all(probes: &[Probe], timeout: Duration) -> Vec<Option<String>> {
    let mut answers = Vec::with_capacity(probes.len());
    for chunk in probes.chunks(PARALLEL) {
        let batch: Vec<Option<String>> = std::thread::scope(|s| {
            let running: Vec<_> = chunk.iter().map(|p| s.spawn(move || probe(p, timeout))).collect();
            running.into_iter().map(|t| t.join().unwrap_or(None)).collect()
        });
        answers.extend(batch);
    }
    answers
}

/// One probe; `None` when it got no answer within `timeout`.
pub fn probe(p: &Probe, timeout: Duration) -> Option<String> {
    run_in(&p.from, || match p.proto {
        Proto::Tcp => {
            let mut conn = TcpStream::connect_timeout(&p.to, timeout).ok()?;
            conn.set_read_timeout(Some(timeout)).ok()?;
            let mut answer = String::new();
            conn.read_to_string(&mut answer).ok()?;
            Some(answer.trim().to_string())
        }
        Proto::Udp => {
            let any: SocketAddr = match p.to {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let socket = UdpSocket::bind(any).ok()?;
            socket.connect(p.to).ok()?;
            socket.set_read_timeout(Some(timeout)).ok()?;
            socket.send(b"?").ok()?;
            let mut buf = [0u8; 256];
            let n = socket.recv(&mut buf).ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).trim().to_string())
        }
    })
    .ok()
    .flatten()
}
