//! The EndpointSlice controller, as kube-controller-manager runs it: one
//! or more slices per Service with a selector and per address family,
//! holding the matching Pods with their readiness, and the Service ports
//! resolved against each Pod's container ports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// The address families a Service's slices cover.
fn families(svc: &Service) -> Vec<&'static str> {
    let spec = svc.spec.as_ref();
    if let Some(fams) = spec.and_then(|s| s.ip_families.as_ref()).filter(|f| !f.is_empty()) {
        return fams
            .iter()
            .filter_map(|f| match f.as_str() {
                "IPv4" => Some("IPv4"),
                "IPv6" => Some("IPv6"),
                _ => None,
            })
            .collect();
    }
    match spec.and_then(|s| s.ip_family_policy.as_deref()) {
        Some("PreferDualStack" | "RequireDualStack") => vec!["IPv4", "IPv6"],
        _ => vec!["IPv4"],
    }
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.labels();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn condition(pod: &Pod, ty: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == ty && c.status == "True"))
}

fn pod_ip(pod: &Pod, family: &str) -> Option<String> {
    let ips = pod.status.as_ref()?.pod_ips.as_ref()?;
    ips.iter()
        .map(|i| i.ip.clone())
        .find(|ip| ip.contains(':') == (family == "IPv6"))
}

