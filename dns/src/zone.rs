//! The authority for the cluster zone: Services and their EndpointSlices
//! turned into the answers the Kubernetes DNS-Based Service Discovery
//! specification (1.1.0) gives, with no wire format in sight: A/AAAA for
//! ClusterIPs (per family), the ready endpoints of headless Services and
//! their hostnames, SRV for named ports with the targets' addresses as
//! additional records, CNAME for ExternalName, the `dns-version` TXT, and
//! NXDOMAIN or NODATA (with the zone's SOA) exactly where the spec says.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::name::{parse, ZoneName};

/// CNAMEs an answer follows through ExternalNames in the zone.
const MAX_CHAIN: usize = 8;

/// The specification version `dns-version.<zone>` announces.
pub const SPEC_VERSION: &str = "1.1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    A,
    Aaaa,
    Cname,
    Srv,
    Txt,
    Ptr,
    Soa,
    Other(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Txt(String),
    Ptr(String),
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, absolute, spelled as the query spelled it.
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: Rcode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The zone's SOA on a negative answer (NXDOMAIN or NODATA).
    pub authority: Vec<Record>,
}

/// One endpoint address of a headless Service, with the name it answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    address: IpAddr,
    /// Its hostname, or one made from the address (`10-42-0-5`).
    hostname: String,
}

/// What the zone needs of one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceRecord {
    cluster_ips: ClusterIps,
    headless: bool,
    external_name: Option<String>,
    /// Named ports: (name, protocol in lower case) -> port number. For a
    /// headless Service, the endpoints' port of that name.
    ports: BTreeMap<(String, String), u16>,
    /// Ready endpoints (headless Services only).
    endpoints: Vec<Endpoint>,
    /// Addresses of the pods behind the Service's endpoints, ready or not.
    pod_addresses: BTreeSet<IpAddr>,
}

/// A Service's ClusterIPs (the API allows one per family), kept inline in
/// its record: reading them is then no extra trip to memory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClusterIps {
    ips: [IpAddr; 2],
    len: usize,
}

impl ClusterIps {
    fn new(from: &[IpAddr]) -> ClusterIps {
        let mut ips = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); 2];
        let len = from.len().min(2);
        ips[..len].copy_from_slice(&from[..len]);
        ClusterIps { ips, len }
    }

    fn as_slice(&self) -> &[IpAddr] {
        &self.ips[..self.len]
    }
}

/// A Service's `<name>.<namespace>`, lower case: the labels its DNS name
/// starts with. One string rather than two, because every query's lookup
/// reads the key it meets in the table, and each string is a trip to
/// memory (measured: a third of the lookup time was spent comparing
/// keys with two strings).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServiceKey(String);

impl ServiceKey {
    fn new(namespace: &str, name: &str) -> ServiceKey {
        let mut key = String::with_capacity(name.len() + 1 + namespace.len());
        key.push_str(name);
        key.push('.');
        key.push_str(namespace);
        key.make_ascii_lowercase();
        ServiceKey(key)
    }

    /// (namespace, name); neither holds a dot (both are DNS labels).
    fn parts(&self) -> (&str, &str) {
        let (name, ns) = self.0.split_once('.').unwrap_or((&self.0, ""));
        (ns, name)
    }
}

/// Which `<a-b-c-d>.<ns>.pod.<zone>` names exist (CoreDNS's `pods`
/// option, whose default is `verified` here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodRecords {
    /// None do.
    Disabled,
    /// Every well-formed one, pod or not (kube-dns' old behaviour).
    Insecure,
    /// Only those of a pod the zone knows in that namespace with that
    /// address.
    #[default]
    Verified,
}

