//! The sandbox's scheduler: there is one node, so every Pod created
//! without `spec.nodeName` is placed on it. The stand-in takes this as a
//! patch of `spec.nodeName`, where the real scheduler would post a Binding.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

pub async fn run(client: kube::Client, node: String, cancel: CancellationToken) {
    let pods: Api<Pod> = Api::all(client.clone());
    let unscheduled = watcher::Config::default().fields("spec.nodeName=");
    let mut events = watcher::watcher(pods, unscheduled)
        .default_backoff()
        .applied_objects()
        .boxed();
    loop {
        let pod = tokio::select! {
            _ = cancel.cancelled() => return,
            next = events.next() => match next {
                None => return,
                Some(Ok(pod)) => pod,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "scheduler watch failed; retrying");
                    continue;
                }
            },
        };
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({"spec": {"nodeName": node}});
        match api
            .patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(pod = %format!("{ns}/{}", pod.name_any()), node = %node, "pod scheduled"),
            Err(e) => tracing::warn!(pod = %pod.name_any(), error = %e, "cannot schedule pod"),
        }
    }
}
