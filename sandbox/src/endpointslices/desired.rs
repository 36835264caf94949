//! What EndpointSlices a Service should have, given all Pods: the pure
//! half of the controller, following kube-controller-manager's
//! EndpointSlice controller.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use dualstack::IpFamily;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

pub(crate) const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub(crate) const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub(crate) const CONTROLLER: &str = "endpointslice-controller.k8s.io";
const HEADLESS: &str = "service.kubernetes.io/headless";

/// The real controller's default `--max-endpoints-per-slice`.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The slices `svc` should have given `pods` (all namespaces; others are
/// ignored): for each address family of the Service, its ready and
/// not-ready Pods grouped by how the Service ports resolve on them, at
/// most 100 to a slice. Named `<service>-<family>` (`web-ipv4`), with
/// `-1`, `-2`… for further groups. A family without endpoints gets one
/// empty slice, which says "no endpoints" rather than "not looked at yet".
/// Services without a selector, and ExternalName Services, get none.
pub fn desired_slices<P: Borrow<Pod>>(svc: &Service, pods: &[P]) -> Vec<EndpointSlice> {
    let Some(spec) = &svc.spec else { return Vec::new() };
    let selector = match &spec.selector {
        Some(s) if !s.is_empty() => s,
        _ => return Vec::new(),
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let mut members: Vec<&Pod> = pods
        .iter()
        .map(Borrow::borrow)
        .filter(|p| p.namespace() == svc.namespace() && selects(selector, p) && !terminal(p))
        .collect();
    members.sort_by_key(|p| p.name_any());

    let mut out = Vec::new();
    for family in families(svc) {
        // Endpoints grouped by their resolved ports, ordered by those
        // ports so that names are stable.
        let mut groups: BTreeMap<PortKey, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
        for pod in &members {
            if let Some(ip) = pod_ip(pod, family) {
                let ports = resolved_ports(svc, pod);
                let group = groups.entry(port_key(&ports)).or_insert_with(|| (ports, Vec::new()));
                group.1.push(endpoint(svc, pod, ip));
            }
        }
        let chunks: Vec<(Vec<EndpointPort>, Vec<Endpoint>)> = groups
            .into_values()
            .flat_map(|(ports, endpoints)| {
                endpoints
                    .chunks(MAX_ENDPOINTS_PER_SLICE)
                    .map(|c| (ports.clone(), c.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if chunks.is_empty() {
            out.push(slice(svc, family, 0, Vec::new(), Vec::new()));
        }
        for (i, (ports, endpoints)) in chunks.into_iter().enumerate() {
            out.push(slice(svc, family, i, ports, endpoints));
        }
    }
    out
}

/// The address families a Service's slices cover, primary first:
/// `spec.ipFamilies`, or for a Service the API server has not defaulted
/// (the stand-in does not), the family of its ClusterIP, else both when
/// its ipFamilyPolicy asks for dual-stack, else IPv4.
fn families(svc: &Service) -> Vec<IpFamily> {
    let Some(spec) = &svc.spec else {
        return vec![IpFamily::V4];
    };
    let mut listed: Vec<IpFamily> = Vec::new();
    for f in spec.ip_families.iter().flatten().filter_map(|f| IpFamily::from_k8s(f)) {
        if !listed.contains(&f) {
            listed.push(f);
        }
    }
    if !listed.is_empty() {
        return listed;
    }
    if let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()) {
        return vec![IpFamily::of(&ip)];
    }
    match spec.ip_family_policy.as_deref() {
        Some("PreferDualStack" | "RequireDualStack") => vec![IpFamily::V4, IpFamily::V6],
        _ => vec![IpFamily::V4],
    }
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.labels();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Succeeded and Failed pods serve nothing, ever again.
fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's address of `family`: from `status.podIPs`, or `status.podIP`
/// for a status written before podIPs existed.
fn pod_ip(pod: &Pod, family: IpFamily) -> Option<IpAddr> {
    let status = pod.status.as_ref()?;
    let listed = status.pod_ips.iter().flatten().map(|i| i.ip.as_str());
    listed
        .chain(status.pod_ip.as_deref())
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .find(|ip| IpFamily::of(ip) == family)
}

/// Name, number and protocol of each resolved port: endpoints with equal
/// keys share a slice.
type PortKey = Vec<(Option<String>, Option<i32>, Option<String>)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    ports
        .iter()
        .map(|p| (p.name.clone(), p.port, p.protocol.clone()))
        .collect()
}

/// Each Service port with its targetPort resolved on `pod`; a named
/// targetPort the pod does not declare (with that protocol) leaves the
/// port out, as the real controller does. Unnamed ports get the name "",
/// as the real controller writes them.
fn resolved_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| {
            Some(EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(target_port(p, pod)?),
                protocol: Some(protocol(p.protocol.as_deref()).to_string()),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect()
}

fn protocol(p: Option<&str>) -> &str {
    p.unwrap_or("TCP")
}

/// `podutil.FindPort`: a number is taken as is (unset means the Service
/// port, as API defaulting would make it); a name is looked up in the
/// pod's containers, then in its sidecars (init containers that restart
/// always).
fn target_port(svc_port: &ServicePort, pod: &Pod) -> Option<i32> {
    let name = match &svc_port.target_port {
        None | Some(IntOrString::Int(0)) => return Some(svc_port.port),
        Some(IntOrString::Int(n)) => return Some(*n),
        Some(IntOrString::String(name)) => name,
    };
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|cp| {
            cp.name.as_deref() == Some(name.as_str())
                && protocol(cp.protocol.as_deref()) == protocol(svc_port.protocol.as_deref())
        })
        .map(|cp| cp.container_port)
}

fn endpoint(svc: &Service, pod: &Pod, ip: IpAddr) -> Endpoint {
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let serving = ready(pod);
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let spec = pod.spec.as_ref();
    // A pod gets a DNS name under a headless Service only when it asks
    // for one (hostname) under that Service (subdomain).
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .filter(|_| spec.and_then(|s| s.subdomain.as_deref()) == Some(svc.name_any().as_str()));
    Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            // For compatibility, never ready while terminating, unless the
            // Service publishes not-ready addresses.
            ready: Some(publish_not_ready || (serving && !terminating)),
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

fn slice(
    svc: &Service,
    family: IpFamily,
    index: usize,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let family_name = family.as_k8s().to_lowercase();
    let name = match index {
        0 => format!("{}-{family_name}", svc.name_any()),
        n => format!("{}-{family_name}-{n}", svc.name_any()),
    };
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: svc.namespace(),
            labels: Some(labels(svc)),
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
        address_type: family.as_k8s().to_string(),
        endpoints,
        ports: Some(ports),
    }
}

/// The Service's own labels, then the controller's: which Service, who
/// manages the slice, and whether the Service is headless.
fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| ![SERVICE_NAME, MANAGED_BY, HEADLESS].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(SERVICE_NAME.into(), svc.name_any());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::{json, Value};

    fn svc(spec: Value) -> Service {
        serde_json::from_value(json!({"metadata":{"name":"web","namespace":"demo","uid":"svc-uid",
            "labels":{"team":"a"}},"spec":spec}))
        .unwrap()
    }

    /// A Service selecting app=web with one named targetPort.
    fn web(extra: Value) -> Service {
        let mut spec = json!({"selector":{"app":"web"},"ports":[{"name":"http","port":80,"targetPort":"http"}]});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        svc(spec)
    }

    struct PodSpec<'a> {
        name: &'a str,
        ready: bool,
        ips: &'a [&'a str],
        ports: Value,
    }

    fn pod(p: PodSpec<'_>) -> Pod {
        let ips: Vec<_> = p.ips.iter().map(|i| json!({"ip": i})).collect();
        serde_json::from_value(json!({
            "metadata":{"name":p.name,"namespace":"demo","uid":format!("uid-{}", p.name),"labels":{"app":"web"}},
            "spec":{"nodeName":"n1","containers":[{"name":"c","ports":p.ports}]},
            "status":{"podIPs":ips,"conditions":[{"type":"Ready","status":if p.ready {"True"} else {"False"}}]}}))
        .unwrap()
    }

    fn ready_pod(name: &str, ips: &[&str]) -> Pod {
        pod(PodSpec {
            name,
            ready: true,
            ips,
            ports: json!([{"name":"http","containerPort":8080}]),
        })
    }

    fn names(slices: &[EndpointSlice]) -> Vec<&str> {
        slices.iter().map(|s| s.metadata.name.as_deref().unwrap()).collect()
    }

    fn addresses(slice: &EndpointSlice) -> Vec<&str> {
        slice.endpoints.iter().map(|e| e.addresses[0].as_str()).collect()
    }

    fn conditions(e: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
        let c = e.conditions.as_ref().unwrap();
        (c.ready, c.serving, c.terminating)
    }

    fn port_numbers(slice: &EndpointSlice) -> Vec<i32> {
        slice.ports.iter().flatten().filter_map(|p| p.port).collect()
    }

    #[test]
    fn one_slice_per_family_with_the_pods_addresses() {
        let a = ready_pod("a", &["10.42.0.2", "fd00:42::2"]);
        let b = pod(PodSpec {
            name: "b",
            ready: false,
            ips: &["10.42.0.3", "fd00:42::3"],
            ports: json!([{"name":"http","containerPort":8080}]),
        });
        let slices = desired_slices(&web(json!({"ipFamilyPolicy":"PreferDualStack"})), &[a, b]);
        assert_eq!(names(&slices), ["web-ipv4", "web-ipv6"]);
        let (v4, v6) = (&slices[0], &slices[1]);
        assert_eq!((v4.address_type.as_str(), v6.address_type.as_str()), ("IPv4", "IPv6"));
        assert_eq!(addresses(v4), ["10.42.0.2", "10.42.0.3"]);
        assert_eq!(addresses(v6), ["fd00:42::2", "fd00:42::3"]);
        assert_eq!(conditions(&v4.endpoints[0]), (Some(true), Some(true), Some(false)));
        assert_eq!(conditions(&v4.endpoints[1]), (Some(false), Some(false), Some(false)));
        let e = &v4.endpoints[0];
        assert_eq!(e.node_name.as_deref(), Some("n1"));
        let target = e.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                target.kind.as_deref(),
                target.namespace.as_deref(),
                target.name.as_deref(),
                target.uid.as_deref()
            ),
            (Some("Pod"), Some("demo"), Some("a"), Some("uid-a"))
        );
        assert_eq!(
            v4.ports,
            Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                app_protocol: None
            }])
        );
        assert_eq!(v4.metadata.namespace.as_deref(), Some("demo"));
    }

    #[test]
    fn labels_and_owner_say_whose_slice_it_is() {
        let slices = desired_slices(&web(json!({"clusterIP":"None"})), &[ready_pod("a", &["10.42.0.2"])]);
        let labels = slices[0].metadata.labels.clone().unwrap();
        assert_eq!(labels[SERVICE_NAME], "web");
        assert_eq!(labels[MANAGED_BY], CONTROLLER);
        assert_eq!(labels[HEADLESS], "");
        assert_eq!(labels["team"], "a", "the Service's labels are copied");
        let owner = &slices[0].metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str(),
                owner.controller
            ),
            ("Service", "web", "svc-uid", Some(true))
        );
        let headful = desired_slices(&web(json!({})), &[ready_pod("a", &["10.42.0.2"])]);
        assert!(!headful[0].metadata.labels.as_ref().unwrap().contains_key(HEADLESS));
    }

    #[test]
    fn families_come_from_the_spec() {
        let a = [ready_pod("a", &["10.42.0.2", "fd00:42::2"])];
        let types = |extra: Value| -> Vec<String> {
            desired_slices(&web(extra), &a)
                .into_iter()
                .map(|s| s.address_type)
                .collect()
        };
        assert_eq!(types(json!({})), ["IPv4"], "default");
        assert_eq!(types(json!({"ipFamilies":["IPv6","IPv4"]})), ["IPv6", "IPv4"]);
        assert_eq!(
            types(json!({"ipFamilies":["IPv6"],"ipFamilyPolicy":"PreferDualStack"})),
            ["IPv6"],
            "ipFamilies win over the policy"
        );
        assert_eq!(types(json!({"clusterIP":"fd00:43::10"})), ["IPv6"]);
        assert_eq!(types(json!({"ipFamilyPolicy":"RequireDualStack"})), ["IPv4", "IPv6"]);
    }

    #[test]
    fn a_named_target_port_resolving_differently_splits_slices() {
        let on = |name, number: i32| {
            pod(PodSpec {
                name,
                ready: true,
                ips: &["10.42.0.9"],
                ports: json!([{"name":"http","containerPort":number}]),
            })
        };
        let other_name = pod(PodSpec {
            name: "c",
            ready: true,
            ips: &["10.42.0.4"],
            ports: json!([{"name":"metrics","containerPort":9100}]),
        });
        let udp_http = pod(PodSpec {
            name: "d",
            ready: true,
            ips: &["10.42.0.5"],
            ports: json!([{"name":"http","containerPort":7070,"protocol":"UDP"}]),
        });
        let slices = desired_slices(
            &web(json!({})),
            &[on("a", 8080), on("b", 9090), on("e", 8080), other_name, udp_http],
        );
        let by_ports: Vec<(Vec<i32>, usize)> = slices.iter().map(|s| (port_numbers(s), s.endpoints.len())).collect();
        assert_eq!(slices.len(), 3, "{by_ports:?}");
        assert!(by_ports.contains(&(vec![8080], 2)), "{by_ports:?}");
        assert!(by_ports.contains(&(vec![9090], 1)), "{by_ports:?}");
        // Pods that do not declare the name (for the Service's protocol)
        // are endpoints without that port.
        assert!(by_ports.contains(&(vec![], 2)), "{by_ports:?}");
        assert_eq!(names(&slices), ["web-ipv4", "web-ipv4-1", "web-ipv4-2"]);
    }

    #[test]
    fn numeric_unset_and_sidecar_target_ports() {
        let service = svc(json!({"selector":{"app":"web"},"ports":[
            {"name":"a","port":80,"targetPort":8080},
            {"port":53,"protocol":"UDP"},
            {"name":"m","port":9000,"targetPort":"metrics","appProtocol":"http"}]}));
        let mut p = ready_pod("a", &["10.42.0.2"]);
        p.spec.as_mut().unwrap().init_containers = Some(vec![serde_json::from_value(json!(
            {"name":"proxy","restartPolicy":"Always","ports":[{"name":"metrics","containerPort":9100}]}))
        .unwrap()]);
        let ports = desired_slices(&service, &[p])[0].ports.clone().unwrap();
        let shown: Vec<(String, i32, String, Option<String>)> = ports
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port.unwrap(), p.protocol.unwrap(), p.app_protocol))
            .collect();
        assert_eq!(
            shown,
            [
                ("a".to_string(), 8080, "TCP".to_string(), None),
                (String::new(), 53, "UDP".to_string(), None),
                ("m".to_string(), 9100, "TCP".to_string(), Some("http".to_string())),
            ]
        );
    }

    #[test]
    fn terminating_and_publish_not_ready_addresses() {
        let mut going = ready_pod("a", &["10.42.0.2"]);
        going.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let not_ready = pod(PodSpec {
            name: "b",
            ready: false,
            ips: &["10.42.0.3"],
            ports: json!([]),
        });
        let of = |slices: &[EndpointSlice], pod: &str| {
            let e = slices.iter().flat_map(|s| &s.endpoints);
            conditions(
                e.clone()
                    .find(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some(pod))
                    .unwrap(),
            )
        };
        let plain = desired_slices(&web(json!({})), &[going.clone(), not_ready.clone()]);
        assert_eq!(of(&plain, "a"), (Some(false), Some(true), Some(true)));
        assert_eq!(of(&plain, "b"), (Some(false), Some(false), Some(false)));
        let published = desired_slices(&web(json!({"publishNotReadyAddresses":true})), &[going, not_ready]);
        assert_eq!(of(&published, "a"), (Some(true), Some(true), Some(true)));
        assert_eq!(of(&published, "b"), (Some(true), Some(false), Some(false)));
    }

    #[test]
    fn only_live_selected_pods_with_an_address_of_the_family() {
        let mut other_ns = ready_pod("x", &["10.42.0.5"]);
        other_ns.metadata.namespace = Some("elsewhere".into());
        let mut unlabelled = ready_pod("y", &["10.42.0.6"]);
        unlabelled.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        let mut done = ready_pod("z", &["10.42.0.7"]);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let v6_only = ready_pod("w", &["fd00:42::8"]);
        let no_ip = ready_pod("v", &[]);
        let mut legacy = ready_pod("u", &[]);
        legacy.status.as_mut().unwrap().pod_ip = Some("10.42.0.9".into());
        let slices = desired_slices(&web(json!({})), &[other_ns, unlabelled, done, v6_only, no_ip, legacy]);
        assert_eq!(slices.len(), 1);
        assert_eq!(
            addresses(&slices[0]),
            ["10.42.0.9"],
            "podIP serves when podIPs is empty"
        );
    }

    #[test]
    fn no_endpoints_give_one_empty_slice_per_family() {
        let slices = desired_slices::<Pod>(&web(json!({"ipFamilies":["IPv4","IPv6"]})), &[]);
        assert_eq!(names(&slices), ["web-ipv4", "web-ipv6"]);
        assert!(slices.iter().all(|s| s.endpoints.is_empty() && s.ports == Some(vec![])));
    }

    #[test]
    fn no_slices_without_a_selector_or_for_external_names() {
        let a = [ready_pod("a", &["10.42.0.2"])];
        assert!(desired_slices(&svc(json!({"ports":[{"port":80}]})), &a).is_empty());
        assert!(desired_slices(&svc(json!({"selector":{},"ports":[{"port":80}]})), &a).is_empty());
        assert!(desired_slices(&web(json!({"type":"ExternalName","externalName":"example.org"})), &a).is_empty());
    }

    #[test]
    fn hostname_only_under_the_matching_subdomain() {
        let mut a = ready_pod("a", &["10.42.0.2"]);
        a.spec.as_mut().unwrap().hostname = Some("a0".into());
        a.spec.as_mut().unwrap().subdomain = Some("web".into());
        let hostname = |p: &Pod| {
            desired_slices(&web(json!({})), std::slice::from_ref(p))[0].endpoints[0]
                .hostname
                .clone()
        };
        assert_eq!(hostname(&a).as_deref(), Some("a0"));
        a.spec.as_mut().unwrap().subdomain = Some("other".into());
        assert_eq!(hostname(&a), None);
    }

    #[test]
    fn at_most_a_hundred_endpoints_a_slice() {
        let pods: Vec<Pod> = (0..250)
            .map(|i| ready_pod(&format!("p{i:03}"), &[&format!("10.42.{}.{}", i / 200, i % 200 + 1)]))
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let slices = desired_slices(&web(json!({})), &refs);
        assert_eq!(names(&slices), ["web-ipv4", "web-ipv4-1", "web-ipv4-2"]);
        let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
    }
}
