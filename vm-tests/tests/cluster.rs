//! Multi-node scenarios on QEMU VMs (privileged: root, QEMU, the Debian
//! cloud kernel; skipped with a message otherwise, and failing instead
//! under NETLET_REQUIRE_PRIV=1). Scenarios run in order on a cluster of
//! three VMs booted for the first of them, each restarting the agents with
//! the config it needs (`basic`, `native`, `switch`, then `dns`, `service`,
//! `policy` with `routing.mode: native` and their module turned on, then
//! `reboot`, which powers one VM off and boots it again); one that needs
//! agents started differently from the start (`vxlan`) gets a freshly
//! booted cluster. Each prints a result line; the suite prints its total
//! time (about 200 s for all eight on a 2-CPU machine).
//!
//! `service` and `policy` run on any VM kernel: with TCX (Linux 6.6+; see
//! `has_tcx`) the agent's TC programs attach through TCX links, on
//! bookworm's 6.1 cloud kernel as netlink (cls_bpf) filters. To run them
//! on a newer kernel, unpack a newer Debian cloud kernel package (e.g.
//! trixie's `linux-image-6.12.*-cloud-amd64`: `dpkg-deb -x PKG.deb DIR`)
//! and set `NETLET_VM_KERNEL=DIR/boot/vmlinuz-<release>`.
//!
//! NETLET_VM_SCENARIOS=basic,switch runs only those (in this file's
//! order). NETLET_VM_NODES=4 boots four VMs instead of three; a scenario
//! that needs more (`service`: 3) gets them anyway.

use std::time::Instant;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;
use vm_tests::cluster::{Cluster, ClusterSpec, PodInfo};
use vm_tests::Error;

type Outcome = Result<String, Error>;

/// A pod `pod-<n>` on every node `n` (made once per cluster, and again
/// after its node rebooted), each with one address of each family from its
/// node's podCIDRs.
fn pods_everywhere(c: &mut Cluster) -> Result<(), Error> {
    for i in 0..c.vms.len() {
        let name = format!("pod-{}", i + 1);
        if c.pods.iter().any(|p| p.name == name) {
            continue;
        }
        let pod = c.add_pod(i, &name)?;
        let (Some(v4), Some(v6)) = (pod.ipv4(), pod.ipv6()) else {
            return Err(Error::Command(format!("{}: not dual-stack: {:?}", pod.name, pod.ips)));
        };
        let cidrs = &c.nodes[i].pod_cidrs;
        if !v4.to_string().starts_with(&format!("10.42.{}.", i + 1))
            || !v6.to_string().starts_with(&format!("fd00:42:0:{}:", i + 1))
        {
            return Err(Error::Command(format!("{}: {v4}, {v6} not from {cidrs:?}", pod.name)));
        }
    }
    Ok(())
}

const TCP_PORT: u16 = 7777;

/// The pod `pod-<i+1>` of node `i`.
fn pod_of(c: &Cluster, i: usize) -> Result<PodInfo, Error> {
    let name = format!("pod-{}", i + 1);
    c.pods
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| Error::Command(format!("no {name}")))
}

/// Every pod reaches the pods of the other nodes, both families: ping, a
/// TCP connection to a server in the pod that answers its name, 1 MiB
/// over TCP from it, and a UDP datagram that it answers with its name.
fn pods_reach_across_nodes(c: &mut Cluster) -> Outcome {
    pods_reach_across_nodes_where(c, |_, _| true)
}

