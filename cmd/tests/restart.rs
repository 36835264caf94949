//! Upgrade and restart without drops (issue 8): stopping the agent leaves
//! the datapath running, and the next agent adopts the pinned maps,
//! programs and links. Long-lived TCP and UDP flows through a ClusterIP
//! (from a pod, translated by the socket-level load balancer at connect
//! time), through a NodePort (from outside the node, translated per packet
//! by the TC programs with their flow state in pinned maps) and straight
//! from pod to pod keep exchanging across five agent restarts, with the
//! traffic going on while no agent runs and while the next one starts: no
//! connection is reset or reopened and no message or datagram is lost, in
//! either family (a dual-stack Service).
//!
//! NetworkPolicy is enforced throughout: the server pod is isolated by a
//! default deny, and a policy lets in the client pod and the outside
//! network, so every flow (the pod-to-pod ones too) also runs through the
//! policy programs and their pinned connection tracking.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use serde_json::json;
use testbed::{Cgroup, Netns};

const RESTARTS: usize = 5;
/// The pace of every flow: one message, then its echo, then this.
const PACE: Duration = Duration::from_millis(20);
/// How many exchanges every flow must complete while no agent runs, and
/// again once the next one is ready, in each round.
const PER_PHASE: u64 = 25;

/// One long-lived flow: a socat client (one socket for its whole life)
/// fed numbered lines, each of which must come back from the echo server.
struct Flow {
    name: &'static str,
    udp: bool,
    /// Exchanges completed (echo received in order).
    echoed: AtomicU64,
    sent: AtomicU64,
    /// UDP datagrams whose echo did not come within a second.
    lost: AtomicU64,
    /// What ended a TCP flow (or a UDP one whose socket failed).
    failure: Mutex<Option<String>>,
}

impl Flow {
    fn new(name: &'static str, udp: bool) -> Flow {
        Flow {
            name,
            udp,
            echoed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            failure: Mutex::new(None),
        }
    }

    fn failed(&self) -> Option<String> {
        self.failure.lock().unwrap().clone()
    }

    /// Runs `client` (socat with `-` on one side), exchanging a numbered
    /// line every PACE until `stop`.
    fn drive(&self, mut client: Child, stop: &AtomicBool) {
        let mut stdin = client.stdin.take().unwrap();
        let stdout = client.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let wait = if self.udp {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        let mut n = 0u64;
        let failure = 'flow: loop {
            if stop.load(Ordering::Relaxed) {
                break None;
            }
            n += 1;
            let message = format!("{} {n}", self.name);
            if let Err(e) = writeln!(stdin, "{message}").and_then(|()| stdin.flush()) {
                break Some(format!("message {n}: cannot send: {e}"));
            }
            self.sent.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + wait;
            let echoed = loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(line) if line == message => break true,
                    // A late echo of a datagram already counted lost.
                    Ok(line) if self.udp && line.starts_with(self.name) => continue,
                    Ok(line) => break 'flow Some(format!("message {n}: got {line:?}")),
                    Err(mpsc::RecvTimeoutError::Timeout) if self.udp => {
                        eprintln!("{}: datagram {n} lost", self.name);
                        break false;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => break 'flow Some(format!("message {n}: no echo")),
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        break 'flow Some(format!("message {n}: the connection ended (reset or closed)"))
                    }
                }
            };
            if echoed { &self.echoed } else { &self.lost }.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(PACE);
        };
        drop(stdin);
        let _ = client.kill();
        let _ = client.wait();
        if let Some(failure) = failure {
            let mut said = String::new();
            if let Some(mut stderr) = client.stderr.take() {
                let _ = stderr.read_to_string(&mut said);
            }
            *self.failure.lock().unwrap() = Some(format!("{failure}; client said: {}", said.trim()));
        }
    }
}

