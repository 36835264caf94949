//! What a client gets back for a forwarded query, and what the upstream sees.

use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::*;

#[tokio::test]
async fn answer_is_forwarded_with_the_clients_id_and_question_case() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let query = query("WwW.ExAmPlE.CoM.", RecordType::A);
    let raw = bytes(&query);

    let reply_raw = forwarder.resolve(&raw, 512).await.unwrap();
    let reply = parse(&reply_raw);

    assert_eq!(reply.metadata.id, query.metadata.id);
    assert!(is_response(&reply));
    assert!(reply.metadata.recursion_desired);
    assert!(reply.metadata.recursion_available);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    // The question section, right after the header, is byte for byte the
    // client's (the query has nothing after its question).
    assert_eq!(reply_raw[12..raw.len()], raw[12..]);
    assert_eq!(spelled(&reply), "WwW.ExAmPlE.CoM.");
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn rd_is_copied_from_the_client() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let mut query = query("www.example.com.", RecordType::A);
    query.metadata.recursion_desired = false;

    let reply = ask(&forwarder, &query, 512).await;

    assert!(!reply.metadata.recursion_desired);
    assert!(reply.metadata.recursion_available);
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn upstream_is_asked_lowercase_with_edns_and_a_fresh_id() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let query = query("WWW.Example.COM.", RecordType::A);

    ask(&forwarder, &query, 512).await;

    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    let (transport, sent) = &seen[0];
    assert_eq!(*transport, Transport::Udp);
    assert_eq!(spelled(sent), "www.example.com.");
    assert!(sent.metadata.recursion_desired);
    assert_eq!(sent.edns.as_ref().map(|edns| edns.max_payload()), Some(1232));
}

#[tokio::test]
async fn reply_has_our_opt_if_and_only_if_the_client_sent_one() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);

    let plain = ask(&forwarder, &query("www.example.com.", RecordType::A), 512).await;
    let with_opt = ask(&forwarder, &with_edns(query("www.example.com.", RecordType::A)), 4096).await;

    // The upstream sent an OPT advertising 4000 bytes both times.
    assert!(plain.edns.is_none());
    assert!(plain.additionals.is_empty());
    let edns = with_opt.edns.as_ref().expect("an OPT for the EDNS client");
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(addresses(&with_opt), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn reply_larger_than_the_client_takes_is_truncated() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let query = query("Medium.Example.Com.", RecordType::TXT);

    let over_udp = ask(&forwarder, &query, 512).await;
    let over_tcp = ask(&forwarder, &query, 65535).await;

    assert!(over_udp.metadata.truncation);
    assert!(over_udp.answers.is_empty());
    assert_eq!(over_udp.metadata.id, query.metadata.id);
    assert_eq!(spelled(&over_udp), "Medium.Example.Com.");
    // The retry gets the whole answer (from the cache: the upstream answered
    // once, over UDP within its 1232 bytes).
    assert!(!over_tcp.metadata.truncation);
    assert_eq!(over_tcp.answers.len(), 8);
    assert_eq!(upstream.queries(Transport::Udp), 1);
}

#[tokio::test]
async fn client_edns_payload_size_decides_truncation() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let query = with_edns(query("medium.example.com.", RecordType::TXT));

    let reply = ask(&forwarder, &query, 1232).await;

    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 8);
    assert!(reply.edns.is_some());
}

#[tokio::test]
async fn truncated_upstream_reply_is_retried_over_tcp() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);

    let reply = ask(&forwarder, &query("big.example.com.", RecordType::TXT), 65535).await;

    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 40);
    assert_eq!(upstream.queries(Transport::Udp), 1);
    assert_eq!(upstream.queries(Transport::Tcp), 1);
    assert_eq!(forwarder.stats().upstream_truncated, 1);
}

#[tokio::test]
async fn replies_with_the_wrong_id_or_question_are_ignored() {
    // Each genuine reply is preceded by two forgeries: one with another ID,
    // one with the right ID for another name; both claim 203.0.113.66.
    let upstream = FakeUpstream::start(|query, transport| {
        let forged_answer = record("www.example.com.", 300, RData::A(A(Ipv4Addr::new(203, 0, 113, 66))));
        let mut wrong_id = reply_to(query);
        wrong_id.metadata.id = query.metadata.id.wrapping_add(1);
        wrong_id.answers = vec![forged_answer.clone()];
        let mut wrong_question = reply_to(&super::query("evil.example.com.", RecordType::A));
        wrong_question.metadata.id = query.metadata.id;
        wrong_question.answers = vec![forged_answer];
        vec![
            bytes(&wrong_id),
            bytes(&wrong_question),
            example_reply(query, transport),
        ]
    });
    let (forwarder, _) = forwarder(&[upstream.addr]);

    let reply = ask(&forwarder, &query("www.example.com.", RecordType::A), 512).await;

    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(forwarder.stats().upstream_errors, 0);
}

#[tokio::test]
async fn nxdomain_is_passed_on_with_its_soa() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);

    let reply = ask(&forwarder, &query("missing.example.com.", RecordType::A), 512).await;

    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.answers.is_empty());
    assert_eq!(reply.authorities.len(), 1);
    assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);
}