/// [`pods_reach_across_nodes`] for the (from, to) pairs `which` picks.
fn pods_reach_across_nodes_where(c: &mut Cluster, which: impl Fn(&PodInfo, &PodInfo) -> bool) -> Outcome {
    let pods = c.pods.clone();
    for pod in &pods {
        c.serve(pod, TCP_PORT)?;
    }
    let (mut checks, mut datagrams) = (0, 0);
    for from in &pods {
        for to in pods.iter().filter(|p| p.node != from.node && which(from, p)) {
            for ip in [to.ipv4(), to.ipv6()].into_iter().flatten() {
                c.ping(from.node, Some(&from.name), &ip.to_string())?;
                let answer = c.tcp_get(from, ip, TCP_PORT)?;
                if answer != to.name {
                    return Err(Error::Command(format!(
                        "{} -> {ip}:{TCP_PORT}: answered {answer:?}, not {:?}",
                        from.name, to.name
                    )));
                }
                let got = c.tcp_bulk(from, ip, TCP_PORT)?;
                if got != vm_tests::cluster::BULK_BYTES {
                    return Err(Error::Command(format!(
                        "{} <- {ip}: {got} of {} bytes",
                        from.name,
                        vm_tests::cluster::BULK_BYTES
                    )));
                }
                checks += 1;
            }
        }
        datagrams += udp_reaches(c, from, pods.iter().filter(|p| p.node != from.node && which(from, p)))?;
    }
    Ok(format!(
        "{checks} pod-to-pod ping + TCP (answer, 1 MiB) checks and {datagrams} UDP exchanges across nodes"
    ))
}

/// `from` sends a datagram to every address of each of `to` and gets the
/// pod's name back from each; a datagram lost (the first to a neighbour
/// not yet resolved may be) is tried again, twice. How many addresses
/// answered.
fn udp_reaches<'a>(c: &mut Cluster, from: &PodInfo, to: impl Iterator<Item = &'a PodInfo>) -> Result<usize, Error> {
    let mut waiting: Vec<(IpAddr, &str)> = to
        .flat_map(|p| p.ips.iter().map(move |ip| (*ip, p.name.as_str())))
        .collect();
    let all = waiting.len();
    for _ in 0..3 {
        let ips: Vec<IpAddr> = waiting.iter().map(|w| w.0).collect();
        let answers = c.udp_get_all(from, &ips, TCP_PORT)?;
        let mut answered = answers.iter();
        waiting.retain(|(_, name)| answered.next().map(String::as_str) != Some(*name));
        if waiting.is_empty() {
            return Ok(all);
        }
    }
    Err(Error::Command(format!(
        "{}: no UDP answer from {waiting:?} on port {TCP_PORT}",
        from.name
    )))
}

/// Two VMs boot, each agent (no `routing` section) becomes ready, each VM
/// gets a pod with addresses, each pod reaches its own node and back, and
/// the nodes reach each other over the node link.
fn basic(c: &mut Cluster) -> Outcome {
    c.start_agents()?;
    pods_everywhere(c)?;
    for pod in c.pods.clone() {
        let node = c.nodes[pod.node].clone();
        for to in [&node.ipv4, &node.ipv6] {
            c.ping(pod.node, Some(&pod.name), to)?;
        }
        for to in pod.ips.iter().map(ToString::to_string) {
            c.ping(pod.node, None, &to)?;
        }
    }
    for i in 0..c.vms.len() {
        let me = c.nodes[i].name.clone();
        for peer in c.nodes.clone().iter().filter(|n| n.name != me) {
            for to in [&peer.ipv4, &peer.ipv6] {
                c.ping(i, None, to)?;
            }
        }
    }
    let pods: Vec<String> = c.pods.iter().map(|p| format!("{}={:?}", p.name, p.ips)).collect();
    Ok(format!("{} nodes ready; pods {}", c.vms.len(), pods.join(" ")))
}

/// The agents restart with `routing.mode: native`; pods keep their
/// addresses and reach the other node's pods.
fn native(c: &mut Cluster) -> Outcome {
    c.restart_agents(Some("native"))?;
    pods_everywhere(c)?;
    pods_reach_across_nodes(c)
}

/// Agents started with `routing.mode: vxlan` on fresh VMs; pods reach
/// the other node's pods through the tunnels.
fn vxlan(c: &mut Cluster) -> Outcome {
    c.start_agents()?;
    pods_everywhere(c)?;
    pods_reach_across_nodes(c)
}

