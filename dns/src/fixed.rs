//! A DNS server with a fixed list of address records and nothing else:
//! the upstream the sandbox and the tests forward to, since they have no
//! internet and need a resolver outside the cluster zone that they own.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::wire::{Query, Response, CLASSIC_UDP};
use crate::zone::{Answer, QueryType, RData, Rcode, Record};

/// Serves `records` (absolute names, lower case, with their addresses) on
/// `address` over UDP from a thread of its own, until the process ends.
/// Other names are NXDOMAIN. Returns the address bound (for port 0).
pub fn serve_fixed(address: SocketAddr, records: &[(&str, IpAddr)]) -> std::io::Result<SocketAddr> {
    let socket = UdpSocket::bind(address)?;
    let bound = socket.local_addr()?;
    let mut table: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for (name, ip) in records {
        table.entry(name.to_ascii_lowercase()).or_default().push(*ip);
    }
    std::thread::Builder::new()
        .name("dns-fixed".into())
        .spawn(move || answer_forever(&socket, &table))?;
    Ok(bound)
}

fn answer_forever(socket: &UdpSocket, table: &BTreeMap<String, Vec<IpAddr>>) {
    let mut buf = [0u8; 4096];
    while let Ok((n, peer)) = socket.recv_from(&mut buf) {
        let Ok(q) = Query::parse(&buf[..n]) else { continue };
        let Some(name) = q.name.as_deref() else { continue };
        let answer = match table.get(&name.to_ascii_lowercase()) {
            None => Answer {
                rcode: Rcode::NxDomain,
                answers: vec![],
                additionals: vec![],
                authority: vec![],
            },
            Some(addresses) => Answer {
                rcode: Rcode::NoError,
                answers: addresses
                    .iter()
                    .filter_map(|a| match (a, q.query_type()) {
                        (IpAddr::V4(v4), QueryType::A) => Some(RData::A(*v4)),
                        (IpAddr::V6(v6), QueryType::Aaaa) => Some(RData::Aaaa(*v6)),
                        _ => None,
                    })
                    .map(|data| Record {
                        name: name.to_string(),
                        ttl: 60,
                        data,
                    })
                    .collect(),
                additionals: vec![],
                authority: vec![],
            },
        };
        let limit = q.udp_limit().max(CLASSIC_UDP);
        let _ = socket.send_to(&Response::from_answer(&q, &answer, limit), peer);
    }
}
