//! Tiny echo servers standing in for a pod's containers: one per declared
//! container port, TCP streams and UDP datagrams sent back as received.
//! Sockets are bound on a thread inside the pod's network namespace and
//! then served by tokio from any thread: a socket keeps its namespace.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
}

/// A declared container port, shown as Kubernetes shows it (`8080/TCP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Port {
    pub port: u16,
    pub protocol: Protocol,
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        };
        write!(f, "{}/{proto}", self.port)
    }
}

/// The TCP and UDP ports the pod's containers declare, each once, in
/// declaration order. SCTP has no echo server here.
pub(crate) fn declared_ports(pod: &Pod) -> Vec<Port> {
    let mut ports: Vec<Port> = Vec::new();
    let declared = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten());
    for p in declared {
        let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            _ => continue,
        };
        let Ok(port) = u16::try_from(p.container_port) else {
            continue;
        };
        let port = Port { port, protocol };
        if port.port != 0 && !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// Binds on every address: `[::]` also takes IPv4 (v4-mapped); a namespace
/// with IPv6 disabled falls back to `0.0.0.0`.
fn bind(port: Port) -> std::io::Result<Bound> {
    let bind_on = |ip: std::net::IpAddr| -> std::io::Result<Bound> {
        let addr = SocketAddr::new(ip, port.port);
        Ok(match port.protocol {
            Protocol::Tcp => Bound::Tcp(std::net::TcpListener::bind(addr)?),
            Protocol::Udp => Bound::Udp(std::net::UdpSocket::bind(addr)?),
        })
    };
    bind_on(Ipv6Addr::UNSPECIFIED.into()).or_else(|e| match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL) => bind_on(Ipv4Addr::UNSPECIFIED.into()),
        _ => Err(e),
    })
}

/// Running echo servers; they stop on [`EchoServers::stop`] or drop.
pub(crate) struct EchoServers {
    stop: CancellationToken,
    tasks: TaskTracker,
    serving: Vec<Port>,
}

impl EchoServers {
    /// Starts a server for each port inside the namespace at `netns`.
    /// A port that cannot be served is logged and left out.
    pub(crate) async fn start(netns: PathBuf, ports: Vec<Port>, pod: &str) -> EchoServers {
        let mut servers = EchoServers {
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            serving: Vec::new(),
        };
        if ports.is_empty() {
            return servers;
        }
        // Binding enters the namespace on a thread of its own, so it runs
        // off the async workers.
        let bound = tokio::task::spawn_blocking(move || {
            testbed::run_in(&netns, || ports.into_iter().map(|p| (p, bind(p))).collect::<Vec<_>>())
        })
        .await
        .expect("binding echo servers does not panic");
        match bound {
            Ok(bound) => {
                for (port, socket) in bound {
                    match socket.and_then(|s| servers.serve(s)) {
                        Ok(()) => servers.serving.push(port),
                        Err(e) => tracing::warn!(pod, %port, error = %e, "cannot start echo server"),
                    }
                }
            }
            Err(e) => tracing::warn!(pod, error = %e, "cannot start echo servers"),
        }
        servers
    }

    /// The ports being served, e.g. `8080/TCP`.
    pub(crate) fn serving(&self) -> Vec<String> {
        self.serving.iter().map(ToString::to_string).collect()
    }

    fn serve(&self, socket: Bound) -> std::io::Result<()> {
        match socket {
            Bound::Tcp(l) => {
                l.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(l)?;
                self.tasks
                    .spawn(accept(listener, self.stop.clone(), self.tasks.clone()));
            }
            Bound::Udp(s) => {
                s.set_nonblocking(true)?;
                let socket = tokio::net::UdpSocket::from_std(s)?;
                self.tasks.spawn(echo_datagrams(socket, self.stop.clone()));
            }
        }
        Ok(())
    }

    /// Stops every server and open connection and waits until their
    /// sockets are closed.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for EchoServers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(listener: tokio::net::TcpListener, stop: CancellationToken, tasks: TaskTracker) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            conn = listener.accept() => match conn {
                Ok((conn, _)) => {
                    tasks.spawn(echo_stream(conn, stop.clone()));
                }
                Err(e) => tracing::debug!(error = %e, "echo server accept failed"),
            },
        }
    }
}

async fn echo_stream(mut conn: tokio::net::TcpStream, stop: CancellationToken) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            n = conn.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        if conn.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn echo_datagrams(socket: tokio::net::UdpSocket, stop: CancellationToken) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            got = socket.recv_from(&mut buf) => {
                if let Ok((n, peer)) = got {
                    let _ = socket.send_to(&buf[..n], peer).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declared_ports_once_each_without_sctp() {
        let pod: Pod = serde_json::from_value(json!({"metadata":{"name":"p"},"spec":{"containers":[
            {"name":"a","ports":[{"containerPort":8080},{"containerPort":53,"protocol":"UDP"},{"containerPort":9,"protocol":"SCTP"}]},
            {"name":"b","ports":[{"containerPort":8080,"protocol":"TCP"},{"containerPort":53,"protocol":"TCP"}]}]}}))
        .unwrap();
        let shown: Vec<String> = declared_ports(&pod).iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["8080/TCP", "53/UDP", "53/TCP"]);
    }

    #[tokio::test]
    async fn tcp_and_udp_echo_until_stopped() {
        let servers = EchoServers {
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            serving: Vec::new(),
        };
        // Port 0: any free port on the test's own loopback.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
        servers.serve(Bound::Tcp(tcp)).unwrap();
        servers.serve(Bound::Udp(udp)).unwrap();

        let mut conn = tokio::net::TcpStream::connect(tcp_addr).await.unwrap();
        conn.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");

        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"ping", udp_addr).await.unwrap();
        let mut dgram = [0u8; 16];
        let n = client.recv(&mut dgram).await.unwrap();
        assert_eq!(&dgram[..n], b"ping");

        // Stopping closes open connections too.
        servers.stop().await;
        let mut rest = Vec::new();
        assert_eq!(conn.read_to_end(&mut rest).await.unwrap(), 0);
        assert!(tokio::net::TcpStream::connect(tcp_addr).await.is_err());
    }
}
