//! Services written through the store, as a client sees them: what is
//! allocated, kept, refused and released.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{Allocator, Cidr, Network};
use crate::objects::{create, delete, patch, update, Part, PatchKind};
use crate::registry::{find, Resource};
use crate::status::ApiError;
use crate::store::{self, State};

fn services() -> &'static Resource {
    find("", "v1", "services").unwrap()
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

fn state_with(network: Network) -> State {
    let mut s = State::new(100, Allocator::new(network));
    for ns in ["default", "team"] {
        create(
            &mut s,
            find("", "v1", "namespaces").unwrap(),
            "",
            json!({"metadata":{"name":ns}}),
        )
        .unwrap();
    }
    s
}

fn state() -> State {
    state_with(Network::default())
}

fn svc(name: &str, spec: Value) -> Value {
    json!({"metadata":{"name":name},"spec":spec})
}

fn make(s: &mut State, name: &str, spec: Value) -> Result<Value, ApiError> {
    create(s, services(), "default", svc(name, spec))
}

fn merge(s: &mut State, name: &str, spec: Value) -> Result<Value, ApiError> {
    patch(
        s,
        services(),
        "default",
        name,
        PatchKind::Merge,
        &json!({"spec":spec}),
        Part::Main,
    )
    .map(|w| w.object)
}

fn node_ports(svc: &Value) -> Vec<u64> {
    svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["nodePort"].as_u64())
        .collect()
}

const HTTP: &str = r#"[{"name":"http","port":80}]"#;

fn http() -> Value {
    serde_json::from_str(HTTP).unwrap()
}

