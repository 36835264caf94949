//! Services through the agent: a dual-stack Service and its EndpointSlices
//! in the API reach the eBPF datapath, and pods and the node talk to the
//! ClusterIPs over TCP and UDP in both families; a Service whose endpoints
//! go away refuses connections; a deleted Service is no longer
//! translated. The node is a network namespace of the test's own, and
//! translation is attached to a cgroup of the test's own.

mod common;

use std::process::{Child, Stdio};

use common::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use testbed::{Cgroup, Netns};

/// What a client in `cgroup` inside `ns` gets from `target` (a socat
/// address), once `until` holds for it (or after 10 s).
fn ask(ns: &Netns, cgroup: &Cgroup, target: &str, until: impl Fn(&str) -> bool) -> String {
    testbed::exchange(
        || {
            let mut cmd = ns.command("socat");
            cmd.args(["-T", "1", "-", target]);
            cgroup.adopt(&mut cmd);
            cmd
        },
        until,
    )
}

fn slice(name: &str, family: &str, addresses: &[&str]) -> EndpointSlice {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": family,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

#[test]
fn pods_and_the_node_reach_a_dual_stack_cluster_ip() {
    if !testbed::require_privileges("pods_and_the_node_reach_a_dual_stack_cluster_ip") {
        return;
    }
    let node = Netns::new("svn").unwrap();
    let cgroup = Cgroup::new("svc").unwrap();
    let pins = testbed::PinDir::new("svc");
    // Like a real node, this one has an IPv6 address of its own (see
    // netstack/tests/wire.rs for what goes wrong with only link-local ones).
    assert!(node
        .exec(&["ip", "addr", "add", "fd00:ffff::1/128", "dev", "lo"])
        .status
        .success());
    node.run(|| {
        let bed = Bed::new(&["10.130.0.0/28", "fd00:130::/124"]);
        let agent = bed.agent_with(json!({
            "services": {"enabled": true, "cgroup": cgroup.path(), "pinDir": pins.path(), "mapEntries": 1024},
        }));
        let conf = bed.plugin.conf("1.0.0", json!({}));
        let (server, client) = (Netns::new("svs").unwrap(), Netns::new("svc").unwrap());
        assert!(bed.plugin.exec("ADD", "server", Some(&server.path()), &conf).ok);
        assert!(bed.plugin.exec("ADD", "client", Some(&client.path()), &conf).ok);
        // The server pod holds the first address of each family.
        let mut servers: Vec<Child> = [
            "TCP4-LISTEN:8080,reuseaddr,fork",
            "TCP6-LISTEN:8080,reuseaddr,fork,ipv6only=1",
            "UDP4-RECVFROM:5353,fork",
            "UDP6-RECVFROM:5353,fork,ipv6only=1",
        ]
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

        let (services, slices) = bed.rt.block_on(async {
            let client = bed.client().await;
            (
                Api::<Service>::namespaced(client.clone(), "default"),
                Api::<EndpointSlice>::namespaced(client, "default"),
            )
        });
        let web: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "ipFamilyPolicy": "RequireDualStack",
                "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                          {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}],
            },
        }))
        .unwrap();
        // The API server allocates the ClusterIPs, one per family.
        let created = bed.rt.block_on(async {
            let created = services.create(&PostParams::default(), &web).await.unwrap();
            slices
                .create(&PostParams::default(), &slice("web-v4", "IPv4", &["10.130.0.2"]))
                .await
                .unwrap();
            slices
                .create(&PostParams::default(), &slice("web-v6", "IPv6", &["fd00:130::2"]))
                .await
                .unwrap();
            created
        });
        let ips = created.spec.unwrap().cluster_ips.unwrap();
        let (v4, v6) = (&ips[0], &ips[1]);
        let tcp4 = format!("TCP4:{v4}:80");
        let tcp6 = format!("TCP6:[{v6}]:80");

        let pong = |t: &str| t.contains("pong");
        for from in [&client, &node] {
            for target in [
                tcp4.clone(),
                tcp6.clone(),
                format!("UDP4-SENDTO:{v4}:53"),
                format!("UDP6-SENDTO:[{v6}]:53"),
            ] {
                let got = ask(from, &cgroup, &target, pong);
                assert!(pong(&got), "{target} from {}: {got}", from.name());
            }
        }

        // No endpoints left: connections are refused at once.
        bed.rt.block_on(async {
            for (name, family) in [("web-v4", "IPv4"), ("web-v6", "IPv6")] {
                let mut s = slices.get(name).await.unwrap();
                s.endpoints = slice(name, family, &[]).endpoints;
                slices.replace(name, &PostParams::default(), &s).await.unwrap();
            }
        });
        let refused = |t: &str| t.contains("refused");
        for target in [&tcp4, &tcp6] {
            let got = ask(&client, &cgroup, target, refused);
            assert!(refused(&got), "{target}: {got}");
        }

        // Deleted: the ClusterIP is an address like any other again.
        bed.rt
            .block_on(services.delete("web", &DeleteParams::default()))
            .unwrap();
        let untranslated = |t: &str| !t.contains("refused");
        let got = ask(&client, &cgroup, &tcp4, untranslated);
        assert!(untranslated(&got), "{got}");

        for s in &mut servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        for (id, ns) in [("server", &server), ("client", &client)] {
            assert!(bed.plugin.exec("DEL", id, Some(&ns.path()), &conf).ok);
        }
        bed.rt.block_on(agent.shutdown());
    });
}
