//! Multi-node scenarios on QEMU VMs (privileged: root, QEMU, the Debian
//! cloud kernel; skipped with a message otherwise, and failing instead
//! under NETLET_REQUIRE_PRIV=1). Scenarios run in order on a cluster of two
//! VMs booted for the first of them; one that needs agents started
//! differently from the start (`vxlan`) gets a freshly booted cluster.
//! Each prints a result line; the suite prints its total time.
//!
//! NETLET_VM_SCENARIOS=basic,switch runs only those (in this file's
//! order). NETLET_VM_NODES=3 boots three VMs instead of two.

use std::time::Instant;

use vm_tests::cluster::{Cluster, ClusterSpec};
use vm_tests::Error;

type Outcome = Result<String, Error>;

/// A pod on every node (made once per cluster), each with one address of
/// each family from its node's podCIDRs.
fn pods_everywhere(c: &mut Cluster) -> Result<(), Error> {
    for i in c.pods.len()..c.vms.len() {
        let pod = c.add_pod(i, &format!("pod-{}", i + 1))?;
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

/// Every pod reaches the pods of the other nodes, both families: ping, a
/// TCP connection to a server in the pod that answers its name, and 1 MiB
/// over TCP from it.
fn pods_reach_across_nodes(c: &mut Cluster) -> Outcome {
    let pods = c.pods.clone();
    for pod in &pods {
        c.serve_tcp(pod, TCP_PORT)?;
    }
    let mut checks = 0;
    for from in &pods {
        for to in pods.iter().filter(|p| p.node != from.node) {
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
    }
    Ok(format!(
        "{checks} pod-to-pod ping + TCP (answer, 1 MiB) checks across nodes"
    ))
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

struct Scenario {
    name: &'static str,
    /// `routing.mode` the cluster's agents must first start with; a
    /// scenario whose mode differs from the running cluster's boots a new one.
    boot_mode: Option<&'static str>,
    run: fn(&mut Cluster) -> Outcome,
    default: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "basic",
        boot_mode: None,
        run: basic,
        default: true,
    },
    Scenario {
        name: "native",
        boot_mode: None,
        run: native,
        default: true,
    },
    Scenario {
        name: "switch",
        boot_mode: None,
        run: switch,
        default: true,
    },
    Scenario {
        name: "vxlan",
        boot_mode: Some("vxlan"),
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
    // NETLET_VM_NODES=3: a bigger cluster (default 2; 512 MiB each).
    let nodes = std::env::var("NETLET_VM_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let mut current: Option<(Option<&str>, Cluster)> = None;
    let mut failed = Vec::new();
    let mut passed = 0;
    for s in SCENARIOS {
        let wanted = match only.as_deref() {
            Some(list) => list.split(',').any(|n| n.trim() == s.name),
            None => s.default,
        };
        if !wanted {
            continue;
        }
        if current.as_ref().is_none_or(|(mode, _)| *mode != s.boot_mode) {
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
