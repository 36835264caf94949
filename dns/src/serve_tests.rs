//! The server as a client meets it: real UDP and TCP sockets on loopback,
//! the zone, a stand-in forwarder, and what the metrics counted.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode as HCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::handler::{Forward, Handler, SharedZone};
use crate::metrics::DnsMetrics;
use crate::wire::{Query, Response, ResponseCode};
use crate::wire_tests::query;
use crate::zone_tests::zone;

/// Answers every name NXDOMAIN "from upstream", counting how often it was
/// asked; `cached` knows one name.
#[derive(Default)]
struct FakeUpstream {
    asked: AtomicUsize,
}

impl Forward for FakeUpstream {
    fn cached(&self, query: &[u8], _limit: usize) -> Option<Vec<u8>> {
        let q = Query::parse(query).ok()?;
        (q.name.as_deref() == Some("cached.example.")).then(|| Response::empty(&q, ResponseCode::NoError))
    }

    fn is_loop_probe(&self, query: &[u8]) -> bool {
        Query::parse(query).is_ok_and(|q| q.name.as_deref() == Some("probe.netlet-loop-probe."))
    }

    fn lookup<'a>(
        &'a self,
        name: &'a str,
        _rtype: u16,
    ) -> Pin<Box<dyn Future<Output = Vec<crate::Record>> + Send + 'a>> {
        Box::pin(async move {
            self.asked.fetch_add(1, Ordering::SeqCst);
            vec![crate::Record {
                name: name.to_string(),
                ttl: 30,
                data: crate::RData::A("192.0.2.80".parse().unwrap()),
            }]
        })
    }

    fn resolve<'a>(&'a self, query: &'a [u8], _limit: usize) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + 'a>> {
        Box::pin(async move {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Response::empty(&Query::parse(query).unwrap(), ResponseCode::NxDomain)
        })
    }
}

struct Server {
    address: SocketAddr,
    zone: Arc<SharedZone>,
    metrics: Arc<DnsMetrics>,
    upstream: Arc<FakeUpstream>,
    _udp: crate::udp::UdpServer,
}

async fn start(forwarding: bool) -> Server {
    let zone = Arc::new(SharedZone::new(zone()));
    let metrics = Arc::new(DnsMetrics::default());
    let upstream = Arc::new(FakeUpstream::default());
    let forward = forwarding.then(|| upstream.clone() as Arc<dyn Forward>);
    let handler = Arc::new(Handler::new(zone.clone(), forward, metrics.clone()));
    let (udp, tcp) = crate::serve::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = udp.local_addr().unwrap();
    // TCP on the same port as UDP, as a resolver expects.
    let tcp = match tcp.local_addr().unwrap().port() == address.port() {
        true => tcp,
        false => tokio::net::TcpListener::bind(address).await.unwrap(),
    };
    let udp = crate::udp::serve_udp(udp, handler.clone(), tokio::runtime::Handle::current()).unwrap();
    tokio::spawn(crate::serve::serve_tcp(tcp, handler));
    Server {
        address,
        zone,
        metrics,
        upstream,
        _udp: udp,
    }
}