/// The cluster zone's contents.
pub struct ClusterZone {
    domain: String,
    ttl: u32,
    // Hashed: looked up on every query, never walked in order.
    services: HashMap<ServiceKey, ServiceRecord>,
    /// Names each ClusterIP and headless endpoint address has, for PTR.
    reverse: BTreeMap<IpAddr, BTreeSet<String>>,
    pod_records: PodRecords,
    /// Name endpoints without a hostname after their pod (CoreDNS's
    /// `endpoint_pod_names`) rather than after their address.
    endpoint_pod_names: bool,
    /// (namespace, address) of the pods the zone knows: those of this
    /// node (`set_pod`) ...
    pods: BTreeSet<(String, IpAddr)>,
    /// ... and those behind any Service's endpoints, counted per Service
    /// naming them, which covers pods of other nodes that back a Service.
    endpoint_pods: BTreeMap<(String, IpAddr), usize>,
}

impl ClusterZone {
    /// An empty zone for `domain` (e.g. `cluster.local`) whose records
    /// live `ttl` seconds.
    pub fn new(domain: &str, ttl: u32) -> ClusterZone {
        ClusterZone {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            ttl,
            services: HashMap::new(),
            reverse: BTreeMap::new(),
            pod_records: PodRecords::default(),
            endpoint_pod_names: false,
            pods: BTreeSet::new(),
            endpoint_pods: BTreeMap::new(),
        }
    }

