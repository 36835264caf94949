//! One plugin call: spawn, feed the config, collect the outcome.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::config::plugin_config;
use super::result::{outcome, CniFailure, CniSuccess};

/// How long a call may take before the plugin is killed; a plugin that
/// hangs must not stall every other pod. (The kubelet's runtime request
/// timeout is 2 minutes.)
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// One call's parameters.
pub(crate) struct Invocation<'a> {
    pub plugin: &'a Path,
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub args: &'a str,
    pub cni_path: &'a [PathBuf],
    /// The network config or conflist.
    pub config: &'a Value,
}

/// Runs the plugin. Every way it can go wrong (cannot start, hangs, fails,
/// prints nonsense) comes back as a [`CniFailure`], as a runtime reports
/// them all as "failed to set up the pod's network".
pub(crate) async fn invoke(inv: &Invocation<'_>) -> Result<CniSuccess, CniFailure> {
    let plugin = inv.plugin.display();
    let cni_path = std::env::join_paths(inv.cni_path)
        .map_err(|e| CniFailure::runtime(format!("invalid CNI_PATH {:?}", inv.cni_path), e.to_string()))?;
    // libcni passes the runtime's own environment plus the CNI variables.
    let mut child = tokio::process::Command::new(inv.plugin)
        .env("CNI_COMMAND", inv.command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CniFailure::runtime(format!("cannot run the CNI plugin {plugin}"), e.to_string()))?;
    let config = serde_json::to_vec(&plugin_config(inv.config)).expect("JSON values serialize");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let feed = async move {
        // A plugin may answer without reading its config (an early error);
        // its exit status and stdout still tell the outcome, so a closed
        // pipe is not an error of its own.
        let _ = stdin.write_all(&config).await;
        // Dropping stdin closes it: the plugin sees the end of its config.
    };
    let call = async { tokio::join!(feed, child.wait_with_output()).1 };
    let out = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| {
            CniFailure::runtime(
                format!(
                    "the CNI plugin {plugin} did not finish {} within {CALL_TIMEOUT:?}",
                    inv.command
                ),
                "killed",
            )
        })?
        .map_err(|e| CniFailure::runtime(format!("waiting for the CNI plugin {plugin}"), e.to_string()))?;
    outcome(out.status, &out.stdout, &out.stderr, inv.command == "ADD")
}
