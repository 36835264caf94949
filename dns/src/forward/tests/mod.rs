//! End-to-end tests of the forwarder against fake upstreams on 127.0.0.1,
//! and the helpers they share: the fake upstream, its small zone, client
//! queries, and a clock the tests move instead of sleeping.

mod caching;
mod failover;
mod forwarding;
mod loop_detection;
mod robustness;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{ForwardOptions, Forwarder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transport {
    Udp,
    Tcp,
}

type Handler = dyn Fn(&Message, Transport) -> Vec<Vec<u8>> + Send + Sync;

/// A DNS server on 127.0.0.1 (UDP and TCP on one ephemeral port) that
/// answers with whatever its handler returns (nothing: stay silent; several
/// messages: send them in order) and remembers the queries it got.
pub(super) struct FakeUpstream {
    pub(super) addr: SocketAddr,
    seen: Arc<Mutex<Vec<(Transport, Message)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeUpstream {
    pub(super) fn start(handler: impl Fn(&Message, Transport) -> Vec<Vec<u8>> + Send + Sync + 'static) -> FakeUpstream {
        let handler: Arc<Handler> = Arc::new(handler);
        let (udp, tcp) = bind_udp_and_tcp();
        let addr = udp.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let udp_thread = {
            let (handler, seen, stop) = (Arc::clone(&handler), Arc::clone(&seen), Arc::clone(&stop));
            thread::spawn(move || serve_udp(udp, &*handler, &seen, &stop))
        };
        let tcp_thread = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            thread::spawn(move || serve_tcp(tcp, handler, seen, stop))
        };
        FakeUpstream {
            addr,
            seen,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    /// An upstream answering from `example_zone`.
    pub(super) fn example() -> FakeUpstream {
        FakeUpstream::start(|query, transport| vec![example_reply(query, transport)])
    }

    /// An upstream that never answers.
    pub(super) fn silent() -> FakeUpstream {
        FakeUpstream::start(|_, _| Vec::new())
    }

    pub(super) fn queries(&self, transport: Transport) -> usize {
        self.seen().iter().filter(|(seen, _)| *seen == transport).count()
    }

    pub(super) fn seen(&self) -> Vec<(Transport, Message)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake both blocking threads so they see the flag.
        let _ = UdpSocket::bind("127.0.0.1:0").and_then(|socket| socket.send_to(&[0], self.addr));
        let _ = TcpStream::connect(self.addr);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// UDP and TCP sockets on the same ephemeral port (retrying when another
/// process holds the TCP side of the port the kernel picked for UDP).
fn bind_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn serve_udp(socket: UdpSocket, handler: &Handler, seen: &Mutex<Vec<(Transport, Message)>>, stop: &AtomicBool) {
    let mut buffer = vec![0u8; 65535];
    loop {
        let Ok((length, peer)) = socket.recv_from(&mut buffer) else {
            return;
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(query) = Message::from_vec(&buffer[..length]) else {
            continue;
        };
        seen.lock().unwrap().push((Transport::Udp, query.clone()));
        for reply in handler(&query, Transport::Udp) {
            let _ = socket.send_to(&reply, peer);
        }
    }
}

fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    seen: Arc<Mutex<Vec<(Transport, Message)>>>,
    stop: Arc<AtomicBool>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else {
            continue;
        };
        let (handler, seen) = (Arc::clone(&handler), Arc::clone(&seen));
        thread::spawn(move || {
            while let Some(query) = read_frame(&mut stream) {
                let Ok(query) = Message::from_vec(&query) else {
                    return;
                };
                seen.lock().unwrap().push((Transport::Tcp, query.clone()));
                for reply in handler(&query, Transport::Tcp) {
                    let mut framed = u16::try_from(reply.len()).unwrap().to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    if stream.write_all(&framed).is_err() {
                        return;
                    }
                }
            }
        });
    }
}

fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).ok()?;
    let mut frame = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut frame).ok()?;
    Some(frame)
}