/// Live nodes change routing mode: agents restarted from `native` to
/// `vxlan` must replace the native routes with tunnel routes (the kernel
/// refuses to turn an IPv6 route through eth0 into an onlink one through
/// the tunnel in place, so the agent removes the old one first).
fn switch(c: &mut Cluster) -> Outcome {
    if c.spec.routing_mode.as_deref() != Some("native") {
        native(c)?;
    }
    c.restart_agents(Some("vxlan"))?;
    pods_reach_across_nodes(c)
}

/// Agents with `routing.mode: native` and whatever else `features` turns
/// on (features turned on by earlier scenarios stay on), restarted only if
/// that changes their config; a pod on every node.
fn native_with(c: &mut Cluster, features: impl FnOnce(&mut ClusterSpec)) -> Result<(), Error> {
    c.ensure_config(|spec| {
        spec.routing_mode = Some("native".into());
        features(spec);
    })?;
    pods_everywhere(c)
}

/// Creates Service `default/<name>`, dual-stack, port 80 to
/// [`TCP_PORT`], without a selector; its ClusterIPs.
fn dual_stack_service(c: &mut Cluster, name: &str) -> Result<Vec<IpAddr>, Error> {
    let svc: Service = c.create(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "ipFamilyPolicy": "RequireDualStack",
            "ipFamilies": ["IPv4", "IPv6"],
            "ports": [{"port": 80, "targetPort": TCP_PORT, "protocol": "TCP"}],
        },
    }))?;
    let ips: Vec<IpAddr> = svc
        .spec
        .and_then(|s| s.cluster_ips)
        .unwrap_or_default()
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if ips.len() != 2 {
        return Err(Error::Command(format!(
            "Service {name}: ClusterIPs {ips:?}, not one per family"
        )));
    }
    Ok(ips)
}

/// Cluster DNS: agents with `dns.enabled`; from a pod on every node, the
/// name of a Service resolves to its ClusterIPs (A and AAAA) through each
/// DNS server of the pod's CNI result (the clusterDNS addresses, served by
/// the pod's own node).
fn dns(c: &mut Cluster) -> Outcome {
    native_with(c, |spec| spec.dns = true)?;
    let ips = dual_stack_service(c, "named")?;
    let name = "named.default.svc.cluster.local";
    let mut checks = 0;
    for pod in (0..c.vms.len()).map(|i| pod_of(c, i)).collect::<Result<Vec<_>, _>>()? {
        if pod.nameservers.is_empty() {
            return Err(Error::Command(format!(
                "{}: no DNS servers in the CNI result",
                pod.name
            )));
        }
        for server in &pod.nameservers {
            // Until the agent has the Service: retried for 20 s.
            let out = c.vms[pod.node].run(
                &format!(
                    "end=$(($(date +%s) + 20)); while :; do \
                     out=$(/usr/local/bin/ip netns exec {pod} nslookup {name} {server} 2>&1); \
                     echo \"$out\" | grep -qF {v4} && echo \"$out\" | grep -qiF {v6} && break; \
                     [ $(date +%s) -ge $end ] && break; sleep 0.5; done; echo \"$out\"",
                    pod = pod.name,
                    v4 = ips[0],
                    v6 = ips[1],
                ),
                Duration::from_secs(40),
            )?;
            let answered: BTreeSet<IpAddr> = out.text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
            if !ips.iter().all(|ip| answered.contains(ip)) {
                return Err(Error::Command(format!(
                    "{} asking {server} for {name}: want {ips:?}, got:\n{}",
                    pod.name,
                    out.text.trim_end()
                )));
            }
            checks += 1;
        }
    }
    Ok(format!("{name} -> {ips:?} from every node's pod, {checks} lookups"))
}

