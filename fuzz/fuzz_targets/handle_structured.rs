//! The request path on queries described rather than random: names spelled
//! from the zone's own words and addresses, compression pointers (anywhere,
//! or at the name itself: a loop), header counts that lie, OPT records of
//! every shape. Random bytes seldom spell `_http._tcp.web.demo.svc.cluster.local`
//! inside a well-formed header; this reaches the zone's answers and their
//! size limits. It also plays the upstream when a CNAME is chased out of
//! the zone: whatever records it sends must reach the client unchanged.

#![no_main]

use arbitrary::Arbitrary;
use dns::Transport;
use hickory_proto::rr::{rdata, Name as HName, RData as HData};
use libfuzzer_sys::fuzz_target;
use netlet_fuzz::{check_handle, handlers, upstream_reply, ADDRESSES};

#[derive(Arbitrary, Debug)]
struct Input {
    synced: bool,
    tcp: bool,
    message: Message,
    /// What the forwarder finds when the serving loop chases a CNAME out
    /// of the zone.
    upstream: Vec<UpstreamRecord>,
}

#[derive(Arbitrary, Debug)]
struct Message {
    id: u16,
    rd: bool,
    /// The bits a query leaves clear (AA, TC, RA, Z, AD, CD, RCODE), set.
    noise: u16,
    unusual: Option<Unusual>,
    question: Option<Question>,
    /// In the additional section, unless `counts` say otherwise.
    records: Vec<QueryRecord>,
    /// QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT when they lie; else the true ones.
    counts: Option<[u16; 4]>,
    trailing: Vec<u8>,
}

/// What makes a message no plain query.
#[derive(Arbitrary, Debug)]
enum Unusual {
    Response,
    Opcode(u8),
}

#[derive(Arbitrary, Debug)]
struct Question {
    name: Name,
    qtype: Type,
    qclass: Class,
}

#[derive(Arbitrary, Debug)]
enum Type {
    A,
    Aaaa,
    Srv,
    Ptr,
    Txt,
    Soa,
    Cname,
    Opt,
    Any,
    Other(u16),
}

#[derive(Arbitrary, Debug)]
enum Class {
    In,
    Chaos,
    Any,
    Other(u16),
}

#[derive(Arbitrary, Debug)]
struct Name {
    labels: Vec<Label>,
    end: End,
}

#[derive(Arbitrary, Debug)]
enum Label {
    Word(Word),
    /// The same in upper case: names match case-insensitively.
    Upper(Word),
    /// Any bytes, cut to 63: dots, spaces, non-ASCII, or empty (which ends
    /// the name early).
    Raw(Vec<u8>),
    /// A known address as a pod name (`10-42-0-5`, `fd00-42--5`).
    Dashed(Known),
    /// A known address as the labels of its reverse name (`5.0.42.10`).
    Reversed(Known),
}

/// One of [`ADDRESSES`].
#[derive(Arbitrary, Debug)]
struct Known(u8);

