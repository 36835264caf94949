//! Reading and writing DNS messages for forwarding: the client's query, the
//! query we send upstream, the upstream's reply and the reply we give back.
//! This is the one file of `forward` that knows hickory's message types in
//! detail; the rest passes them along opaquely.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_proto::ProtoError;
use tracing::debug;

/// The UDP payload size we advertise to clients and upstreams: the DNS Flag
/// Day 2020 value, small enough to avoid IP fragmentation on common paths.
pub(super) const EDNS_PAYLOAD: u16 = 1232;

/// Every DNS client accepts 512 bytes (RFC 1035), whatever it claims.
const MIN_MESSAGE: usize = 512;

const HEADER_LEN: usize = 12;

/// A client's query that we will answer, with what the reply must echo.
#[derive(Debug, Clone)]
pub(super) struct ClientQuery {
    id: u16,
    recursion_desired: bool,
    checking_disabled: bool,
    authentic_data: bool,
    /// Exactly as the client spelled it: the reply echoes its case.
    question: Query,
    /// `Some` when the client sent an OPT record: then, and only then, the
    /// reply carries one.
    edns: Option<ClientEdns>,
}

#[derive(Debug, Clone, Copy)]
struct ClientEdns {
    dnssec_ok: bool,
}

/// Why a client message gets no forwarded answer.
#[derive(Debug)]
pub(super) enum Rejection {
    /// Shorter than a header, or a response rather than a query. Answering a
    /// response could start an endless error ping-pong between two servers
    /// (one spoofed packet would do), so such messages are dropped.
    Drop,
    /// Not readable as a query with one question: a bare header with this
    /// rcode (FORMERR).
    Unreadable(ResponseCode),
    /// Readable, but not something we forward: the question echoed with this
    /// rcode (NOTIMP, BADVERS).
    Unsupported(Box<ClientQuery>, ResponseCode),
}

impl Rejection {
    /// The reply to send for a rejected `raw` message, `None` for silence.
    pub(super) fn reply(self, raw: &[u8], max_len: usize) -> Option<Vec<u8>> {
        match self {
            Rejection::Drop => None,
            Rejection::Unreadable(rcode) => {
                // `raw` holds at least a header, or this would be `Drop`.
                let id = u16::from_be_bytes([raw[0], raw[1]]);
                Some(bare_header(id, raw[2], rcode))
            }
            Rejection::Unsupported(client, rcode) => Some(client.reply(&Answer::failure(rcode), 0, max_len)),
        }
    }
}

/// Reads a client's message: a standard query with exactly one question.
pub(super) fn parse_client_query(raw: &[u8]) -> Result<ClientQuery, Rejection> {
    if raw.len() < HEADER_LEN || raw[2] & 0x80 != 0 {
        return Err(Rejection::Drop);
    }
    let message = Message::from_vec(raw).map_err(|_| Rejection::Unreadable(ResponseCode::FormErr))?;
    let mut queries = message.queries.into_iter();
    let question = match (queries.next(), queries.next()) {
        (Some(question), None) => question,
        _ => return Err(Rejection::Unreadable(ResponseCode::FormErr)),
    };
    let client = ClientQuery {
        id: message.metadata.id,
        recursion_desired: message.metadata.recursion_desired,
        checking_disabled: message.metadata.checking_disabled,
        authentic_data: message.metadata.authentic_data,
        question,
        edns: message.edns.as_ref().map(|edns| ClientEdns {
            dnssec_ok: edns.flags().dnssec_ok,
        }),
    };
    let unsupported = |rcode| Err(Rejection::Unsupported(Box::new(client.clone()), rcode));
    if message.metadata.op_code != OpCode::Query {
        return unsupported(ResponseCode::NotImp);
    }
    // RFC 6891 6.1.3: we speak EDNS version 0 only.
    if message.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
        return unsupported(ResponseCode::BADVERS);
    }
    // Zone transfers are streams of messages; a one-reply forwarder cannot
    // carry them, so say so at once instead of SERVFAIL after every upstream.
    if matches!(client.question.query_type(), RecordType::AXFR | RecordType::IXFR) {
        return unsupported(ResponseCode::NotImp);
    }
    Ok(client)
}

/// The question name of `raw` if it is a query with one question.
pub(super) fn question_name(raw: &[u8]) -> Option<Name> {
    parse_client_query(raw)
        .ok()
        .map(|client| client.question.name().clone())
}

