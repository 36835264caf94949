//! The data set every server serves and the queries dnsperf replays against
//! each: N ClusterIP Services `svc-<i>` in ten namespaces `ns-<i % 10>`,
//! each with one named TCP port (`http`, 80) so that SRV has an answer.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const DOMAIN: &str = "cluster.local";
/// The record TTL netlet is configured with, and so the zone's SOA minimum
/// (the negative TTL), as netlet's zone has it.
pub const TTL: u32 = 5;
pub const NAMESPACES: usize = 10;
pub const PORT_NAME: &str = "http";
pub const PORT: u16 = 80;
/// ClusterIPs run from 10.43.1.1 to 10.43.254.250; 10.43.0.0/24 is left
/// to the cluster DNS address (10.43.0.10).
pub const MAX_SERVICES: usize = 254 * 250;

/// The `i`th Service of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service(pub usize);

impl Service {
    pub fn name(self) -> String {
        format!("svc-{}", self.0)
    }

    pub fn namespace(self) -> String {
        format!("ns-{}", self.0 % NAMESPACES)
    }

    pub fn cluster_ip(self) -> Ipv4Addr {
        assert!(
            self.0 < MAX_SERVICES,
            "Service {} is beyond the data set's addresses",
            self.0
        );
        Ipv4Addr::new(10, 43, (1 + self.0 / 250) as u8, (1 + self.0 % 250) as u8)
    }

    pub fn fqdn(self) -> String {
        format!("{}.{}.svc.{DOMAIN}.", self.name(), self.namespace())
    }

    pub fn srv_name(self) -> String {
        format!("_{PORT_NAME}._tcp.{}", self.fqdn())
    }

    /// Its A record, in zone-file syntax (as the DNS client prints it, too).
    pub fn a_record(self) -> String {
        format!("{} {TTL} IN A {}", self.fqdn(), self.cluster_ip())
    }

    pub fn srv_record(self) -> String {
        format!("{} {TTL} IN SRV 0 100 {PORT} {}", self.srv_name(), self.fqdn())
    }

    /// What a pod of another namespace asks first when it looks up
    /// `svc-<i>.ns-<j>`: with `ndots:5` its resolver walks the search path
    /// before trying the name as given, so the cluster DNS sees
    /// `svc-<i>.ns-<j>.<the pod's namespace>.svc.cluster.local.`, which
    /// does not exist.
    pub fn search_path_miss(self) -> String {
        let pods_namespace = (self.0 + 1) % NAMESPACES;
        format!("{}.{}.ns-{pods_namespace}.svc.{DOMAIN}.", self.name(), self.namespace())
    }
}

/// The zone's SOA; the same fields as netlet's (`dns::zone`), so that
/// negative answers compare equal.
pub fn soa_record() -> String {
    format!("{DOMAIN}. {TTL} IN SOA ns.dns.{DOMAIN}. hostmaster.{DOMAIN}. 1 7200 1800 86400 {TTL}")
}

/// The zone in zone-file syntax, one record a line with absolute owner
/// names, so that knot's zone file and unbound's `local-data` are made
/// from the same lines: the SOA, then an A and an SRV per Service.
pub fn zone_records(services: usize) -> Vec<String> {
    let mut out = vec![soa_record()];
    for s in (0..services).map(Service) {
        out.push(s.a_record());
        out.push(s.srv_record());
    }
    out
}

/// The kinds of query in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A for a Service: its ClusterIP.
    Address,
    /// AAAA for an IPv4-only Service: NOERROR without records (resolvers
    /// ask A and AAAA together).
    NoData,
    /// SRV for the named port.
    Srv,
    /// A for a search-path expansion: NXDOMAIN.
    SearchMiss,
}

/// The mix, in percent. Misses are frequent in real clusters because of
/// the search path; 20% keeps them visible without letting the cheaper
/// negative answers dominate.
pub const MIX: [(QueryKind, u32); 4] = [
    (QueryKind::Address, 60),
    (QueryKind::NoData, 10),
    (QueryKind::Srv, 10),
    (QueryKind::SearchMiss, 20),
];

impl QueryKind {
    /// The query's name and type (as dnsperf and dig spell the type).
    pub fn query(self, s: Service) -> (String, &'static str) {
        match self {
            QueryKind::Address => (s.fqdn(), "A"),
            QueryKind::NoData => (s.fqdn(), "AAAA"),
            QueryKind::Srv => (s.srv_name(), "SRV"),
            QueryKind::SearchMiss => (s.search_path_miss(), "A"),
        }
    }

