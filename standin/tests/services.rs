//! Service allocation over HTTP, as kube-rs sees it: concurrent creates
//! never share an address or node port, and options set the ranges.

use std::collections::HashSet;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_get_distinct_addresses_and_node_ports() {
    let api = standin::ApiServer::start(standin::Options::default()).await.unwrap();
    let svcs: Api<Service> = Api::namespaced(api.client().await.unwrap(), "default");
    let creates = (0..200).map(|i| {
        let svcs = svcs.clone();
        async move {
            let svc: Service = serde_json::from_value(json!({"metadata":{"name":format!("s{i}")},
                "spec":{"type":"NodePort","ipFamilyPolicy":"RequireDualStack","ports":[{"port":80}]}}))
            .unwrap();
            svcs.create(&PostParams::default(), &svc).await.unwrap().spec.unwrap()
        }
    });
    let specs = join_all(creates).await;
    let ips: HashSet<String> = specs.iter().flat_map(|s| s.cluster_ips.clone().unwrap()).collect();
    assert_eq!(ips.len(), 400);
    let ports: HashSet<i32> = specs
        .iter()
        .map(|s| s.ports.as_ref().unwrap()[0].node_port.unwrap())
        .collect();
    assert_eq!(ports.len(), 200);
}

#[tokio::test]
async fn options_set_the_ranges_and_bad_ones_are_refused() {
    let api = standin::ApiServer::start(standin::Options {
        service_cidrs: vec!["fd00:96::/120".parse().unwrap()],
        node_port_range: 31000..=31000,
        ..Default::default()
    })
    .await
    .unwrap();
    let svcs: Api<Service> = Api::namespaced(api.client().await.unwrap(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata":{"name":"web"},
        "spec":{"type":"NodePort","ports":[{"port":80}]}}))
    .unwrap();
    let spec = svcs.create(&PostParams::default(), &svc).await.unwrap().spec.unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("fd00:96::"));
    assert_eq!(spec.ip_families, Some(vec!["IPv6".to_string()]));
    assert_eq!(spec.ports.unwrap()[0].node_port, Some(31000));

    for (cidrs, ports) in [
        (vec!["10.0.0.0/16", "10.1.0.0/16"], 30000..=32767),
        (vec!["10.0.0.0/31"], 30000..=32767),
        (vec![], 30000..=32767),
        (vec!["10.0.0.0/16"], std::ops::RangeInclusive::new(32767, 30000)),
    ] {
        let opts = standin::Options {
            service_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            node_port_range: ports,
            ..Default::default()
        };
        let err = standin::ApiServer::start(opts).await.err().expect("refused");
        assert!(matches!(err, standin::Error::Options(_)), "{err}");
    }
}
