//! The sandbox's kubelet: for each Pod bound to its node, a network
//! namespace wired through the CNI plugin exactly as a container runtime
//! does it, echo servers for the declared container ports, and the pod's
//! addresses written back to its status. Deleting the Pod runs CNI DEL and
//! removes the namespace. A failed setup leaves nothing behind, is
//! reported in the pod's status, and is retried with backoff.

mod pod_sandbox;
mod status;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::cni::CniFailure;
use crate::Error;
use pod_sandbox::{PodSandbox, SetupError};
use status::Desired;
pub use table::{PodReport, PodTable};

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// Pods with this `spec.nodeName` are this kubelet's.
    pub node_name: String,
    /// The plugin executable (the `netlet` binary for the real path).
    pub cni_plugin: PathBuf,
    /// The network config or conflist, as in `/etc/cni/net.d`. Of a
    /// conflist only the first plugin runs.
    pub cni_conf: Value,
    /// `CNI_PATH`: where plugins find other plugins.
    pub cni_path: Vec<PathBuf>,
    /// Pod namespaces are named `nl-<prefix>-<pid>-<n>`.
    pub netns_prefix: String,
    /// `CNI_IFNAME`, the pod's interface (`eth0`).
    pub ifname: String,
    /// On stop, run CNI DEL for every pod and remove every namespace.
    /// Otherwise the pods' networks stay as they are, as when a real
    /// kubelet stops.
    pub teardown_on_exit: bool,
}

impl KubeletConfig {
    /// Catches settings that would fail every pod, before any is touched.
    fn check(&self) -> Result<(), Error> {
        let invalid = |field, problem: String| Err(Error::Config { field, problem });
        if !self.cni_plugin.is_file() {
            return invalid("cni_plugin", format!("{} is not a file", self.cni_plugin.display()));
        }
        if self.node_name.is_empty() {
            return invalid("node_name", "is empty".into());
        }
        if self.ifname.is_empty() {
            return invalid("ifname", "is empty".into());
        }
        if !self.cni_conf.is_object() {
            return invalid("cni_conf", format!("is not a JSON object: {}", self.cni_conf));
        }
        Ok(())
    }
}

/// Plays the kubelet of one node for Pods. See the module docs.
pub struct Kubelet {
    config: KubeletConfig,
    table: PodTable,
}

/// A pod this kubelet looks after.
struct Tracked {
    /// `namespace/name`, for logs and the table.
    key: String,
    /// The pod as last seen.
    pod: Pod,
    sandbox: Option<PodSandbox>,
    /// The last failed setup (without a sandbox): the attempt's namespace
    /// name and what went wrong.
    failure: Option<(String, CniFailure)>,
    failures: u32,
    /// When to reconcile again: a new setup attempt, or a status write
    /// that failed.
    retry_at: Option<Instant>,
}

impl Tracked {
    fn report(&self) -> Option<PodReport> {
        match (&self.sandbox, &self.failure) {
            (Some(sandbox), _) => Some(sandbox.report()),
            (None, Some((netns, failure))) => Some(PodReport {
                netns: netns.clone(),
                ips: Vec::new(),
                cni_error: Some(failure.clone()),
                servers: Vec::new(),
            }),
            (None, None) => None,
        }
    }

    fn desired_status(&self) -> Option<Desired<'_>> {
        match (&self.sandbox, &self.failure) {
            (Some(sandbox), _) => Some(Desired::Running { ips: sandbox.ips() }),
            (None, Some((_, failure))) => Some(Desired::SetupFailed { failure }),
            (None, None) => None,
        }
    }

    fn failed_again(&mut self) {
        self.failures += 1;
        self.retry_at = Some(Instant::now() + backoff::delay(self.failures));
    }
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

impl Kubelet {
    pub fn new(config: KubeletConfig) -> Kubelet {
        let plugins = config
            .cni_conf
            .get("plugins")
            .and_then(Value::as_array)
            .map_or(1, Vec::len);
        if plugins > 1 {
            tracing::warn!(
                plugins,
                "only the first plugin of the CNI conflist runs in the sandbox kubelet"
            );
        }
        Kubelet {
            config,
            table: PodTable::default(),
        }
    }

    /// What the kubelet did for each pod; stays readable after `run`.
    pub fn pods(&self) -> PodTable {
        self.table.clone()
    }

    /// Looks after this node's pods until `cancel`. Pods are keyed by UID,
    /// so a pod deleted and created again under the same name gets a
    /// fresh sandbox. API errors are retried; only a config that cannot
    /// work is an error.
    pub async fn run(self, client: kube::Client, cancel: CancellationToken) -> Result<(), Error> {
        self.config.check()?;
        let selector = format!("spec.nodeName={}", self.config.node_name);
        let mut events = watcher::watcher(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().fields(&selector),
        )
        .default_backoff()
        .boxed();
        let mut node = Node {
            config: &self.config,
            table: &self.table,
            client,
            tracked: BTreeMap::new(),
        };
        // UIDs seen in the current (re)list.
        let mut listed: BTreeSet<String> = BTreeSet::new();
        loop {
            let next_retry = node.tracked.values().filter_map(|t| t.retry_at).min();
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)), if next_retry.is_some() => {
                    node.retry_due().await;
                }
                event = events.next() => match event {
                    None => break,
                    Some(Err(e)) => tracing::warn!(error = %e, "watching pods failed; retrying"),
                    Some(Ok(Event::Init)) => listed.clear(),
                    Some(Ok(Event::InitApply(pod))) => {
                        listed.insert(pod.uid().unwrap_or_default());
                        node.apply(pod).await;
                    }
                    Some(Ok(Event::InitDone)) => node.forget_unlisted(&listed).await,
                    Some(Ok(Event::Apply(pod))) => node.apply(pod).await,
                    Some(Ok(Event::Delete(pod))) => node.stop(&pod.uid().unwrap_or_default()).await,
                }
            }
        }
        node.shut_down(self.config.teardown_on_exit).await;
        Ok(())
    }
}

