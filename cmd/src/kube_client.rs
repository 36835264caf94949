//! Building the Kubernetes API client: an explicit kubeconfig, or the
//! in-cluster service account, or the usual kubeconfig search.

use std::path::Path;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc =
                Kubeconfig::read_from(path).with_context(|| format!("cannot use kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {} has no usable context", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes API configured: pass --kubeconfig (or NETLET_KUBECONFIG), set KUBECONFIG, or run in a pod",
        )?,
    };
    kube::Client::try_from(config).context("cannot build the Kubernetes API client")
}