/// What identifies a cached answer: the question, case-folded, plus the
/// client bits that change what an upstream returns (DNSSEC records with DO,
/// unvalidated data with CD), so those answers never reach other clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    name: Name,
    query_type: RecordType,
    query_class: DNSClass,
    dnssec_ok: bool,
    checking_disabled: bool,
}

impl ClientQuery {
    pub(super) fn cache_key(&self) -> CacheKey {
        CacheKey {
            name: self.question.name().to_lowercase(),
            query_type: self.question.query_type(),
            query_class: self.question.query_class(),
            dnssec_ok: self.dnssec_ok(),
            checking_disabled: self.checking_disabled,
        }
    }

    /// `name/TYPE`, for logs.
    pub(super) fn describe(&self) -> String {
        format!("{}/{}", self.question.name(), self.question.query_type())
    }

    fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|edns| edns.dnssec_ok)
    }

    /// The reply to this client carrying `answer` as it is `age_secs` after it
    /// was received, in at most `max_len` bytes (else header and question
    /// with TC set, so the client retries over TCP).
    pub(super) fn reply(&self, answer: &Answer, age_secs: u32, max_len: usize) -> Vec<u8> {
        let max_len = max_len.clamp(MIN_MESSAGE, usize::from(u16::MAX));
        let mut reply = self.reply_skeleton(answer.rcode);
        // RFC 6840 5.8: AD only for clients that showed they understand it.
        reply.metadata.authentic_data = answer.authentic_data && (self.authentic_data || self.dnssec_ok());
        reply.answers = aged(&answer.answers, age_secs);
        reply.authorities = aged(&answer.authorities, age_secs);
        reply.additionals = aged(&answer.additionals, age_secs);
        match reply.to_vec() {
            Ok(bytes) if bytes.len() <= max_len => bytes,
            Ok(_) => {
                let mut truncated = self.reply_skeleton(answer.rcode);
                truncated.metadata.truncation = true;
                self.encode_or_bare(&truncated)
            }
            Err(error) => {
                debug!(question = %self.describe(), %error, "cannot encode reply, answering SERVFAIL");
                self.encode_or_bare(&self.reply_skeleton(ResponseCode::ServFail))
            }
        }
    }

    /// Header, question and (if the client sent one) our OPT; no records.
    fn reply_skeleton(&self, rcode: ResponseCode) -> Message {
        let mut reply = Message::response(self.id, OpCode::Query);
        reply.metadata.recursion_desired = self.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.metadata.checking_disabled = self.checking_disabled;
        reply.metadata.response_code = rcode;
        reply.add_query(self.question.clone());
        if let Some(client) = self.edns {
            reply.set_edns(our_edns(client.dnssec_ok));
        }
        reply
    }

    /// Encodes a reply without records, which cannot realistically fail; if
    /// it does anyway, a bare header still tells the client something.
    fn encode_or_bare(&self, reply: &Message) -> Vec<u8> {
        reply.to_vec().unwrap_or_else(|_| {
            let flags = u8::from(self.recursion_desired);
            bare_header(self.id, flags, reply.metadata.response_code)
        })
    }
}

/// A 12-byte response header with no sections: QR, RA and `rcode` set, the
/// ID and the opcode and RD bits of the query's third byte copied.
fn bare_header(id: u16, query_flags: u8, rcode: ResponseCode) -> Vec<u8> {
    let mut header = vec![0u8; HEADER_LEN];
    header[..2].copy_from_slice(&id.to_be_bytes());
    header[2] = 0x80 | (query_flags & 0x79);
    header[3] = 0x80 | (rcode.low() & 0x0f);
    header
}

fn our_edns(dnssec_ok: bool) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_version(0);
    edns.set_dnssec_ok(dnssec_ok);
    edns
}

fn aged(records: &[Record], age_secs: u32) -> Vec<Record> {
    records
        .iter()
        .map(|record| {
            let mut record = record.clone();
            record.decrement_ttl(age_secs);
            record
        })
        .collect()
}

/// The part of an upstream reply we keep and serve (from the cache or at
/// once): rcode and records, the upstream's OPT already gone.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    rcode: ResponseCode,
    authentic_data: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

/// Bounds on how long answers live, from the forwarder's options.
#[derive(Debug, Clone, Copy)]
pub(super) struct TtlLimits {
    pub(super) max_ttl: u32,
    pub(super) max_negative_ttl: u32,
}

