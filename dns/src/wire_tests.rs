//! The serving path's wire format, checked by decoding what it writes with
//! hickory (an independent implementation of RFC 1035/6891) and by
//! feeding it the malformed messages a server meets.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, Query as HQuery, ResponseCode as HCode};
use hickory_proto::rr::{DNSClass, Name, RData as HData, RecordType};

use crate::wire::{Malformed, Query, Response, ResponseCode, CLASSIC_UDP, TCP_MAX, UDP_PAYLOAD};
use crate::zone_tests::zone;

/// A query as a stub resolver sends it, with EDNS when `payload` is given.
pub(crate) fn query(name: &str, rtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.metadata.recursion_desired = true;
    m.add_query(HQuery::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(p) = payload {
        let mut e = Edns::new();
        e.set_max_payload(p);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// What the zone replies to `name`/`rtype` within `limit` bytes.
fn ask(name: &str, rtype: RecordType, payload: Option<u16>, limit: usize) -> Message {
    let bytes = query(name, rtype, payload);
    let q = Query::parse(&bytes).expect("a well-formed query");
    let answer = zone()
        .answer(q.name.as_deref().unwrap(), q.query_type())
        .expect("in the zone");
    let reply = Response::from_answer(&q, &answer, limit);
    assert!(reply.len() <= limit, "{} bytes over a {limit}-byte limit", reply.len());
    Message::from_vec(&reply).expect("hickory decodes our reply")
}

fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            HData::A(a) => Some(IpAddr::V4(a.0)),
            HData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reply_echoes_the_header_and_the_question_spelling() {
    let m = ask("WeB.demo.SVC.cluster.local.", RecordType::A, None, CLASSIC_UDP);
    let h = &m.metadata;
    assert_eq!(
        (h.id, h.message_type, h.response_code),
        (0x4242, MessageType::Response, HCode::NoError)
    );
    assert!(h.authoritative && h.recursion_desired && h.recursion_available && !h.truncation);
    assert_eq!(m.queries[0].name().to_ascii(), "WeB.demo.SVC.cluster.local.");
    assert_eq!(addresses(&m), vec!["10.43.0.10".parse::<IpAddr>().unwrap()]);
    let record = &m.answers[0];
    // The owner is the question's name, byte for byte (a pointer to it).
    assert_eq!(
        (record.name.to_ascii().as_str(), record.ttl),
        ("WeB.demo.SVC.cluster.local.", 5)
    );
    assert_eq!(record.dns_class, DNSClass::IN);
}

#[test]
fn srv_targets_and_their_addresses_decode() {
    let m = ask(
        "_sql._tcp.db.demo.svc.cluster.local.",
        RecordType::SRV,
        None,
        CLASSIC_UDP,
    );
    let targets: Vec<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            HData::SRV(s) => format!("{} {} {} {}", s.priority, s.weight, s.port, s.target),
            other => panic!("not SRV: {other:?}"),
        })
        .collect();
    assert_eq!(
        targets,
        vec![
            "0 50 5432 10-42-0-6.db.demo.svc.cluster.local.",
            "0 50 5432 db-0.db.demo.svc.cluster.local."
        ]
    );
    let extra: Vec<String> = m.additionals.iter().map(|r| format!("{} {}", r.name, r.data)).collect();
    assert_eq!(
        extra,
        vec![
            "10-42-0-6.db.demo.svc.cluster.local. 10.42.0.6",
            "db-0.db.demo.svc.cluster.local. 10.42.0.5"
        ]
    );
}

#[test]
fn negative_answers_carry_the_soa() {
    let m = ask("nope.demo.svc.cluster.local.", RecordType::A, None, CLASSIC_UDP);
    assert_eq!(m.metadata.response_code, HCode::NXDomain);
    assert!(m.answers.is_empty());
    match &m.authorities[0].data {
        HData::SOA(soa) => assert_eq!((soa.minimum, m.authorities[0].ttl), (5, 5)),
        other => panic!("not the SOA: {other:?}"),
    }
    let nodata = ask("v4only.demo.svc.cluster.local.", RecordType::AAAA, None, CLASSIC_UDP);
    assert_eq!(
        (nodata.metadata.response_code, nodata.answers.len()),
        (HCode::NoError, 0)
    );
    assert_eq!(nodata.authorities.len(), 1);
}

#[test]
fn edns_is_answered_with_edns_and_only_then() {
    let with = ask("web.demo.svc.cluster.local.", RecordType::A, Some(4096), 4096);
    assert_eq!(with.edns.as_ref().map(|e| e.max_payload()), Some(UDP_PAYLOAD));
    let without = ask("web.demo.svc.cluster.local.", RecordType::A, None, CLASSIC_UDP);
    assert!(without.edns.is_none());
    // The client's size is honoured up to ours; never under 512.
    let q = query("web.demo.svc.cluster.local.", RecordType::A, Some(4096));
    assert_eq!(Query::parse(&q).unwrap().udp_limit(), usize::from(UDP_PAYLOAD));
    let q = query("web.demo.svc.cluster.local.", RecordType::A, Some(100));
    assert_eq!(Query::parse(&q).unwrap().udp_limit(), CLASSIC_UDP);
}

#[test]
fn a_reply_too_big_for_udp_is_truncated_and_whole_over_tcp() {
    let mut z = zone();
    let endpoints: Vec<String> = (0..60).map(|i| format!("\"10.42.1.{i}\"")).collect();
    let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_str(&format!(
        r#"{{"metadata":{{"name":"big"}},"addressType":"IPv4","endpoints":[{{"addresses":[{}]}}],
           "ports":[{{"name":"http","port":80}}]}}"#,
        endpoints.join(",")
    ))
    .unwrap();
    let svc = serde_json::from_str(
        r#"{"metadata":{"name":"big","namespace":"demo"},
            "spec":{"clusterIP":"None","ports":[{"name":"http","port":80}]}}"#,
    )
    .unwrap();
    z.set_service(&svc, &[&slice]);
    let reply = |rtype, limit| {
        let bytes = query("big.demo.svc.cluster.local.", rtype, None);
        let q = Query::parse(&bytes).unwrap();
        let answer = z.answer(q.name.as_deref().unwrap(), q.query_type()).unwrap();
        Message::from_vec(&Response::from_answer(&q, &answer, limit)).unwrap()
    };
    let udp = reply(RecordType::A, CLASSIC_UDP);
    assert!(udp.metadata.truncation, "60 addresses do not fit in 512 bytes");
    assert!(udp.answers.is_empty());
    assert_eq!(udp.queries.len(), 1, "the question is kept");
    let tcp = reply(RecordType::A, TCP_MAX);
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 60);
    // SRV: the answers fit once the additional addresses are left out,
    // which needs no TC (RFC 2181 9).
    let bytes = query("_http._tcp.big.demo.svc.cluster.local.", RecordType::SRV, Some(4096));
    let q = Query::parse(&bytes).unwrap();
    let answer = z.answer(q.name.as_deref().unwrap(), q.query_type()).unwrap();
    let full = Response::from_answer(&q, &answer, TCP_MAX);
    let limit = full.len() - 1;
    let m = Message::from_vec(&Response::from_answer(&q, &answer, limit)).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!((m.answers.len(), m.additionals.len()), (60, 0));
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

