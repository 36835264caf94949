//! The zone's answers, rule by rule of the specification.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use crate::zone::{Answer, ClusterZone, PodRecords, QueryType, RData, Rcode};

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "demo"}, "spec": spec})).unwrap()
}

fn slice(family: &str, ports: Value, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(
        json!({"metadata": {"name": "x"}, "addressType": family, "ports": ports, "endpoints": endpoints}),
    )
    .unwrap()
}

pub(crate) fn zone() -> ClusterZone {
    let mut z = ClusterZone::new("cluster.local", 5);
    z.set_service(
        &service(
            "web",
            json!({"clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10", "fd00:43::a"],
                   "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}, {"port": 9}]}),
        ),
        &[],
    );
    z.set_service(
        &service("v4only", json!({"clusterIP": "10.43.0.11", "ports": [{"port": 80}]})),
        &[],
    );
    let db = slice(
        "IPv4",
        json!([{"name": "sql", "port": 5432}]),
        json!([{"addresses": ["10.42.0.5"], "hostname": "db-0"},
               {"addresses": ["10.42.0.6"]},
               {"addresses": ["10.42.0.7"], "conditions": {"ready": false}}]),
    );
    z.set_service(
        &service(
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "sql", "port": 5432}]}),
        ),
        &[&db],
    );
    z.set_service(&service("empty", json!({"clusterIP": "None"})), &[]);
    z.set_service(
        &service(
            "upstream",
            json!({"type": "ExternalName", "externalName": "example.org"}),
        ),
        &[],
    );
    z
}

fn ask(name: &str, t: QueryType) -> Answer {
    zone().answer(name, t).expect("in the zone")
}

fn addresses(a: &Answer) -> Vec<IpAddr> {
    a.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(v4) => Some(IpAddr::V4(*v4)),
            RData::Aaaa(v6) => Some(IpAddr::V6(*v6)),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn cluster_ip_services_answer_per_family() {
    let a = ask("web.demo.svc.cluster.local.", QueryType::A);
    assert_eq!((a.rcode, addresses(&a)), (Rcode::NoError, vec![ip("10.43.0.10")]));
    assert_eq!(a.answers[0].ttl, 5);
    let aaaa = ask("web.demo.svc.cluster.local.", QueryType::Aaaa);
    assert_eq!(addresses(&aaaa), vec![ip("fd00:43::a")]);
    // An IPv4-only Service has the name but no AAAA: NODATA, with the SOA.
    let nodata = ask("v4only.demo.svc.cluster.local.", QueryType::Aaaa);
    assert_eq!((nodata.rcode, nodata.answers.len()), (Rcode::NoError, 0));
    assert!(matches!(nodata.authority[0].data, RData::Soa { minimum: 5, .. }));
}

#[test]
fn unknown_names_are_nxdomain_and_interior_names_nodata() {
    for name in ["nope.demo.svc.cluster.local.", "a.b.c.d.e.svc.cluster.local."] {
        let a = ask(name, QueryType::A);
        assert_eq!(a.rcode, Rcode::NxDomain, "{name}");
        assert!(matches!(a.authority[0].data, RData::Soa { .. }));
    }
    for name in ["demo.svc.cluster.local.", "svc.cluster.local.", "cluster.local."] {
        let a = ask(name, QueryType::A);
        assert_eq!((a.rcode, a.answers.len()), (Rcode::NoError, 0), "{name}");
    }
    assert!(
        zone().answer("example.org.", QueryType::A).is_none(),
        "not ours to answer"
    );
    let soa = ask("cluster.local.", QueryType::Soa);
    assert!(matches!(soa.answers[0].data, RData::Soa { .. }), "the apex has the SOA");
}

#[test]
fn answers_echo_the_query_spelling() {
    let a = ask("WeB.Demo.SVC.cluster.LOCAL", QueryType::A);
    assert_eq!(a.answers[0].name, "WeB.Demo.SVC.cluster.LOCAL.");
}

#[test]
fn named_ports_have_srv_records_with_their_addresses() {
    let a = ask("_http._tcp.web.demo.svc.cluster.local.", QueryType::Srv);
    assert_eq!(
        a.answers[0].data,
        RData::Srv {
            priority: 0,
            weight: 100,
            port: 80,
            target: "web.demo.svc.cluster.local.".into()
        }
    );
    let extra: Vec<IpAddr> = a
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(v4) => Some(IpAddr::V4(*v4)),
            RData::Aaaa(v6) => Some(IpAddr::V6(*v6)),
            _ => None,
        })
        .collect();
    assert_eq!(extra, vec![ip("10.43.0.10"), ip("fd00:43::a")]);
    let udp = ask("_dns._udp.web.demo.svc.cluster.local.", QueryType::Srv);
    assert!(matches!(udp.answers[0].data, RData::Srv { port: 53, .. }));
    assert_eq!(
        ask("_dns._tcp.web.demo.svc.cluster.local.", QueryType::Srv).rcode,
        Rcode::NxDomain,
        "the protocol is part of the name"
    );
    assert_eq!(
        ask("_http._tcp.web.demo.svc.cluster.local.", QueryType::A)
            .answers
            .len(),
        0,
        "the name exists, an A of it does not"
    );
}

