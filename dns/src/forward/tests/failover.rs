//! Upstreams that fail, and what the client gets then.

use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::*;

#[tokio::test]
async fn first_upstream_refusing_connections_the_second_answers() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[dead_addr(), upstream.addr]);

    let reply = ask(&forwarder, &query("www.example.com.", RecordType::A), 512).await;

    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
    let stats = forwarder.stats();
    assert_eq!((stats.upstream_queries, stats.upstream_errors), (2, 1));
}

#[tokio::test]
async fn first_upstream_timing_out_the_second_answers() {
    let silent = FakeUpstream::silent();
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[silent.addr, upstream.addr]);

    let reply = ask(&forwarder, &query("www.example.com.", RecordType::A), 512).await;

    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(silent.queries(Transport::Udp), 1);
    assert_eq!(forwarder.stats().upstream_errors, 1);
}

#[tokio::test]
async fn every_upstream_dead_gives_servfail() {
    let silent = FakeUpstream::silent();
    let (forwarder, _) = forwarder(&[dead_addr(), silent.addr]);
    let query = with_edns(query("www.example.com.", RecordType::A));

    let reply = ask(&forwarder, &query, 1232).await;

    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(reply.metadata.id, query.metadata.id);
    assert_eq!(reply.queries, query.queries);
    assert!(reply.edns.is_some());
    assert_eq!(forwarder.stats().upstream_errors, 2);
}

#[tokio::test]
async fn servfail_and_refused_send_us_to_the_next_upstream() {
    // The first upstream fails everything, the second answers.
    let failing = FakeUpstream::start(|query, transport| {
        let mut reply = parse(&example_reply(query, transport));
        reply.metadata.response_code = if query.queries[0].query_type() == RecordType::A {
            ResponseCode::ServFail
        } else {
            ResponseCode::Refused
        };
        reply.answers.clear();
        vec![bytes(&reply)]
    });
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[failing.addr, upstream.addr]);

    let a = ask(&forwarder, &query("www.example.com.", RecordType::A), 512).await;
    let txt = ask(&forwarder, &query("medium.example.com.", RecordType::TXT), 65535).await;

    assert_eq!(addresses(&a), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(txt.answers.len(), 8);
    assert_eq!(failing.queries(Transport::Udp), 2);
    assert_eq!(forwarder.stats().upstream_errors, 2);
}

#[tokio::test]
async fn upstream_error_replies_without_a_question_fail_over_at_once() {
    let bare = FakeUpstream::start(|query, _| {
        let mut reply = reply_to(query);
        reply.queries.clear();
        reply.metadata.response_code = ResponseCode::FormErr;
        vec![bytes(&reply)]
    });
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder_with(ForwardOptions {
        // Long enough that the test would hang noticeably on a timeout.
        timeout: Duration::from_secs(30),
        ..options(&[bare.addr, upstream.addr])
    });

    let reply = ask(&forwarder, &query("www.example.com.", RecordType::A), 512).await;

    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn upstream_latency_is_recorded_for_replies() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[dead_addr(), upstream.addr]);

    ask(&forwarder, &query("www.example.com.", RecordType::A), 512).await;
    ask(&forwarder, &query("missing.example.com.", RecordType::A), 512).await;

    let latency = forwarder.stats().upstream_latency;
    assert_eq!(latency.count, 2);
    assert_eq!(latency.counts.iter().sum::<u64>(), 2);
    assert!(latency.sum_seconds > 0.0);
}
