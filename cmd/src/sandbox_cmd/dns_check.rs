//! Cluster DNS as a pod sees it: from inside the example client pod's
//! network namespace, the agent's server at the cluster DNS address
//! answers a Service name, a headless Service (its pods' addresses) and an
//! ExternalName, whose outside name comes from the upstream the sandbox
//! runs (it has no internet).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use k8s_openapi::api::core::v1::Service;
use sandbox::PodTable;

use super::report::{Outcome, Report};

const CLIENT_POD: &str = "demo/client";

/// The outside name the example ExternalName points at, and the address
/// the sandbox's upstream gives it (a documentation address: nothing is
/// sent there).
pub const OUTSIDE: (&str, &str) = ("example.internal.", "192.0.2.80");

pub async fn run(client: &kube::Client, server: IpAddr, pods: &PodTable, report: &mut Report) {
    let Some(netns) = pods.get(CLIENT_POD).map(|p| p.netns) else {
        return report.record(Outcome::Fail, format!("cluster DNS: pod {CLIENT_POD} never started"));
    };
    let web_headless: Vec<String> = ["demo/web-1", "demo/web-2"]
        .iter()
        .filter_map(|p| pods.get(p))
        .flat_map(|p| p.ips)
        .filter(IpAddr::is_ipv4)
        .map(|ip| ip.to_string())
        .collect();
    let web: Vec<String> = kube::Api::<Service>::namespaced(client.clone(), "demo")
        .get("web")
        .await
        .ok()
        .and_then(|s| s.spec?.cluster_ips)
        .unwrap_or_default()
        .into_iter()
        .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .collect();
    let cases = [
        ("web.demo.svc.cluster.local", "a Service name", web),
        (
            "web-headless.demo.svc.cluster.local",
            "a headless Service",
            web_headless,
        ),
        (
            "upstream.demo.svc.cluster.local",
            "an external name",
            vec![OUTSIDE.1.to_string()],
        ),
    ];
    for (name, what, want) in cases {
        let path = Path::new("/run/netns").join(&netns);
        let got = tokio::task::block_in_place(|| ask_from(&path, server, name));
        let ok = got
            .as_ref()
            .is_ok_and(|a| !a.is_empty() && sorted(a.clone()) == sorted(want.clone()));
        let shown = got.unwrap_or_else(|e| vec![e]).join(", ");
        report.check(
            ok,
            format!("pod {CLIENT_POD} resolves {what}: {name} -> {shown}"),
            format!("pod {CLIENT_POD} cannot resolve {what} {name}: got {shown}, want {want:?}"),
        );
    }
}

/// The IPv4 addresses in the answer to `name`, asked from inside `netns`.
fn ask_from(netns: &Path, server: IpAddr, name: &str) -> Result<Vec<String>, String> {
    testbed::run_in(netns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(dns::client::ask(SocketAddr::new(server, 53), name, "A", false))
            .map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
    .map(|reply| {
        reply
            .answers
            .iter()
            .filter_map(|r| {
                r.split_whitespace()
                    .last()
                    .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
            })
            .map(str::to_string)
            .collect()
    })
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