    /// Sets (or replaces) the records of `service` from its EndpointSlices.
    pub fn set_service(&mut self, service: &Service, slices: &[&EndpointSlice]) {
        let (Some(ns), Some(name)) = (service.metadata.namespace.clone(), service.metadata.name.clone()) else {
            return;
        };
        let Some(spec) = service.spec.as_ref() else {
            return;
        };
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let cluster_ips = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|a| a.parse().ok())
            .collect::<BTreeSet<IpAddr>>()
            .into_iter()
            .collect::<Vec<IpAddr>>();
        let cluster_ips = ClusterIps::new(&cluster_ips);
        let external_name = (spec.type_.as_deref() == Some("ExternalName"))
            .then(|| spec.external_name.clone())
            .flatten();
        let mut ports = BTreeMap::new();
        for p in spec.ports.iter().flatten() {
            let Some(port_name) = p.name.clone().filter(|n| !n.is_empty()) else {
                continue;
            };
            let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            let number = match headless {
                // The endpoints' port of the same name.
                true => slices
                    .iter()
                    .flat_map(|s| s.ports.iter().flatten())
                    .find(|sp| sp.name.as_deref() == Some(port_name.as_str()))
                    .and_then(|sp| sp.port),
                false => Some(p.port),
            };
            if let Some(n) = number.and_then(|n| u16::try_from(n).ok()) {
                ports.insert((port_name.to_ascii_lowercase(), protocol), n);
            }
        }
        let endpoints = match headless {
            true => ready_endpoints(slices, self.endpoint_pod_names),
            false => Vec::new(),
        };
        let record = ServiceRecord {
            cluster_ips,
            headless,
            external_name,
            ports,
            endpoints,
            pod_addresses: pod_addresses(slices),
        };
        self.remove_service(&ns, &name);
        let key = ServiceKey::new(&ns, &name);
        for (address, target) in self.pointers(&key, &record) {
            self.reverse.entry(address).or_default().insert(target);
        }
        for a in &record.pod_addresses {
            *self.endpoint_pods.entry((key.parts().0.to_string(), *a)).or_default() += 1;
        }
        self.services.insert(key, record);
    }

    /// Names endpoints without a hostname after their pod from now on
    /// (Services set later are named so; set it before filling the zone).
    pub fn set_endpoint_pod_names(&mut self, on: bool) {
        self.endpoint_pod_names = on;
    }

    pub fn set_pod_records(&mut self, mode: PodRecords) {
        self.pod_records = mode;
    }

    /// Sets the addresses of the pod `namespace`/`name` (for verified pod
    /// records), replacing what it had.
    pub fn set_pod(&mut self, namespace: &str, old: &[IpAddr], new: &[IpAddr]) {
        let ns = namespace.to_ascii_lowercase();
        for a in old {
            self.pods.remove(&(ns.clone(), *a));
        }
        for a in new {
            self.pods.insert((ns.clone(), *a));
        }
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// (namespace, name) of every Service in the zone, lower case.
    pub fn service_keys(&self) -> Vec<(String, String)> {
        self.services
            .keys()
            .map(|k| {
                let (ns, name) = k.parts();
                (ns.to_string(), name.to_string())
            })
            .collect()
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        let key = ServiceKey::new(namespace, name);
        let Some(old) = self.services.remove(&key) else {
            return;
        };
        for (address, target) in self.pointers(&key, &old) {
            if let Some(names) = self.reverse.get_mut(&address) {
                names.remove(&target);
                if names.is_empty() {
                    self.reverse.remove(&address);
                }
            }
        }
        for a in old.pod_addresses {
            let pod = (key.parts().0.to_string(), a);
            if let Some(n) = self.endpoint_pods.get_mut(&pod) {
                *n -= 1;
                if *n == 0 {
                    self.endpoint_pods.remove(&pod);
                }
            }
        }
    }

    /// The PTR records a Service brings: each ClusterIP to the Service's
    /// name, each headless endpoint to its own name.
    fn pointers(&self, key: &ServiceKey, s: &ServiceRecord) -> Vec<(IpAddr, String)> {
        let service_name = format!("{}.svc.{}.", key.0, self.domain);
        let mut out: Vec<(IpAddr, String)> = s
            .cluster_ips
            .as_slice()
            .iter()
            .map(|a| (*a, service_name.clone()))
            .collect();
        out.extend(
            s.endpoints
                .iter()
                .map(|e| (e.address, format!("{}.{service_name}", e.hostname))),
        );
        out
    }

    /// Whether `qname` is in the cluster zone (reverse names are not: the
    /// zone answers only those of addresses it knows).
    pub fn owns(&self, qname: &str) -> bool {
        parse(qname, &self.domain).is_some()
    }

    /// The answer to `qname`/`qtype`, or None when the name is not in the
    /// cluster zone (it is someone else's to answer).
    pub fn answer(&self, qname: &str, qtype: QueryType) -> Option<Answer> {
        let owner = absolute(qname);
        // Reverse names of addresses the zone knows; others are left to
        // whoever answers for the rest of the reverse tree.
        if let Some(address) = crate::name::reverse(qname) {
            let names = self.reverse.get(&address)?;
            return Some(match qtype {
                QueryType::Ptr => {
                    let records = names
                        .iter()
                        .map(|n| self.record(&owner, RData::Ptr(n.clone())))
                        .collect();
                    self.positive(records, vec![])
                }
                _ => self.nodata(),
            });
        }
        let answer = match parse(qname, &self.domain)? {
            ZoneName::Apex => match qtype {
                QueryType::Soa => self.positive(vec![self.soa()], vec![]),
                _ => self.nodata(),
            },
            ZoneName::Interior => self.nodata(),
            ZoneName::PodInterior => match self.pod_records {
                PodRecords::Disabled => self.nxdomain(),
                _ => self.nodata(),
            },
            ZoneName::Pod { namespace, address } => {
                let exists = match self.pod_records {
                    PodRecords::Disabled => false,
                    PodRecords::Insecure => true,
                    PodRecords::Verified => {
                        let pod = (namespace, address);
                        self.pods.contains(&pod) || self.endpoint_pods.contains_key(&pod)
                    }
                };
                match exists {
                    true => self.addresses(&owner, &[address], qtype),
                    false => self.nxdomain(),
                }
            }
            ZoneName::Unknown => self.nxdomain(),
            ZoneName::DnsVersion => match qtype {
                QueryType::Txt => self.positive(vec![self.record(&owner, RData::Txt(SPEC_VERSION.into()))], vec![]),
                _ => self.nodata(),
            },
            ZoneName::Service { namespace, service } => match self.services.get(&ServiceKey::new(&namespace, &service))
            {
                None => self.nxdomain(),
                Some(s) => self.service(&owner, s, qtype),
            },
            ZoneName::Endpoint {
                namespace,
                service,
                hostname,
            } => {
                let endpoints: Vec<IpAddr> = self
                    .services
                    .get(&ServiceKey::new(&namespace, &service))
                    .filter(|s| s.headless)
                    .map(|s| {
                        s.endpoints
                            .iter()
                            .filter(|e| e.hostname == hostname)
                            .map(|e| e.address)
                            .collect()
                    })
                    .unwrap_or_default();
                match endpoints.is_empty() {
                    true => self.nxdomain(),
                    false => self.addresses(&owner, &endpoints, qtype),
                }
            }
            ZoneName::Port {
                namespace,
                service,
                port,
                protocol,
            } => {
                let key = ServiceKey::new(&namespace, &service);
                match self
                    .services
                    .get(&key)
                    .and_then(|s| s.ports.get(&(port, protocol)).map(|p| (s, *p)))
                {
                    None => self.nxdomain(),
                    Some((s, number)) => match qtype {
                        QueryType::Srv => self.srv(&owner, s, number, &namespace, &service),
                        _ => self.nodata(),
                    },
                }
            }
        };
        Some(answer)
    }

    fn service(&self, owner: &str, s: &ServiceRecord, qtype: QueryType) -> Answer {
        if let Some(target) = &s.external_name {
            return self.alias(owner, target, qtype);
        }
        if s.headless {
            // No ready endpoint: the name does not exist (yet).
            if s.endpoints.is_empty() {
                return self.nxdomain();
            }
            let addresses: Vec<IpAddr> = s.endpoints.iter().map(|e| e.address).collect();
            return self.addresses(owner, &addresses, qtype);
        }
        self.addresses(owner, s.cluster_ips.as_slice(), qtype)
    }

    /// An ExternalName's CNAME, followed by what its target has when the
    /// target is in the zone: another ExternalName's CNAME (a chain, up to
    /// [`MAX_CHAIN`] links and never round a loop) or a Service's records.
    /// A target outside the zone is left for the client to resolve.
    fn alias(&self, owner: &str, target: &str, qtype: QueryType) -> Answer {
        let mut answers = vec![self.record(owner, RData::Cname(absolute(target)))];
        let mut seen = BTreeSet::from([owner.to_ascii_lowercase()]);
        let mut next = absolute(target);
        while answers.len() <= MAX_CHAIN && seen.insert(next.to_ascii_lowercase()) {
            let Some(ZoneName::Service { namespace, service }) = parse(&next, &self.domain) else {
                break;
            };
            let Some(s) = self.services.get(&ServiceKey::new(&namespace, &service)) else {
                break;
            };
            match &s.external_name {
                Some(t) => {
                    answers.push(self.record(&next, RData::Cname(absolute(t))));
                    next = absolute(t);
                }
                None => {
                    if let Answer {
                        rcode: Rcode::NoError,
                        answers: more,
                        ..
                    } = self.service(&next, s, qtype)
                    {
                        answers.extend(more);
                    }
                    break;
                }
            }
        }
        self.positive(answers, vec![])
    }

    /// A or AAAA records of those `addresses` of the asked family; NODATA
    /// when there are none or another type was asked.
    fn addresses(&self, owner: &str, addresses: &[IpAddr], qtype: QueryType) -> Answer {
        let records = address_records(addresses, qtype)
            .into_iter()
            .map(|d| self.record(owner, d))
            .collect::<Vec<_>>();
        match records.is_empty() {
            true => self.nodata(),
            false => self.positive(records, vec![]),
        }
    }

    /// SRV for a named port: the Service name for a ClusterIP Service, each
    /// ready endpoint's name for a headless one; their addresses follow as
    /// additional records.
    fn srv(&self, owner: &str, s: &ServiceRecord, port: u16, namespace: &str, service: &str) -> Answer {
        let service_name = format!("{service}.{namespace}.svc.{}.", self.domain);
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        if s.headless {
            let weight = u16::try_from(100 / s.endpoints.len().max(1)).unwrap_or(1).max(1);
            let mut targets: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
            for e in &s.endpoints {
                targets
                    .entry(format!("{}.{service_name}", e.hostname))
                    .or_default()
                    .push(e.address);
            }
            for (target, addresses) in targets {
                let srv = RData::Srv {
                    priority: 0,
                    weight,
                    port,
                    target: target.clone(),
                };
                answers.push(self.record(owner, srv));
                additionals.extend(self.all_addresses(&target, &addresses));
            }
        } else {
            let srv = RData::Srv {
                priority: 0,
                weight: 100,
                port,
                target: service_name.clone(),
            };
            answers.push(self.record(owner, srv));
            additionals.extend(self.all_addresses(&service_name, s.cluster_ips.as_slice()));
        }
        match answers.is_empty() {
            true => self.nxdomain(),
            false => self.positive(answers, additionals),
        }
    }

    fn all_addresses(&self, owner: &str, addresses: &[IpAddr]) -> Vec<Record> {
        [QueryType::A, QueryType::Aaaa]
            .into_iter()
            .flat_map(|t| address_records(addresses, t))
            .map(|d| self.record(owner, d))
            .collect()
    }

    fn record(&self, owner: &str, data: RData) -> Record {
        Record {
            name: owner.to_string(),
            ttl: self.ttl,
            data,
        }
    }

    fn positive(&self, answers: Vec<Record>, additionals: Vec<Record>) -> Answer {
        Answer {
            rcode: Rcode::NoError,
            answers,
            additionals,
            authority: Vec::new(),
        }
    }

    fn negative(&self, rcode: Rcode) -> Answer {
        Answer {
            rcode,
            answers: Vec::new(),
            additionals: Vec::new(),
            authority: vec![self.soa()],
        }
    }

    fn nxdomain(&self) -> Answer {
        self.negative(Rcode::NxDomain)
    }

    /// The name exists but has no records of the asked type.
    fn nodata(&self) -> Answer {
        self.negative(Rcode::NoError)
    }

    /// The zone's SOA; its minimum (the negative TTL) is the record TTL.
    fn soa(&self) -> Record {
        let zone = format!("{}.", self.domain);
        Record {
            name: zone.clone(),
            ttl: self.ttl,
            data: RData::Soa {
                mname: format!("ns.dns.{zone}"),
                rname: format!("hostmaster.{zone}"),
                serial: 1,
                refresh: 7200,
                retry: 1800,
                expire: 86400,
                minimum: self.ttl,
            },
        }
    }
}