/// Sets the flag when dropped, so that flow threads end even when the
/// test panics (a scope waits for its threads).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A socat client of `target` in `ns` (in `cgroup` if given), talking
/// over its stdin and stdout.
fn client(ns: &Netns, cgroup: Option<&Cgroup>, target: &str) -> Child {
    let mut cmd = ns.command("socat");
    // -T: a client that hears nothing for 10 s gives up (the flow fails
    // instead of hanging).
    cmd.args(["-T", "10", "-", target]);
    if let Some(cgroup) = cgroup {
        cgroup.adopt(&mut cmd);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Whether a one-shot client of `target` gets its line echoed (retried
/// for up to 10 s).
fn echoes(ns: &Netns, cgroup: Option<&Cgroup>, target: &str) -> bool {
    testbed::ask(ns, cgroup, target, |t| t.trim() == "hi").trim() == "hi"
}

/// Echo servers (TCP and UDP) on sockets made in `ns`, served from threads
/// of the test until the process ends.
fn echo_servers(ns: &Netns, tcp_port: u16, udp_port: u16) {
    let (listener, udp) = ns.run(|| {
        (
            // Both families: IPv6 sockets that also take IPv4 (mapped).
            TcpListener::bind(("::", tcp_port)).unwrap(),
            UdpSocket::bind(("::", udp_port)).unwrap(),
        )
    });
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut back = conn.try_clone().unwrap();
                let _ = std::io::copy(&mut conn, &mut back);
            });
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((len, peer)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..len], peer);
        }
    });
}

/// A counter of `ns`'s from /proc/net/snmp (or /proc/net/netstat), e.g.
/// ("Tcp", "RetransSegs").
fn counter(ns: &Netns, group: &str, name: &str) -> u64 {
    let out = ns.exec(&["cat", "/proc/net/snmp", "/proc/net/netstat"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{group}:");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    let (names, values) = (rows[0].split_whitespace(), rows[1].split_whitespace());
    names
        .zip(values)
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no {group} {name} in {}", ns.name()))
        .1
        .parse()
        .unwrap()
}

/// A counter of `ns`'s from /proc/net/snmp6, e.g. "Udp6InErrors".
fn counter6(ns: &Netns, name: &str) -> u64 {
    let out = ns.exec(&["cat", "/proc/net/snmp6"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {name} in {}", ns.name()))
}

/// Retransmitted TCP segments (both families) and UDP datagrams dropped on
/// arrival (errors, or no socket on the port; both families) in
/// `namespaces`.
fn drops(namespaces: &[&Netns]) -> (u64, u64) {
    namespaces.iter().fold((0, 0), |(tcp, udp), ns| {
        (
            tcp + counter(ns, "Tcp", "RetransSegs"),
            udp + counter(ns, "Udp", "InErrors")
                + counter(ns, "Udp", "NoPorts")
                + counter6(ns, "Udp6InErrors")
                + counter6(ns, "Udp6NoPorts"),
        )
    })
}

/// The pods in the API (a pod unknown to the cache gets no traffic at
/// all), the server isolated by a default deny, and a policy letting in
/// the client pod and the outside network (NodePort traffic keeps the
/// client's address).
fn admit_only_the_client_and_outside(bed: &Bed) {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    bed.rt.block_on(async {
        let client = bed.client().await;
        let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
        for name in ["server", "client"] {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"app": name}},
                "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "echo"}]},
            }))
            .unwrap();
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }
        let policies: kube::Api<NetworkPolicy> = kube::Api::namespaced(client, "default");
        for policy in [
            json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
            json!({"metadata": {"name": "echo"}, "spec": {
                "podSelector": {"matchLabels": {"app": "server"}},
                "ingress": [{
                    "from": [{"podSelector": {"matchLabels": {"app": "client"}}},
                             {"ipBlock": {"cidr": "192.0.2.0/24"}}, {"ipBlock": {"cidr": "fd00:ffff::/64"}}],
                    "ports": [{"protocol": "TCP", "port": 9090}, {"protocol": "UDP", "port": 5353}],
                }],
            }}),
        ] {
            let policy: NetworkPolicy = serde_json::from_value(policy).unwrap();
            policies.create(&PostParams::default(), &policy).await.unwrap();
        }
    });
}