#[test]
fn malformed_queries_are_refused_or_ignored() {
    let reply_code = |msg: &[u8]| match Query::parse(msg) {
        Err(Malformed::Reply { id, code, .. }) => Some((id, code)),
        Err(Malformed::Ignore) => None,
        Ok(q) => panic!("accepted {q:?}"),
    };
    assert_eq!(reply_code(&[0; 11]), None, "shorter than a header");
    let mut response = query("a.", RecordType::A, None);
    response[2] |= 0x80;
    assert_eq!(reply_code(&response), None, "a response is never answered");
    let mut two = header(7, 0x0100, [2, 0, 0, 0]);
    two.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1, 1, b'b', 0, 0, 1, 0, 1]);
    assert_eq!(reply_code(&two), Some((7, ResponseCode::FormErr)));
    let mut pointer = header(8, 0, [1, 0, 0, 0]);
    pointer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(
        reply_code(&pointer),
        Some((8, ResponseCode::FormErr)),
        "compression loop"
    );
    let mut cut = header(9, 0, [1, 0, 0, 0]);
    cut.extend_from_slice(&[5, b'a', b'b']);
    assert_eq!(reply_code(&cut), Some((9, ResponseCode::FormErr)), "label past the end");
    let mut long = header(10, 0, [1, 0, 0, 0]);
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'x'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(
        reply_code(&long),
        Some((10, ResponseCode::FormErr)),
        "name over 255 bytes"
    );
    let mut update = query("a.", RecordType::A, None);
    update[2] |= 5 << 3;
    assert_eq!(reply_code(&update), Some((0x4242, ResponseCode::NotImp)));
    let mut huge = query("a.", RecordType::A, None);
    huge[10..12].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(
        reply_code(&huge),
        Some((0x4242, ResponseCode::FormErr)),
        "65535 records claimed"
    );
    let bare = Response::bare(7, true, ResponseCode::FormErr);
    let m = Message::from_vec(&bare).unwrap();
    assert_eq!((m.metadata.id, m.metadata.response_code), (7, HCode::FormErr));
}

#[test]
fn odd_labels_are_forwarded_untouched_and_edns_versions_checked() {
    let mut odd = header(1, 0, [1, 0, 0, 0]);
    odd.extend_from_slice(&[3, b'a', b'.', b'b', 0, 0, 1, 0, 1]);
    let q = Query::parse(&odd).unwrap();
    assert_eq!(q.name, None, "a dot inside a label is no zone name");
    let mut m = Message::query();
    m.add_query(HQuery::query(Name::from_ascii("a.").unwrap(), RecordType::A));
    let mut e = Edns::new();
    e.set_version(1);
    m.set_edns(e);
    let bytes = m.to_vec().unwrap();
    let q = Query::parse(&bytes).unwrap();
    assert_eq!(q.edns.map(|e| e.version), Some(1));
    let reply = Message::from_vec(&Response::empty(&q, ResponseCode::BadVers)).unwrap();
    // 16 is BADVERS in an OPT (hickory names the number BADSIG, its TSIG meaning).
    assert_eq!(u16::from(reply.metadata.response_code), 16);
}
