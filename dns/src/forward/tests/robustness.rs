//! Malformed, unexpected and random input, from clients and upstreams.

use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// A query header: ID 0x1234, RD set, the given section counts.
fn header(questions: u16, answers: u16) -> Vec<u8> {
    let mut header = vec![0x12, 0x34, 0x01, 0x00];
    for count in [questions, answers, 0, 0] {
        header.extend_from_slice(&count.to_be_bytes());
    }
    header
}

#[tokio::test]
async fn unreadable_queries_get_formerr_with_their_id() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let mut two_questions = header(2, 0);
    for _ in 0..2 {
        two_questions.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
    }
    let mut cut_short = header(1, 0);
    cut_short.extend_from_slice(b"\x03www\x07exa");
    let mut missing_answer = header(1, 1);
    missing_answer.extend_from_slice(b"\x03www\x00\x00\x01\x00\x01");
    let mut bad_label = header(1, 0);
    bad_label.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01");

    for garbage in [
        header(0, 0),
        header(1, 0),
        two_questions,
        cut_short,
        missing_answer,
        bad_label,
    ] {
        let reply = forwarder.resolve(&garbage, 512).await.expect("a FORMERR");
        assert_eq!(reply.len(), 12, "a bare header for {garbage:?}");
        let reply = parse(&reply);
        assert_eq!(reply.metadata.id, 0x1234);
        assert!(is_response(&reply));
        assert!(reply.metadata.recursion_desired);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr, "for {garbage:?}");
        assert!(forwarder.cached(&garbage, 512).is_none());
    }
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn short_messages_and_responses_get_no_reply() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let mut response = query("www.example.com.", RecordType::A);
    response.metadata.message_type = MessageType::Response;

    for silent in [Vec::new(), vec![0x12], vec![0; 11], bytes(&response)] {
        assert_eq!(forwarder.resolve(&silent, 512).await, None, "for {silent:?}");
    }
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn queries_we_do_not_forward_are_refused_with_their_question() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let mut status = query("www.example.com.", RecordType::A);
    status.metadata.op_code = OpCode::Status;
    let transfer = query("example.com.", RecordType::AXFR);
    let mut edns_v1 = with_edns(query("www.example.com.", RecordType::A));
    if let Some(edns) = edns_v1.edns.as_mut() {
        edns.set_version(1);
    }

    let status_reply = ask(&forwarder, &status, 512).await;
    let transfer_reply = ask(&forwarder, &transfer, 512).await;
    let edns_v1_reply = ask(&forwarder, &edns_v1, 512).await;

    assert_eq!(status_reply.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(transfer_reply.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(transfer_reply.queries, transfer.queries);
    // RFC 6891: BADVERS, the extended rcode 16 carried in our OPT (version
    // 0). hickory decodes 16 as BADSIG, which shares the number.
    assert_eq!(u16::from(edns_v1_reply.metadata.response_code), 16);
    assert_eq!(edns_v1_reply.edns.map(|edns| edns.version()), Some(0));
    assert!(upstream.seen().is_empty());
}

#[test]
fn forwarder_is_shareable_and_resolving_can_be_spawned() {
    fn send_and_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_and_sync::<Forwarder>();
    let (forwarder, _) = forwarder(&[dead_addr()]);
    send(&forwarder.resolve(&[], 512));
    send(&forwarder.check_loops());
}

#[tokio::test]
async fn random_and_mutated_queries_never_panic() {
    let upstream = FakeUpstream::example();
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let mut random = StdRng::seed_from_u64(0x6e65_746c_6574);
    let valid = bytes(&with_edns(query("www.example.com.", RecordType::A)));

    for round in 0..2000 {
        let input = if round % 2 == 0 {
            let length = random.gen_range(0..80);
            (0..length).map(|_| random.gen()).collect()
        } else {
            mutate(&valid, &mut random)
        };
        let max_len = random.gen_range(0..70_000);
        let _ = forwarder.is_loop_probe(&input);
        let _ = forwarder.cached(&input, max_len);
        if let Some(reply) = forwarder.resolve(&input, max_len).await {
            // Whatever it is, the reply is a response with the query's ID.
            assert!(reply.len() >= 12);
            assert_eq!(reply[..2], input[..2]);
            assert_ne!(reply[2] & 0x80, 0);
            assert!(reply.len() <= max_len.max(512));
        }
    }
}

#[tokio::test]
async fn mutated_upstream_replies_never_panic() {
    // The upstream's replies are damaged after the question, so they match
    // our query and get decoded (and re-encoded) in full.
    let random = Mutex::new(StdRng::seed_from_u64(2308));
    let upstream = FakeUpstream::start(move |query, transport| {
        let reply = example_reply(query, transport);
        let question_end = bytes(query).len() - opt_length(query);
        let mut random = random.lock().unwrap();
        let mut damaged = reply[..question_end].to_vec();
        damaged.extend(mutate(&reply[question_end..], &mut random));
        vec![damaged]
    });
    let (forwarder, _) = forwarder(&[upstream.addr]);
    let names = [
        "www.example.com.",
        "nodata.example.com.",
        "missing.example.com.",
        "medium.example.com.",
    ];

    for round in 0..400 {
        let name = names[round % names.len()];
        let query = query(name, if round % 3 == 0 { RecordType::TXT } else { RecordType::A });
        let reply = forwarder.resolve(&bytes(&query), 65535).await.expect("a reply");
        assert_eq!(reply[..2], query.metadata.id.to_be_bytes());
    }
}

/// Bytes of `query`'s OPT record (11 with no options), 0 without EDNS.
fn opt_length(query: &Message) -> usize {
    if query.edns.is_some() {
        11
    } else {
        0
    }
}

/// `bytes` with a few random bytes overwritten, maybe cut short or extended.
fn mutate(bytes: &[u8], random: &mut StdRng) -> Vec<u8> {
    let mut mutated = bytes.to_vec();
    if mutated.is_empty() {
        return mutated;
    }
    for _ in 0..random.gen_range(1..4) {
        let at = random.gen_range(0..mutated.len());
        mutated[at] = random.gen();
    }
    match random.gen_range(0..4) {
        0 => mutated.truncate(random.gen_range(0..bytes.len())),
        1 => mutated.extend((0..random.gen_range(1..20)).map(|_| random.gen::<u8>())),
        _ => {}
    }
    mutated
}