/// How a name ends.
#[derive(Arbitrary, Debug)]
enum End {
    Root,
    /// `demo.svc.cluster.local.`
    Namespace,
    /// `cluster.local.`
    Zone,
    /// `in-addr.arpa.` after a reversed IPv4 address, else `ip6.arpa.`
    Arpa,
    /// A compression pointer to any offset.
    Pointer(u16),
    /// A compression pointer to where this name starts.
    Loop,
    /// A lone length byte: reserved (0x40-0xbf), a pointer cut short
    /// (0xc0-0xff) or a label running off the end.
    Length(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Word {
    Web,
    Db,
    Db0,
    Mid,
    Many,
    Alias,
    LoopA,
    Upstream,
    Missing,
    Http,
    Dns,
    Sql,
    Tcp,
    Udp,
    Demo,
    Svc,
    Pod,
    DnsVersion,
    Cluster,
    Local,
    Example,
    Org,
}

#[derive(Arbitrary, Debug)]
enum QueryRecord {
    Opt {
        /// None: the root, as RFC 6891 wants.
        owner: Option<Name>,
        payload: u16,
        extended_rcode: u8,
        /// None: 0, the only one we speak.
        version: Option<u8>,
        flags: u16,
        options: Vec<(u16, Vec<u8>)>,
        /// RDLENGTH when it lies.
        rdlength: Option<u16>,
    },
    Other {
        owner: Name,
        rtype: u16,
        class: u16,
        ttl: u32,
        rdata: Vec<u8>,
        rdlength: Option<u16>,
    },
}

/// A record an upstream sent, any bytes in its names' labels.
#[derive(Arbitrary, Debug)]
struct UpstreamRecord {
    owner: UpstreamName,
    ttl: u32,
    data: UpstreamData,
}

#[derive(Arbitrary, Debug)]
enum UpstreamData {
    A([u8; 4]),
    Aaaa([u8; 16]),
    Cname(UpstreamName),
    Ptr(UpstreamName),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: UpstreamName,
    },
}

#[derive(Arbitrary, Debug)]
enum UpstreamName {
    /// `example.org.`, the target of the zone's ExternalName `upstream`.
    Target,
    Labels(Vec<Vec<u8>>),
}

impl UpstreamName {
    /// None for what hickory would not decode (labels over 63 bytes,
    /// names over 255).
    fn decoded(&self) -> Option<HName> {
        match self {
            UpstreamName::Target => HName::from_ascii("example.org.").ok(),
            UpstreamName::Labels(labels) => HName::from_labels(labels.iter().map(Vec::as_slice)).ok(),
        }
    }
}

impl UpstreamRecord {
    /// The record as the forwarder decodes it from the upstream's reply.
    fn decoded(&self) -> Option<hickory_proto::rr::Record> {
        let data = match &self.data {
            UpstreamData::A(a) => HData::A(rdata::A((*a).into())),
            UpstreamData::Aaaa(a) => HData::AAAA(rdata::AAAA((*a).into())),
            UpstreamData::Cname(n) => HData::CNAME(rdata::CNAME(n.decoded()?)),
            UpstreamData::Ptr(n) => HData::PTR(rdata::PTR(n.decoded()?)),
            UpstreamData::Srv {
                priority,
                weight,
                port,
                target,
            } => HData::SRV(rdata::SRV::new(*priority, *weight, *port, target.decoded()?)),
        };
        Some(hickory_proto::rr::Record::from_rdata(
            self.owner.decoded()?,
            self.ttl,
            data,
        ))
    }
}

impl Word {
    fn text(self) -> &'static str {
        match self {
            Word::Web => "web",
            Word::Db => "db",
            Word::Db0 => "db-0",
            Word::Mid => "mid",
            Word::Many => "many",
            Word::Alias => "alias",
            Word::LoopA => "loop-a",
            Word::Upstream => "upstream",
            Word::Missing => "missing",
            Word::Http => "_http",
            Word::Dns => "_dns",
            Word::Sql => "_sql",
            Word::Tcp => "_tcp",
            Word::Udp => "_udp",
            Word::Demo => "demo",
            Word::Svc => "svc",
            Word::Pod => "pod",
            Word::DnsVersion => "dns-version",
            Word::Cluster => "cluster",
            Word::Local => "local",
            Word::Example => "example",
            Word::Org => "org",
        }
    }
}

impl Known {
    fn address(&self) -> std::net::IpAddr {
        ADDRESSES[usize::from(self.0) % ADDRESSES.len()].parse().unwrap()
    }
}

impl Type {
    fn code(&self) -> u16 {
        match self {
            Type::A => 1,
            Type::Aaaa => 28,
            Type::Srv => 33,
            Type::Ptr => 12,
            Type::Txt => 16,
            Type::Soa => 6,
            Type::Cname => 5,
            Type::Opt => 41,
            Type::Any => 255,
            Type::Other(c) => *c,
        }
    }
}

impl Class {
    fn code(&self) -> u16 {
        match self {
            Class::In => 1,
            Class::Chaos => 3,
            Class::Any => 255,
            Class::Other(c) => *c,
        }
    }
}

