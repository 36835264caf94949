//! What the fuzz targets share: a cluster zone with a Service of every kind
//! the DNS specification names, handlers over it, and the checks every
//! reply must pass. The oracle is hickory, an implementation of RFC
//! 1035/6891 independent of ours: whatever we send, a client must decode.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dns::forward::{ForwardOptions, Forwarder};
use dns::handler::Forward;
use dns::metrics::DnsMetrics;
use dns::wire::{Query, Response, CLASSIC_UDP, TCP_MAX, UDP_PAYLOAD};
use dns::{Answer, ClusterZone, Handler, Outcome, SharedZone, Transport};
use hickory_proto::op::{Message, MessageType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

pub const DOMAIN: &str = "cluster.local";
pub const NAMESPACE: &str = "demo";

/// Addresses the zone knows (ClusterIPs, endpoints, pods), for the
/// structured target to spell as reverse and pod names.
pub const ADDRESSES: [&str; 8] = [
    "10.43.0.10",
    "fd00:43::a",
    "10.42.0.5",
    "fd00:42::5",
    "10.42.0.6",
    "10.42.1.9",
    "fd00:42:1::9",
    "10.44.0.1",
];

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}))
        .expect("a Service")
}

fn slice(family: &str, ports: Value, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": format!("slice-{family}"), "namespace": NAMESPACE},
        "addressType": family, "ports": ports, "endpoints": endpoints,
    }))
    .expect("an EndpointSlice")
}

fn pod(name: &str) -> Value {
    json!({"kind": "Pod", "name": name, "namespace": NAMESPACE})
}

/// A headless Service with `count` ready endpoints whose hostnames are
/// `hostname_len` bytes long: the size of its answers is what it is for.
fn numbered(zone: &mut ClusterZone, name: &str, count: u16, hostname_len: usize) {
    let width = hostname_len - name.len() - 1;
    let endpoints: Vec<Value> = (0..count)
        .map(|i| {
            json!({"addresses": [format!("10.44.{}.{}", i / 250, i % 250 + 1)],
                   "hostname": format!("{name}-{i:0>width$}"), "targetRef": pod(&format!("{name}-{i}"))})
        })
        .collect();
    let ports = json!([{"name": "http", "port": 8080}]);
    let slices = [slice("IPv4", ports.clone(), endpoints.into())];
    let spec = json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]});
    zone.set_service(&service(name, spec), &slices.each_ref());
}

/// The zone every target asks: `cluster.local` with, in namespace `demo`,
/// a dual-stack ClusterIP Service with named ports (`web`), a headless one
/// with hostnames, a pod without one and one not ready (`db`), headless
/// ones whose answers outgrow a UDP reply (`mid`) and a TCP one (`many`:
/// its SRV answer alone is over 64 KiB), ExternalNames chained through the
/// zone (`alias`), round a loop (`loop-a`) and out of it (`upstream`), and
/// pods for pod records.
pub fn zone() -> ClusterZone {
    let mut z = ClusterZone::new(DOMAIN, 5);
    let ports = json!([{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}, {"port": 9}]);
    let web = json!({"clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10", "fd00:43::a"], "ports": ports});
    z.set_service(&service("web", web), &[]);

    let sql = json!([{"name": "sql", "port": 5432}]);
    let db4 = slice(
        "IPv4",
        sql.clone(),
        json!([{"addresses": ["10.42.0.5"], "hostname": "db-0", "targetRef": pod("db-0")},
               {"addresses": ["10.42.0.6"], "targetRef": pod("db-1")},
               {"addresses": ["10.42.0.7"], "conditions": {"ready": false}, "targetRef": pod("db-2")}]),
    );
    let db6 = slice(
        "IPv6",
        sql.clone(),
        json!([{"addresses": ["fd00:42::5"], "hostname": "db-0", "targetRef": pod("db-0")}]),
    );
    let db = json!({"clusterIP": "None", "ports": sql});
    z.set_service(&service("db", db), &[&db4, &db6]);

    numbered(&mut z, "mid", 8, 8);
    numbered(&mut z, "many", 600, 63);

    let zone_name = |s: &str| format!("{s}.{NAMESPACE}.svc.{DOMAIN}");
    for (name, target) in [
        ("alias", zone_name("alias2")),
        ("alias2", zone_name("web")),
        ("loop-a", zone_name("loop-b")),
        ("loop-b", zone_name("loop-a")),
        ("upstream", "example.org".to_string()),
    ] {
        let spec = json!({"type": "ExternalName", "externalName": target});
        z.set_service(&service(name, spec), &[]);
    }
    let pods: Vec<IpAddr> = ["10.42.1.9", "fd00:42:1::9"].map(|a| a.parse().unwrap()).into();
    z.set_pod(NAMESPACE, &[], &pods);
    z
}

/// Handlers over [`zone`], built once per process: synced (the zone
/// answers), then not yet synced (names in the zone get SERVFAIL). Their
/// forwarder is the real one, but its upstream (the discard port) is never
/// asked: `handle` only looks in its cache (empty) and for loop probes
/// (none sent); waiting on upstreams is left to the serving loop.
pub fn handlers() -> &'static [Handler; 2] {
    static HANDLERS: OnceLock<[Handler; 2]> = OnceLock::new();
    HANDLERS.get_or_init(|| {
        [true, false].map(|synced| {
            let zone = Arc::new(SharedZone::new(zone()));
            if synced {
                zone.set_synced();
            }
            let options = ForwardOptions {
                upstreams: vec!["127.0.0.1:9".parse().unwrap()],
                ..ForwardOptions::default()
            };
            let forwarder: Arc<dyn Forward> = Arc::new(Forwarder::new(options).expect("a forwarder"));
            Handler::new(zone, Some(forwarder), Arc::new(DnsMetrics::default()))
        })
    })
}

