//! Services through the agent: a dual-stack Service and its EndpointSlices
//! in the API reach the eBPF datapath, and pods and the node talk to the
//! ClusterIPs over TCP and UDP in both families, and to the NodePort on the
//! node's addresses; a Service whose endpoints
//! go away refuses connections; a deleted Service is no longer
//! translated. The node is a network namespace of the test's own, and
//! translation is attached to a cgroup of the test's own.

mod common;

use std::process::{Child, Stdio};

use common::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams};
use serde_json::{json, Value};
use testbed::{Cgroup, Netns};

/// A long-lived client connection (socat in a pod, in the cgroup): each
/// line said comes back from the echo server.
struct Conversation {
    child: Child,
    lines: std::io::BufReader<std::process::ChildStdout>,
}

impl Conversation {
    /// A connection to `target` from `ns`, in `cgroup` if given.
    fn open(ns: &Netns, cgroup: Option<&Cgroup>, target: &str) -> Conversation {
        let mut cmd = ns.command("socat");
        // -T: give up after 10 s of silence rather than hang the test.
        cmd.args(["-T", "10", "-", target]);
        if let Some(cgroup) = cgroup {
            cgroup.adopt(&mut cmd);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap());
        Conversation { child, lines }
    }

    fn say(&mut self, line: &str) -> String {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut answer = String::new();
        self.lines.read_line(&mut answer).unwrap();
        answer.trim().to_string()
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An EndpointSlice of Service `service` with `addresses` on this node.
fn slice(service: &str, name: &str, family: &str, addresses: &[&str]) -> EndpointSlice {
    slice_on(service, name, family, addresses, NODE)
}

fn slice_on(service: &str, name: &str, family: &str, addresses: &[&str], node: &str) -> EndpointSlice {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}, "nodeName": node}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": family,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"},
                  {"name": "echo", "port": 9090, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

#[test]
fn pods_and_the_node_reach_a_dual_stack_service() {
    if !testbed::require_privileges("pods_and_the_node_reach_a_dual_stack_service") {
        return;
    }
    let NodeWithOutside {
        wire: _wire,
        outside,
        node,
    } = NodeWithOutside::new("svn", "svo");
    let cgroup = Cgroup::new("svc").unwrap();
    let pins = testbed::PinDir::new("svc");
    node.run(|| {
        let bed = Bed::new(&["10.130.0.0/28", "fd00:130::/124"]);
        // The Node's addresses: NodePorts are served there, and the
        // interface holding them (ext0) is where traffic from outside comes
        // in, which the agent finds by itself.
        bed.set_node_addresses(external_addresses());
        let settings = json!({
            "services": {"enabled": true, "cgroup": cgroup.path(), "pinDir": pins.path(), "mapEntries": 1024},
        });
        let agent = bed.agent_with(settings.clone());
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

        let (services, slices) = bed.default_apis();
        let web: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "type": "NodePort",
                "ipFamilyPolicy": "RequireDualStack",
                "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                          {"name": "echo", "port": 90, "targetPort": 9090},
                          {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}],
            },
        }))
        .unwrap();
        // The API server allocates the ClusterIPs, one per family.
        let created = bed.rt.block_on(async {
            let created = services.create(&PostParams::default(), &web).await.unwrap();
            slices
                .create(&PostParams::default(), &slice("web", "web-v4", "IPv4", &["10.130.0.2"]))
                .await
                .unwrap();
            slices
                .create(
                    &PostParams::default(),
                    &slice("web", "web-v6", "IPv6", &["fd00:130::2"]),
                )
                .await
                .unwrap();
            created
        });
        let spec = created.spec.unwrap();
        let node_port = spec.ports.as_ref().unwrap()[0].node_port.unwrap();
        let ips = spec.cluster_ips.unwrap();
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
                // The NodePort on the node's own addresses.
                format!("TCP4:192.0.2.10:{node_port}"),
                format!("TCP6:[fd00:ffff::1]:{node_port}"),
            ] {
                let got = testbed::ask(from, Some(&cgroup), &target, pong);
                assert!(pong(&got), "{target} from {}: {got}", from.name());
            }
        }

        // `netlet services` shows what the maps hold, read back from them.
        let out = std::process::Command::new(NETLET)
            .args(["services", "-o", "json", "--socket"])
            .arg(bed.admin_socket())
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("netlet services: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        let web = report
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["namespace"] == "default" && s["name"] == "web")
            .expect("web in netlet services");
        let frontend = |address: String, scope: &str| {
            web["frontends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["address"] == address && f["protocol"] == "TCP" && f["scope"] == scope)
                .map(|f| f["backends"].clone())
        };
        assert_eq!(
            frontend(format!("{v4}:80"), "internal"),
            Some(json!(["10.130.0.2:8080"]))
        );
        assert_eq!(
            frontend(format!("[{v6}]:80"), "internal"),
            Some(json!(["[fd00:130::2]:8080"]))
        );
        assert_eq!(
            frontend(format!("192.0.2.10:{node_port}"), "external"),
            Some(json!(["10.130.0.2:8080"])),
            "the NodePort from outside"
        );

        // From outside the node, at the NodePorts on its external address.
        let dns_port = spec
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .find(|p| p.name.as_deref() == Some("dns"))
            .unwrap()
            .node_port
            .unwrap();
        for target in [
            format!("TCP4:192.0.2.10:{node_port}"),
            format!("TCP6:[fd00:ffff::1]:{node_port}"),
            format!("UDP4-SENDTO:192.0.2.10:{dns_port}"),
        ] {
            let got = testbed::ask(&outside, None, &target, pong);
            assert!(pong(&got), "{target} from outside: {got}");
        }

        // The external interface is the one holding the Node's addresses:
        // when they leave it, so does load balancing from outside (the
        // NodePort is then a closed port of the node's), and it comes back
        // with them.
        let from_outside =
            |until: &dyn Fn(&str) -> bool| testbed::ask(&outside, None, &format!("TCP4:192.0.2.10:{node_port}"), until);
        bed.set_node_addresses(json!([{"type": "Hostname", "address": NODE}]));
        let refused = |t: &str| t.contains("refused");
        let got = from_outside(&refused);
        assert!(refused(&got), "the Node's addresses left ext0: {got}");
        bed.set_node_addresses(external_addresses());
        let got = from_outside(&pong);
        assert!(pong(&got), "back on ext0: {got}");

        // The metrics count what the maps hold.
        let page = bed.metrics();
        // web: 3 ports at its ClusterIP, and at the NodePort on the node's
        // address for sockets on the node and for packets from outside.
        assert!(page.contains("netlet_services_frontends{family=\"IPv4\"} 9"), "{page}");
        assert!(page.contains("netlet_services_map_full_total 0"), "{page}");

        // An agent restart: a connection made through the ClusterIP before
        // it keeps exchanging data during and after it (the socket was
        // translated at connect time; no per-packet state is involved), and
        // the next agent takes over the pinned maps for new connections.
        let mut echo = server
            .command("socat")
            .args(["TCP4-LISTEN:9090,reuseaddr,fork", "EXEC:cat"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // One from a pod through the ClusterIP, one from outside through the
        // NodePort (its flow tracked in pinned maps by the TC programs,
        // which stay attached through pinned links).
        let echo_port = spec
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .find(|p| p.name.as_deref() == Some("echo"))
            .unwrap()
            .node_port
            .unwrap();
        let mut conversations = [
            Conversation::open(&client, Some(&cgroup), &format!("TCP4:{v4}:90,retry=50,interval=0.1")),
            Conversation::open(
                &outside,
                None,
                &format!("TCP4:192.0.2.10:{echo_port},retry=50,interval=0.1"),
            ),
        ];
        for c in &mut conversations {
            assert_eq!(c.say("before"), "before");
        }
        bed.rt.block_on(agent.shutdown());
        for c in &mut conversations {
            assert_eq!(c.say("between"), "between", "no agent running");
        }
        let agent = bed.agent_with(settings.clone());
        for c in &mut conversations {
            assert_eq!(c.say("after"), "after");
        }
        let got = testbed::ask(&client, Some(&cgroup), &tcp4, pong);
        assert!(pong(&got), "new connections after the restart: {got}");
        drop(conversations);
        let _ = echo.kill();
        let _ = echo.wait();

        // Hairpin: the server pod reaches itself through its own Service.
        let got = testbed::ask(&server, Some(&cgroup), &tcp4, pong);
        assert!(pong(&got), "hairpin: {got}");

        // internalTrafficPolicy: Local uses only this node's endpoints, and
        // refuses when there are none.
        let local: Service = serde_json::from_value(json!({
            "metadata": {"name": "local"},
            "spec": {"internalTrafficPolicy": "Local", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .unwrap();
        let local_ip = bed.rt.block_on(async {
            let created = services.create(&PostParams::default(), &local).await.unwrap();
            let elsewhere = slice_on("local", "local-v4", "IPv4", &["10.130.0.2"], "another-node");
            slices.create(&PostParams::default(), &elsewhere).await.unwrap();
            created.spec.unwrap().cluster_ip.unwrap()
        });
        let local_tcp = format!("TCP4:{local_ip}:80");
        let refused = |t: &str| t.contains("refused");
        let got = testbed::ask(&client, Some(&cgroup), &local_tcp, refused);
        assert!(refused(&got), "no endpoint on this node: {got}");
        bed.rt.block_on(async {
            let mut s = slices.get("local-v4").await.unwrap();
            s.endpoints = slice("local", "local-v4", "IPv4", &["10.130.0.2"]).endpoints;
            slices.replace("local-v4", &PostParams::default(), &s).await.unwrap();
        });
        let got = testbed::ask(&client, Some(&cgroup), &local_tcp, pong);
        assert!(pong(&got), "an endpoint on this node: {got}");

        // externalTrafficPolicy: Local: the healthCheckNodePort says whether
        // this node has a ready endpoint, as kube-proxy's does.
        let lb: Service = serde_json::from_value(json!({
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .unwrap();
        let health_port = bed.rt.block_on(async {
            let created = services.create(&PostParams::default(), &lb).await.unwrap();
            let here = slice("lb", "lb-v4", "IPv4", &["10.130.0.2"]);
            slices.create(&PostParams::default(), &here).await.unwrap();
            created.spec.unwrap().health_check_node_port.unwrap()
        });
        let check = |want: &str| {
            testbed::exchange(
                || {
                    let mut cmd = std::process::Command::new("socat");
                    cmd.args(["-T", "2", "-", &format!("TCP4:127.0.0.1:{health_port}")]);
                    cmd
                },
                |t| t.contains(want),
            )
        };
        let healthy = check("HTTP/1.1 200");
        assert!(
            healthy.contains("HTTP/1.1 200") && healthy.contains(r#""localEndpoints":1"#),
            "{healthy}"
        );
        assert!(
            healthy.contains(r#""service":{"name":"lb","namespace":"default"}"#),
            "{healthy}"
        );
        bed.rt.block_on(async {
            let mut s = slices.get("lb-v4").await.unwrap();
            s.endpoints = slice_on("lb", "lb-v4", "IPv4", &["10.130.0.2"], "another-node").endpoints;
            slices.replace("lb-v4", &PostParams::default(), &s).await.unwrap();
        });
        let unhealthy = check("HTTP/1.1 503");
        assert!(
            unhealthy.contains("HTTP/1.1 503") && unhealthy.contains(r#""localEndpoints":0"#),
            "{unhealthy}"
        );

        // No endpoints left: connections are refused at once.
        bed.rt.block_on(async {
            for (name, family) in [("web-v4", "IPv4"), ("web-v6", "IPv6")] {
                let mut s = slices.get(name).await.unwrap();
                s.endpoints = slice("web", name, family, &[]).endpoints;
                slices.replace(name, &PostParams::default(), &s).await.unwrap();
            }
        });
        for target in [&tcp4, &tcp6] {
            let got = testbed::ask(&client, Some(&cgroup), target, refused);
            assert!(refused(&got), "{target}: {got}");
        }
        // Counted against the Service.
        let metrics = bed.metrics();
        let turned_away: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("netlet_services_no_endpoint_total{namespace=\"default\",name=\"web\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no no-endpoint count for web:\n{metrics}"));
        assert!(turned_away >= 2.0, "both refusals counted: {turned_away}");

        // Deleted: the ClusterIP is an address like any other again.
        bed.rt
            .block_on(services.delete("web", &DeleteParams::default()))
            .unwrap();
        let untranslated = |t: &str| !t.contains("refused");
        let got = testbed::ask(&client, Some(&cgroup), &tcp4, untranslated);
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

/// A Service whose every port goes to `backend`:8080.
fn service_with_ports(name: &str, ports: u16) -> (Service, EndpointSlice) {
    let service_ports: Vec<Value> = (0..ports)
        .map(|p| json!({"name": format!("p{p}"), "port": 80 + p, "targetPort": 8080}))
        .collect();
    let slice_ports: Vec<Value> = (0..ports)
        .map(|p| json!({"name": format!("p{p}"), "port": 8080, "protocol": "TCP"}))
        .collect();
    let service =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"ports": service_ports}})).unwrap();
    let slice = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-v4"), "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4", "ports": slice_ports,
        "endpoints": [{"addresses": ["10.250.0.2"], "conditions": {"ready": true}, "nodeName": NODE}],
    }))
    .unwrap();
    (service, slice)
}

#[test]
fn a_service_that_did_not_fit_is_applied_once_there_is_room() {
    if !testbed::require_privileges("a_service_that_did_not_fit_is_applied_once_there_is_room") {
        return;
    }
    let node = Netns::new("svf").unwrap();
    assert!(node
        .exec(&["ip", "addr", "add", "10.250.0.2/32", "dev", "lo"])
        .status
        .success());
    let cgroup = Cgroup::new("svf").unwrap();
    let pins = testbed::PinDir::new("svf");
    let mut server = node
        .command("socat")
        .args(["TCP4-LISTEN:8080,bind=10.250.0.2,reuseaddr,fork", "SYSTEM:echo pong"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    node.run(|| {
        let bed = Bed::new(&["10.132.0.0/28"]);
        // 16 entries: a Service of 8 ports (a head and a backend each) fills them.
        let agent = bed.agent_with(json!({
            "services": {"enabled": true, "cgroup": cgroup.path(), "pinDir": pins.path(), "mapEntries": 16},
        }));
        let (services, slices) = bed.default_apis();
        let create = |name: &str, ports: u16| -> String {
            let (service, slice) = service_with_ports(name, ports);
            bed.rt.block_on(async {
                let created = services.create(&PostParams::default(), &service).await.unwrap();
                slices.create(&PostParams::default(), &slice).await.unwrap();
                created.spec.unwrap().cluster_ip.unwrap()
            })
        };
        create("big", 8);
        let small = format!("TCP4:{}:80", create("small", 1));
        let pong = |t: &str| t.contains("pong");

        // The map is full: the agent says so, naming the map.
        let degraded = eventually(std::time::Duration::from_secs(10), || {
            agent
                .status()
                .modules
                .iter()
                .any(|m| m.name == "services" && m.last_error.as_deref().is_some_and(|e| e.contains("is full")))
        });
        assert!(degraded, "{:?}", agent.status());

        // Room is made elsewhere; the Service that did not fit is applied on
        // the agent's own retry, without changing itself.
        bed.rt
            .block_on(services.delete("big", &DeleteParams::default()))
            .unwrap();
        let got = testbed::ask(&node, Some(&cgroup), &small, pong);
        assert!(pong(&got), "{got}");
        bed.rt.block_on(agent.shutdown());
    });
    let _ = server.kill();
    let _ = server.wait();
}