#[test]
fn headless_services_answer_with_their_ready_endpoints() {
    let a = ask("db.demo.svc.cluster.local.", QueryType::A);
    assert_eq!(
        addresses(&a),
        vec![ip("10.42.0.6"), ip("10.42.0.5")],
        "not the unready one"
    );
    let one = ask("db-0.db.demo.svc.cluster.local.", QueryType::A);
    assert_eq!(addresses(&one), vec![ip("10.42.0.5")]);
    let dashed = ask("10-42-0-6.db.demo.svc.cluster.local.", QueryType::A);
    assert_eq!(addresses(&dashed), vec![ip("10.42.0.6")], "endpoints without hostname");
    assert_eq!(
        ask("10-42-0-7.db.demo.svc.cluster.local.", QueryType::A).rcode,
        Rcode::NxDomain
    );
    let srv = ask("_sql._tcp.db.demo.svc.cluster.local.", QueryType::Srv);
    let targets: Vec<String> = srv
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::Srv { target, port, .. } => format!("{target}:{port}"),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        targets,
        [
            "10-42-0-6.db.demo.svc.cluster.local.:5432",
            "db-0.db.demo.svc.cluster.local.:5432"
        ]
    );
    assert_eq!(srv.additionals.len(), 2);
    assert_eq!(
        ask("empty.demo.svc.cluster.local.", QueryType::A).rcode,
        Rcode::NxDomain,
        "no ready endpoint: no name"
    );
}

#[test]
fn external_names_are_cnames_and_the_version_is_announced() {
    let a = ask("upstream.demo.svc.cluster.local.", QueryType::A);
    assert_eq!(a.answers[0].data, RData::Cname("example.org.".into()));
    let v = ask("dns-version.cluster.local.", QueryType::Txt);
    assert_eq!(v.answers[0].data, RData::Txt("1.1.0".into()));
    let mut z = zone();
    z.remove_service("demo", "web");
    assert_eq!(
        z.answer("web.demo.svc.cluster.local.", QueryType::A).unwrap().rcode,
        Rcode::NxDomain
    );
}

#[test]
fn cluster_ips_and_endpoints_have_ptr_records_in_both_families() {
    let mut z = zone();
    let ptr = |z: &ClusterZone, name: &str| -> Option<Vec<RData>> {
        z.answer(name, QueryType::Ptr)
            .map(|a| a.answers.into_iter().map(|r| r.data).collect())
    };
    assert_eq!(
        ptr(&z, "10.0.43.10.in-addr.arpa."),
        Some(vec![RData::Ptr("web.demo.svc.cluster.local.".into())])
    );
    let v6 = "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(
        ptr(&z, v6),
        Some(vec![RData::Ptr("web.demo.svc.cluster.local.".into())])
    );
    assert_eq!(
        ptr(&z, "5.0.42.10.in-addr.arpa."),
        Some(vec![RData::Ptr("db-0.db.demo.svc.cluster.local.".into())]),
        "a headless endpoint points at its own name"
    );
    assert_eq!(ptr(&z, "9.9.9.9.in-addr.arpa."), None, "not an address of the zone");
    z.remove_service("demo", "web");
    assert_eq!(ptr(&z, "10.0.43.10.in-addr.arpa."), None, "gone with its Service");
}