/// The kubelet's working state during `run`.
struct Node<'a> {
    config: &'a KubeletConfig,
    table: &'a PodTable,
    client: kube::Client,
    /// By pod UID.
    tracked: BTreeMap<String, Tracked>,
}

impl Node<'_> {
    async fn apply(&mut self, pod: Pod) {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(self.config.node_name.as_str()) {
            return;
        }
        let uid = pod.uid().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            self.stop(&uid).await;
            self.confirm_deletion(&pod).await;
            return;
        }
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            // Such a pod uses the node's network: no namespace, no CNI.
            // The sandbox has nothing to run for it.
            tracing::debug!(pod = %pod_key(&pod), "hostNetwork pod; not run by the sandbox kubelet");
            return;
        }
        let mut tracked = match self.tracked.remove(&uid) {
            Some(mut t) => {
                t.pod = pod;
                t
            }
            None => Tracked {
                key: pod_key(&pod),
                pod,
                sandbox: None,
                failure: None,
                failures: 0,
                retry_at: None,
            },
        };
        self.reconcile(&mut tracked).await;
        self.tracked.insert(uid, tracked);
    }

    /// Sets up the sandbox if it is missing and due, then makes the pod's
    /// status and the table say how it went.
    async fn reconcile(&self, t: &mut Tracked) {
        let due = t.retry_at.is_none_or(|at| at <= Instant::now());
        if t.sandbox.is_none() && due {
            match PodSandbox::create(self.config, &t.pod, &t.key).await {
                Ok(sandbox) => {
                    tracing::info!(pod = %t.key, ips = ?sandbox.ips(), netns = sandbox.netns_name(), "pod running");
                    t.sandbox = Some(sandbox);
                    t.failure = None;
                    t.failures = 0;
                    t.retry_at = None;
                }
                Err(SetupError::Cni { netns, failure }) => {
                    t.failed_again();
                    tracing::warn!(pod = %t.key, error = %failure, attempts = t.failures, "pod network setup failed; will retry");
                    t.failure = Some((netns, failure));
                }
                Err(e @ SetupError::Netns(_)) => {
                    t.failed_again();
                    tracing::error!(pod = %t.key, error = %e, "cannot set up pod; will retry");
                }
            }
        }
        match t.report() {
            Some(report) => self.table.set(&t.key, report),
            None => self.table.remove(&t.key),
        }
        self.write_status(t).await;
    }

    async fn write_status(&self, t: &mut Tracked) {
        let Some(desired) = t.desired_status() else { return };
        if status::shows(&t.pod, desired) {
            return;
        }
        let doc = status::patch(desired, &Time(k8s_openapi::jiff::Timestamp::now()));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &t.pod.namespace().unwrap_or_default());
        match api
            .patch_status(&t.pod.name_any(), &PatchParams::default(), &Patch::Merge(&doc))
            .await
        {
            Ok(pod) => t.pod = pod,
            Err(e) => {
                tracing::warn!(pod = %t.key, error = %e, "cannot write pod status; will retry");
                if t.sandbox.is_some() {
                    t.retry_at = Some(Instant::now() + backoff::delay(1));
                }
            }
        }
    }

    async fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, t)| t.retry_at.is_some_and(|at| at <= now))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in due {
            let mut t = self.tracked.remove(&uid).expect("uid from the map");
            if t.sandbox.is_some() {
                t.retry_at = None;
            }
            self.reconcile(&mut t).await;
            self.tracked.insert(uid, t);
        }
    }

    /// Tears down the pod's sandbox, if any, and forgets the pod.
    async fn stop(&mut self, uid: &str) {
        let Some(t) = self.tracked.remove(uid) else { return };
        if let Some(sandbox) = t.sandbox {
            sandbox.destroy(self.config, &t.key).await;
        }
        self.table.remove(&t.key);
        tracing::info!(pod = %t.key, "pod stopped");
    }

    /// After a relist: pods deleted while the watch was away.
    async fn forget_unlisted(&mut self, listed: &BTreeSet<String>) {
        let gone: Vec<String> = self
            .tracked
            .keys()
            .filter(|uid| !listed.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            self.stop(&uid).await;
        }
    }

    /// A real kubelet stops the containers of a pod being deleted, then
    /// confirms the deletion with a zero grace period.
    async fn confirm_deletion(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pod = %pod_key(pod), error = %e, "cannot confirm the pod's deletion"),
        }
    }

    async fn shut_down(mut self, teardown: bool) {
        for (_, t) in std::mem::take(&mut self.tracked) {
            match t.sandbox {
                Some(sandbox) if teardown => sandbox.destroy(self.config, &t.key).await,
                Some(sandbox) => {
                    let netns = sandbox.abandon().await;
                    tracing::info!(pod = %t.key, %netns, "kubelet stopped; the pod's network stays");
                }
                None => {}
            }
            if teardown {
                self.table.remove(&t.key);
            }
        }
    }
}