async fn udp(server: SocketAddr, msg: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(msg, server).await.unwrap();
    let mut buf = vec![0; 65535];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("an answer over UDP")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn tcp(server: SocketAddr, msgs: &[Vec<u8>]) -> Vec<Message> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    // Pipelined: all queries first, then all answers, in order.
    for msg in msgs {
        stream.write_all(&(msg.len() as u16).to_be_bytes()).await.unwrap();
        stream.write_all(msg).await.unwrap();
    }
    let mut out = Vec::new();
    for _ in msgs {
        let mut len = [0; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.unwrap();
        out.push(Message::from_vec(&buf).unwrap());
    }
    out
}

const WEB: &str = "web.demo.svc.cluster.local.";

#[tokio::test]
async fn names_in_the_zone_are_servfail_until_it_is_synced_then_answered() {
    let s = start(true).await;
    let early = udp(s.address, &query(WEB, RecordType::A, None)).await;
    assert_eq!(early.metadata.response_code, HCode::ServFail);
    s.zone.set_synced();
    let m = udp(s.address, &query(WEB, RecordType::A, None)).await;
    assert_eq!((m.metadata.response_code, m.answers.len()), (HCode::NoError, 1));
    // Other names were never held back by the zone.
    assert_eq!(s.upstream.asked.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tcp_answers_in_order_and_carries_what_udp_cannot() {
    let s = start(true).await;
    s.zone.set_synced();
    let answers = tcp(
        s.address,
        &[
            query(WEB, RecordType::AAAA, None),
            query("nope.demo.svc.cluster.local.", RecordType::A, None),
            query("elsewhere.example.", RecordType::A, None),
        ],
    )
    .await;
    let codes: Vec<HCode> = answers.iter().map(|m| m.metadata.response_code).collect();
    assert_eq!(codes, vec![HCode::NoError, HCode::NXDomain, HCode::NXDomain]);
    assert_eq!(answers[0].answers[0].data.to_string(), "fd00:43::a");
    assert_eq!(s.upstream.asked.load(Ordering::SeqCst), 1, "the third went upstream");
}

#[tokio::test]
async fn other_names_are_forwarded_cached_or_refused() {
    let s = start(true).await;
    let m = udp(s.address, &query("elsewhere.example.", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, HCode::NXDomain);
    let m = udp(s.address, &query("cached.example.", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, HCode::NoError);
    let m = udp(s.address, &query("probe.netlet-loop-probe.", RecordType::HINFO, None)).await;
    assert_eq!(
        m.metadata.response_code,
        HCode::Refused,
        "our own probe is not sent round again"
    );
    assert_eq!(s.upstream.asked.load(Ordering::SeqCst), 1);
    let counts = s.metrics.snapshot();
    assert_eq!(counts.forwarded, 2, "upstream and cache");
    let refused = counts.responses.iter().find(|(c, _)| *c == "REFUSED").unwrap().1;
    assert_eq!(refused, 1);

    let alone = start(false).await;
    let m = udp(alone.address, &query("elsewhere.example.", RecordType::A, None)).await;
    assert_eq!(
        m.metadata.response_code,
        HCode::Refused,
        "no upstream: refused, not dropped"
    );
}

#[tokio::test]
async fn garbage_gets_formerr_or_silence_and_the_server_goes_on() {
    let s = start(true).await;
    s.zone.set_synced();
    let mut two_questions = query(WEB, RecordType::A, None);
    two_questions[5] = 2;
    let m = udp(s.address, &two_questions).await;
    assert_eq!((m.metadata.id, m.metadata.response_code), (0x4242, HCode::FormErr));
    // A response sent to us is dropped; the next query is still answered.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut response = query(WEB, RecordType::A, None);
    response[2] |= 0x80;
    socket.send_to(&response, s.address).await.unwrap();
    socket.send_to(&[1, 2, 3], s.address).await.unwrap();
    let m = udp(s.address, &query(WEB, RecordType::A, None)).await;
    assert_eq!(m.answers.len(), 1);
    let counts = s.metrics.snapshot();
    assert_eq!(counts.ignored, 2);
    let a = counts.queries.iter().find(|(t, _)| *t == "A").unwrap().1;
    assert_eq!(a, 1, "the FORMERR one has no question to count");
    assert_eq!(counts.latency.count, 2, "the FORMERR and the answer");
}

#[tokio::test]
async fn a_cname_out_of_the_zone_is_followed_through_the_forwarder() {
    let s = start(true).await;
    s.zone.set_synced();
    for answers in [
        vec![
            udp(
                s.address,
                &query("upstream.demo.svc.cluster.local.", RecordType::A, None),
            )
            .await,
        ],
        tcp(
            s.address,
            &[query("upstream.demo.svc.cluster.local.", RecordType::A, None)],
        )
        .await,
    ] {
        let records: Vec<String> = answers[0]
            .answers
            .iter()
            .map(|r| format!("{} {}", r.name, r.data))
            .collect();
        assert_eq!(
            records,
            vec![
                "upstream.demo.svc.cluster.local. example.org.",
                "example.org. 192.0.2.80"
            ]
        );
        assert!(answers[0].metadata.authoritative);
    }
    // Asked for the CNAME itself, the zone's answer is the whole answer.
    let m = udp(
        s.address,
        &query("upstream.demo.svc.cluster.local.", RecordType::CNAME, None),
    )
    .await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(s.upstream.asked.load(Ordering::SeqCst), 2);
}
