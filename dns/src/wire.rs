//! The DNS wire format of the serving path, written by hand: a query's
//! header, its one question and its EDNS OPT record in, a response built
//! straight from the zone's [`Answer`] out. This is the code every query
//! runs through, so it allocates only the reply and the question's text,
//! and it must not trust a single byte it reads (it is fuzzed).

use crate::zone::{Answer, QueryType, RData, Rcode, Record};

/// What this server advertises in EDNS and sends at most over UDP: the
/// size DNS Flag Day 2020 settled on, small enough never to fragment.
pub const UDP_PAYLOAD: u16 = 1232;
/// A UDP reply's limit when the client sent no EDNS (RFC 1035).
pub const CLASSIC_UDP: usize = 512;
/// A TCP reply's limit: what a two-byte length can say.
pub const TCP_MAX: usize = 65535;

const HEADER: usize = 12;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const MAX_NAME: usize = 255;

/// Response codes, with the numbers RFC 1035 and 6891 give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
    /// Extended (needs OPT): an EDNS version we do not speak.
    BadVers = 16,
}

impl From<Rcode> for ResponseCode {
    fn from(r: Rcode) -> Self {
        match r {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NxDomain,
        }
    }
}

/// A client's EDNS OPT record, as far as we honour it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The UDP payload the client can take (never below 512).
    pub payload: u16,
    pub version: u8,
}

/// A parsed query: its header fields, its one question, its EDNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    pub id: u16,
    /// Recursion desired: copied into the response.
    pub rd: bool,
    /// The question's name as text (`web.demo.svc.cluster.local.`), as
    /// spelled. None when a label holds a dot or a byte that is not
    /// printable ASCII: no name of the cluster zone does, so such a
    /// question is only ever forwarded, byte for byte.
    pub name: Option<String>,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
    /// The question section exactly as it arrived, to echo it.
    pub question: &'a [u8],
}

/// Why a message is not a query we can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Too short for a header, or itself a response: not answered at all
    /// (answering responses lets two servers bounce a packet forever).
    Ignore,
    /// Answered with this code, the header's ID echoed.
    Reply { id: u16, rd: bool, code: ResponseCode },
}

impl<'a> Query<'a> {
    pub fn parse(msg: &'a [u8]) -> Result<Query<'a>, Malformed> {
        if msg.len() < HEADER {
            return Err(Malformed::Ignore);
        }
        let id = u16::from_be_bytes([msg[0], msg[1]]);
        let flags = u16::from_be_bytes([msg[2], msg[3]]);
        if flags & 0x8000 != 0 {
            return Err(Malformed::Ignore);
        }
        let rd = flags & 0x0100 != 0;
        let fail = |code| Malformed::Reply { id, rd, code };
        if (flags >> 11) & 0xf != 0 {
            return Err(fail(ResponseCode::NotImp));
        }
        let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
        let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
        if qd != 1 || an != 0 || ns != 0 {
            return Err(fail(ResponseCode::FormErr));
        }
        let mut r = Reader { msg, at: HEADER };
        let (name, plain) = r.question_name().ok_or(fail(ResponseCode::FormErr))?;
        let qtype = r.u16().ok_or(fail(ResponseCode::FormErr))?;
        let qclass = r.u16().ok_or(fail(ResponseCode::FormErr))?;
        let question = &msg[HEADER..r.at];
        let mut edns = None;
        for _ in 0..ar {
            let record = r.record().ok_or(fail(ResponseCode::FormErr))?;
            if record.rtype != TYPE_OPT {
                continue;
            }
            // One OPT, owned by the root (RFC 6891 6.1.1).
            if edns.is_some() || !record.root_owner {
                return Err(fail(ResponseCode::FormErr));
            }
            edns = Some(Edns {
                payload: record.class.max(CLASSIC_UDP as u16),
                version: (record.ttl >> 16) as u8,
            });
        }
        Ok(Query {
            id,
            rd,
            name: plain.then_some(name),
            qtype,
            qclass,
            edns,
            question,
        })
    }

    pub fn query_type(&self) -> QueryType {
        QueryType::from_code(self.qtype)
    }

    /// The largest reply this client takes over UDP.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.payload.min(UDP_PAYLOAD)),
            None => CLASSIC_UDP,
        }
    }
}

impl QueryType {
    pub fn from_code(code: u16) -> QueryType {
        match code {
            1 => QueryType::A,
            28 => QueryType::Aaaa,
            5 => QueryType::Cname,
            33 => QueryType::Srv,
            16 => QueryType::Txt,
            12 => QueryType::Ptr,
            6 => QueryType::Soa,
            other => QueryType::Other(other),
        }
    }

    pub fn code(self) -> u16 {
        match self {
            QueryType::A => 1,
            QueryType::Aaaa => 28,
            QueryType::Cname => 5,
            QueryType::Srv => 33,
            QueryType::Txt => 16,
            QueryType::Ptr => 12,
            QueryType::Soa => 6,
            QueryType::Other(c) => c,
        }
    }
}