/// Services across nodes: agents with `services.enabled` (socket-level
/// load balancing in the VMs' cgroup v2 root); a Service whose
/// EndpointSlices (one per family) hold the pods of node 0 and node 1 is
/// reached through its ClusterIPs from the pod of node 2, over repeated
/// TCP connections that both backends answer.
fn service(c: &mut Cluster) -> Outcome {
    native_with(c, |spec| spec.services = true)?;
    let backends = [pod_of(c, 0)?, pod_of(c, 1)?];
    let client = pod_of(c, 2)?;
    for pod in &backends {
        c.serve(pod, TCP_PORT)?;
    }
    let ips = dual_stack_service(c, "spread")?;
    for (family, pick) in [
        ("IPv4", PodInfo::ipv4 as fn(&PodInfo) -> Option<IpAddr>),
        ("IPv6", PodInfo::ipv6),
    ] {
        let endpoints: Vec<_> = backends
            .iter()
            .map(|p| {
                json!({
                    "addresses": [pick(p).expect("dual-stack pods").to_string()],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": c.nodes[p.node].name,
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": p.name},
                })
            })
            .collect();
        c.create::<EndpointSlice>(json!({
            "metadata": {
                "name": format!("spread-{}", family.to_lowercase()),
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "spread"},
            },
            "addressType": family,
            "endpoints": endpoints,
            "ports": [{"name": "", "port": TCP_PORT, "protocol": "TCP"}],
        }))?;
    }
    let names: BTreeSet<String> = backends.iter().map(|p| p.name.clone()).collect();
    const CONNECTIONS: u32 = 10;
    for ip in &ips {
        // The first one waits for the agent to have the Service.
        let first = c.tcp_get(&client, *ip, 80)?;
        let answers = c.tcp_get_many(&client, *ip, 80, CONNECTIONS)?;
        let seen: BTreeSet<String> = answers.iter().chain([&first]).cloned().collect();
        if answers.len() != CONNECTIONS as usize || seen != names {
            return Err(Error::Command(format!(
                "{} -> {ip}:80 ({CONNECTIONS} connections): answers {answers:?}, want each of {names:?}",
                client.name
            )));
        }
    }
    Ok(format!(
        "{} -> ClusterIPs {ips:?}: {} connections per family, answered by {names:?}",
        client.name,
        CONNECTIONS + 1
    ))
}

/// How long a denied connection attempt waits.
const DENIED_TIMEOUT: u32 = 2;