impl Answer {
    /// An answer with no records, for errors we produce ourselves.
    pub(super) fn failure(rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            authentic_data: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// What to keep from an upstream reply, and for how many seconds it may
    /// be cached (`None`: do not cache). Record TTLs are clamped to that
    /// lifetime so clients never keep an answer longer than we would.
    ///
    /// `Err(rcode)` for replies that are no answer (SERVFAIL, REFUSED, ...):
    /// the caller tries the next upstream.
    pub(super) fn from_upstream(reply: Message, limits: TtlLimits) -> Result<(Answer, Option<u32>), ResponseCode> {
        let rcode = reply.metadata.response_code;
        if !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
            return Err(rcode);
        }
        let mut answer = Answer {
            rcode,
            authentic_data: reply.metadata.authentic_data,
            answers: reply.answers,
            authorities: reply.authorities,
            additionals: reply.additionals,
        };
        let lifetime = answer.lifetime(limits);
        if let Some(lifetime) = lifetime {
            for section in [&mut answer.answers, &mut answer.authorities, &mut answer.additionals] {
                for record in section.iter_mut() {
                    record.ttl = record.ttl.min(lifetime);
                }
            }
        }
        Ok((answer, lifetime))
    }

    /// Seconds this answer may be cached. Positive: the smallest answer TTL.
    /// Negative (NXDOMAIN, or NOERROR without answers: NODATA), RFC 2308: the
    /// SOA's TTL or its MINIMUM field, whichever is smaller; also bounded by
    /// any answer records (a CNAME chain ending in NXDOMAIN). No SOA, no
    /// caching: RFC 2308 section 5 says such answers SHOULD NOT be cached,
    /// since nothing bounds how long two caches could keep feeding each
    /// other the negative answer.
    fn lifetime(&self, limits: TtlLimits) -> Option<u32> {
        let smallest_answer_ttl = self.answers.iter().map(|record| record.ttl).min();
        let ttl = match (self.rcode, smallest_answer_ttl) {
            (ResponseCode::NoError, Some(ttl)) => ttl.min(limits.max_ttl),
            _ => {
                let negative = self.soa_negative_ttl()?.min(limits.max_negative_ttl);
                smallest_answer_ttl.map_or(negative, |ttl| ttl.min(negative))
            }
        };
        (ttl > 0).then_some(ttl)
    }

    fn soa_negative_ttl(&self) -> Option<u32> {
        self.authorities
            .iter()
            .filter_map(|record| match &record.data {
                RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
                _ => None,
            })
            .min()
    }
}

/// A query as sent to an upstream, with what its reply must match.
#[derive(Debug)]
pub(super) struct UpstreamQuery {
    id: u16,
    question: Query,
    bytes: Vec<u8>,
}

/// What a message received from an upstream is, for the query we sent.
#[derive(Debug)]
pub(super) enum ReplyCheck {
    /// The reply to our query.
    Reply(Box<Message>),
    /// Not for our query (wrong ID or question: late, or spoofed): ignore it
    /// and keep waiting.
    Foreign,
    /// Matches our query but cannot be read: this upstream failed.
    Malformed,
}

impl UpstreamQuery {
    /// The client's question, case-folded (so cached records carry one
    /// spelling whichever client asked first), with a fresh random ID, RD
    /// set, and EDNS with the client's DO bit. The client's CD is copied.
    pub(super) fn for_client(client: &ClientQuery) -> Result<UpstreamQuery, ProtoError> {
        let mut question = client.question.clone();
        question.set_name(question.name().to_lowercase());
        UpstreamQuery::new(question, client.dnssec_ok(), client.checking_disabled)
    }

    /// An HINFO query for `name`, as sent by the loop check.
    pub(super) fn probe(name: Name) -> Result<UpstreamQuery, ProtoError> {
        UpstreamQuery::new(Query::query(name, RecordType::HINFO), false, false)
    }

