//! The hand-written wire format on its own: `Query::parse` on any bytes,
//! and every reply the serving path can build for what it parses (each
//! error code, and the zone's answer at each size limit) checked against
//! hickory.

#![no_main]

use dns::wire::{Malformed, Query, Response, ResponseCode, CLASSIC_UDP, TCP_MAX};
use libfuzzer_sys::fuzz_target;
use netlet_fuzz::{check_reply, ignorable, shared_zone};

const CODES: [ResponseCode; 7] = [
    ResponseCode::NoError,
    ResponseCode::FormErr,
    ResponseCode::ServFail,
    ResponseCode::NxDomain,
    ResponseCode::NotImp,
    ResponseCode::Refused,
    ResponseCode::BadVers,
];

fuzz_target!(|data: &[u8]| {
    let parsed = Query::parse(data);
    let ignored = matches!(parsed, Err(Malformed::Ignore));
    assert_eq!(ignored, ignorable(data), "ignored or answered wrongly: {parsed:?}");
    let q = match parsed {
        Ok(q) => q,
        Err(Malformed::Ignore) => return,
        Err(Malformed::Reply { id, rd, code }) => {
            check_reply(data, &Response::bare(id, rd, code), CLASSIC_UDP);
            return;
        }
    };
    // Replies without records fit the smallest limit.
    for code in CODES {
        check_reply(data, &Response::empty(&q, code), CLASSIC_UDP);
    }
    // The handler asks the zone about class IN only; the writer must not care.
    let Some(answer) = q
        .name
        .as_deref()
        .and_then(|name| shared_zone().answer(name, q.query_type()))
    else {
        return;
    };
    for limit in [CLASSIC_UDP, q.udp_limit(), TCP_MAX] {
        check_reply(data, &Response::from_answer(&q, &answer, limit), limit);
    }
});