#[test]
fn a_service_gets_addresses_for_its_families() {
    let mut s = state();
    let single = make(&mut s, "single", json!({"ports":http()})).unwrap();
    let spec = &single["spec"];
    let ip: std::net::IpAddr = spec["clusterIP"].as_str().unwrap().parse().unwrap();
    assert!("10.43.0.0/16".parse::<Cidr>().unwrap().is_assignable(&ip), "{ip}");
    assert_eq!(spec["clusterIPs"], json!([ip.to_string()]));
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");

    let dual = make(
        &mut s,
        "dual",
        json!({"ipFamilyPolicy":"PreferDualStack","ports":http()}),
    )
    .unwrap();
    let ips = dual["spec"]["clusterIPs"].as_array().unwrap();
    assert_eq!(ips.len(), 2);
    assert!(ips[1].as_str().unwrap().starts_with("fd00:43::"), "{ips:?}");
    assert_eq!(dual["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));

    let v6 = make(&mut s, "v6", json!({"ipFamilies":["IPv6"],"ports":http()})).unwrap();
    assert!(v6["spec"]["clusterIP"].as_str().unwrap().starts_with("fd00:43::"));

    let headless = make(&mut s, "headless", json!({"clusterIP":"None","ports":http()})).unwrap();
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    let external = make(
        &mut s,
        "ext",
        json!({"type":"ExternalName","externalName":"example.org"}),
    )
    .unwrap();
    assert!(external["spec"].get("clusterIP").is_none());
    assert!(external["spec"].get("ipFamilies").is_none());
}

#[test]
fn requested_addresses_are_honoured_when_free_and_in_range() {
    let mut s = state();
    let got = make(&mut s, "a", json!({"clusterIP":"10.43.7.7","ports":http()})).unwrap();
    assert_eq!(got["spec"]["clusterIPs"], json!(["10.43.7.7"]));

    let err = make(&mut s, "b", json!({"clusterIP":"10.43.7.7","ports":http()})).unwrap_err();
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    assert_eq!(
        err.message,
        "Service \"b\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.43.7.7\"}: \
         failed to allocate IP 10.43.7.7: provided IP is already allocated"
    );
    let err = make(&mut s, "b", json!({"clusterIP":"10.43.0.1","ports":http()})).unwrap_err();
    assert!(
        err.message.ends_with("provided IP is already allocated"),
        "reserved: {}",
        err.message
    );
    for outside in ["10.44.0.5", "10.43.0.0", "fd00:43:1::5"] {
        let err = make(&mut s, "b", json!({"clusterIP":outside,"ports":http()})).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message.contains("is not in the valid range"),
            "{outside}: {}",
            err.message
        );
    }
    // Both fields, as new clients send them.
    let both = make(
        &mut s,
        "c",
        json!({"clusterIP":"10.43.9.9","clusterIPs":["10.43.9.9","fd00:43::99"],"ports":http()}),
    )
    .unwrap();
    assert_eq!(both["spec"]["ipFamilyPolicy"], "RequireDualStack");
    assert_eq!(both["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
}

#[test]
fn a_single_stack_cluster_refuses_to_require_dual_stack() {
    let mut s = state_with(Network::new(&cidrs(&["10.43.0.0/16"]), 30000..=32767).unwrap());
    let err = make(&mut s, "a", json!({"ipFamilyPolicy":"RequireDualStack","ports":http()})).unwrap_err();
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .ends_with("this cluster is not configured for dual-stack services"),
        "{}",
        err.message
    );
    let prefer = make(&mut s, "b", json!({"ipFamilyPolicy":"PreferDualStack","ports":http()})).unwrap();
    assert_eq!(prefer["spec"]["ipFamilies"], json!(["IPv4"]));
}

#[test]
fn a_tiny_cidr_runs_out_with_a_clear_error_and_refills_on_delete() {
    let mut s = state_with(Network::new(&cidrs(&["10.96.0.0/29"]), 30000..=32767).unwrap());
    // Eight addresses: not the network, broadcast or reserved first one.
    let mut got = HashSet::new();
    for i in 0..5 {
        let created = make(&mut s, &format!("s{i}"), json!({"ports":http()})).unwrap();
        got.insert(created["spec"]["clusterIP"].as_str().unwrap().to_string());
    }
    let want: HashSet<String> = (2..=6).map(|i| format!("10.96.0.{i}")).collect();
    assert_eq!(got, want);
    let err = make(&mut s, "s5", json!({"ports":http()})).unwrap_err();
    assert_eq!((err.code, err.reason), (500, "InternalError"));
    assert_eq!(
        err.message,
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    );
    // A headless Service needs no address.
    make(&mut s, "headless", json!({"clusterIP":"None"})).unwrap();
    delete(&mut s, services(), "default", "s2", &Value::Null).unwrap();
    make(&mut s, "s5", json!({"ports":http()})).unwrap();
}

#[test]
fn node_ports_come_from_the_range_and_requests_are_honoured() {
    let mut s = state_with(Network::new(&cidrs(&["10.43.0.0/16"]), 30000..=30009).unwrap());
    let two = make(
        &mut s,
        "two",
        json!({"type":"NodePort","ports":[{"name":"a","port":80},{"name":"b","port":443}]}),
    )
    .unwrap();
    let ports = node_ports(&two);
    assert_eq!(ports.len(), 2);
    assert!(
        ports.iter().all(|p| (30000..=30009).contains(p)) && ports[0] != ports[1],
        "{ports:?}"
    );
    assert_eq!(two["spec"]["externalTrafficPolicy"], "Cluster");

    // One number over two protocols shares a node port.
    let dns = make(
        &mut s,
        "dns",
        json!({"type":"NodePort","ports":[{"name":"t","port":53},{"name":"u","port":53,"protocol":"UDP"}]}),
    )
    .unwrap();
    let dns_ports = node_ports(&dns);
    assert_eq!(dns_ports[0], dns_ports[1]);

    let free = (30000..=30009)
        .find(|p| !ports.contains(p) && !dns_ports.contains(p))
        .unwrap();
    let asked = make(
        &mut s,
        "asked",
        json!({"type":"NodePort","ports":[{"port":80,"nodePort":free}]}),
    )
    .unwrap();
    assert_eq!(node_ports(&asked), [free]);
    let err = make(
        &mut s,
        "clash",
        json!({"type":"NodePort","ports":[{"port":80,"nodePort":free}]}),
    )
    .unwrap_err();
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        format!(
            "Service \"clash\" is invalid: spec.ports[0].nodePort: Invalid value: {free}: provided port is already allocated"
        )
    );
    let err = make(
        &mut s,
        "far",
        json!({"type":"NodePort","ports":[{"port":80,"nodePort":40000}]}),
    )
    .unwrap_err();
    assert!(
        err.message
            .ends_with("provided port is not in the valid range. The range of valid ports is 30000-30009"),
        "{}",
        err.message
    );

    // Six left of ten: a Service wanting seven does not fit, and takes none.
    let seven: Vec<Value> = (0..7)
        .map(|i| json!({"name":format!("p{i}"),"port":1000 + i}))
        .collect();
    let err = make(&mut s, "big", json!({"type":"NodePort","ports":seven})).unwrap_err();
    assert_eq!(
        err.message,
        "Internal error occurred: failed to allocate a nodePort: range is full"
    );
    let six: Vec<Value> = (0..6)
        .map(|i| json!({"name":format!("p{i}"),"port":1000 + i}))
        .collect();
    make(&mut s, "six", json!({"type":"NodePort","ports":six})).unwrap();
}

#[test]
fn load_balancers_get_node_ports_unless_they_opt_out_and_a_health_check_port_when_local() {
    let mut s = state();
    let lb = make(
        &mut s,
        "lb",
        json!({"type":"LoadBalancer","externalTrafficPolicy":"Local","ports":http()}),
    )
    .unwrap();
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    let hc = lb["spec"]["healthCheckNodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&hc));
    assert_ne!(node_ports(&lb), [hc]);

    let bare = make(
        &mut s,
        "bare",
        json!({"type":"LoadBalancer","allocateLoadBalancerNodePorts":false,"ports":http()}),
    )
    .unwrap();
    assert!(node_ports(&bare).is_empty());
    assert!(
        bare["spec"].get("healthCheckNodePort").is_none(),
        "Cluster policy: no health check port"
    );

    // Local to Cluster gives the health check port back.
    let cluster = merge(&mut s, "lb", json!({"externalTrafficPolicy":"Cluster"})).unwrap();
    assert!(cluster["spec"].get("healthCheckNodePort").is_none());
    let err = make(
        &mut s,
        "np",
        json!({"type":"NodePort","ports":[{"port":80,"nodePort":30000}],"healthCheckNodePort":30001}),
    )
    .unwrap_err();
    assert!(err.message.contains("spec.healthCheckNodePort"), "{}", err.message);
    make(
        &mut s,
        "takes-hc",
        json!({"type":"NodePort","ports":[{"port":80,"nodePort":hc}]}),
    )
    .unwrap();
}

#[test]
fn updates_keep_allocations_and_refuse_to_change_them() {
    let mut s = state();
    let created = make(&mut s, "web", json!({"type":"NodePort","ports":http()})).unwrap();
    let ip = created["spec"]["clusterIP"].clone();
    let port = node_ports(&created);

    // The manifest it came from, resubmitted with a change: allocations stay.
    let replaced = update(
        &mut s,
        services(),
        "default",
        "web",
        svc(
            "web",
            json!({"type":"NodePort","ports":http(),"selector":{"app":"web"}}),
        ),
        Part::Main,
    )
    .unwrap()
    .object;
    assert_eq!(replaced["spec"]["clusterIP"], ip);
    assert_eq!(node_ports(&replaced), port);

    let err = merge(
        &mut s,
        "web",
        json!({"clusterIP":"10.43.200.200","clusterIPs":["10.43.200.200"]}),
    )
    .unwrap_err();
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("spec.clusterIPs[0]: Invalid value:") && err.message.ends_with("may not change once set"),
        "{}",
        err.message
    );

    // NodePort to ClusterIP releases the node port: another Service can have it.
    let plain = merge(&mut s, "web", json!({"type":"ClusterIP"})).unwrap();
    assert!(node_ports(&plain).is_empty());
    assert!(plain["spec"].get("externalTrafficPolicy").is_none());
    make(
        &mut s,
        "other",
        json!({"type":"NodePort","ports":[{"port":80,"nodePort":port[0]}]}),
    )
    .unwrap();
    // And back: a new node port, the same address.
    let again = merge(&mut s, "web", json!({"type":"NodePort"})).unwrap();
    assert_eq!(node_ports(&again).len(), 1);
    assert_ne!(node_ports(&again), port);
    assert_eq!(again["spec"]["clusterIP"], ip);

    // Single to dual-stack and back.
    let dual = merge(&mut s, "web", json!({"ipFamilyPolicy":"PreferDualStack"})).unwrap();
    assert_eq!(dual["spec"]["clusterIPs"].as_array().unwrap().len(), 2);
    assert_eq!(dual["spec"]["clusterIPs"][0], ip);
    let single = merge(
        &mut s,
        "web",
        json!({"ipFamilyPolicy":"SingleStack","ipFamilies":["IPv4"],"clusterIPs":[ip]}),
    )
    .unwrap();
    assert_eq!(single["spec"]["clusterIPs"], json!([ip]));

    // To ExternalName and back: the address goes, a new one comes.
    let external = merge(
        &mut s,
        "web",
        json!({"type":"ExternalName","externalName":"example.org"}),
    )
    .unwrap();
    assert!(external["spec"].get("clusterIP").is_none() && node_ports(&external).is_empty());
    make(&mut s, "takes-ip", json!({"clusterIP":ip,"ports":http()})).unwrap();
}

#[test]
fn deletion_and_dry_runs_leave_nothing_held() {
    let mut s = state();
    let spec = json!({"type":"NodePort","clusterIP":"10.43.1.1","ports":[{"port":80,"nodePort":31000}]});
    let dry = create(&mut s.dry_run_copy(), services(), "default", svc("dry", spec.clone())).unwrap();
    assert_eq!(dry["spec"]["clusterIP"], "10.43.1.1");
    make(&mut s, "a", spec.clone()).unwrap();
    delete(&mut s, services(), "default", "a", &Value::Null).unwrap();
    make(&mut s, "b", spec.clone()).unwrap();
    // A Service in a namespace that goes away goes with it.
    delete(&mut s, services(), "default", "b", &Value::Null).unwrap();
    create(&mut s, services(), "team", svc("c", spec.clone())).unwrap();
    delete(&mut s, find("", "v1", "namespaces").unwrap(), "", "team", &Value::Null).unwrap();
    make(&mut s, "d", spec).unwrap();
}

#[test]
fn concurrent_creates_get_distinct_addresses() {
    let shared: store::Shared = Arc::new(Mutex::new(state()));
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let spec = json!({"type":"NodePort","ipFamilyPolicy":"PreferDualStack","ports":http()});
                let created = create(
                    &mut store::lock(&shared),
                    services(),
                    "default",
                    svc(&format!("s{i}"), spec),
                )
                .unwrap();
                created["spec"].clone()
            })
        })
        .collect();
    let specs: Vec<Value> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ips: HashSet<&str> = specs
        .iter()
        .flat_map(|s| s["clusterIPs"].as_array().unwrap())
        .map(|ip| ip.as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 400, "200 IPv4 and 200 IPv6 addresses, all different");
    let ports: HashSet<u64> = specs
        .iter()
        .map(|s| s["ports"][0]["nodePort"].as_u64().unwrap())
        .collect();
    assert_eq!(ports.len(), 200);
}
