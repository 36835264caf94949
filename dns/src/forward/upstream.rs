//! One query/reply exchange with one upstream: UDP first, TCP when the UDP
//! reply comes back truncated.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, timeout_at, Instant};
use tracing::debug;

use super::message::{ReplyCheck, UpstreamQuery};
use super::stats::{bump, Counters};

/// Why an exchange gave no reply.
#[derive(Debug, thiserror::Error)]
pub(super) enum ExchangeError {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("network error: {0}")]
    Io(#[from] io::Error),
    #[error("unreadable reply")]
    Malformed,
    #[error("reply over TCP does not match the query")]
    ForeignOverTcp,
    #[error("reply truncated even over TCP")]
    TruncatedOverTcp,
}

/// Asks `upstream`, waiting at most `wait` for each of the UDP and (if
/// needed) TCP exchanges. The reply matches the query (ID and question).
pub(super) async fn exchange(
    upstream: SocketAddr,
    query: &UpstreamQuery,
    wait: Duration,
    counters: &Counters,
) -> Result<Box<Message>, ExchangeError> {
    let reply = over_udp(upstream, query, wait).await?;
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    bump(&counters.upstream_truncated);
    debug!(%upstream, "truncated reply over UDP, retrying over TCP");
    let reply = over_tcp(upstream, query, wait).await?;
    if reply.metadata.truncation {
        return Err(ExchangeError::TruncatedOverTcp);
    }
    Ok(reply)
}

async fn over_udp(upstream: SocketAddr, query: &UpstreamQuery, wait: Duration) -> Result<Box<Message>, ExchangeError> {
    let deadline = Instant::now() + wait;
    // A fresh socket per query: a random source port, and `connect` makes
    // the kernel drop datagrams from anyone but the upstream (and report an
    // ICMP "port unreachable" as an error instead of a silent timeout).
    let unspecified = match upstream {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(unspecified).await?;
    socket.connect(upstream).await?;
    socket.send(query.bytes()).await?;
    let mut buffer = vec![0u8; usize::from(u16::MAX)];
    loop {
        let received = timeout_at(deadline, socket.recv(&mut buffer))
            .await
            .map_err(|_| ExchangeError::Timeout(wait))??;
        match query.check_reply(&buffer[..received]) {
            ReplyCheck::Reply(reply) => return Ok(reply),
            ReplyCheck::Malformed => return Err(ExchangeError::Malformed),
            ReplyCheck::Foreign => debug!(%upstream, "ignoring a datagram that does not answer our query"),
        }
    }
}

async fn over_tcp(upstream: SocketAddr, query: &UpstreamQuery, wait: Duration) -> Result<Box<Message>, ExchangeError> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        // Messages we build are far below 64 KiB; the length prefix is the
        // only framing DNS over TCP has (RFC 1035 4.2.2).
        let length = u16::try_from(query.bytes().len()).map_err(|_| io::Error::other("query too long"))?;
        let mut framed = Vec::with_capacity(query.bytes().len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(query.bytes());
        stream.write_all(&framed).await?;
        let length = stream.read_u16().await?;
        let mut reply = vec![0u8; usize::from(length)];
        stream.read_exact(&mut reply).await?;
        // The connection is ours alone, so anything but our reply is an error.
        match query.check_reply(&reply) {
            ReplyCheck::Reply(reply) => Ok(reply),
            ReplyCheck::Malformed => Err(ExchangeError::Malformed),
            ReplyCheck::Foreign => Err(ExchangeError::ForeignOverTcp),
        }
    };
    timeout(wait, exchange)
        .await
        .map_err(|_| ExchangeError::Timeout(wait))?
}
