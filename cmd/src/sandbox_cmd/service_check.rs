//! Services through the agent's eBPF load balancing: each ClusterIP of the
//! example Service demo/web, over TCP and UDP, from a pod and from the
//! node. The programs are attached to the sandbox's own cgroup, so the
//! checks' clients run in it and the rest of the machine is untouched.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use sandbox::PodTable;
use testbed::Cgroup;

use super::report::{Outcome, Report};

const SERVICE: (&str, &str) = ("demo", "web");
const CLIENT_POD: &str = "demo/client";

pub async fn run(client: &kube::Client, pods: &PodTable, cgroup: &Cgroup, report: &mut Report) {
    let (namespace, name) = SERVICE;
    let ips: Vec<IpAddr> = match Api::<Service>::namespaced(client.clone(), namespace).get(name).await {
        Ok(s) => s
            .spec
            .and_then(|s| s.cluster_ips)
            .unwrap_or_default()
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect(),
        Err(e) => {
            report.record(Outcome::Fail, format!("Service {namespace}/{name}: {e}"));
            return;
        }
    };
    let Some(pod_netns) = pods.get(CLIENT_POD).map(|p| p.netns) else {
        report.record(Outcome::Fail, format!("Services: pod {CLIENT_POD} never started"));
        return;
    };
    for ip in ips {
        for (proto, port) in [("TCP", 80), ("UDP", 53)] {
            for from in [Some(pod_netns.as_str()), None] {
                let answered = tokio::task::block_in_place(|| echoes(from, cgroup, proto, ip, port));
                let who = from.map_or("the node".to_string(), |_| format!("pod {CLIENT_POD}"));
                let target = match ip {
                    IpAddr::V4(_) => format!("{ip}:{port}/{proto}"),
                    IpAddr::V6(_) => format!("[{ip}]:{port}/{proto}"),
                };
                report.check(
                    answered,
                    format!("{who} reaches Service {namespace}/{name} at {target}"),
                    format!("{who} gets no answer from Service {namespace}/{name} at {target}"),
                );
            }
        }
    }
}

/// Whether the echo servers behind the Service send "hi" back.
fn echoes(netns: Option<&str>, cgroup: &Cgroup, proto: &str, ip: IpAddr, port: u16) -> bool {
    let target = match ip {
        IpAddr::V4(_) => format!("{proto}4:{ip}:{port}"),
        IpAddr::V6(_) => format!("{proto}6:[{ip}]:{port}"),
    };
    let text = testbed::exchange(
        || {
            let mut cmd = match netns {
                Some(ns) => {
                    let mut c = std::process::Command::new("ip");
                    c.args(["netns", "exec", ns, "socat"]);
                    c
                }
                None => std::process::Command::new("socat"),
            };
            cmd.args(["-T", "1", "-", &target]);
            cgroup.adopt(&mut cmd);
            cmd
        },
        |text| text.contains("hi"),
    );
    text.contains("hi")
}
