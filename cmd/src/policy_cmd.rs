//! `netlet policy`: what NetworkPolicy enforcement holds for each pod of
//! this node, the explanation of one flow's verdict, and the drops.

use std::process::ExitCode;

use anyhow::Context;
use netstack::admin::client;
use netstack::policy::{DropRecord, PolicyReport, TraceReport};

use crate::cli::{Output, PolicyArgs, PolicyCommand, QueryArgs};
use crate::status_cmd::query;

const NOT_ENABLED: &str = "is the agent running with policy.enabled: true?";

pub fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Status(q) => status(&q),
        PolicyCommand::Trace {
            from,
            to,
            port,
            family,
            admin,
        } => trace(&admin, &from, &to, &port, &family),
        PolicyCommand::Drops { follow, admin } => drops(&admin, follow),
    }
}

fn status(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let r: PolicyReport = query(args, "/v1/policy").context(NOT_ENABLED)?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !r.enforcing {
        println!("NetworkPolicy enforcement is not loaded yet.");
        return Ok(ExitCode::from(3));
    }
    println!("{} NetworkPolicies, {} pod identities", r.policies, r.identities);
    for e in &r.errors {
        println!("INVALID: {e}");
    }
    println!(
        "{:<36} {:<16} {:<9} {:<36} {:<36}",
        "POD", "INTERFACE", "IDENTITY", "INGRESS", "EGRESS"
    );
    for pod in &r.pods {
        let direction = |d: &netstack::policy::DirectionReport| match d.isolated_by.is_empty() {
            true => format!("open ({} ok)", d.allowed),
            false => format!("{} rules, {} ok, {} dropped", d.rules, d.allowed, d.dropped),
        };
        println!(
            "{:<36} {:<16} {:<9} {:<36} {:<36}",
            pod.pod.as_deref().unwrap_or("(no pod)"),
            pod.interface,
            format!("#{}", pod.identity),
            direction(&pod.ingress),
            direction(&pod.egress)
        );
    }
    let used: Vec<String> = (r.allowed_by_policy.iter())
        .filter(|(_, n)| *n > 0)
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    if !used.is_empty() {
        println!("Flows allowed by policy: {}", used.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn trace(admin: &QueryArgs, from: &str, to: &str, port: &str, family: &str) -> anyhow::Result<ExitCode> {
    let path = format!(
        "/v1/policy/trace?from={}&to={}&port={}&family={}",
        escape(from),
        escape(to),
        escape(port),
        escape(family)
    );
    let r: TraceReport = query(admin, &path)?;
    match admin.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Output::Table => print!("{}", r.explanation),
    }
    // Scripts can test a verdict: 0 allowed, 1 denied.
    Ok(match r.allowed {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

/// Percent-encodes the characters a query value cannot hold as they are.
fn escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn drops(admin: &QueryArgs, follow: bool) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/policy/drops?follow={follow}");
    let json = admin.output == Output::Json;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let resp = rt.block_on(client::get_lines(&admin.socket, &path, |line| {
        if json {
            println!("{line}");
            return;
        }
        match serde_json::from_str::<DropRecord>(line) {
            Ok(r) => println!("{r}"),
            Err(_) => println!("{line}"),
        }
    }))?;
    anyhow::ensure!(
        resp.status == 200,
        "the agent answered {}: {} ({NOT_ENABLED})",
        resp.status,
        resp.body.trim()
    );
    Ok(ExitCode::SUCCESS)
}
