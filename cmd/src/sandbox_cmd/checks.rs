//! What the sandbox checks, in the order a user would: the agent is ready,
//! the examples are in its cache, pods have namespaces and addresses,
//! Services have EndpointSlices. Parts that have not landed yet are listed
//! as such.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use netstack::RunningAgent;
use sandbox::PodTable;

use super::apply::{apply_dir, Applied};
use super::cache_check::holds;
use super::report::{Outcome, Report};
use super::wait_until;

const READY_WITHIN: Duration = Duration::from_secs(20);
const CONVERGE_WITHIN: Duration = Duration::from_secs(15);

pub async fn run(
    client: &kube::Client,
    agent: &RunningAgent,
    pods: &PodTable,
    examples: &Path,
    cgroup: &testbed::Cgroup,
    dns_server: std::net::IpAddr,
    report: &mut Report,
) -> anyhow::Result<()> {
    let ready = wait_until(READY_WITHIN, || async { agent.status().ready }).await;
    let not_ready = agent.status().not_ready.join("; ");
    report.check(
        ready,
        "agent ready: every watched kind listed into the shared cache",
        format!("agent not ready: {not_ready}"),
    );
    if !ready {
        return Ok(());
    }

    let applied = match apply_dir(client, examples).await {
        Ok(a) => a,
        Err(e) => {
            report.record(Outcome::Fail, format!("applying {}: {e:#}", examples.display()));
            return Ok(());
        }
    };
    report.record(
        Outcome::Pass,
        format!("applied {} objects from {}", applied.len(), examples.display()),
    );

    let cache = agent.cache().clone();
    let cached = wait_until(CONVERGE_WITHIN, || {
        let all = applied.iter().all(|a| holds(&cache, a));
        async move { all }
    })
    .await;
    let missing: Vec<String> = applied.iter().filter(|a| !holds(&cache, a)).map(describe).collect();
    report.check(
        cached,
        format!("agent cache holds every example object ({})", counts(&applied)),
        format!("agent cache is missing {}", missing.join(", ")),
    );

    check_pods(&applied, pods, report).await;
    check_traffic(pods, report).await;
    check_slices(&applied, agent, report).await;
    super::service_check::run(client, pods, cgroup, report).await;
    super::dns_check::run(client, dns_server, pods, report).await;

    // Built and tested (cmd/tests/services.rs), but the sandbox has no
    // network outside the node to show it from.
    report.record(
        Outcome::NotYet,
        "Services from outside the node (NodePort, LoadBalancer): not shown here, the sandbox has no outside network",
    );
    // Last: its policies close traffic the checks above need open.
    super::policy_check::run(client, pods, report).await;
    Ok(())
}

fn describe(a: &Applied) -> String {
    match &a.namespace {
        Some(ns) => format!("{} {ns}/{}", a.kind, a.name),
        None => format!("{} {}", a.kind, a.name),
    }
}

fn counts(applied: &[Applied]) -> String {
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for a in applied {
        *kinds.entry(a.kind.as_str()).or_default() += 1;
    }
    kinds
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn check_pods(applied: &[Applied], pods: &PodTable, report: &mut Report) {
    let keys: Vec<String> = applied
        .iter()
        .filter(|a| a.kind == "Pod")
        .map(|a| format!("{}/{}", a.namespace.as_deref().unwrap_or("default"), a.name))
        .collect();
    let started = wait_until(CONVERGE_WITHIN, || {
        let all = keys.iter().all(|k| pods.get(k).is_some());
        async move { all }
    })
    .await;
    if !started {
        let missing: Vec<&String> = keys.iter().filter(|k| pods.get(k).is_none()).collect();
        report.record(Outcome::Fail, format!("the kubelet did not start {missing:?}"));
        return;
    }
    for key in &keys {
        let r = pods.get(key).expect("checked above");
        let netns = Path::new("/run/netns").join(&r.netns).exists();
        report.check(
            netns,
            format!("pod {key} has network namespace {}", r.netns),
            format!("pod {key}: namespace {} is missing", r.netns),
        );
        match &r.cni_error {
            None => {
                let ips: Vec<String> = r.ips.iter().map(ToString::to_string).collect();
                report.check(
                    !ips.is_empty(),
                    format!("pod {key} addresses: {}", ips.join(", ")),
                    format!("pod {key}: CNI ADD returned no address"),
                );
            }
            Some(e) => report.record(Outcome::Fail, format!("pod {key}: {e}")),
        }
    }
}

/// One ICMP echo to `addr`, from inside `netns` or from the node.
async fn ping(netns: Option<&str>, addr: &std::net::IpAddr) -> bool {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns, "ping"]);
            c
        }
        None => tokio::process::Command::new("ping"),
    };
    let addr = addr.to_string();
    cmd.args(["-c", "1", "-W", "2", &addr])
        .output()
        .await
        .is_ok_and(|o| o.status.success())
}

/// Pod-to-pod and node-to-pod, in every family the pods have.
async fn check_traffic(pods: &PodTable, report: &mut Report) {
    let wired: Vec<(String, sandbox::PodReport)> = pods.all().into_iter().filter(|(_, r)| !r.ips.is_empty()).collect();
    let [(from_key, from), (to_key, to), ..] = wired.as_slice() else {
        report.record(Outcome::Fail, "pod-to-pod traffic: fewer than two pods have addresses");
        return;
    };
    for ip in &to.ips {
        let ok = ping(Some(&from.netns), ip).await;
        report.check(
            ok,
            format!("pod {from_key} reaches pod {to_key} at {ip}"),
            format!("pod {from_key} cannot reach pod {to_key} at {ip}"),
        );
        let ok = ping(None, ip).await;
        report.check(
            ok,
            format!("the node reaches pod {to_key} at {ip}"),
            format!("the node cannot reach pod {to_key} at {ip}"),
        );
    }
}

async fn check_slices(applied: &[Applied], agent: &RunningAgent, report: &mut Report) {
    let cache = agent.cache().clone();
    for svc in applied.iter().filter(|a| a.kind == "Service") {
        let has_selector = svc.object.data["spec"]["selector"]
            .as_object()
            .is_some_and(|s| !s.is_empty());
        if !has_selector {
            continue;
        }
        let ns = svc.namespace.clone().unwrap_or_default();
        let slices_of = |cache: &netstack::cache::Cache| -> Vec<String> {
            cache
                .list::<EndpointSlice>()
                .iter()
                .filter(|s| {
                    s.metadata.namespace.as_deref() == Some(ns.as_str())
                        && s.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("kubernetes.io/service-name"))
                            == Some(&svc.name)
                })
                .filter_map(|s| s.metadata.name.clone())
                .collect()
        };
        let found = wait_until(CONVERGE_WITHIN, || {
            let any = !slices_of(&cache).is_empty();
            async move { any }
        })
        .await;
        report.check(
            found,
            format!(
                "Service {ns}/{} has EndpointSlices in the agent cache ({})",
                svc.name,
                slices_of(&cache).join(", ")
            ),
            format!("Service {ns}/{} has no EndpointSlice in the agent cache", svc.name),
        );
    }
}