/// Tries TCP connections from `from` (VM, netns) to `ip`:[`TCP_PORT`] until
/// one succeeds (`want_open`) or fails, for up to `within`; whether that
/// happened.
fn await_tcp(
    c: &mut Cluster,
    from: (usize, Option<&str>),
    ip: IpAddr,
    want_open: bool,
    within: Duration,
) -> Result<bool, Error> {
    let deadline = Instant::now() + within;
    loop {
        let open = c.tcp_once(from.0, from.1, ip, TCP_PORT, DENIED_TIMEOUT)?.is_some();
        if open == want_open {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// NetworkPolicy: agents with `policy.enabled`; the pod of node 0 reaches
/// the pod of node 1 until a policy admits to that one only pods labelled
/// `access: granted`; then it cannot, while a granted pod on node 0 and
/// node 1 itself still can; deleting the policy lets it in again.
fn policy(c: &mut Cluster) -> Outcome {
    native_with(c, |spec| spec.policy = true)?;
    let (outsider, target) = (pod_of(c, 0)?, pod_of(c, 1)?);
    let friend = match c.pods.iter().find(|p| p.name == "friend") {
        Some(p) => p.clone(),
        None => c.add_pod_labeled(0, "friend", json!({"app": "friend", "access": "granted"}))?,
    };
    c.serve(&target, TCP_PORT)?;
    let targets = target.ips.clone();
    for ip in &targets {
        for from in [&outsider, &friend] {
            let answer = c.tcp_get(from, *ip, TCP_PORT)?;
            if answer != target.name {
                return Err(Error::Command(format!("{} -> {ip}: answered {answer:?}", from.name)));
            }
        }
    }
    c.create::<NetworkPolicy>(json!({
        "metadata": {"name": "granted-only", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"app": target.name}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "granted"}}}]}],
        },
    }))?;
    let t = Instant::now();
    for ip in &targets {
        if !await_tcp(
            c,
            (outsider.node, Some(&outsider.name)),
            *ip,
            false,
            Duration::from_secs(20),
        )? {
            return Err(Error::Command(format!(
                "{} still reaches {ip} 20 s after the policy was created",
                outsider.name
            )));
        }
    }
    let enforced = t.elapsed();
    for ip in &targets {
        let answer = c.tcp_get(&friend, *ip, TCP_PORT)?;
        let from_node = c.tcp_once(target.node, None, *ip, TCP_PORT, 3)?;
        if answer != target.name || from_node.as_deref() != Some(target.name.as_str()) {
            return Err(Error::Command(format!(
                "under the policy, {ip} answered {answer:?} to {} and {from_node:?} to its node",
                friend.name
            )));
        }
        if c.tcp_once(outsider.node, Some(&outsider.name), *ip, TCP_PORT, DENIED_TIMEOUT)?
            .is_some()
        {
            return Err(Error::Command(format!(
                "{} reaches {ip} under the policy again",
                outsider.name
            )));
        }
    }
    c.delete::<NetworkPolicy>("default", "granted-only")?;
    let t = Instant::now();
    for ip in &targets {
        if !await_tcp(
            c,
            (outsider.node, Some(&outsider.name)),
            *ip,
            true,
            Duration::from_secs(20),
        )? {
            return Err(Error::Command(format!(
                "{} cannot reach {ip} 20 s after the policy was deleted",
                outsider.name
            )));
        }
    }
    Ok(format!(
        "{} denied {} -> {:?} within {:.1}s, {} and its node allowed; policy deleted, open again within {:.1}s",
        "granted-only",
        outsider.name,
        targets,
        enforced.as_secs_f64(),
        friend.name,
        t.elapsed().as_secs_f64()
    ))
}

/// A node reboots: VM 1 powers off and boots again from a fresh initramfs
/// (its agent's store and its pods gone), its agent starts, its pod is
/// created again, and traffic flows between it and the other nodes' pods
/// both ways; its Node object stays in the API throughout.
fn reboot(c: &mut Cluster) -> Outcome {
    native_with(c, |_| {})?;
    let i = 1;
    let name = c.nodes[i].name.clone();
    let took = c.reboot(i)?;
    if !c.node_exists(&name)? {
        return Err(Error::Command(format!("Node {name} left the API")));
    }
    pods_everywhere(c)?;
    let traffic = pods_reach_across_nodes_where(c, |from, to| from.node == i || to.node == i)?;
    Ok(format!(
        "{name} down and its agent ready again in {:.1}s; {traffic}",
        took.as_secs_f64()
    ))
}

struct Scenario {
    name: &'static str,
    /// `routing.mode` the cluster's agents must first start with; a
    /// scenario whose mode differs from the running cluster's boots a new one.
    boot_mode: Option<&'static str>,
    /// Nodes it needs at least.
    nodes: u8,
    run: fn(&mut Cluster) -> Outcome,
    default: bool,
}

