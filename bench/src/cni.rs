//! The netlet plugin run the way a container runtime runs it.

use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context};
use serde_json::Value;
use testbed::Netns;
use tokio::io::AsyncWriteExt;

/// CNI ADD for pod `namespace/name` in `ns`, as a runtime runs it; the
/// pod's addresses.
pub async fn cni_add(
    plugin: &Path,
    conf: &Value,
    ns: &Netns,
    id: &str,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Vec<String>> {
    let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}");
    let mut child = tokio::process::Command::new(plugin)
        .env_clear()
        .envs([
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", id),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            ("CNI_ARGS", args.as_str()),
        ])
        .env("CNI_NETNS", ns.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("piped stdin")?;
    stdin.write_all(conf.to_string().as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    let result: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "CNI ADD of {namespace}/{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    if !out.status.success() {
        bail!("CNI ADD of {namespace}/{name} failed: {result}");
    }
    Ok((result["ips"].as_array().into_iter().flatten())
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next())
        .map(str::to_string)
        .collect())
}