/// The Service's ports as this Pod serves them; a named targetPort the Pod
/// does not declare leaves that port out, as the real controller does.
fn resolved_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let container_ports: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .collect();
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| {
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let port = match &p.target_port {
                None => p.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => {
                    container_ports
                        .iter()
                        .find(|cp| {
                            cp.name.as_deref() == Some(name) && cp.protocol.as_deref().unwrap_or("TCP") == protocol
                        })?
                        .container_port
                }
            };
            Some(EndpointPort {
                name: p.name.clone(),
                port: Some(port),
                protocol: Some(protocol),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect()
}

fn endpoint(svc: &Service, pod: &Pod, ip: String) -> Endpoint {
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let serving = condition(pod, "Ready") || publish;
    let spec = pod.spec.as_ref();
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|_| spec.and_then(|s| s.subdomain.as_deref()) == Some(svc.name_any().as_str()));
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(serving && !terminating),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name: spec.and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.namespace(),
            name: Some(pod.name_any()),
            uid: pod.uid(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Name, number and protocol of each resolved port: endpoints with the
/// same key share a slice.
type PortKey = Vec<(Option<String>, Option<i32>, Option<String>)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    ports
        .iter()
        .map(|p| (p.name.clone(), p.port, p.protocol.clone()))
        .collect()
}

/// The slices `svc` should have given all `pods`: one per family and per
/// distinct resolved port set, named `<service>-<family>[-<n>]`.
pub fn desired_slices(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSlice> {
    let Some(selector) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty())
    else {
        return Vec::new();
    };
    if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return Vec::new();
    }
    let ns = svc.namespace();
    let mut out = Vec::new();
    for family in families(svc) {
        let mut groups: BTreeMap<PortKey, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
        let mut matching: Vec<&&Pod> = pods
            .iter()
            .filter(|p| p.namespace() == ns && selects(&selector, p))
            .collect();
        matching.sort_by_key(|p| p.name_any());
        for pod in matching {
            let Some(ip) = pod_ip(pod, family) else { continue };
            let ports = resolved_ports(svc, pod);
            let entry = groups.entry(port_key(&ports)).or_insert_with(|| (ports, Vec::new()));
            entry.1.push(endpoint(svc, pod, ip));
        }
        if groups.is_empty() {
            // An empty slice says "this Service has no endpoints" rather
            // than "the controller has not looked yet".
            groups.insert(Vec::new(), (Vec::new(), Vec::new()));
        }
        let many = groups.len() > 1;
        for (i, (_, (ports, endpoints))) in groups.into_iter().enumerate() {
            let suffix = if many { format!("-{i}") } else { String::new() };
            out.push(slice(svc, family, &suffix, ports, endpoints));
        }
    }
    out
}

fn slice(
    svc: &Service,
    family: &str,
    suffix: &str,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let name = format!("{}-{}{suffix}", svc.name_any(), family.to_lowercase());
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: svc.namespace(),
            labels: Some(
                [
                    (SERVICE_NAME.to_string(), svc.name_any()),
                    (MANAGED_BY.to_string(), CONTROLLER.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: svc.name_any(),
                uid: svc.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: family.to_string(),
        endpoints,
        ports: Some(ports),
    }
}

/// Keeps EndpointSlices in step with Services and Pods.
pub struct EndpointSliceController;

impl EndpointSliceController {
    pub async fn run(client: kube::Client, cancel: CancellationToken) {
        let (services, svc_writer) = reflector::store::<Service>();
        let (pods, pod_writer) = reflector::store::<Pod>();
        let svc_events = reflector::reflector(
            svc_writer,
            watcher::watcher(Api::all(client.clone()), watcher::Config::default()).default_backoff(),
        )
        .touched_objects()
        .map(|_| ());
        let pod_events = reflector::reflector(
            pod_writer,
            watcher::watcher(Api::all(client.clone()), watcher::Config::default()).default_backoff(),
        )
        .touched_objects()
        .map(|_| ());
        let mut changes = futures::stream::select(svc_events, pod_events).boxed();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                next = changes.next() => if next.is_none() { return },
            }
            // Let a burst of changes land, then converge once.
            tokio::time::sleep(Duration::from_millis(50)).await;
            while let Some(Some(_)) = futures::FutureExt::now_or_never(changes.next()) {}
            if services.wait_until_ready().await.is_err() || pods.wait_until_ready().await.is_err() {
                return;
            }
            if let Err(e) = sync_all(&client, &services, &pods).await {
                tracing::warn!(error = %e, "EndpointSlice sync failed; retrying on the next change");
            }
        }
    }
}

async fn sync_all(client: &kube::Client, services: &Store<Service>, pods: &Store<Pod>) -> Result<(), kube::Error> {
    let pods = pods.state();
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let mut desired: BTreeMap<(String, String), EndpointSlice> = BTreeMap::new();
    for svc in services.state() {
        for s in desired_slices(&svc, &pod_refs) {
            desired.insert((s.namespace().unwrap_or_default(), s.name_any()), s);
        }
    }
    let all: Api<EndpointSlice> = Api::all(client.clone());
    let existing = all
        .list(&ListParams::default().labels(&format!("{MANAGED_BY}={CONTROLLER}")))
        .await?;
    let mut seen = BTreeSet::new();
    for have in existing.items {
        let key = (have.namespace().unwrap_or_default(), have.name_any());
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &key.0);
        match desired.get(&key) {
            None => {
                api.delete(&key.1, &DeleteParams::default()).await?;
            }
            Some(want) if want.endpoints != have.endpoints || want.ports != have.ports => {
                let mut update = want.clone();
                update.metadata.resource_version = have.metadata.resource_version.clone();
                api.replace(&key.1, &PostParams::default(), &update).await?;
            }
            Some(_) => {}
        }
        seen.insert(key);
    }
    for (key, want) in desired {
        if !seen.contains(&key) {
            Api::<EndpointSlice>::namespaced(client.clone(), &key.0)
                .create(&PostParams::default(), &want)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn pod(name: &str, ready: bool, ips: &[&str], port_name: &str, port: i32) -> Pod {
        let ips: Vec<_> = ips.iter().map(|i| json!({"ip": i})).collect();
        serde_json::from_value(json!({"metadata":{"name":name,"namespace":"demo","uid":format!("uid-{name}"),"labels":{"app":"web"}},
            "spec":{"nodeName":"n1","containers":[{"name":"c","image":"x","ports":[{"name":port_name,"containerPort":port}]}]},
            "status":{"podIPs":ips,"conditions":[{"type":"Ready","status":if ready {"True"} else {"False"}}]}}))
        .unwrap()
    }

    fn web() -> Service {
        svc(
            json!({"metadata":{"name":"web","namespace":"demo","uid":"svc-uid"},"spec":{"selector":{"app":"web"},
            "ipFamilyPolicy":"PreferDualStack","ports":[{"name":"http","port":80,"targetPort":"http"}]}}),
        )
    }

    #[test]
    fn one_slice_per_family_with_readiness() {
        let a = pod("a", true, &["10.42.0.2", "fd00:42::2"], "http", 8080);
        let b = pod("b", false, &["10.42.0.3", "fd00:42::3"], "http", 8080);
        let slices = desired_slices(&web(), &[&a, &b]);
        assert_eq!(slices.len(), 2);
        let v4 = &slices[0];
        assert_eq!(
            (v4.metadata.name.as_deref(), v4.address_type.as_str()),
            (Some("web-ipv4"), "IPv4")
        );
        assert_eq!(v4.metadata.labels.as_ref().unwrap()[SERVICE_NAME], "web");
        assert_eq!(v4.ports.as_ref().unwrap()[0].port, Some(8080));
        let ready: Vec<(String, bool)> = v4
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].clone(), e.conditions.as_ref().unwrap().ready.unwrap()))
            .collect();
        assert_eq!(
            ready,
            [("10.42.0.2".to_string(), true), ("10.42.0.3".to_string(), false)]
        );
        assert_eq!(slices[1].endpoints[0].addresses[0], "fd00:42::2");
        assert_eq!(v4.endpoints[0].target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }

    #[test]
    fn named_ports_resolving_differently_split_slices() {
        let a = pod("a", true, &["10.42.0.2"], "http", 8080);
        let b = pod("b", true, &["10.42.0.3"], "http", 9090);
        let c = pod("c", true, &["10.42.0.4"], "other", 1);
        let mut s = web();
        s.spec.as_mut().unwrap().ip_family_policy = None;
        let slices = desired_slices(&s, &[&a, &b, &c]);
        let ports: Vec<Vec<Option<i32>>> = slices
            .iter()
            .map(|s| s.ports.as_ref().unwrap().iter().map(|p| p.port).collect())
            .collect();
        assert_eq!(slices.len(), 3, "{ports:?}");
        assert!(
            ports.contains(&vec![]),
            "a pod without the named port has no ports: {ports:?}"
        );
        assert!(ports.contains(&vec![Some(8080)]) && ports.contains(&vec![Some(9090)]));
    }

    #[test]
    fn terminating_pods_and_services_without_endpoints() {
        let mut a = pod("a", true, &["10.42.0.2"], "http", 8080);
        a.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
        let mut s = web();
        s.spec.as_mut().unwrap().ip_family_policy = None;
        let c = desired_slices(&s, &[&a])[0].endpoints[0].conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        let none = desired_slices(&s, &[]);
        assert_eq!(none.len(), 1);
        assert!(none[0].endpoints.is_empty());
        let headless_no_selector = svc(json!({"metadata":{"name":"x","namespace":"demo"},"spec":{"clusterIP":"None"}}));
        assert!(desired_slices(&headless_no_selector, &[&a]).is_empty());
        let external = svc(
            json!({"metadata":{"name":"x","namespace":"demo"},"spec":{"type":"ExternalName","selector":{"app":"web"}}}),
        );
        assert!(desired_slices(&external, &[&a]).is_empty());
    }

    #[test]
    fn hostname_only_for_the_matching_subdomain() {
        let mut a = pod("a", true, &["10.42.0.2"], "http", 8080);
        a.spec.as_mut().unwrap().hostname = Some("a0".into());
        a.spec.as_mut().unwrap().subdomain = Some("web".into());
        let mut s = web();
        s.spec.as_mut().unwrap().ip_family_policy = None;
        assert_eq!(
            desired_slices(&s, &[&a])[0].endpoints[0].hostname.as_deref(),
            Some("a0")
        );
        a.spec.as_mut().unwrap().subdomain = Some("other".into());
        assert_eq!(desired_slices(&s, &[&a])[0].endpoints[0].hostname, None);
    }
}
