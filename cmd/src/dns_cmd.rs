//! `netlet dns`: the cluster DNS server's state, and `netlet dns query`,
//! which asks the running server itself, the way a pod would.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use netstack::dns::DnsReport;

use crate::cli::{DnsArgs, DnsCommand, Output, QueryArgs};
use crate::status_cmd::query;

pub fn run(args: DnsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DnsCommand::Status(q) => status(&q),
        DnsCommand::Query {
            name,
            rtype,
            tcp,
            server,
            admin,
        } => ask(&admin, &name, &rtype, tcp, server),
    }
}

fn report(args: &QueryArgs) -> anyhow::Result<DnsReport> {
    query(args, "/v1/dns").context("is the agent running with dns.enabled: true?")
}

fn status(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let r = report(args)?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let list = |v: &[SocketAddr]| match v.is_empty() {
        true => "-".to_string(),
        false => v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
    };
    println!("Listening:   {}", list(&r.listen));
    println!("Upstreams:   {}", list(&r.upstreams));
    if !r.looping_upstreams.is_empty() {
        println!(
            "Looping:     {} (forward back to us; not asked)",
            list(&r.looping_upstreams)
        );
    }
    let synced = if r.zone_synced {
        "synced"
    } else {
        "not synced: its names get SERVFAIL"
    };
    println!("Zone:        {} Services, {synced}", r.zone_services);
    println!(
        "Cache:       {} answers, {} hits, {} misses",
        r.cache_entries, r.cache_hits, r.cache_misses
    );
    let counts = |v: &[(String, u64)]| {
        v.iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("Queries:     {}", counts(&r.queries));
    println!("Responses:   {}", counts(&r.responses));
    Ok(ExitCode::SUCCESS)
}

fn ask(admin: &QueryArgs, name: &str, rtype: &str, tcp: bool, server: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let server = match server {
        Some(s) => s,
        None => *report(admin)?
            .listen
            .first()
            .context("the agent's DNS server is not listening yet")?,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reply = rt.block_on(dns::client::ask(server, name, rtype, tcp))?;
    let mut flags = Vec::new();
    if reply.authoritative {
        flags.push("aa");
    }
    if reply.truncated {
        flags.push("tc");
    }
    let transport = if reply.tcp { "TCP" } else { "UDP" };
    println!(
        ";; {} from {server} over {transport} [{}]",
        reply.rcode,
        flags.join(" ")
    );
    for (title, records) in [
        ("ANSWER", &reply.answers),
        ("AUTHORITY", &reply.authority),
        ("ADDITIONAL", &reply.additional),
    ] {
        if !records.is_empty() {
            println!(";; {title}");
            for r in records {
                println!("{r}");
            }
        }
    }
    // Like `host`: a name that does not exist is a failure for scripts.
    Ok(match reply.rcode.as_str() {
        "No Error" | "NOERROR" => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}
