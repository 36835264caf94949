//! Tiny echo servers that stand in for a pod's containers: TCP streams and
//! UDP datagrams are sent back as received.

use std::net::{Ipv6Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// Sockets bound inside a pod's namespace; a socket keeps its namespace, so
/// they can then be served from any thread.
pub enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// Binds `port`/`proto` on every address of both families (`[::]` also
/// accepts IPv4, v4-mapped). Call on a thread inside the pod's namespace.
pub fn bind_in_current_netns(proto: Protocol, port: u16) -> std::io::Result<Bound> {
    let any = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    Ok(match proto {
        Protocol::Tcp => Bound::Tcp(std::net::TcpListener::bind(any)?),
        Protocol::Udp => Bound::Udp(std::net::UdpSocket::bind(any)?),
    })
}

/// Serves a bound socket on `tasks` until the set is dropped.
pub fn serve(bound: Bound, tasks: &mut JoinSet<()>) -> std::io::Result<()> {
    match bound {
        Bound::Tcp(l) => {
            l.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(l)?;
            tasks.spawn(async move {
                while let Ok((mut conn, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = conn.read(&mut buf).await {
                            if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        }
        Bound::Udp(s) => {
            s.set_nonblocking(true)?;
            let socket = tokio::net::UdpSocket::from_std(s)?;
            tasks.spawn(async move {
                let mut buf = [0u8; 65536];
                while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                    let _ = socket.send_to(&buf[..n], peer).await;
                }
            });
        }
    }
    Ok(())
}
