//! What the cache keeps, for how long, and how much of it.

use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::*;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn second_query_is_answered_from_the_cache_in_its_own_case() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);

    ask(&forwarder, &query("www.example.com.", RecordType::A), 512).await;
    let again = query("WWW.EXAMPLE.COM.", RecordType::A);
    let reply = parse(&forwarder.cached(&bytes(&again), 512).expect("a cached answer"));

    assert_eq!(upstream.queries(Transport::Udp), 1);
    assert_eq!(reply.metadata.id, again.metadata.id);
    assert_eq!(spelled(&reply), "WWW.EXAMPLE.COM.");
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
    let stats = forwarder.stats();
    assert_eq!((stats.cache_hits, stats.cache_misses, stats.cache_entries), (1, 1, 1));
}

#[tokio::test]
async fn resolve_uses_the_cache_too() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let query = query("www.example.com.", RecordType::A);

    ask(&forwarder, &query, 512).await;
    let reply = ask(&forwarder, &query, 512).await;

    assert_eq!(upstream.queries(Transport::Udp), 1);
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn cached_ttls_count_down() {
    let upstream = FakeUpstream::example();
    let (forwarder, clock) = forwarder(&[upstream.addr]);
    let query = query("www.example.com.", RecordType::A);

    let fresh = ask(&forwarder, &query, 512).await;
    clock.advance(100 * SECOND);
    let cached = ask(&forwarder, &query, 512).await;

    assert_eq!(answer_ttls(&fresh), [300]);
    assert_eq!(answer_ttls(&cached), [200]);
    assert_eq!(upstream.queries(Transport::Udp), 1);
}

#[tokio::test]
async fn expired_answer_is_asked_for_again() {
    let upstream = FakeUpstream::example();
    let (forwarder, clock) = forwarder(&[upstream.addr]);
    let query = query("short.example.com.", RecordType::A);

    ask(&forwarder, &query, 512).await;
    clock.advance(4 * SECOND);
    assert_eq!(answer_ttls(&ask(&forwarder, &query, 512).await), [1]);
    clock.advance(SECOND);
    let refreshed = ask(&forwarder, &query, 512).await;

    assert_eq!(upstream.queries(Transport::Udp), 2);
    assert_eq!(answer_ttls(&refreshed), [5]);
}

#[tokio::test]
async fn nxdomain_is_cached_for_the_soa_ttl_when_below_its_minimum() {
    // SOA TTL 30, MINIMUM 3600: cached for 30 s.
    let upstream = FakeUpstream::example();
    let (forwarder, clock) = forwarder(&[upstream.addr]);
    let query = query("missing.example.com.", RecordType::A);

    ask(&forwarder, &query, 512).await;
    clock.advance(29 * SECOND);
    let cached = ask(&forwarder, &query, 512).await;
    assert_eq!(upstream.queries(Transport::Udp), 1);
    assert_eq!(cached.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(cached.authorities[0].ttl, 1);

    clock.advance(SECOND);
    ask(&forwarder, &query, 512).await;
    assert_eq!(upstream.queries(Transport::Udp), 2);
}

#[tokio::test]
async fn nodata_is_cached_for_the_soa_minimum_when_below_its_ttl() {
    // SOA TTL 600, MINIMUM 60: cached for 60 s, and the SOA handed out with
    // TTL 60 so clients do not keep it longer either.
    let upstream = FakeUpstream::example();
    let (forwarder, clock) = forwarder(&[upstream.addr]);
    let query = query("nodata.example.com.", RecordType::AAAA);

    let fresh = ask(&forwarder, &query, 512).await;
    assert_eq!(fresh.metadata.response_code, ResponseCode::NoError);
    assert!(fresh.answers.is_empty());
    assert_eq!(fresh.authorities[0].ttl, 60);

    clock.advance(59 * SECOND);
    ask(&forwarder, &query, 512).await;
    assert_eq!(upstream.queries(Transport::Udp), 1);
    clock.advance(SECOND);
    ask(&forwarder, &query, 512).await;
    assert_eq!(upstream.queries(Transport::Udp), 2);
}

#[tokio::test]
async fn negative_answer_without_soa_and_zero_ttl_answer_are_not_cached() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);

    for name in ["nosoa.example.com.", "zero.example.com."] {
        let query = query(name, RecordType::A);
        ask(&forwarder, &query, 512).await;
        ask(&forwarder, &query, 512).await;
    }

    assert_eq!(upstream.queries(Transport::Udp), 4);
    assert_eq!(forwarder.stats().cache_entries, 0);
}