fn absolute(name: &str) -> String {
    match name.ends_with('.') {
        true => name.to_string(),
        false => format!("{name}."),
    }
}

fn address_records(addresses: &[IpAddr], qtype: QueryType) -> Vec<RData> {
    addresses
        .iter()
        .filter_map(|a| match (a, qtype) {
            (IpAddr::V4(v4), QueryType::A) => Some(RData::A(*v4)),
            (IpAddr::V6(v6), QueryType::Aaaa) => Some(RData::Aaaa(*v6)),
            _ => None,
        })
        .collect()
}

/// The ready endpoints of all slices, each under its hostname or, without
/// one, its pod's name (with `pod_names`) or a name made from its address
/// (`10-42-0-5`, `fd00-42--5`).
fn ready_endpoints(slices: &[&EndpointSlice], pod_names: bool) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for slice in slices {
        for e in &slice.endpoints {
            if !e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true) {
                continue;
            }
            for address in e.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                let pod_name = e
                    .target_ref
                    .as_ref()
                    .filter(|r| pod_names && r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name.clone());
                let hostname = e
                    .hostname
                    .clone()
                    .or(pod_name)
                    .map(|h| h.to_ascii_lowercase())
                    .unwrap_or_else(|| address.to_string().replace(['.', ':'], "-"));
                out.push(Endpoint { address, hostname });
            }
        }
    }
    out.sort_by(|a, b| (&a.hostname, a.address).cmp(&(&b.hostname, b.address)));
    out.dedup();
    out
}

/// The addresses of every endpoint that is a pod, ready or not: a pod
/// exists while it is starting or terminating too.
fn pod_addresses(slices: &[&EndpointSlice]) -> BTreeSet<IpAddr> {
    slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.target_ref.as_ref().is_some_and(|r| r.kind.as_deref() == Some("Pod")))
        .flat_map(|e| &e.addresses)
        .filter_map(|a| a.parse().ok())
        .collect()
}
