//! Services across nodes with real traffic: three "nodes" (network
//! namespaces on one bridge) routing pods natively, each with its own
//! agent doing Service load balancing on a cgroup of its own (where its
//! pods' clients run). A dual-stack Service with endpoints on nodes 0 and
//! 1 is reached from a pod on node 2 through its ClusterIPs, TCP and UDP,
//! both backends answering; `internalTrafficPolicy: Local` refuses on node
//! 2 (no endpoint there) and keeps node 0's clients on node 0's endpoint;
//! a NodePort on node 2 reached from outside (the bridge's namespace)
//! reaches the backends on the other nodes (SNAT through node 2, whose
//! address they see), while one on node 0 under `externalTrafficPolicy:
//! Local` is served by node 0's endpoint with the client's address kept,
//! and on node 2 (no endpoint) is dropped.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::{Child, Stdio};

use common::{Cluster, ClusterPod};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use serde_json::{json, Value};
use testbed::{ask, Cgroup, Netns, PinDir};

/// Where the pods answer with their name (TCP and UDP, both families).
const NAME_PORT: u16 = 8080;
/// Where the pods answer with their name and the client address they see.
const PEER_PORT: u16 = 9090;
/// How many connections may go by before both backends have answered.
const TRIES: usize = 60;
/// Connections of `answering` allowed to get no answer.
const MISSES_TOLERATED: usize = 3;

type Pod = ClusterPod;

/// socat servers in the pod answering "<name> <client address>" on
/// PEER_PORT, in both families; killed on drop.
struct PeerServers(Vec<Child>);

