//! NetworkPolicy through the agent's eBPF enforcement: a default-deny
//! policy in namespace demo blocks the client pod's connections to the web
//! pods, and a rule allowing app=client to reach app=web on its named port
//! lets exactly that through, while web-2 still cannot reach web-1. The
//! policies are removed again, leaving the examples as they were applied.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use sandbox::PodTable;
use serde_json::json;

use super::report::{Outcome, Report};

const NAMESPACE: &str = "demo";
/// A blocked connection attempt gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn run(client: &kube::Client, pods: &PodTable, report: &mut Report) {
    let (Some(client_pod), Some(web_1), Some(web_2)) =
        (pods.get("demo/client"), pods.get("demo/web-1"), pods.get("demo/web-2"))
    else {
        report.record(Outcome::Fail, "NetworkPolicy: the demo pods never started");
        return;
    };
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    let policies = [
        json!({"metadata": {"name": "default-deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        json!({"metadata": {"name": "web-from-client"}, "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]}],
        }}),
    ];
    for (i, policy) in policies.iter().enumerate() {
        let policy: NetworkPolicy = serde_json::from_value(policy.clone()).expect("a valid NetworkPolicy");
        if let Err(e) = api.create(&PostParams::default(), &policy).await {
            report.record(
                Outcome::Fail,
                format!(
                    "NetworkPolicy: cannot create {NAMESPACE}/{:?}: {e}",
                    policy.metadata.name
                ),
            );
            return;
        }
        let web_1_ip = web_1.ips[0];
        let flows: Vec<(&str, &str, bool)> = match i {
            0 => vec![("demo/client", &client_pod.netns, false)],
            _ => vec![
                ("demo/client", &client_pod.netns, true),
                ("demo/web-2", &web_2.netns, false),
            ],
        };
        for (from, netns, allowed) in flows {
            let seen = tokio::task::block_in_place(|| settles_to(netns, web_1_ip, allowed));
            let (verdict, rule) = match i {
                0 => ("blocked", "default-deny ingress in demo"),
                _ => (
                    if allowed { "allowed" } else { "still blocked" },
                    "an allow rule for app=client on port http",
                ),
            };
            report.check(
                seen,
                format!("NetworkPolicy: {from} -> demo/web-1 {web_1_ip}:8080 {verdict} by {rule}"),
                format!("NetworkPolicy: {from} -> demo/web-1 {web_1_ip}:8080 is not {verdict} under {rule}"),
            );
        }
    }
    for name in ["web-from-client", "default-deny"] {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}

/// Whether a TCP connection from `netns` to the web pod's echo server at
/// `ip` comes to answer (`allowed`) or not, within the 10 s `exchange`
/// keeps trying.
fn settles_to(netns: &str, ip: IpAddr, allowed: bool) -> bool {
    let target = match ip {
        IpAddr::V4(_) => format!("TCP4:{ip}:8080,connect-timeout={}", CONNECT_TIMEOUT.as_secs()),
        IpAddr::V6(_) => format!("TCP6:[{ip}]:8080,connect-timeout={}", CONNECT_TIMEOUT.as_secs()),
    };
    let answered = |text: &str| text.contains("hi");
    let text = testbed::exchange(
        || {
            let mut cmd = std::process::Command::new("ip");
            cmd.args(["netns", "exec", netns, "socat", "-T", "1", "-", &target]);
            cmd
        },
        |text| answered(text) == allowed,
    );
    answered(&text) == allowed
}