    pub fn rcode(self) -> &'static str {
        match self {
            QueryKind::SearchMiss => "NXDOMAIN",
            _ => "NOERROR",
        }
    }

    /// The answer section a correct server gives; negative answers carry
    /// the zone's SOA in the authority section instead.
    pub fn answers(self, s: Service) -> Vec<String> {
        match self {
            QueryKind::Address => vec![s.a_record()],
            QueryKind::Srv => vec![s.srv_record()],
            QueryKind::NoData | QueryKind::SearchMiss => Vec::new(),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            QueryKind::Address => "A svc-<i>.ns-<j>.svc (NOERROR, the ClusterIP)",
            QueryKind::NoData => "AAAA svc-<i>.ns-<j>.svc (NOERROR, no data)",
            QueryKind::Srv => "SRV _http._tcp.svc-<i>.ns-<j>.svc (NOERROR)",
            QueryKind::SearchMiss => "A svc-<i>.ns-<j>.ns-<k>.svc, a search-path miss (NXDOMAIN)",
        }
    }
}

/// dnsperf's input file and what its answers should look like.
pub struct QueryFile {
    /// One query a line, `NAME TYPE`.
    pub text: String,
    pub lines: usize,
    /// The share of queries whose answer is NXDOMAIN.
    pub nxdomain_share: f64,
}

/// `lines` queries, kinds drawn by [`MIX`] and Services uniformly. The seed
/// is fixed: every server and every run gets the same file.
pub fn query_file(services: usize, lines: usize) -> QueryFile {
    let mut rng = StdRng::seed_from_u64(0x646e_7370);
    let mut text = String::with_capacity(lines * 48);
    let mut nxdomain = 0;
    for _ in 0..lines {
        let kind = pick(&mut rng);
        let (name, qtype) = kind.query(Service(rng.gen_range(0..services)));
        let _ = writeln!(text, "{name} {qtype}");
        nxdomain += usize::from(kind.rcode() == "NXDOMAIN");
    }
    QueryFile {
        text,
        lines,
        nxdomain_share: nxdomain as f64 / lines as f64,
    }
}

fn pick(rng: &mut StdRng) -> QueryKind {
    let mut roll = rng.gen_range(0..MIX.iter().map(|(_, p)| p).sum::<u32>());
    for (kind, percent) in MIX {
        if roll < percent {
            return kind;
        }
        roll -= percent;
    }
    unreachable!("the roll is below the sum of the weights")
}

/// The queries whose answers are compared across servers before measuring:
/// every kind, for the first, a middle and the last Service.
pub fn samples(services: usize) -> Vec<(QueryKind, Service)> {
    let mut picks = vec![0, services / 2, services - 1];
    picks.dedup();
    picks
        .into_iter()
        .flat_map(|i| MIX.iter().map(move |(kind, _)| (*kind, Service(i))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_have_distinct_addresses_outside_the_dns_block() {
        let last = Service(MAX_SERVICES - 1);
        assert_eq!(Service(0).cluster_ip(), Ipv4Addr::new(10, 43, 1, 1));
        assert_eq!(Service(250).cluster_ip(), Ipv4Addr::new(10, 43, 2, 1));
        assert_eq!(last.cluster_ip(), Ipv4Addr::new(10, 43, 254, 250));
        assert_eq!(Service(12).fqdn(), "svc-12.ns-2.svc.cluster.local.");
        assert_eq!(Service(12).srv_name(), "_http._tcp.svc-12.ns-2.svc.cluster.local.");
        assert_eq!(Service(12).search_path_miss(), "svc-12.ns-2.ns-3.svc.cluster.local.");
    }

    #[test]
    fn the_zone_has_the_soa_then_two_records_per_service() {
        let zone = zone_records(2);
        assert_eq!(zone.len(), 5);
        assert!(zone[0].starts_with("cluster.local. 5 IN SOA ns.dns.cluster.local. "));
        assert_eq!(zone[3], "svc-1.ns-1.svc.cluster.local. 5 IN A 10.43.1.2");
        assert_eq!(
            zone[4],
            "_http._tcp.svc-1.ns-1.svc.cluster.local. 5 IN SRV 0 100 80 svc-1.ns-1.svc.cluster.local."
        );
    }

    #[test]
    fn the_query_file_follows_the_mix_and_is_the_same_every_time() {
        let file = query_file(100, 20_000);
        assert_eq!(file.text, query_file(100, 20_000).text);
        assert_eq!(file.text.lines().count(), 20_000);
        assert!((file.nxdomain_share - 0.20).abs() < 0.01, "{}", file.nxdomain_share);
        let srv = file.text.lines().filter(|l| l.ends_with(" SRV")).count();
        assert!((1800..2200).contains(&srv), "{srv}");
    }

    #[test]
    fn samples_cover_every_kind_for_three_services() {
        let samples = samples(10);
        assert_eq!(samples.len(), 3 * MIX.len());
        assert_eq!(samples.last(), Some(&(QueryKind::SearchMiss, Service(9))));
        assert_eq!(super::samples(1).len(), MIX.len());
    }
}