/// A message being written; names need to know where they start.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn label(&mut self, bytes: &[u8]) {
        let bytes = &bytes[..bytes.len().min(63)];
        self.0.push(bytes.len() as u8);
        self.0.extend_from_slice(bytes);
    }

    fn labels(&mut self, dotted: &str) {
        dotted.split('.').for_each(|l| self.label(l.as_bytes()));
    }

    fn name(&mut self, name: &Name) {
        let start = self.0.len();
        for label in &name.labels {
            match label {
                Label::Word(w) => self.label(w.text().as_bytes()),
                Label::Upper(w) => self.label(w.text().to_ascii_uppercase().as_bytes()),
                Label::Raw(bytes) => self.label(bytes),
                Label::Dashed(k) => self.label(k.address().to_string().replace(['.', ':'], "-").as_bytes()),
                Label::Reversed(k) => match k.address() {
                    std::net::IpAddr::V4(a) => a
                        .octets()
                        .iter()
                        .rev()
                        .for_each(|o| self.label(o.to_string().as_bytes())),
                    std::net::IpAddr::V6(a) => {
                        for o in a.octets().iter().rev() {
                            self.label(format!("{:x}", o & 0xf).as_bytes());
                            self.label(format!("{:x}", o >> 4).as_bytes());
                        }
                    }
                },
            }
        }
        match name.end {
            End::Root => self.0.push(0),
            End::Namespace => self.labels("demo.svc.cluster.local."),
            End::Zone => self.labels("cluster.local."),
            End::Arpa => {
                let v4 = matches!(name.labels.last(), Some(Label::Reversed(k)) if k.address().is_ipv4());
                self.labels(if v4 { "in-addr.arpa." } else { "ip6.arpa." })
            }
            End::Pointer(to) => self.u16(0xc000 | to),
            End::Loop => self.u16(0xc000 | (start as u16 & 0x3fff)),
            End::Length(b) => self.0.push(b),
        }
    }

    fn record(&mut self, record: &QueryRecord) {
        let (rtype, class, ttl, rdata, rdlength) = match record {
            QueryRecord::Opt {
                owner,
                payload,
                extended_rcode,
                version,
                flags,
                options,
                rdlength,
            } => {
                match owner {
                    Some(name) => self.name(name),
                    None => self.0.push(0),
                }
                let ttl = u32::from_be_bytes([*extended_rcode, version.unwrap_or(0), (flags >> 8) as u8, *flags as u8]);
                let mut rdata = Vec::new();
                for (code, data) in options {
                    rdata.extend_from_slice(&code.to_be_bytes());
                    rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
                    rdata.extend_from_slice(data);
                }
                (41, *payload, ttl, rdata, rdlength)
            }
            QueryRecord::Other {
                owner,
                rtype,
                class,
                ttl,
                rdata,
                rdlength,
            } => {
                self.name(owner);
                (*rtype, *class, *ttl, rdata.clone(), rdlength)
            }
        };
        self.u16(rtype);
        self.u16(class);
        self.0.extend_from_slice(&ttl.to_be_bytes());
        self.u16(rdlength.unwrap_or(rdata.len() as u16));
        self.0.extend_from_slice(&rdata);
    }
}

impl Message {
    fn bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let (qr, opcode) = match self.unusual {
            None => (0, 0),
            Some(Unusual::Response) => (0x8000, 0),
            Some(Unusual::Opcode(op)) => (0, u16::from(op & 0xf) << 11),
        };
        let rd = if self.rd { 0x0100 } else { 0 };
        w.u16(self.id);
        w.u16(qr | opcode | rd | (self.noise & 0x06ff));
        let true_counts = [u16::from(self.question.is_some()), 0, 0, self.records.len() as u16];
        for count in self.counts.unwrap_or(true_counts) {
            w.u16(count);
        }
        if let Some(q) = &self.question {
            w.name(&q.name);
            w.u16(q.qtype.code());
            w.u16(q.qclass.code());
        }
        for record in &self.records {
            w.record(record);
        }
        w.0.extend_from_slice(&self.trailing);
        w.0
    }
}

fuzz_target!(|input: Input| {
    let handler = &handlers()[usize::from(!input.synced)];
    let transport = if input.tcp { Transport::Tcp } else { Transport::Udp };
    let upstream: Vec<_> = input.upstream.iter().filter_map(UpstreamRecord::decoded).collect();
    let upstream = upstream_reply(&upstream);
    let Some(reply) = check_handle(handler, &input.message.bytes(), transport, &upstream) else {
        return;
    };
    // What the forwarder passes on of a chased CNAME's records reaches the
    // client unchanged, after the zone's own, unless the reply had to be
    // truncated.
    if !reply.metadata.truncation {
        let passed = dns::forward::chased_records(&upstream, "example.org.");
        let sent = reply
            .answers
            .len()
            .checked_sub(passed.len())
            .expect("chased records dropped");
        for (got, want) in reply.answers[sent..].iter().zip(&passed) {
            let name = hickory_proto::rr::Name::from_ascii(&want.name).expect("a plain name");
            assert_eq!(
                (&got.name, got.ttl),
                (&name, want.ttl),
                "chased records changed on the way"
            );
        }
    }
});
