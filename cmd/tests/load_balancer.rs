//! LoadBalancer Services on a single node with no cloud, through the
//! agent: with `services.loadBalancerPools` set, a LoadBalancer Service
//! gets one address per family in its status; a client in an "outside"
//! namespace on the node's link resolves them by ARP and NDP to the node's
//! MAC and reaches the Service over TCP in both families; a second Service
//! asking for an address already taken gets none and an error in
//! `netlet services` and the metrics, while the first keeps serving; a
//! deleted Service's addresses are no longer answered for and go to the
//! next Service; a restarted agent keeps the allocations the statuses show.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, PostParams};
use serde_json::{json, Value};
use testbed::{Cgroup, Netns};

/// IPv4 .200 and .201; IPv6 ::201 to ::203 (a CIDR's first address is
/// left out). Both on the node's link (192.0.2.0/24, fd00:ffff::/64).
const POOLS: [&str; 2] = ["192.0.2.200-192.0.2.201", "fd00:ffff::200/126"];

fn load_balancer(name: &str, families: &[&str], annotation: Option<&str>) -> Service {
    let policy = match families.len() {
        1 => "SingleStack",
        _ => "RequireDualStack",
    };
    let annotations = annotation.map(|a| json!({"netlet.io/loadBalancerIPs": a}));
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "type": "LoadBalancer", "ipFamilyPolicy": policy, "ipFamilies": families,
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }))
    .unwrap()
}

fn slice(service: &str, family: &str, address: &str) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{service}-{}", family.to_lowercase()), "labels": {"kubernetes.io/service-name": service}},
        "addressType": family,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}, "nodeName": NODE}],
    }))
    .unwrap()
}

/// `status.loadBalancer.ingress` of Service `name` as (ip, ipMode), once it
/// has `count` entries (or whatever it has after 10 s).
fn ingress(bed: &Bed, name: &str, count: usize) -> Vec<(String, String)> {
    let (services, _) = bed.default_apis();
    let mut got = Vec::new();
    eventually(Duration::from_secs(10), || {
        let service = bed.rt.block_on(services.get_status(name)).unwrap();
        got = service
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.ip.unwrap_or_default(), i.ip_mode.unwrap_or_default()))
            .collect();
        got.len() == count
    });
    got
}

fn vip(ips: &[&str]) -> Vec<(String, String)> {
    ips.iter().map(|ip| (ip.to_string(), "VIP".to_string())).collect()
}