impl PeerServers {
    fn start(pod: &Pod) -> PeerServers {
        let answer = format!("SYSTEM:echo {} $SOCAT_PEERADDR", pod.name);
        let children = [
            format!("TCP4-LISTEN:{PEER_PORT},reuseaddr,fork"),
            format!("TCP6-LISTEN:{PEER_PORT},reuseaddr,fork,ipv6only=1"),
        ]
        .iter()
        .map(|listen| {
            pod.ns
                .command("socat")
                .args([listen.as_str(), answer.as_str()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
        PeerServers(children)
    }
}

impl Drop for PeerServers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The first word of each answer over up to TRIES fresh connections to
/// `target` (the first awaited for up to 10 s), stopping once every name
/// in `all` has answered. A connection that gets no name back is a miss;
/// a few are tolerated (a 1 s connect timeout on a loaded 2-core machine
/// is no verdict), a backend that cannot be reached makes many.
fn answering(ns: &Netns, cgroup: Option<&Cgroup>, target: &str, all: &[&str]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut misses = Vec::new();
    for i in 0..TRIES {
        let got = match i {
            0 => ask(ns, cgroup, target, |t| all.iter().any(|n| t.contains(n))),
            _ => testbed::exchange_once(testbed::socat_client(ns, cgroup, target)),
        };
        match got.split_whitespace().next().filter(|w| all.contains(w)) {
            Some(word) => {
                seen.insert(word.to_string());
            }
            None => misses.push(got.trim().to_string()),
        }
        if all.iter().all(|n| seen.contains(*n)) {
            break;
        }
    }
    assert!(
        misses.len() <= MISSES_TOLERATED,
        "{target}: no answer {} times: {misses:?}",
        misses.len()
    );
    seen
}

/// The client address a PEER_PORT answer names.
fn peer_of(answer: &str) -> Option<IpAddr> {
    let word = answer.split_whitespace().nth(1)?;
    word.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// A TCP socat target (`TCP4:a:p` / `TCP6:[a]:p`).
fn tcp(address: &str, port: u16) -> String {
    match address.contains(':') {
        true => format!("TCP6:[{address}]:{port},connect-timeout=1"),
        false => format!("TCP4:{address}:{port},connect-timeout=1"),
    }
}

fn udp(address: &str, port: u16) -> String {
    match address.contains(':') {
        true => format!("UDP6-SENDTO:[{address}]:{port}"),
        false => format!("UDP4-SENDTO:{address}:{port}"),
    }
}

/// An EndpointSlice of `service` with `(address, node)` endpoints.
fn slice(service: &str, name: &str, family: &str, endpoints: &[(String, &str)]) -> EndpointSlice {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(a, node)| json!({"addresses": [a], "conditions": {"ready": true}, "nodeName": node}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": family,
        "ports": [{"name": "http", "port": NAME_PORT, "protocol": "TCP"},
                  {"name": "dns", "port": NAME_PORT, "protocol": "UDP"},
                  {"name": "peer", "port": PEER_PORT, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

/// Creates Service `name` with `spec` over the Service ports and the
/// slices of `endpoints`; returns it as the API server made it.
fn create(cluster: &Cluster, name: &str, spec: Value, endpoints: &[(&Pod, &str)]) -> Service {
    let mut spec = spec;
    spec["ipFamilyPolicy"] = json!("RequireDualStack");
    spec["ports"] = json!([{"name": "http", "port": 80, "targetPort": NAME_PORT},
                           {"name": "dns", "port": 80, "targetPort": NAME_PORT, "protocol": "UDP"},
                           {"name": "peer", "port": 90, "targetPort": PEER_PORT}]);
    let service: Service = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    let v4: Vec<(String, &str)> = endpoints.iter().map(|(p, n)| (p.v4.to_string(), *n)).collect();
    let v6: Vec<(String, &str)> = endpoints.iter().map(|(p, n)| (p.v6.to_string(), *n)).collect();
    let slices = [
        slice(name, &format!("{name}-v4"), "IPv4", &v4),
        slice(name, &format!("{name}-v6"), "IPv6", &v6),
    ];
    cluster.api(|client| async move {
        let services = kube::Api::<Service>::namespaced(client.clone(), "default");
        let created = services.create(&PostParams::default(), &service).await.unwrap();
        let api = kube::Api::<EndpointSlice>::namespaced(client, "default");
        for s in &slices {
            api.create(&PostParams::default(), s).await.unwrap();
        }
        created
    })
}

fn cluster_ips(service: &Service) -> (String, String) {
    let ips = service.spec.as_ref().unwrap().cluster_ips.clone().unwrap();
    let v4 = ips.iter().find(|a| !a.contains(':')).unwrap().clone();
    let v6 = ips.iter().find(|a| a.contains(':')).unwrap().clone();
    (v4, v6)
}

/// The NodePort of the Service port named `port`.
fn node_port(service: &Service, port: &str) -> u16 {
    let ports = service.spec.as_ref().unwrap().ports.as_ref().unwrap();
    let p = ports.iter().find(|p| p.name.as_deref() == Some(port)).unwrap();
    u16::try_from(p.node_port.unwrap()).unwrap()
}

#[test]
fn services_reach_endpoints_on_other_nodes() {
    if !testbed::require_privileges("multinode services") {
        return;
    }
    let mut cluster = Cluster::new("mns", 3);
    let cgroups: Vec<Cgroup> = (0..3).map(|i| Cgroup::new(&format!("mns{i}")).unwrap()).collect();
    let pins: Vec<PinDir> = (0..3).map(|i| PinDir::new(&format!("mns{i}"))).collect();
    let kubeconfig = cluster.kubeconfig.clone();
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        let extra = json!({
            "routing": {"mode": "native"},
            "services": {"enabled": true, "cgroup": cgroups[i].path(), "pinDir": pins[i].path(), "mapEntries": 1024},
        });
        node.start_agent(&kubeconfig, &extra);
    }
    let pods: Vec<Pod> = (0..3)
        .map(|i| cluster.nodes[i].add_pod(&format!("mnspod{i}")))
        .collect();
    let _names: Vec<_> = pods
        .iter()
        .map(|p| testbed::serve(&p.ns, &p.name, &[NAME_PORT]))
        .collect();
    let _peers: Vec<PeerServers> = pods.iter().map(PeerServers::start).collect();
    let (n0, n1) = (cluster.nodes[0].name.clone(), cluster.nodes[1].name.clone());
    let both = [pods[0].name.as_str(), pods[1].name.as_str()];
    let endpoints = [(&pods[0], n0.as_str()), (&pods[1], n1.as_str())];

    // ClusterIP from a pod on node 2, whose endpoints are all elsewhere:
    // both answer, TCP and UDP, both families.
    let web = create(&cluster, "web", json!({"type": "NodePort"}), &endpoints);
    let (v4, v6) = cluster_ips(&web);
    let client = (&pods[2].ns, Some(&cgroups[2]));
    for target in [tcp(&v4, 80), tcp(&v6, 80), udp(&v4, 80), udp(&v6, 80)] {
        let seen = answering(client.0, client.1, &target, &both);
        assert_eq!(
            seen,
            both.iter().map(|s| s.to_string()).collect(),
            "{target} from node 2's pod"
        );
    }

    // internalTrafficPolicy: Local: refused on node 2, which has no
    // endpoint; node 0's clients get node 0's endpoint only.
    let local_in = create(
        &cluster,
        "local-in",
        json!({"type": "ClusterIP", "internalTrafficPolicy": "Local"}),
        &endpoints,
    );
    let (lv4, lv6) = cluster_ips(&local_in);
    let refused = |t: &str| t.contains("refused");
    for target in [tcp(&lv4, 80), tcp(&lv6, 80)] {
        let got = ask(client.0, client.1, &target, refused);
        assert!(refused(&got), "{target} from node 2 under iTP Local: {got}");
    }
    for target in [tcp(&lv4, 80), tcp(&lv6, 80), udp(&lv4, 80), udp(&lv6, 80)] {
        let mut seen = BTreeSet::new();
        for _ in 0..10 {
            let got = ask(&pods[0].ns, Some(&cgroups[0]), &target, |t| {
                both.iter().any(|n| t.contains(n))
            });
            seen.insert(got.trim().to_string());
        }
        assert_eq!(
            seen,
            BTreeSet::from([pods[0].name.clone()]),
            "{target} from node 0 under iTP Local"
        );
    }

    // The NodePort on node 2 from outside (externalTrafficPolicy: Cluster):
    // the backends on nodes 0 and 1 answer, TCP and UDP, both families.
    let outside = &cluster.link;
    let (node2_v4, node2_v6) = (cluster.nodes[2].v4.clone(), cluster.nodes[2].v6.clone());
    let (http, dns, peer) = (node_port(&web, "http"), node_port(&web, "dns"), node_port(&web, "peer"));
    for target in [
        tcp(&node2_v4, http),
        tcp(&node2_v6, http),
        udp(&node2_v4, dns),
        udp(&node2_v6, dns),
    ] {
        let seen = answering(outside, None, &target, &both);
        assert_eq!(
            seen,
            both.iter().map(|s| s.to_string()).collect(),
            "{target} from outside through node 2"
        );
    }
    // They see node 2's address: the flow was SNATed there, so that its
    // replies came back through node 2 for the reverse translation.
    for (target, node_address) in [(tcp(&node2_v4, peer), &node2_v4), (tcp(&node2_v6, peer), &node2_v6)] {
        let got = ask(outside, None, &target, |t| both.iter().any(|n| t.contains(n)));
        assert_eq!(peer_of(&got), node_address.parse().ok(), "{target}: {got}");
    }

    // externalTrafficPolicy: Local: node 2 has no endpoint and drops (no
    // answer, no refusal); node 0 serves with its own endpoint, and the
    // backend sees the client's own address.
    let local_ext = create(
        &cluster,
        "local-ext",
        json!({"type": "NodePort", "externalTrafficPolicy": "Local"}),
        &endpoints,
    );
    let (lhttp, lpeer) = (node_port(&local_ext, "http"), node_port(&local_ext, "peer"));
    let (node0_v4, node0_v6) = (cluster.nodes[0].v4.clone(), cluster.nodes[0].v6.clone());
    // Served on node 0 first, so the Service is in every node's maps.
    for target in [tcp(&node0_v4, lhttp), tcp(&node0_v6, lhttp)] {
        let mut seen = BTreeSet::new();
        for _ in 0..10 {
            seen.insert(
                ask(outside, None, &target, |t| both.iter().any(|n| t.contains(n)))
                    .trim()
                    .to_string(),
            );
        }
        assert_eq!(
            seen,
            BTreeSet::from([pods[0].name.clone()]),
            "{target}: eTP Local on node 0"
        );
    }
    for (target, client_address) in [
        (tcp(&node0_v4, lpeer), "192.168.77.254"),
        (tcp(&node0_v6, lpeer), "fd00:77::fe"),
    ] {
        let got = ask(outside, None, &target, |t| t.contains(pods[0].name.as_str()));
        assert_eq!(
            peer_of(&got),
            client_address.parse().ok(),
            "the client's address kept: {got}"
        );
    }
    for target in [tcp(&node2_v4, lhttp), tcp(&node2_v6, lhttp)] {
        let out = outside
            .command("socat")
            .args(["-T", "1", "-", &target])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success() && !text.contains("refused") && !both.iter().any(|n| text.contains(n)),
            "{target}: eTP Local without an endpoint on node 2 must drop: {text}"
        );
    }
}
