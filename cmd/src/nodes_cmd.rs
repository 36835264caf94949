//! `netlet nodes`: the other Nodes this node routes pod traffic to, their
//! addresses and pod CIDRs, and per pod CIDR the route (and, with VXLAN,
//! the tunnel entries) the kernel has for it.

use std::process::ExitCode;

use anyhow::Context;
use netstack::routing::NodesReport;

use crate::cli::{Output, QueryArgs};
use crate::status_cmd::query;

pub fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let report: NodesReport =
        query(&args, "/v1/nodes").context("is the agent running with routing.mode native or vxlan?")?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", render(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A header line (mode, tunnels), then one line per peer pod CIDR, then
/// the problems.
pub fn render(report: &NodesReport) -> String {
    let mut out = format!("routing: {} on {}\n", report.mode, report.node);
    for t in &report.tunnels {
        out += &format!("tunnel {}: local {} mac {} mtu {}\n", t.device, t.local, t.mac, t.mtu);
    }
    let mut rows = vec![[
        "NODE".to_string(),
        "ADDRESSES".to_string(),
        "POD CIDR".to_string(),
        "VIA".to_string(),
        "STATE".to_string(),
    ]];
    for p in &report.peers {
        let addresses = p.internal_ips.join(",");
        if p.routes.is_empty() {
            rows.push([
                p.name.clone(),
                addresses.clone(),
                p.pod_cidrs.join(","),
                "-".to_string(),
                "not routed".to_string(),
            ]);
        }
        for r in &p.routes {
            let mut via = r.via.clone();
            if let Some(dev) = &r.device {
                via += &format!(" dev {dev}");
            }
            if let Some(vtep) = &r.vtep {
                via += &format!(" (vtep {vtep})");
            }
            let state = if r.installed { "installed" } else { "missing" };
            rows.push([
                p.name.clone(),
                addresses.clone(),
                r.pod_cidr.clone(),
                via,
                state.to_string(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        out += &format!(
            "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    }
    for p in &report.peers {
        for problem in &p.problems {
            out += &format!("{}: {problem}\n", p.name);
        }
    }
    for problem in &report.problems {
        out += &format!("{}: {problem}\n", report.node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_per_pod_cidr_then_the_problems() {
        let report: NodesReport = serde_json::from_value(serde_json::json!({
            "mode": "vxlan", "node": "a",
            "tunnels": [{"device": "netlet-vx4", "local": "192.0.2.1", "mac": "0e:4e:c0:00:02:01", "mtu": 1450}],
            "peers": [
                {"name": "b", "internalIPs": ["192.0.2.2"], "podCIDRs": ["10.0.1.0/24"], "routes": [
                    {"podCIDR": "10.0.1.0/24", "via": "10.0.1.0", "device": "netlet-vx4",
                     "vtep": "0e:4e:c0:00:02:02 at 192.0.2.2", "installed": true}]},
                {"name": "c", "internalIPs": [], "podCIDRs": ["10.0.2.0/24"], "routes": [],
                 "problems": ["podCIDR 10.0.2.0/24: the Node has no IPv4 InternalIP"]},
            ],
        }))
        .unwrap();
        let out = render(&report);
        assert!(
            out.starts_with("routing: vxlan on a\ntunnel netlet-vx4: local 192.0.2.1"),
            "{out}"
        );
        assert!(
            out.contains("b     192.0.2.2  10.0.1.0/24  10.0.1.0 dev netlet-vx4 (vtep 0e:4e:c0:00:02:02 at 192.0.2.2)  installed"),
            "{out}"
        );
        assert!(
            out.contains("not routed") && out.contains("c: podCIDR 10.0.2.0/24: the Node has no IPv4"),
            "{out}"
        );
    }
}