/// `netlet services` against this bed's agent: as JSON, or the table.
fn netlet_services(bed: &Bed, json: bool) -> String {
    let mut cmd = std::process::Command::new(NETLET);
    cmd.arg("services");
    if json {
        cmd.args(["-o", "json"]);
    }
    let out = cmd.arg("--socket").arg(bed.admin_socket()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Service `name`'s entry in `netlet services -o json`.
fn reported(bed: &Bed, name: &str) -> Value {
    let all: Value = serde_json::from_str(&netlet_services(bed, true)).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|s| s["namespace"] == "default" && s["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The MAC `ns` has for `address` on `device`, resolving it first (a ping
/// that need not be answered: the address is resolved before it is sent);
/// None when nothing answers. Entries from before are flushed.
fn resolve(ns: &Netns, device: &str, address: &str) -> Option<String> {
    ns.exec(&["ip", "neigh", "flush", "dev", device]);
    ns.exec(&["ping", "-c", "1", "-W", "1", address]);
    let out = ns.exec(&["ip", "-j", "neigh", "show", address, "dev", device]);
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    entries[0]["lladdr"].as_str().map(str::to_string)
}

fn mac_of(ns: &Netns, device: &str) -> String {
    let out = ns.exec(&["ip", "-j", "link", "show", device]);
    let links: Value = serde_json::from_slice(&out.stdout).unwrap();
    links[0]["address"].as_str().unwrap().to_string()
}

/// The value of the metrics line starting with `series`.
fn metric(bed: &Bed, series: &str) -> Option<f64> {
    let page = bed.metrics();
    let value = page.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok());
    value
}

#[test]
fn load_balancer_ips_are_allocated_announced_and_released() {
    if !testbed::require_privileges("load_balancer_ips_are_allocated_announced_and_released") {
        return;
    }
    let NodeWithOutside {
        wire: _wire,
        outside,
        node,
    } = NodeWithOutside::new("lbn", "lbo");
    let cgroup = Cgroup::new("lbc").unwrap();
    let pins = testbed::PinDir::new("lbp");
    node.run(|| {
        let bed = Bed::new(&["10.133.0.0/28", "fd00:133::/124"]);
        bed.set_node_addresses(external_addresses());
        let settings = json!({
            "services": {"enabled": true, "cgroup": cgroup.path(), "pinDir": pins.path(), "mapEntries": 1024,
                         "loadBalancerPools": POOLS},
        });
        let agent = bed.agent_with(settings.clone());
        let conf = bed.plugin.conf("1.0.0", json!({}));
        let server = Netns::new("lbs").unwrap();
        assert!(bed.plugin.exec("ADD", "server", Some(&server.path()), &conf).ok);
        let mut servers: Vec<Child> = ["TCP4-LISTEN:8080,reuseaddr,fork", "TCP6-LISTEN:8080,reuseaddr,fork,ipv6only=1"]
            .iter()
            .map(|listen| {
                server
                    .command("socat")
                    .args([listen, "SYSTEM:echo pong"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let (services, slices) = bed.default_apis();
        let create = |service: Service| {
            bed.rt
                .block_on(services.create(&PostParams::default(), &service))
                .unwrap();
        };
        create(load_balancer("web", &["IPv4", "IPv6"], None));
        bed.rt.block_on(async {
            for (family, address) in [("IPv4", "10.133.0.2"), ("IPv6", "fd00:133::2")] {
                slices
                    .create(&PostParams::default(), &slice("web", family, address))
                    .await
                    .unwrap();
            }
        });

        // One address per family from the pool, the lowest free, as VIPs.
        assert_eq!(ingress(&bed, "web", 2), vip(&["192.0.2.200", "fd00:ffff::201"]));

        // From outside, over the node's link, in both families.
        let from_outside = |target: &str, until: &dyn Fn(&str) -> bool| testbed::ask(&outside, None, target, until);
        let pong = |t: &str| t.contains("pong");
        for target in ["TCP4:192.0.2.200:80", "TCP6:[fd00:ffff::201]:80"] {
            let got = from_outside(target, &pong);
            assert!(pong(&got), "{target} from outside: {got}");
        }
        // Resolved by ARP and NDP to the node's MAC: the node answered.
        let node_mac = mac_of(&node, "ext0");
        for address in ["192.0.2.200", "fd00:ffff::201"] {
            let out = outside.exec(&["ip", "-j", "neigh", "show", address, "dev", "out0"]);
            let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(entries[0]["lladdr"], node_mac.as_str(), "{address}: {entries}");
        }

        // `netlet services` shows them, announced, with answers counted.
        let web = reported(&bed, "web");
        let shown: Vec<(Value, Value)> = web["loadBalancerIPs"]
            .as_array()
            .unwrap_or_else(|| panic!("{web}"))
            .iter()
            .map(|ip| (ip["ip"].clone(), ip["announced"].clone()))
            .collect();
        assert_eq!(
            shown,
            [(json!("192.0.2.200"), json!(true)), (json!("fd00:ffff::201"), json!(true))]
        );
        assert!(web["loadBalancerIPs"][0]["answers"].as_u64().unwrap() >= 1, "{web}");
        assert!(
            web["frontends"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["address"] == "192.0.2.200:80" && f["scope"] == "external"),
            "{web}"
        );

        // A second Service asks for web's IPv4 address: it gets none, and
        // says why; web keeps its address and keeps serving.
        create(load_balancer("dup", &["IPv4"], Some("192.0.2.200")));
        let dup = |bed: &Bed| reported(bed, "dup");
        let said = eventually(Duration::from_secs(10), || dup(&bed)["loadBalancerErrors"].is_array());
        assert!(said, "{}", dup(&bed));
        assert_eq!(
            dup(&bed)["loadBalancerErrors"],
            json!([
                "requested 192.0.2.200 is already allocated to Service default/web; ask for another address, or for none"
            ])
        );
        assert!(dup(&bed)["loadBalancerIPs"].is_null(), "{}", dup(&bed));
        assert_eq!(ingress(&bed, "dup", 0), vec![], "no address in its status");
        let table = netlet_services(&bed, false);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("default/dup") && l.contains("none") && l.contains("already allocated")),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("default/web") && l.contains("192.0.2.200 (announced)")),
            "{table}"
        );
        let in_use = "netlet_services_load_balancer_errors{reason=\"in-use\"}";
        assert_eq!(metric(&bed, in_use), Some(1.0));
        assert_eq!(
            metric(&bed, "netlet_services_load_balancer_ips{family=\"IPv4\"}"),
            Some(1.0)
        );
        assert_eq!(ingress(&bed, "web", 2), vip(&["192.0.2.200", "fd00:ffff::201"]));
        let got = from_outside("TCP4:192.0.2.200:80", &pong);
        assert!(pong(&got), "web undisturbed: {got}");

        // Deleted (dup first, lest it take the address), web's addresses
        // are no longer answered for...
        for name in ["dup", "web"] {
            bed.rt
                .block_on(services.delete(name, &DeleteParams::default()))
                .unwrap();
        }
        for address in ["192.0.2.200", "fd00:ffff::201"] {
            let withdrawn = eventually(Duration::from_secs(15), || resolve(&outside, "out0", address).is_none());
            assert!(withdrawn, "{address} still answered for");
        }
        assert_eq!(metric(&bed, in_use), Some(0.0));
        // ...and go to the next Service.
        create(load_balancer("again", &["IPv4", "IPv6"], None));
        assert_eq!(ingress(&bed, "again", 2), vip(&["192.0.2.200", "fd00:ffff::201"]));
        assert_eq!(
            resolve(&outside, "out0", "192.0.2.200").as_deref(),
            Some(node_mac.as_str()),
            "answered for again"
        );

        // A restarted agent rebuilds the allocation from the statuses: the
        // Service keeps its addresses, a new one gets the next free ones.
        bed.rt.block_on(agent.shutdown());
        let agent = bed.agent_with(settings);
        create(load_balancer("after", &["IPv4", "IPv6"], None));
        assert_eq!(ingress(&bed, "after", 2), vip(&["192.0.2.201", "fd00:ffff::202"]));
        assert_eq!(ingress(&bed, "again", 2), vip(&["192.0.2.200", "fd00:ffff::201"]));

        for s in &mut servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        assert!(bed.plugin.exec("DEL", "server", Some(&server.path()), &conf).ok);
        bed.rt.block_on(agent.shutdown());
    });
}
