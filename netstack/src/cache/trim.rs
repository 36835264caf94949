//! What the cache drops from objects before storing them. Memory is the
//! edge footprint's main cost: a Pod as the API returns it carries managed
//! fields, env, volumes and container statuses that no networking module
//! reads, often several kilobytes each.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub(crate) fn metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Keeps what networking reads of a Pod: labels, node, host networking,
/// hostname/subdomain (DNS), container ports (named ports for Services and
/// NetworkPolicy), phase, conditions and pod IPs.
pub(crate) fn pod(pod: &mut Pod) {
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        spec.tolerations = None;
        spec.affinity = None;
        spec.init_containers = None;
        spec.ephemeral_containers = None;
        for c in &mut spec.containers {
            c.env = None;
            c.env_from = None;
            c.volume_mounts = None;
            c.volume_devices = None;
            c.command = None;
            c.args = None;
            c.resources = None;
            c.liveness_probe = None;
            c.readiness_probe = None;
            c.startup_probe = None;
            c.lifecycle = None;
            c.security_context = None;
        }
    }
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
}

/// Keeps a Node's addresses, pod CIDRs and conditions; drops the image list
/// and volume bookkeeping, which grow with the node's workload.
pub(crate) fn node(node: &mut Node) {
    if let Some(status) = node.status.as_mut() {
        status.images = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    #[test]
    fn pod_keeps_what_networking_reads() {
        let mut p = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                annotations: Some([(LAST_APPLIED.to_string(), "{...}".to_string())].into()),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    env: Some(vec![EnvVar {
                        name: "X".into(),
                        ..Default::default()
                    }]),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 80,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        metadata(&mut p.metadata);
        pod(&mut p);
        assert!(p.metadata.managed_fields.is_none());
        assert!(p.metadata.annotations.is_none());
        assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "web");
        let spec = p.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert!(spec.containers[0].env.is_none());
        assert_eq!(
            spec.containers[0].ports.as_ref().unwrap()[0].name.as_deref(),
            Some("http")
        );
    }
}