#[test]
fn flows_survive_five_agent_restarts_without_a_drop() {
    if !testbed::require_privileges("flows_survive_five_agent_restarts_without_a_drop") {
        return;
    }
    let started = Instant::now();
    let NodeWithOutside {
        wire: _wire,
        outside,
        node,
    } = NodeWithOutside::new("rsn", "rso");
    let cgroup = Cgroup::new("rst").unwrap();
    let pins = testbed::PinDir::new("rst");
    node.run(|| {
        let bed = Bed::new(&["10.133.0.0/28", "fd00:133::/124"]);
        bed.set_node_addresses(external_addresses());
        let settings = json!({
            "services": {"enabled": true, "cgroup": cgroup.path(), "pinDir": pins.path(), "mapEntries": 1024},
            "policy": {"enabled": true, "pinDir": pins.path().join("policy")},
        });
        let mut agent = Some(bed.agent_with(settings.clone()));
        admit_only_the_client_and_outside(&bed);
        let conf = bed.plugin.conf("1.0.0", json!({}));
        let (server, pod) = (Netns::new("rss").unwrap(), Netns::new("rsc").unwrap());
        let added = bed.plugin.exec("ADD", "server", Some(&server.path()), &conf);
        assert!(added.ok, "{added:?}");
        assert!(bed.plugin.exec("ADD", "client", Some(&pod.path()), &conf).ok);
        let doc = added.doc.unwrap();
        let address = |i: usize| doc["ips"][i]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
        let (server_v4, server_v6) = (address(0), address(1));
        echo_servers(&server, 9090, 5353);

        let (services, slices) = bed.default_apis();
        let echo: Service = serde_json::from_value(json!({
            "metadata": {"name": "echo"},
            "spec": {"type": "NodePort", "ipFamilyPolicy": "RequireDualStack", "ports": [
                {"name": "tcp", "port": 90, "targetPort": 9090},
                {"name": "udp", "port": 53, "targetPort": 5353, "protocol": "UDP"},
            ]},
        }))
        .unwrap();
        let slice = |family: &str, address: &str| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": {"name": format!("echo-{}", family.to_lowercase()), "labels": {"kubernetes.io/service-name": "echo"}},
                "addressType": family,
                "ports": [{"name": "tcp", "port": 9090, "protocol": "TCP"}, {"name": "udp", "port": 5353, "protocol": "UDP"}],
                "endpoints": [{"addresses": [address], "conditions": {"ready": true}, "nodeName": NODE}],
            }))
            .unwrap()
        };
        let spec = bed.rt.block_on(async {
            let created = services.create(&PostParams::default(), &echo).await.unwrap();
            for (family, address) in [("IPv4", &server_v4), ("IPv6", &server_v6)] {
                slices.create(&PostParams::default(), &slice(family, address)).await.unwrap();
            }
            created.spec.unwrap()
        });
        let ips = spec.cluster_ips.clone().unwrap();
        let (cluster_v4, cluster_v6) = (&ips[0], &ips[1]);
        let node_port = |name: &str| {
            spec.ports
                .as_ref()
                .unwrap()
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap()
                .node_port
                .unwrap()
        };
        let (tcp_node_port, udp_node_port) = (node_port("tcp"), node_port("udp"));

        // (flow, namespace, cgroup, socat address). Clients in pods are in
        // the cgroup, as pods are on a node: the socket-level load balancer
        // translates their connect() (UDP too: socat's UDP4 is a connected
        // socket, which keeps its translated peer).
        let targets = [
            ("tcp4-clusterip", &pod, Some(&cgroup), format!("TCP4:{cluster_v4}:90")),
            ("udp4-clusterip", &pod, Some(&cgroup), format!("UDP4:{cluster_v4}:53")),
            ("tcp6-clusterip", &pod, Some(&cgroup), format!("TCP6:[{cluster_v6}]:90")),
            ("udp6-clusterip", &pod, Some(&cgroup), format!("UDP6:[{cluster_v6}]:53")),
            ("tcp4-nodeport", &outside, None, format!("TCP4:192.0.2.10:{tcp_node_port}")),
            ("udp4-nodeport", &outside, None, format!("UDP4:192.0.2.10:{udp_node_port}")),
            ("tcp6-nodeport", &outside, None, format!("TCP6:[fd00:ffff::1]:{tcp_node_port}")),
            ("udp6-nodeport", &outside, None, format!("UDP6:[fd00:ffff::1]:{udp_node_port}")),
            // Straight to the server pod, allowed by its NetworkPolicy.
            ("tcp4-pod-to-pod", &pod, Some(&cgroup), format!("TCP4:{server_v4}:9090")),
            ("tcp6-pod-to-pod", &pod, Some(&cgroup), format!("TCP6:[{server_v6}]:9090")),
        ];
        // Every path works before the flows are opened (a UDP socket
        // connected before its Service is in the maps would stay
        // untranslated).
        for (name, ns, cgroup, target) in &targets {
            assert!(echoes(ns, *cgroup, target), "{name}: {target} does not echo");
        }
        let namespaces = [&server, &pod, &outside, &node];
        let drops_before = drops(&namespaces);

        let flows: Vec<Flow> = targets
            .iter()
            .map(|(name, _, _, target)| Flow::new(name, target.starts_with("UDP")))
            .collect();
        let stop = AtomicBool::new(false);
        let mut rounds = Vec::new();
        std::thread::scope(|s| {
            let _stop = StopOnDrop(&stop);
            for (flow, (_, ns, cgroup, target)) in flows.iter().zip(&targets) {
                let child = client(ns, *cgroup, target);
                let stop = &stop;
                s.spawn(move || flow.drive(child, stop));
            }
            // Every flow completes `PER_PHASE` more exchanges (or fails).
            let progress = |what: &str| {
                let from: Vec<u64> = flows.iter().map(|f| f.echoed.load(Ordering::Relaxed)).collect();
                let began = Instant::now();
                let done = eventually(Duration::from_secs(20), || {
                    flows.iter().any(|f| f.failed().is_some())
                        || flows
                            .iter()
                            .zip(&from)
                            .all(|(f, from)| f.echoed.load(Ordering::Relaxed) >= from + PER_PHASE)
                });
                for f in &flows {
                    assert!(f.failed().is_none(), "{} {what}: {}", f.name, f.failed().unwrap());
                }
                assert!(done, "{what}: the flows stalled");
                began.elapsed()
            };
            progress("before the first restart");
            for round in 1..=RESTARTS {
                let began = Instant::now();
                assert!(bed.rt.block_on(agent.take().unwrap().shutdown()), "round {round}: a clean shutdown");
                let stopped = began.elapsed();
                let down = progress(&format!("round {round}, no agent running"));
                let began = Instant::now();
                // Flows keep going while the next agent starts, too.
                agent = Some(bed.agent_with(settings.clone()));
                let starting = began.elapsed();
                progress(&format!("round {round}, after the restart"));
                // The adopted maps serve new connections as well.
                assert!(
                    echoes(&pod, Some(&cgroup), &format!("TCP4:{cluster_v4}:90")),
                    "round {round}: a new connection through the ClusterIP"
                );
                rounds.push((stopped, down, starting));
            }
            stop.store(true, Ordering::Relaxed);
        });

        for (round, (stopped, down, starting)) in rounds.iter().enumerate() {
            eprintln!(
                "restart {}: shutdown {stopped:?}, {PER_PHASE} exchanges per flow with no agent in {down:?}, \
                 next agent ready in {starting:?}",
                round + 1
            );
        }
        let mut total = 0;
        for f in &flows {
            let (sent, echoed, lost) = (
                f.sent.load(Ordering::Relaxed),
                f.echoed.load(Ordering::Relaxed),
                f.lost.load(Ordering::Relaxed),
            );
            eprintln!(
                "{}: sent {sent}, echoed {echoed}, lost {lost}, failure {:?}",
                f.name,
                f.failed()
            );
            total += sent;
        }
        // Retransmissions would be TCP segments lost (and recovered), UDP
        // errors datagrams dropped on arrival, in any namespace involved.
        let drops_after = drops(&namespaces);
        let (retransmitted, udp_errors) = (drops_after.0 - drops_before.0, drops_after.1 - drops_before.1);
        let lost: u64 = flows.iter().map(|f| f.lost.load(Ordering::Relaxed)).sum();
        let failed = flows.iter().filter(|f| f.failed().is_some()).count();
        eprintln!(
            "{} flows ({} TCP, {} UDP), {total} messages, {RESTARTS} restarts: lost {lost}, connections reset {failed}, \
             TCP retransmissions {retransmitted}, UDP receive errors {udp_errors}; {:?} in all",
            flows.len(),
            flows.iter().filter(|f| !f.udp).count(),
            flows.iter().filter(|f| f.udp).count(),
            started.elapsed()
        );
        for f in &flows {
            assert_eq!(f.failed(), None, "{}", f.name);
            assert_eq!(f.lost.load(Ordering::Relaxed), 0, "{}: datagrams lost", f.name);
        }
        assert_eq!(retransmitted, 0, "TCP segments retransmitted");
        assert_eq!(udp_errors, 0, "UDP datagrams dropped on arrival");

        for (id, ns) in [("server", &server), ("client", &pod)] {
            assert!(bed.plugin.exec("DEL", id, Some(&ns.path()), &conf).ok);
        }
        bed.rt.block_on(agent.take().unwrap().shutdown());
    });
}
