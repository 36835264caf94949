//! `netlet services`: each Service's frontends and backends as the BPF
//! maps hold them (read back from the kernel by the agent), then the
//! LoadBalancer IPs netlet allocated and why a Service lacks one.

use std::process::ExitCode;

use anyhow::Context;
use netstack::lb::ServiceReport;

use crate::cli::{Output, QueryArgs};
use crate::status_cmd::query;

pub fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let report: Vec<ServiceReport> =
        query(&args, "/v1/services").context("is the agent running with services.enabled: true?")?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}{}", render(&report), render_load_balancers(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per frontend: the Service, where it listens, for whom, and
/// where it sends.
fn render(report: &[ServiceReport]) -> String {
    let mut rows = vec![[
        "SERVICE".to_string(),
        "FRONTEND".to_string(),
        "SCOPE".to_string(),
        "BACKENDS".to_string(),
    ]];
    for s in report {
        let service = match s.name.is_empty() {
            true => "(no Service)".to_string(),
            false => format!("{}/{}", s.namespace, s.name),
        };
        for f in &s.frontends {
            let mut backends = match f.backends.is_empty() {
                true if f.drops_when_empty => "none: dropped".to_string(),
                true => "none: refused".to_string(),
                false => f.backends.join(", "),
            };
            if f.affinity_seconds > 0 {
                backends += &format!(" (ClientIP affinity {}s)", f.affinity_seconds);
            }
            if !f.source_ranges.is_empty() {
                backends += &format!(" (from {})", f.source_ranges.join(", "));
            }
            rows.push([
                service.clone(),
                format!("{}/{}", f.address, f.protocol),
                f.scope.clone(),
                backends,
            ]);
        }
    }
    let widths: Vec<usize> = (0..3)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            format!(
                "{:w0$}  {:w1$}  {:w2$}  {}\n",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        })
        .collect()
}

/// One line per Service with LoadBalancer IPs from netlet's pool, or a
/// request for them it cannot have (each problem on a line of its own);
/// nothing when there are none.
fn render_load_balancers(report: &[ServiceReport]) -> String {
    let mut rows = Vec::new();
    for s in report
        .iter()
        .filter(|s| !s.load_balancer_ips.is_empty() || !s.load_balancer_errors.is_empty())
    {
        let ips: Vec<String> = s
            .load_balancer_ips
            .iter()
            .map(|ip| match ip.announced {
                true => format!("{} (announced)", ip.ip),
                false => format!("{} (not yet announced)", ip.ip),
            })
            .collect();
        let ips = match ips.is_empty() {
            true => "none".to_string(),
            false => ips.join(", "),
        };
        let service = format!("{}/{}", s.namespace, s.name);
        match s.load_balancer_errors.split_first() {
            None => rows.push([service, ips, String::new()]),
            Some((first, rest)) => {
                rows.push([service, ips, first.clone()]);
                rows.extend(rest.iter().map(|e| [String::new(), String::new(), e.clone()]));
            }
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    rows.insert(
        0,
        [
            "SERVICE".to_string(),
            "LOADBALANCER IPS".to_string(),
            "PROBLEM".to_string(),
        ],
    );
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
    let lines: String = rows
        .iter()
        .map(|r| format!("{:w0$}  {:w1$}  {}", r[0], r[1], r[2]).trim_end().to_string() + "\n")
        .collect();
    format!("\n{lines}")
}
