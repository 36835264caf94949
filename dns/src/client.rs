//! A minimal stub resolver for `netlet dns query`: one question to one
//! server over UDP (TCP when asked, or when the reply is truncated), the
//! reply in presentation format. hickory does the decoding here, behind
//! std types.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// A reply as `dig` would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub rcode: String,
    pub authoritative: bool,
    pub truncated: bool,
    /// Whether it came over TCP (asked, or after a truncated UDP reply).
    pub tcp: bool,
    /// Records as `name ttl class type data` lines.
    pub answers: Vec<String>,
    pub authority: Vec<String>,
    pub additional: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0:?} is not a record type (A, AAAA, SRV, PTR, TXT, CNAME, SOA, ... or a number)")]
    BadType(String),
    #[error("{0:?} is not a domain name: {1}")]
    BadName(String, String),
    #[error("no answer from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("{0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("the reply from {0} does not parse: {1}")]
    BadReply(SocketAddr, String),
}

/// Asks `server` for `name`/`rtype` (a name without a final dot is taken
/// as absolute: no search list here).
pub async fn ask(server: SocketAddr, name: &str, rtype: &str, tcp: bool) -> Result<Reply, QueryError> {
    let rtype: RecordType = match rtype.parse::<u16>() {
        Ok(n) => RecordType::from(n),
        Err(_) => rtype
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| QueryError::BadType(rtype.to_string()))?,
    };
    let absolute = match name.ends_with('.') {
        true => name.to_string(),
        false => format!("{name}."),
    };
    let qname = Name::from_ascii(&absolute).map_err(|e| QueryError::BadName(name.to_string(), e.to_string()))?;
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(qname, rtype));
    m.set_edns(Edns::new());
    let bytes = m
        .to_vec()
        .map_err(|e| QueryError::BadName(name.to_string(), e.to_string()))?;
    let timeout = Duration::from_secs(3);
    let over = |tcp| exchange(server, &bytes, tcp);
    let reply = tokio::time::timeout(timeout, async {
        let first = over(tcp).await?;
        match first.metadata.truncation && !tcp {
            true => Ok((over(true).await?, true)),
            false => Ok((first, tcp)),
        }
    })
    .await
    .map_err(|_| QueryError::Timeout(server, timeout))??;
    Ok(present(reply.0, reply.1))
}

async fn exchange(server: SocketAddr, query: &[u8], tcp: bool) -> Result<Message, QueryError> {
    let io = |e| QueryError::Io(server, e);
    let buf = match tcp {
        false => {
            let local: SocketAddr = match server {
                SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap_or(server),
                SocketAddr::V6(_) => "[::]:0".parse().unwrap_or(server),
            };
            let socket = UdpSocket::bind(local).await.map_err(io)?;
            socket.connect(server).await.map_err(io)?;
            socket.send(query).await.map_err(io)?;
            let mut buf = vec![0; 65535];
            let n = socket.recv(&mut buf).await.map_err(io)?;
            buf.truncate(n);
            buf
        }
        true => {
            let mut stream = TcpStream::connect(server).await.map_err(io)?;
            let mut framed = (query.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(query);
            stream.write_all(&framed).await.map_err(io)?;
            let mut len = [0; 2];
            stream.read_exact(&mut len).await.map_err(io)?;
            let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf).await.map_err(io)?;
            buf
        }
    };
    Message::from_vec(&buf).map_err(|e| QueryError::BadReply(server, e.to_string()))
}

fn present(m: Message, tcp: bool) -> Reply {
    let lines = |records: &[Record]| records.iter().map(ToString::to_string).collect();
    Reply {
        rcode: m.metadata.response_code.to_string(),
        authoritative: m.metadata.authoritative,
        truncated: m.metadata.truncation,
        tcp,
        answers: lines(&m.answers),
        authority: lines(&m.authorities),
        additional: lines(&m.additionals),
    }
}
