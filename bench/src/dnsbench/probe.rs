//! A tiny DNS client: one query over UDP and its answer, reduced to what
//! the servers are compared on.

use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

/// An answer as compared across servers: the rcode and the answer and
/// authority sections, each sorted. The additional section is left out:
/// for SRV knot and netlet add the target's address there and unbound does
/// not, and both are correct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// As dnsperf spells it: NOERROR, NXDOMAIN, SERVFAIL, ...
    pub rcode: String,
    pub answers: Vec<String>,
    pub authority: Vec<String>,
}

impl Reply {
    fn of(message: &Message) -> Reply {
        let sorted = |records: &[hickory_proto::rr::Record]| {
            let mut v: Vec<String> = records.iter().map(|r| r.to_string()).collect();
            v.sort();
            v
        };
        Reply {
            rcode: format!("{:?}", message.metadata.response_code).to_uppercase(),
            answers: sorted(&message.answers),
            authority: sorted(&message.authorities),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rcode)?;
        for r in &self.answers {
            write!(f, "; {r}")?;
        }
        for r in &self.authority {
            write!(f, "; authority {r}")?;
        }
        Ok(())
    }
}

/// Asks `server` for `name`/`qtype` (e.g. "A", "SRV") once, waiting up to
/// `timeout` for the answer.
pub fn ask(server: SocketAddr, name: &str, qtype: &str, timeout: Duration) -> anyhow::Result<Reply> {
    let mut query = Message::query();
    let qtype = RecordType::from_str(qtype).with_context(|| format!("unknown query type {qtype}"))?;
    query.add_query(Query::query(Name::from_ascii(name)?, qtype));
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => "0.0.0.0:0".parse()?,
        SocketAddr::V6(_) => "[::]:0".parse()?,
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(&query.to_vec()?)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = socket
            .recv(&mut buf)
            .with_context(|| format!("no answer from {server} for {name} {qtype}"))?;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            bail!("{server} sent an answer that does not parse for {name} {qtype}");
        };
        // A late answer to an earlier query cannot arrive on a fresh
        // socket, but a stray one can: skip what is not ours.
        if reply.metadata.id == query.metadata.id {
            return Ok(Reply::of(&reply));
        }
    }
}