#[tokio::test]
async fn servfail_is_not_cached() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let query = query("fail.example.com.", RecordType::A);

    let first = ask(&forwarder, &query, 512).await;
    let second = ask(&forwarder, &query, 512).await;

    assert_eq!(first.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(second.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(upstream.queries(Transport::Udp), 2);
    assert_eq!(forwarder.stats().cache_entries, 0);
}

#[tokio::test]
async fn ttls_are_capped() {
    let upstream = FakeUpstream::example();
    let (forwarder, clock) = forwarder_with(ForwardOptions {
        max_ttl: 3600,
        max_negative_ttl: 10,
        ..options(&[upstream.addr])
    });
    let long = query("long.example.com.", RecordType::A);
    let missing = query("missing.example.com.", RecordType::A);

    assert_eq!(answer_ttls(&ask(&forwarder, &long, 512).await), [3600]);
    assert_eq!(ask(&forwarder, &missing, 512).await.authorities[0].ttl, 10);
    clock.advance(10 * SECOND);
    ask(&forwarder, &missing, 512).await;
    clock.advance(3590 * SECOND);
    ask(&forwarder, &long, 512).await;

    assert_eq!(upstream.queries(Transport::Udp), 4);
}

#[tokio::test]
async fn cache_holds_at_most_cache_entries_evicting_the_least_recently_used() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder_with(ForwardOptions {
        cache_entries: 3,
        ..options(&[upstream.addr])
    });
    let host = |n: u8| bytes(&query(&format!("host-{n}.example.com."), RecordType::A));

    for n in 0..3 {
        forwarder.resolve(&host(n), 512).await;
    }
    // host-0 is used, so host-1 is now the least recently used.
    assert!(forwarder.cached(&host(0), 512).is_some());
    for n in 3..10 {
        forwarder.resolve(&host(n), 512).await;
        assert!(forwarder.stats().cache_entries <= 3);
        if n == 3 {
            assert!(forwarder.cached(&host(0), 512).is_some());
            assert!(forwarder.cached(&host(1), 512).is_none());
        }
    }

    assert_eq!(forwarder.stats().cache_entries, 3);
    assert!(forwarder.cached(&host(9), 512).is_some());
}

#[tokio::test]
async fn dnssec_ok_answers_are_cached_apart() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let plain = with_edns(query("www.example.com.", RecordType::A));
    let mut dnssec = plain.clone();
    if let Some(edns) = dnssec.edns.as_mut() {
        edns.set_dnssec_ok(true);
    }

    ask(&forwarder, &plain, 1232).await;
    let reply = ask(&forwarder, &dnssec, 1232).await;

    assert_eq!(upstream.queries(Transport::Udp), 2);
    assert!(upstream.seen()[1]
        .1
        .edns
        .as_ref()
        .is_some_and(|edns| edns.flags().dnssec_ok));
    assert!(reply.edns.is_some_and(|edns| edns.flags().dnssec_ok));
}

#[tokio::test]
async fn cached_answers_are_served_to_plain_threads() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let forwarder = Arc::new(forwarder);
    let query = bytes(&query("www.example.com.", RecordType::A));
    forwarder.resolve(&query, 512).await;

    let shared = Arc::clone(&forwarder);
    let reply = thread::spawn(move || shared.cached(&query, 512)).join().unwrap();

    assert_eq!(addresses(&parse(&reply.unwrap())), [Ipv4Addr::new(192, 0, 2, 1)]);
}