/// [`zone`], built once per process.
pub fn shared_zone() -> &'static ClusterZone {
    static ZONE: OnceLock<ClusterZone> = OnceLock::new();
    ZONE.get_or_init(zone)
}

/// Whether a server must leave `msg` unanswered: a runt, or a response
/// (answering responses lets two servers bounce a packet forever).
pub fn ignorable(msg: &[u8]) -> bool {
    msg.len() < 12 || msg[2] & 0x80 != 0
}

/// The most a reply to `msg` may take over `transport`: 512 bytes over
/// UDP, or the EDNS payload the client offers up to the 1232 we do;
/// whatever two length bytes say over TCP.
pub fn limit(msg: &[u8], transport: Transport) -> usize {
    match transport {
        Transport::Tcp => TCP_MAX,
        Transport::Udp => {
            let limit = Query::parse(msg).map_or(CLASSIC_UDP, |q| q.udp_limit());
            assert!(
                (CLASSIC_UDP..=usize::from(UDP_PAYLOAD)).contains(&limit),
                "UDP limit {limit}"
            );
            limit
        }
    }
}

/// Runs `msg` through `handler` and checks what it decides; a `Chase` is
/// completed as the serving loop does, with `upstream` as what the
/// forwarder found for the CNAME's target, and that reply returned.
pub fn check_handle(handler: &Handler, msg: &[u8], transport: Transport, upstream: &[u8]) -> Option<Message> {
    let started = Instant::now();
    let outcome = handler.handle(msg, transport);
    let ignored = matches!(outcome, Outcome::Ignore);
    assert_eq!(ignored, ignorable(msg), "ignored or answered wrongly: {outcome:?}");
    let limit = limit(msg, transport);
    match outcome {
        Outcome::Reply(reply, source) => {
            check_reply(msg, &reply, limit);
            handler.metrics().reply(&reply, source, started.elapsed());
        }
        Outcome::Forward { limit: asked } => assert_eq!(asked, limit, "forward limit"),
        Outcome::Ignore => {}
        Outcome::Chase {
            answer,
            target,
            limit: asked,
        } => {
            assert_eq!(asked, limit, "chase limit");
            assert!(!shared_zone().owns(&target), "chasing {target}, in the zone");
            return Some(check_reply(msg, &chase(msg, answer, &target, upstream, limit), limit));
        }
    }
    None
}

/// The reply `serve` sends for a `Chase`: the zone's answer, then the
/// records the forwarder found.
fn chase(msg: &[u8], mut answer: Answer, target: &str, upstream: &[u8], limit: usize) -> Vec<u8> {
    let q = Query::parse(msg).expect("a chased query parses");
    answer.answers.extend(dns::forward::chased_records(upstream, target));
    Response::from_answer(&q, &answer, limit)
}

/// An upstream's reply with `records` in its answer section.
pub fn upstream_reply(records: &[hickory_proto::rr::Record]) -> Vec<u8> {
    let mut m = Message::response(7, hickory_proto::op::OpCode::Query);
    for r in records {
        m.add_answer(r.clone());
    }
    m.to_vec().expect("records an upstream sent encode again")
}

/// What an upstream might say about `example.org`, where the zone's
/// ExternalName `upstream` points.
pub fn example_org() -> &'static [u8] {
    static REPLY: OnceLock<Vec<u8>> = OnceLock::new();
    REPLY.get_or_init(|| {
        let name = hickory_proto::rr::Name::from_ascii("example.org.").unwrap();
        let a = hickory_proto::rr::RData::A("192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap().into());
        let aaaa = hickory_proto::rr::RData::AAAA("2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().into());
        upstream_reply(&[
            hickory_proto::rr::Record::from_rdata(name.clone(), 300, a),
            hickory_proto::rr::Record::from_rdata(name, 300, aaaa),
        ])
    })
}

/// Checks a reply we made to `query`: within `limit`, decodable, a
/// response with the query's ID, and when the query could be read, with
/// its question echoed byte for byte and an OPT record if and only if the
/// query had one (RFC 6891 7). Returns it decoded.
pub fn check_reply(query: &[u8], reply: &[u8], limit: usize) -> Message {
    assert!(
        reply.len() <= limit,
        "a {}-byte reply over a {limit}-byte limit",
        reply.len()
    );
    let m = Message::from_vec(reply).unwrap_or_else(|e| panic!("hickory cannot decode our reply ({e}): {reply:02x?}"));
    assert_eq!(m.metadata.id, u16::from_be_bytes([query[0], query[1]]), "reply ID");
    assert_eq!(m.metadata.message_type, MessageType::Response);
    if let Ok(q) = Query::parse(query) {
        assert_eq!(reply[4..6], [0, 1], "question count");
        assert_eq!(&reply[12..12 + q.question.len()], q.question, "echoed question");
        assert_eq!(m.edns.is_some(), q.edns.is_some(), "OPT in the reply");
    }
    m
}