/// Whether kernel `release` (`6.12.117+deb13-cloud-amd64`) has TCX
/// (BPF links for TC, Linux 6.6): where it has not, the agent's TC
/// programs go on as netlink (cls_bpf) filters instead.
fn has_tcx(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 6)
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "basic",
        boot_mode: None,
        nodes: 1,
        run: basic,
        default: true,
    },
    Scenario {
        name: "native",
        boot_mode: None,
        nodes: 1,
        run: native,
        default: true,
    },
    Scenario {
        name: "switch",
        boot_mode: None,
        nodes: 1,
        run: switch,
        default: true,
    },
    Scenario {
        name: "dns",
        boot_mode: None,
        nodes: 1,
        run: dns,
        default: true,
    },
    Scenario {
        name: "service",
        boot_mode: None,
        nodes: 3,
        run: service,
        default: true,
    },
    Scenario {
        name: "policy",
        boot_mode: None,
        nodes: 2,
        run: policy,
        default: true,
    },
    Scenario {
        name: "reboot",
        boot_mode: None,
        nodes: 2,
        run: reboot,
        default: true,
    },
    Scenario {
        name: "vxlan",
        boot_mode: Some("vxlan"),
        nodes: 1,
        run: vxlan,
        default: true,
    },
];

#[test]
fn cluster() {
    let Some(host) = vm_tests::require_vm_host("vm-tests cluster") else {
        return;
    };
    let started = Instant::now();
    let only = std::env::var("NETLET_VM_SCENARIOS").ok();
    // NETLET_VM_NODES=4: a bigger cluster (default 3; 512 MiB each); a
    // scenario that needs more nodes gets them anyway.
    let nodes: u8 = std::env::var("NETLET_VM_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let mut current: Option<(Option<&str>, Cluster)> = None;
    let mut failed = Vec::new();
    let mut passed = 0;
    eprintln!(
        "VM kernel {}: TC programs attach through {}",
        host.kernel_release,
        if has_tcx(&host.kernel_release) {
            "TCX links"
        } else {
            "netlink filters (no TCX)"
        }
    );
    for s in SCENARIOS {
        let wanted = match only.as_deref() {
            Some(list) => list.split(',').any(|n| n.trim() == s.name),
            None => s.default,
        };
        if !wanted {
            continue;
        }
        let nodes = nodes.max(s.nodes);
        if current
            .as_ref()
            .is_none_or(|(mode, c)| *mode != s.boot_mode || c.vms.len() < usize::from(nodes))
        {
            if let Some((_, old)) = current.take() {
                old.shutdown();
            }
            let t = Instant::now();
            let spec = ClusterSpec {
                routing_mode: s.boot_mode.map(str::to_string),
                nodes,
                ..ClusterSpec::default()
            };
            let c = Cluster::boot(&host, spec).unwrap_or_else(|e| panic!("booting for {}: {e}", s.name));
            eprintln!("cluster of {} VMs up in {:.1}s", c.vms.len(), t.elapsed().as_secs_f64());
            current = Some((s.boot_mode, c));
        }
        let c = &mut current.as_mut().expect("booted").1;
        let t = Instant::now();
        match (s.run)(c) {
            Ok(detail) => {
                passed += 1;
                eprintln!(
                    "scenario {}: ok in {:.1}s ({detail})",
                    s.name,
                    t.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                let logs: Vec<String> = (0..c.vms.len()).map(|i| c.agent_log(i, 20)).collect();
                eprintln!(
                    "scenario {}: FAILED in {:.1}s: {e}\n--- agent logs ---\n{}",
                    s.name,
                    t.elapsed().as_secs_f64(),
                    logs.join("\n---\n")
                );
                failed.push(s.name);
                // Its cluster may be in any state: the next scenario boots afresh.
                if let Some((_, c)) = current.take() {
                    c.shutdown();
                }
            }
        }
    }
    if let Some((_, c)) = current.take() {
        c.shutdown();
    }
    eprintln!(
        "vm-tests: {passed} scenarios passed, {} failed; total {:.1}s",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}

#[test]
fn tcx_comes_with_linux_6_6() {
    assert!(!has_tcx("6.1.0-56-cloud-amd64"));
    assert!(!has_tcx("5.19.0"));
    assert!(has_tcx("6.6.0"));
    assert!(has_tcx("6.12.117+deb13-cloud-amd64"));
    assert!(has_tcx("7.0.1"));
}