#[test]
fn pod_records_in_each_mode() {
    let mut z = zone();
    let name = "10-42-0-9.demo.pod.cluster.local.";
    z.set_pod("demo", &[], &[ip("10.42.0.9")]);
    let a = z.answer(name, QueryType::A).unwrap();
    assert_eq!(
        addresses(&a),
        vec![ip("10.42.0.9")],
        "verified: a pod with that address"
    );
    assert_eq!(
        z.answer("10-42-0-9.other.pod.cluster.local.", QueryType::A)
            .unwrap()
            .rcode,
        Rcode::NxDomain,
        "verified: not in another namespace"
    );
    z.set_pod_records(PodRecords::Insecure);
    let any = z.answer("10-42-7-7.other.pod.cluster.local.", QueryType::A).unwrap();
    assert_eq!(addresses(&any), vec![ip("10.42.7.7")], "insecure: any well-formed name");
    let v6 = z.answer("fd00-42--9.demo.pod.cluster.local.", QueryType::Aaaa).unwrap();
    assert_eq!(addresses(&v6), vec![ip("fd00:42::9")]);
    z.set_pod_records(PodRecords::Disabled);
    assert_eq!(z.answer(name, QueryType::A).unwrap().rcode, Rcode::NxDomain);
    z.set_pod_records(PodRecords::Verified);
    z.set_pod("demo", &[ip("10.42.0.9")], &[]);
    assert_eq!(
        z.answer(name, QueryType::A).unwrap().rcode,
        Rcode::NxDomain,
        "gone with its pod"
    );
}

#[test]
fn an_external_name_in_the_zone_is_chased() {
    let mut z = zone();
    z.set_service(
        &service(
            "alias",
            json!({"type": "ExternalName", "externalName": "web.demo.svc.cluster.local"}),
        ),
        &[],
    );
    let a = z.answer("alias.demo.svc.cluster.local.", QueryType::A).unwrap();
    assert_eq!(a.answers[0].data, RData::Cname("web.demo.svc.cluster.local.".into()));
    assert_eq!(addresses(&a), vec![ip("10.43.0.10")]);
    assert_eq!(a.answers[1].name, "web.demo.svc.cluster.local.");
}

#[test]
fn external_name_chains_are_followed_and_loops_stop() {
    let mut z = zone();
    let alias = |name: &str, target: &str| service(name, json!({"type": "ExternalName", "externalName": target}));
    z.set_service(&alias("first", "second.demo.svc.cluster.local."), &[]);
    z.set_service(&alias("second", "web.demo.svc.cluster.local."), &[]);
    let a = z.answer("first.demo.svc.cluster.local.", QueryType::A).unwrap();
    let chain: Vec<(String, RData)> = a.answers.iter().map(|r| (r.name.clone(), r.data.clone())).collect();
    assert_eq!(
        chain,
        vec![
            (
                "first.demo.svc.cluster.local.".into(),
                RData::Cname("second.demo.svc.cluster.local.".into())
            ),
            (
                "second.demo.svc.cluster.local.".into(),
                RData::Cname("web.demo.svc.cluster.local.".into())
            ),
            (
                "web.demo.svc.cluster.local.".into(),
                RData::A("10.43.0.10".parse().unwrap())
            ),
        ]
    );
    z.set_service(&alias("ping", "pong.demo.svc.cluster.local"), &[]);
    z.set_service(&alias("pong", "PING.demo.svc.cluster.local"), &[]);
    let a = z.answer("ping.demo.svc.cluster.local.", QueryType::A).unwrap();
    assert_eq!(
        (a.rcode, a.answers.len()),
        (Rcode::NoError, 2),
        "a loop ends where it closes"
    );
    // A chain leaving the zone ends with the CNAME to the outside name.
    let a = z.answer("upstream.demo.svc.cluster.local.", QueryType::A).unwrap();
    assert_eq!(a.answers.len(), 1);
}