/// The fake upstreams' zone:
///
/// | name | answer |
/// | --- | --- |
/// | `www.example.com.` A | 192.0.2.1, TTL 300 |
/// | `host-N.example.com.` A | 192.0.2.N, TTL 300 |
/// | `short.example.com.` A | 192.0.2.5, TTL 5 |
/// | `zero.example.com.` A | 192.0.2.0, TTL 0 |
/// | `long.example.com.` A | 192.0.2.9, TTL 86400 |
/// | `nodata.example.com.` any | NOERROR, no answer, SOA TTL 600 MINIMUM 60 |
/// | `nosoa.example.com.` any | NXDOMAIN without SOA |
/// | `fail.example.com.` any | SERVFAIL |
/// | `refused.example.com.` any | REFUSED |
/// | `medium.example.com.` TXT | 8 TXT records, about 900 bytes |
/// | `big.example.com.` TXT | 40 TXT records, about 4.4 kB |
/// | anything else | NXDOMAIN, SOA TTL 30 MINIMUM 3600 |
///
/// Over UDP a reply larger than the query's EDNS payload size (512 without
/// EDNS) is truncated; every reply carries an OPT advertising 4000 bytes, to
/// show the forwarder replaces it.
pub(super) fn example_reply(query: &Message, transport: Transport) -> Vec<u8> {
    let mut reply = reply_to(query);
    let question = &query.queries[0];
    let name = question.name().to_lowercase().to_ascii();
    let qtype = question.query_type();
    let a = |ttl, last_octet| record(&name, ttl, RData::A(A(Ipv4Addr::new(192, 0, 2, last_octet))));
    match (name.as_str(), qtype) {
        ("www.example.com.", RecordType::A) => reply.answers = vec![a(300, 1)],
        ("short.example.com.", RecordType::A) => reply.answers = vec![a(5, 5)],
        ("zero.example.com.", RecordType::A) => reply.answers = vec![a(0, 0)],
        ("long.example.com.", RecordType::A) => reply.answers = vec![a(86400, 9)],
        (host, RecordType::A) if host.starts_with("host-") => {
            let number = host.trim_start_matches("host-").split('.').next().unwrap();
            reply.answers = vec![a(300, number.parse().unwrap())];
        }
        ("nodata.example.com.", _) => reply.authorities = vec![soa(600, 60)],
        ("nosoa.example.com.", _) => reply.metadata.response_code = ResponseCode::NXDomain,
        ("fail.example.com.", _) => reply.metadata.response_code = ResponseCode::ServFail,
        ("refused.example.com.", _) => reply.metadata.response_code = ResponseCode::Refused,
        ("medium.example.com.", RecordType::TXT) => reply.answers = txt_records(&name, 8),
        ("big.example.com.", RecordType::TXT) => reply.answers = txt_records(&name, 40),
        _ => {
            reply.metadata.response_code = ResponseCode::NXDomain;
            reply.authorities = vec![soa(30, 3600)];
        }
    }
    let mut upstream_edns = Edns::new();
    upstream_edns.set_max_payload(4000);
    reply.set_edns(upstream_edns);
    let bytes = reply.to_vec().unwrap();
    if transport == Transport::Udp && bytes.len() > usize::from(query.max_payload()) {
        return reply.truncate().to_vec().unwrap();
    }
    bytes
}

/// A response to `query` with its ID, question and RD, RA set, no records.
pub(super) fn reply_to(query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_queries(query.queries.iter().cloned());
    reply
}

pub(super) fn record(name: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(Name::from_ascii(name).unwrap(), ttl, data)
}

fn soa(ttl: u32, minimum: u32) -> Record {
    let soa = SOA::new(
        Name::from_ascii("ns.example.com.").unwrap(),
        Name::from_ascii("hostmaster.example.com.").unwrap(),
        1,
        3600,
        600,
        86400,
        minimum,
    );
    record("example.com.", ttl, RData::SOA(soa))
}

fn txt_records(name: &str, count: usize) -> Vec<Record> {
    (0..count)
        .map(|index| {
            record(
                name,
                300,
                RData::TXT(TXT::new(vec![format!("{index:03}-{}", "x".repeat(96))])),
            )
        })
        .collect()
}

/// A client query for `name`, RD set, no EDNS.
pub(super) fn query(name: &str, qtype: RecordType) -> Message {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    // `from_ascii` keeps the case; `from_str` would fold it (IDNA).
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    query
}

/// `query` with an OPT record advertising 4096 bytes.
pub(super) fn with_edns(mut query: Message) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    query.set_edns(edns);
    query
}

pub(super) fn bytes(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap()
}

pub(super) fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).expect("the forwarder's reply parses")
}

/// The A addresses in the answer section.
pub(super) fn addresses(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The question name as spelled on the wire (hickory's string forms fold
/// case), with a trailing dot.
pub(super) fn spelled(reply: &Message) -> String {
    let labels: Vec<String> = reply.queries[0]
        .name()
        .iter()
        .map(|label| String::from_utf8_lossy(label).into_owned())
        .collect();
    format!("{}.", labels.join("."))
}

pub(super) fn answer_ttls(reply: &Message) -> Vec<u32> {
    reply.answers.iter().map(|record| record.ttl).collect()
}

/// Sends `query` through `forwarder` as a UDP client taking `max_len` bytes.
pub(super) async fn ask(forwarder: &Forwarder, query: &Message, max_len: usize) -> Message {
    let reply = forwarder.resolve(&bytes(query), max_len).await.expect("a reply");
    parse(&reply)
}

/// A clock that stands still until a test moves it.
pub(super) struct TestClock {
    start: Instant,
    elapsed: Mutex<Duration>,
}

impl TestClock {
    pub(super) fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap() += by;
    }

    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().unwrap()
    }
}

/// Options for tests: a short timeout so dead upstreams cost little.
pub(super) fn options(upstreams: &[SocketAddr]) -> ForwardOptions {
    ForwardOptions {
        upstreams: upstreams.to_vec(),
        timeout: Duration::from_millis(300),
        cache_entries: 100,
        ..ForwardOptions::default()
    }
}

pub(super) fn forwarder(upstreams: &[SocketAddr]) -> (Forwarder, Arc<TestClock>) {
    forwarder_with(options(upstreams))
}

pub(super) fn forwarder_with(options: ForwardOptions) -> (Forwarder, Arc<TestClock>) {
    let clock = Arc::new(TestClock {
        start: Instant::now(),
        elapsed: Mutex::new(Duration::ZERO),
    });
    let reader = Arc::clone(&clock);
    let forwarder = Forwarder::with_clock(options, Arc::new(move || reader.now())).unwrap();
    (forwarder, clock)
}

/// An address where nothing listens: UDP to it is refused at once.
pub(super) fn dead_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

pub(super) fn is_response(reply: &Message) -> bool {
    reply.metadata.message_type == MessageType::Response
}
