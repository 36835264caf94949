//! `netlet ipam`: this node's pod CIDRs and who holds which address.

use std::process::ExitCode;

use netstack::cni::report::IpamReport;

use crate::cli::{Output, QueryArgs};
use crate::status_cmd::{query, table};

pub fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let report: IpamReport = query(&args, "/v1/ipam")?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", render(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn render(r: &IpamReport) -> String {
    let mut out = format!("Cluster CIDRs: {}\n\n", r.cluster_cidrs.join(", "));
    if r.blocks.is_empty() {
        out += "This node has no pod CIDRs yet.\n";
    } else {
        let mut rows = vec![["POD CIDR", "FAMILY", "USABLE", "LEASED", "FREE"]
            .map(String::from)
            .to_vec()];
        for b in &r.blocks {
            rows.push(vec![
                b.cidr.clone(),
                b.family.clone(),
                b.usable.to_string(),
                b.leased.to_string(),
                b.free.to_string(),
            ]);
        }
        out += &table(&rows);
    }
    out += "\n";
    if r.leases.is_empty() {
        out += "No leases.\n";
    } else {
        let mut rows = vec![["ADDRESS", "POD", "CONTAINER", "INTERFACE"].map(String::from).to_vec()];
        for l in &r.leases {
            rows.push(vec![
                l.address.to_string(),
                l.pod.clone().unwrap_or_else(|| "-".into()),
                l.container_id.clone(),
                l.ifname.clone(),
            ]);
        }
        out += &table(&rows);
    }
    out
}