    fn new(question: Query, dnssec_ok: bool, checking_disabled: bool) -> Result<UpstreamQuery, ProtoError> {
        // A random ID (with the random source port the socket gets) is what
        // makes forging a reply hard.
        let id = rand::random::<u16>();
        let mut query = Message::query();
        query.metadata.id = id;
        query.metadata.recursion_desired = true;
        query.metadata.checking_disabled = checking_disabled;
        query.add_query(question.clone());
        query.set_edns(our_edns(dnssec_ok));
        let bytes = query.to_vec()?;
        Ok(UpstreamQuery { id, question, bytes })
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether `raw` answers this query: same ID, a response, and the same
    /// question (names compared case-insensitively, as some servers fold
    /// case). The header and question are checked before the rest is
    /// decoded, so only a message that matches can fail this upstream.
    pub(super) fn check_reply(&self, raw: &[u8]) -> ReplyCheck {
        let mut decoder = BinDecoder::new(raw);
        let Ok(header) = Header::read(&mut decoder) else {
            return ReplyCheck::Foreign;
        };
        if header.metadata.id != self.id || header.metadata.message_type != MessageType::Response {
            return ReplyCheck::Foreign;
        }
        match header.counts.queries {
            1 => match Query::read(&mut decoder) {
                Ok(question) if question == self.question => {}
                _ => return ReplyCheck::Foreign,
            },
            // Some servers drop the question from error replies; a failure
            // rcode with our ID is enough to move on to the next upstream.
            0 if !matches!(
                header.metadata.response_code,
                ResponseCode::NoError | ResponseCode::NXDomain
            ) => {}
            _ => return ReplyCheck::Foreign,
        }
        match Message::from_vec(raw) {
            Ok(reply) => ReplyCheck::Reply(Box::new(reply)),
            Err(_) => ReplyCheck::Malformed,
        }
    }
}

/// A query of our own for `name`/`rtype`, as if a client had asked: the
/// zone uses it to follow a CNAME out of the cluster zone.
pub(super) fn lookup_query(name: &str, rtype: u16) -> Option<Vec<u8>> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::from(rtype)));
    m.to_vec().ok()
}

/// The records of a reply that answer `name`: those owned by it, and by
/// each CNAME target on from it, as the zone's records. Anything else an
/// upstream put in the answer section is not passed on under our name, nor
/// are types the zone has no form for, nor names the zone could not write
/// back exactly (a dot, a backslash or an unprintable byte in a label).
pub(super) fn answer_records(reply: &[u8], name: &str) -> Vec<crate::zone::Record> {
    use crate::zone::RData as Z;
    let Ok(m) = Message::from_vec(reply) else {
        return Vec::new();
    };
    let mut wanted = name.trim_end_matches('.').to_ascii_lowercase();
    let mut out = Vec::new();
    for r in &m.answers {
        let Some(owner) = plain(&r.name) else { continue };
        if !owner.trim_end_matches('.').eq_ignore_ascii_case(&wanted) {
            continue;
        }
        let data = match &r.data {
            RData::A(a) => Z::A(a.0),
            RData::AAAA(a) => Z::Aaaa(a.0),
            RData::CNAME(n) => match plain(&n.0) {
                Some(target) => {
                    wanted = target.trim_end_matches('.').to_ascii_lowercase();
                    Z::Cname(target)
                }
                None => break,
            },
            RData::PTR(n) => match plain(&n.0) {
                Some(target) => Z::Ptr(target),
                None => continue,
            },
            RData::SRV(s) => match plain(&s.target) {
                Some(target) => Z::Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target,
                },
                None => continue,
            },
            _ => continue,
        };
        out.push(crate::zone::Record {
            name: owner,
            ttl: r.ttl,
            data,
        });
    }
    out
}

/// `name` as dotted text when every label is printable ASCII without a
/// dot or backslash, which is all the zone's writer can put back.
fn plain(name: &Name) -> Option<String> {
    let mut text = String::new();
    for label in name.iter() {
        if !label.iter().all(|b| b.is_ascii_graphic() && *b != b'.' && *b != b'\\') {
            return None;
        }
        text.extend(label.iter().map(|b| char::from(*b)));
        text.push('.');
    }
    if text.is_empty() {
        text.push('.');
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, CNAME};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn a_chase_keeps_the_chain_and_nothing_else() {
        let mut m = Message::response(1, OpCode::Query);
        let a =
            |owner: Name, ip: [u8; 4]| Record::from_rdata(owner, 60, RData::A(A::from(std::net::Ipv4Addr::from(ip))));
        m.add_answer(Record::from_rdata(
            name("Out.Example."),
            60,
            RData::CNAME(CNAME(name("cdn.example."))),
        ));
        m.add_answer(a(name("cdn.example."), [192, 0, 2, 1]));
        // Not on the chain: an upstream's extra must not go out as ours.
        m.add_answer(a(name("web.demo.svc.cluster.local."), [192, 0, 2, 66]));
        // A label only an escape could write.
        m.add_answer(a(Name::from_labels(vec![&b"a.b"[..]]).unwrap(), [192, 0, 2, 7]));
        let got: Vec<String> = answer_records(&m.to_vec().unwrap(), "out.example.")
            .iter()
            .map(|r| format!("{} {:?}", r.name, r.data))
            .collect();
        assert_eq!(
            got,
            vec!["Out.Example. Cname(\"cdn.example.\")", "cdn.example. A(192.0.2.1)"]
        );
    }
}
