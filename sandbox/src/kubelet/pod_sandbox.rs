//! One pod's network sandbox, set up and torn down in the order a
//! container runtime uses: network namespace, CNI ADD, containers (here:
//! echo servers); on the way down containers, CNI DEL, namespace.

use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::status::order_ips;
use super::table::PodReport;
use super::KubeletConfig;
use crate::cni::{self, CniFailure, CniSuccess, Invocation, PodIdentity};
use crate::echo::{declared_ports, EchoServers};

/// Why a sandbox could not be set up. Nothing of the attempt is left.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("cannot create a network namespace: {0}")]
    Netns(#[source] testbed::Error),
    #[error("CNI ADD failed: {failure}")]
    Cni {
        /// The attempt's namespace, now removed.
        netns: String,
        failure: CniFailure,
    },
}

/// A pod whose network is up.
pub(crate) struct PodSandbox {
    netns: testbed::Netns,
    container_id: String,
    cni_args: String,
    ips: Vec<IpAddr>,
    servers: EchoServers,
}

/// Namespace creation and removal make blocking system calls (and spawn
/// a thread that enters the namespace), so they run off the async workers.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

async fn remove_netns(netns: testbed::Netns) {
    blocking(move || drop(netns)).await;
}

async fn call(
    cfg: &KubeletConfig,
    command: &str,
    container_id: &str,
    netns: &Path,
    args: &str,
) -> Result<CniSuccess, CniFailure> {
    cni::invoke(&Invocation {
        plugin: &cfg.cni_plugin,
        command,
        container_id,
        netns,
        ifname: &cfg.ifname,
        args,
        cni_path: &cfg.cni_path,
        config: &cfg.cni_conf,
    })
    .await
}

impl PodSandbox {
    /// Sets up `pod`'s network (`key` is `namespace/name`, for logs).
    pub(crate) async fn create(cfg: &KubeletConfig, pod: &Pod, key: &str) -> Result<PodSandbox, SetupError> {
        let prefix = cfg.netns_prefix.clone();
        let netns = blocking(move || testbed::Netns::new(&prefix))
            .await
            .map_err(SetupError::Netns)?;
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        // The pod's UID is unique per pod, which is what a runtime's
        // sandbox ID must be; it is also a valid CNI container ID.
        let container_id = pod.uid().unwrap_or_else(|| format!("{namespace}.{name}"));
        let identity = PodIdentity {
            namespace: &namespace,
            name: &name,
            uid: &container_id,
        };
        let cni_args = cni::cni_args(&identity, &container_id);
        let path = netns.path();
        match call(cfg, "ADD", &container_id, &path, &cni_args).await {
            Ok(added) => {
                let servers = EchoServers::start(path, declared_ports(pod), key).await;
                Ok(PodSandbox {
                    netns,
                    container_id,
                    cni_args,
                    ips: order_ips(added.ips),
                    servers,
                })
            }
            Err(failure) => {
                // The CNI spec asks runtimes to call DEL after a failed ADD,
                // so the plugin can release whatever it made halfway.
                if let Err(e) = call(cfg, "DEL", &container_id, &path, &cni_args).await {
                    tracing::warn!(pod = key, error = %e, "CNI DEL after the failed ADD failed");
                }
                let netns_name = netns.name().to_string();
                remove_netns(netns).await;
                Err(SetupError::Cni {
                    netns: netns_name,
                    failure,
                })
            }
        }
    }

    pub(crate) fn netns_name(&self) -> &str {
        self.netns.name()
    }

    pub(crate) fn ips(&self) -> &[IpAddr] {
        &self.ips
    }

    pub(crate) fn report(&self) -> PodReport {
        PodReport {
            netns: self.netns_name().to_string(),
            ips: self.ips.clone(),
            cni_error: None,
            servers: self.servers.serving(),
        }
    }

    /// Stops the servers, runs CNI DEL and removes the namespace.
    pub(crate) async fn destroy(self, cfg: &KubeletConfig, key: &str) {
        let PodSandbox {
            netns,
            container_id,
            cni_args,
            servers,
            ..
        } = self;
        servers.stop().await;
        if let Err(e) = call(cfg, "DEL", &container_id, &netns.path(), &cni_args).await {
            // Removing the namespace anyway takes the pod's interfaces with
            // it; what the plugin keeps elsewhere is its to collect.
            tracing::warn!(pod = key, error = %e, "CNI DEL failed");
        }
        remove_netns(netns).await;
    }

    /// Stops the servers but leaves the network as it is, as a stopping
    /// kubelet leaves its pods running. Returns the namespace's name.
    pub(crate) async fn abandon(self) -> String {
        self.servers.stop().await;
        self.netns.persist()
    }
}
