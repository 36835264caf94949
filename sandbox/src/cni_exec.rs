//! Running a CNI plugin the way a container runtime does: environment
//! variables for the operation, the network config on stdin, the result or
//! error JSON on stdout.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::Error;

/// What the plugin said when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniFailure {
    pub code: u64,
    pub msg: String,
    pub details: String,
}

impl std::fmt::Display for CniFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub enum CniOutcome {
    /// The result document and the addresses in it.
    Ok {
        result: Value,
        ips: Vec<IpAddr>,
    },
    Failed(CniFailure),
}

/// One invocation's parameters.
pub struct Invocation<'a> {
    pub plugin: &'a Path,
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    pub args: &'a str,
    pub cni_path: &'a [PathBuf],
    pub config: &'a Value,
}

/// libcni turns a conflist into per-plugin configs by adding the list's
/// name and version; only the first plugin of a list is run here.
pub fn plugin_config(conf: &Value) -> Value {
    match conf.get("plugins").and_then(Value::as_array).and_then(|p| p.first()) {
        Some(first) => {
            let mut c = first.clone();
            c["name"] = conf["name"].clone();
            c["cniVersion"] = conf["cniVersion"].clone();
            c
        }
        None => conf.clone(),
    }
}

pub async fn invoke(inv: &Invocation<'_>) -> Result<CniOutcome, Error> {
    let path = std::env::join_paths(inv.cni_path).unwrap_or_default();
    let mut cmd = tokio::process::Command::new(inv.plugin);
    cmd.env_clear()
        .env("CNI_COMMAND", inv.command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", path)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = inv.netns {
        cmd.env("CNI_NETNS", ns);
    }
    let exec_err = |source| Error::Exec {
        plugin: inv.plugin.display().to_string(),
        source,
    };
    let mut child = cmd.spawn().map_err(exec_err)?;
    let stdin = serde_json::to_vec(&plugin_config(inv.config)).expect("JSON values serialize");
    if let Some(mut pipe) = child.stdin.take() {
        // A plugin may answer without reading its config (VERSION, or an
        // early error); its exit status and stdout still tell the outcome.
        match pipe.write_all(&stdin).await {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(exec_err(e)),
            _ => {}
        }
    }
    let out = child.wait_with_output().await.map_err(exec_err)?;
    let doc: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if out.status.success() {
        let result = doc.unwrap_or(Value::Null);
        let ips = result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
            .collect();
        return Ok(CniOutcome::Ok { result, ips });
    }
    let failure = match doc {
        Some(d) if d.get("code").is_some() => CniFailure {
            code: d["code"].as_u64().unwrap_or(0),
            msg: d["msg"].as_str().unwrap_or_default().to_string(),
            details: d["details"].as_str().unwrap_or_default().to_string(),
        },
        _ => CniFailure {
            code: 0,
            msg: format!("plugin exited with {} and no error document", out.status),
            details: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        },
    };
    Ok(CniOutcome::Failed(failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conflist_first_plugin_gets_name_and_version() {
        let conf =
            json!({"cniVersion":"1.1.0","name":"netlet","plugins":[{"type":"netlet","mtu":1400},{"type":"portmap"}]});
        assert_eq!(
            plugin_config(&conf),
            json!({"type":"netlet","mtu":1400,"name":"netlet","cniVersion":"1.1.0"})
        );
        let single = json!({"cniVersion":"1.0.0","name":"x","type":"bridge"});
        assert_eq!(plugin_config(&single), single);
    }
}