#[test]
fn duplicate_hostnames_share_a_name_and_pod_names_can_name_endpoints() {
    let endpoints = json!([
        {"addresses": ["10.42.0.21"], "hostname": "shard", "targetRef": {"kind": "Pod", "name": "db-a"}},
        {"addresses": ["10.42.0.22"], "hostname": "shard", "targetRef": {"kind": "Pod", "name": "db-b"}},
        {"addresses": ["10.42.0.23"], "targetRef": {"kind": "Pod", "name": "Worker-7"}}
    ]);
    let ports = json!([{"name": "sql", "port": 5432}]);
    let svc = service(
        "dup",
        json!({"clusterIP": "None", "ports": [{"name": "sql", "port": 5432}]}),
    );
    let s = slice("IPv4", ports.clone(), endpoints.clone());
    let mut z = zone();
    z.set_service(&svc, &[&s]);
    let shard = z.answer("shard.dup.demo.svc.cluster.local.", QueryType::A).unwrap();
    assert_eq!(addresses(&shard), vec![ip("10.42.0.21"), ip("10.42.0.22")]);
    let srv = z
        .answer("_sql._tcp.dup.demo.svc.cluster.local.", QueryType::Srv)
        .unwrap();
    assert_eq!(srv.answers.len(), 2, "one SRV per name, not per address");
    assert_eq!(srv.additionals.len(), 3, "with every address of each name");
    assert_eq!(
        addresses(
            &z.answer("10-42-0-23.dup.demo.svc.cluster.local.", QueryType::A)
                .unwrap()
        ),
        vec![ip("10.42.0.23")]
    );
    let mut named = ClusterZone::new("cluster.local", 5);
    named.set_endpoint_pod_names(true);
    named.set_service(&svc, &[&s]);
    let w = named
        .answer("worker-7.dup.demo.svc.cluster.local.", QueryType::A)
        .unwrap();
    assert_eq!(
        addresses(&w),
        vec![ip("10.42.0.23")],
        "endpoint_pod_names: the pod's name"
    );
    assert_eq!(
        named
            .answer("shard.dup.demo.svc.cluster.local.", QueryType::A)
            .unwrap()
            .answers
            .len(),
        2,
        "a hostname still wins over the pod name"
    );
}

#[test]
fn verified_pod_records_know_the_pods_behind_endpoints() {
    let mut z = zone();
    let name = "10-42-5-5.demo.pod.cluster.local.";
    assert_eq!(z.answer(name, QueryType::A).unwrap().rcode, Rcode::NxDomain);
    let backing = slice(
        "IPv4",
        json!([]),
        json!([{"addresses": ["10.42.5.5"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "p"}}]),
    );
    let svc = service("backed", json!({"clusterIP": "10.43.0.50"}));
    z.set_service(&svc, &[&backing]);
    assert_eq!(
        addresses(&z.answer(name, QueryType::A).unwrap()),
        vec![ip("10.42.5.5")],
        "a pod of another node, known by the Service it backs"
    );
    z.set_service(&service("also", json!({"clusterIP": "10.43.0.51"})), &[&backing]);
    z.remove_service("demo", "backed");
    assert_eq!(
        z.answer(name, QueryType::A).unwrap().rcode,
        Rcode::NoError,
        "still backs one"
    );
    z.remove_service("demo", "also");
    assert_eq!(z.answer(name, QueryType::A).unwrap().rcode, Rcode::NxDomain);
}