struct RawRecord {
    root_owner: bool,
    rtype: u16,
    class: u16,
    ttl: u32,
}

/// A cursor over a message that never reads past its end.
struct Reader<'a> {
    msg: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let bytes = self.msg.get(self.at..end)?;
        self.at = end;
        Some(bytes)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The question's name as text and whether it is plain (see
    /// [`Query::name`]). Compression is refused here: the question is the
    /// first name of the message, so there is nothing earlier to point at.
    fn question_name(&mut self) -> Option<(String, bool)> {
        let mut text = String::new();
        let mut plain = true;
        let mut wire_len = 0usize;
        loop {
            let len = usize::from(*self.take(1)?.first()?);
            wire_len += len + 1;
            if len & 0xc0 != 0 || wire_len > MAX_NAME {
                return None;
            }
            if len == 0 {
                break;
            }
            let label = self.take(len)?;
            plain &= label.iter().all(|&b| b.is_ascii_graphic() && b != b'.');
            text.extend(label.iter().map(|&b| char::from(b)));
            text.push('.');
        }
        if text.is_empty() {
            text.push('.');
        }
        Some((text, plain))
    }

    /// Steps over a name anywhere in the message, following no pointer
    /// (a pointer ends a name), so a compression loop cannot trap us.
    fn skip_name(&mut self) -> Option<bool> {
        let mut root = true;
        loop {
            let len = *self.take(1)?.first()?;
            match len & 0xc0 {
                0xc0 => {
                    self.take(1)?;
                    return Some(false);
                }
                0 if len == 0 => return Some(root),
                0 => {
                    root = false;
                    self.take(usize::from(len))?;
                }
                _ => return None,
            }
        }
    }

    fn record(&mut self) -> Option<RawRecord> {
        let root_owner = self.skip_name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let ttl = self.u32()?;
        let len = self.u16()?;
        self.take(usize::from(len))?;
        Some(RawRecord {
            root_owner,
            rtype,
            class,
            ttl,
        })
    }
}

/// A response being written: header, the query's question, then records,
/// with names compressed against those already written.
pub struct Response {
    buf: Vec<u8>,
    /// Every name suffix written: its offset in the message and where its
    /// text (no final dot) lies in `texts`, to point back at. One buffer
    /// for all the texts keeps this to one allocation per reply.
    suffixes: Vec<(u16, std::ops::Range<usize>)>,
    texts: String,
    counts: [u16; 3],
    /// The whole code: its low four bits are in the header, the rest
    /// goes in OPT.
    code: ResponseCode,
}

/// The sections a record can go in.
#[derive(Clone, Copy)]
enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

