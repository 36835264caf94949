//! DNS over TCP (one task per listener and per connection), and what both
//! transports share: binding, completing a query that needed the
//! forwarder, SERVFAIL. UDP has its own threads (`udp`). A query the zone
//! or the cache answers is answered inline; a forwarded one waits on its
//! own, so a slow upstream never holds up the zone's answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::handler::{Handler, Outcome, Transport};
use crate::metrics::Source;
use crate::wire::{Malformed, Query, Response, ResponseCode};

/// Forwarded queries in flight at once; beyond this they are answered
/// SERVFAIL at once rather than queued behind a dead upstream.
pub(crate) const MAX_FORWARDS: usize = 1024;
/// TCP connections at once (RFC 7766 asks servers to bound them).
const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection with no query for this long is closed (RFC 7766
/// suggests seconds, not minutes).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Accepts TCP connections on `listener` for as long as it is polled.
pub async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>) {
    let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if is_transient(&e) => continue,
            // Out of descriptors, say: a moment, not the end of the
            // listener; a pause keeps the loop from spinning meanwhile.
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a DNS over TCP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over the bound the connection is closed at once: the client
        // retries or falls back to UDP, and no one can pin our memory.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &handler).await {
                tracing::debug!(%peer, error = %e, "DNS over TCP connection ended");
            }
            drop(permit);
        });
    }
}

/// Answers length-prefixed queries on one connection, in order, until the
/// client closes it or stays idle.
async fn connection(mut stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65535];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        let msg = &mut buf[..usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(msg))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "query cut short"))??;
        let started = Instant::now();
        let (reply, source) = match handler.handle(msg, Transport::Tcp) {
            Outcome::Reply(reply, source) => (reply, source),
            Outcome::Ignore => continue,
            pending => complete(handler, pending, msg).await,
        };
        if reply.is_empty() {
            continue;
        }
        handler.metrics().reply(&reply, source, started.elapsed());
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}

/// The reply to a query that needed the forwarder: its whole answer, or
/// the zone's answer followed by the records its CNAME points at.
pub(crate) async fn complete(handler: &Handler, pending: Outcome, query: &[u8]) -> (Vec<u8>, Source) {
    let Some(forwarder) = handler.forwarder() else {
        return (servfail(query), Source::Local);
    };
    match pending {
        Outcome::Forward { limit } => (forwarder.resolve(query, limit).await, Source::Forwarded),
        Outcome::Chase {
            mut answer,
            target,
            limit,
        } => {
            let Ok(q) = Query::parse(query) else {
                return (Vec::new(), Source::Zone);
            };
            answer.answers.extend(forwarder.lookup(&target, q.qtype).await);
            (Response::from_answer(&q, &answer, limit), Source::Zone)
        }
        Outcome::Reply(reply, source) => (reply, source),
        Outcome::Ignore => (Vec::new(), Source::Local),
    }
}

/// SERVFAIL for a query the handler already parsed once.
pub(crate) fn servfail(query: &[u8]) -> Vec<u8> {
    match Query::parse(query) {
        Ok(q) => Response::empty(&q, ResponseCode::ServFail),
        Err(Malformed::Reply { id, rd, .. }) => Response::bare(id, rd, ResponseCode::ServFail),
        Err(Malformed::Ignore) => Vec::new(),
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionReset | ConnectionAborted | Interrupted | WouldBlock
    )
}

/// Binds UDP and TCP on `address`; both are needed (RFC 7766 makes TCP a
/// must for every server).
pub async fn bind(address: SocketAddr) -> std::io::Result<(std::net::UdpSocket, TcpListener)> {
    let udp = std::net::UdpSocket::bind(address)?;
    let tcp = TcpListener::bind(address).await?;
    Ok((udp, tcp))
}
