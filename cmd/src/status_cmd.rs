//! `netlet status`: the agent's state from its admin API.

use std::process::ExitCode;

use anyhow::Context;
use netstack::admin::{client, StatusReport};

use crate::cli::{Output, QueryArgs};

/// `GET path` from the agent's admin socket, decoded.
pub fn query<T: serde::de::DeserializeOwned>(args: &QueryArgs, path: &str) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let resp = rt.block_on(client::get(&args.socket, path))?;
    anyhow::ensure!(
        resp.status == 200,
        "the agent answered {}: {}",
        resp.status,
        resp.body.trim()
    );
    serde_json::from_str(&resp.body).with_context(|| format!("the agent's answer to {path} does not parse"))
}

pub fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let report: StatusReport = query(&args, "/v1/status")?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", render(&report)),
    }
    Ok(if report.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The human view of a status report.
pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let ready = if r.ready {
        "yes".to_string()
    } else {
        format!("no: {}", r.not_ready.join("; "))
    };
    let api_server = r.versions.api_server.as_deref().unwrap_or("not reached yet");
    let rss = r.rss_bytes.map(mib).unwrap_or_else(|| "?".into());
    out += &format!("Node:        {}\n", r.node);
    out += &format!("Ready:       {ready}\n");
    out += &format!(
        "Versions:    netlet {}, Kubernetes API {}, API server {api_server}\n",
        r.versions.netlet, r.versions.kubernetes_api
    );
    out += &format!("Uptime:      {}s\n", r.uptime_seconds);
    out += &format!("Memory:      {rss} resident\n");
    out += &format!(
        "Store:       {} (schema {}, {})\n\n",
        r.store.path,
        r.store.schema_version,
        mib(r.store.size_bytes)
    );
    let mut rows = vec![["KIND", "OBJECTS", "SYNCED", "EVENTS", "RELISTS", "ERRORS"]
        .map(String::from)
        .to_vec()];
    for k in &r.cache {
        rows.push(vec![
            k.kind.clone(),
            k.objects.to_string(),
            yes_no(k.synced),
            k.events.to_string(),
            k.relists.to_string(),
            k.errors.to_string(),
        ]);
    }
    out += &table(&rows);
    if !r.modules.is_empty() {
        let mut rows = vec![["MODULE", "STATE", "RECONCILES", "ERRORS", "LAST ERROR"]
            .map(String::from)
            .to_vec()];
        for m in &r.modules {
            rows.push(vec![
                m.name.clone(),
                format!("{:?}", m.state).to_lowercase(),
                m.reconciles.to_string(),
                m.reconcile_errors.to_string(),
                m.last_error.clone().unwrap_or_default(),
            ]);
        }
        out += "\n";
        out += &table(&rows);
    }
    out
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}