impl Response {
    /// The header and question of a reply to `q`, answering for the zone
    /// when `authoritative`.
    pub fn new(q: &Query, code: ResponseCode, authoritative: bool) -> Response {
        let mut buf = Vec::with_capacity(HEADER + q.question.len() + 128);
        let aa = if authoritative { 0x0400 } else { 0 };
        let rd = if q.rd { 0x0100 } else { 0 };
        // QR, AA, RD as asked, RA: we answer every name, forwarding others.
        let flags = 0x8000 | aa | rd | 0x0080 | (code as u16 & 0xf);
        buf.extend_from_slice(&q.id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(q.question);
        let mut r = Response {
            buf,
            suffixes: Vec::with_capacity(16),
            texts: String::with_capacity(256),
            counts: [0; 3],
            code,
        };
        if let Some(name) = &q.name {
            let name = name.trim_end_matches('.');
            let mut at = HEADER;
            for (start, label) in labels(name) {
                r.remember(at, &name[start..]);
                at += label.len() + 1;
            }
        }
        r
    }

    /// Notes that the name `suffix` starts at `at`, while a pointer can
    /// still reach it (14 bits).
    fn remember(&mut self, at: usize, suffix: &str) {
        if let Ok(at) = u16::try_from(at) {
            if at < 0x4000 {
                let start = self.texts.len();
                self.texts.push_str(suffix);
                self.suffixes.push((at, start..self.texts.len()));
            }
        }
    }

    fn written(&self, suffix: &str) -> Option<u16> {
        self.suffixes
            .iter()
            .find(|(_, range)| &self.texts[range.clone()] == suffix)
            .map(|(at, _)| *at)
    }

    /// The whole reply to `q` from the zone's `answer`, within `limit`
    /// bytes: additional records are dropped first (RFC 2181 9), and if
    /// the rest still does not fit the reply is truncated to its question
    /// with TC set, so the client asks again over TCP.
    pub fn from_answer(q: &Query, answer: &Answer, limit: usize) -> Vec<u8> {
        let code = ResponseCode::from(answer.rcode);
        let sections = [
            (Section::Answer, &answer.answers),
            (Section::Authority, &answer.authority),
            (Section::Additional, &answer.additionals),
        ];
        let mut r = Response::new(q, code, true);
        for (section, records) in sections {
            for record in records.iter() {
                r.record(section, record);
            }
        }
        if r.finish(q).len() <= limit {
            return r.buf;
        }
        let mut r = Response::new(q, code, true);
        for (section, records) in &sections[..2] {
            for record in records.iter() {
                r.record(*section, record);
            }
        }
        if r.finish(q).len() <= limit {
            return r.buf;
        }
        let mut r = Response::new(q, code, true);
        r.buf[2] |= 0x02;
        r.finish(q).to_vec()
    }

    /// A reply with no records: errors, and REFUSED.
    pub fn empty(q: &Query, code: ResponseCode) -> Vec<u8> {
        Response::new(q, code, false).finish(q).to_vec()
    }

    /// A reply to a message that could not be parsed beyond its header:
    /// no question to echo.
    pub fn bare(id: u16, rd: bool, code: ResponseCode) -> Vec<u8> {
        let rd = if rd { 0x0100u16 } else { 0 };
        let flags = 0x8000 | rd | 0x0080 | (code as u16 & 0xf);
        let mut buf = Vec::with_capacity(HEADER);
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0; 8]);
        buf
    }

    /// Appends our OPT when the client sent one (the extended rcode
    /// bits go in it) and writes the counts.
    fn finish(&mut self, q: &Query) -> &[u8] {
        let mut additional = self.counts[2];
        if q.edns.is_some() {
            let extended = u32::from(self.code as u16 >> 4);
            self.buf.push(0);
            self.buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
            self.buf.extend_from_slice(&UDP_PAYLOAD.to_be_bytes());
            self.buf.extend_from_slice(&(extended << 24).to_be_bytes());
            self.buf.extend_from_slice(&[0, 0]);
            additional += 1;
        }
        self.buf[6..8].copy_from_slice(&self.counts[0].to_be_bytes());
        self.buf[8..10].copy_from_slice(&self.counts[1].to_be_bytes());
        self.buf[10..12].copy_from_slice(&additional.to_be_bytes());
        &self.buf
    }

    fn record(&mut self, section: Section, record: &Record) {
        self.name(&record.name, true);
        let rtype = match &record.data {
            RData::A(_) => QueryType::A,
            RData::Aaaa(_) => QueryType::Aaaa,
            RData::Cname(_) => QueryType::Cname,
            RData::Srv { .. } => QueryType::Srv,
            RData::Txt(_) => QueryType::Txt,
            RData::Ptr(_) => QueryType::Ptr,
            RData::Soa { .. } => QueryType::Soa,
        };
        self.buf.extend_from_slice(&rtype.code().to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&record.ttl.to_be_bytes());
        let length_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        match &record.data {
            RData::A(a) => self.buf.extend_from_slice(&a.octets()),
            RData::Aaaa(a) => self.buf.extend_from_slice(&a.octets()),
            RData::Cname(n) | RData::Ptr(n) => self.name(n, true),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                for v in [priority, weight, port] {
                    self.buf.extend_from_slice(&v.to_be_bytes());
                }
                // RFC 2782: the target is never compressed.
                self.name(target, false);
            }
            RData::Txt(t) => {
                for chunk in t.as_bytes().chunks(255) {
                    self.buf.push(chunk.len() as u8);
                    self.buf.extend_from_slice(chunk);
                }
                if t.is_empty() {
                    self.buf.push(0);
                }
            }
            RData::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => {
                self.name(mname, true);
                self.name(rname, true);
                for v in [serial, refresh, retry, expire, minimum] {
                    self.buf.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        let length = (self.buf.len() - length_at - 2) as u16;
        self.buf[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
        self.counts[section as usize] += 1;
    }

    /// Writes `name` (absolute, dotted), pointing at the longest suffix
    /// already written with the same spelling when `compress`.
    fn name(&mut self, name: &str, compress: bool) {
        let name = name.trim_end_matches('.');
        let mut at = self.buf.len();
        for (start, label) in labels(name) {
            let suffix = &name[start..];
            if compress {
                if let Some(offset) = self.written(suffix) {
                    self.buf.extend_from_slice(&(0xc000 | offset).to_be_bytes());
                    return;
                }
            }
            self.remember(at, suffix);
            let label = &label.as_bytes()[..label.len().min(63)];
            self.buf.push(label.len() as u8);
            self.buf.extend_from_slice(label);
            at += label.len() + 1;
        }
        self.buf.push(0);
    }
}

/// The labels of a dotted name (no final dot) with where each starts.
fn labels(name: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = 0;
    name.split('.').filter_map(move |label| {
        let at = start;
        start += label.len() + 1;
        (!label.is_empty()).then_some((at, label))
    })
}
