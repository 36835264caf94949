//! Cluster DNS through the agent, as pods use it: a pod's namespace with
//! the resolv.conf kubelet writes (nameserver = the cluster DNS IP, the
//! search list, ndots:5) resolves Services, headless endpoints and an
//! outside name with the system resolver (getent) and dig, over UDP and
//! TCP, in both families. The node is a network namespace of the test's
//! own; the outside name comes from an upstream the test starts there.

mod common;

use std::process::Output;

use common::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use serde_json::json;
use testbed::{Cgroup, Netns};

const DNS_V4: &str = "10.43.255.10";
const DNS_V6: &str = "fd00:43::ff0a";

/// A pod's view of name resolution: runs `argv` in `pod` with the
/// resolv.conf `ip netns exec` gives it (/etc/netns/<name>/resolv.conf).
/// Its processes are in the cgroup Service translation is attached to, as
/// a pod's are.
struct PodResolver<'a> {
    pod: &'a Netns,
    cgroup: &'a Cgroup,
    dir: std::path::PathBuf,
}

impl<'a> PodResolver<'a> {
    fn new(pod: &'a Netns, cgroup: &'a Cgroup, resolv_conf: &str) -> PodResolver<'a> {
        let dir = std::path::Path::new("/etc/netns").join(pod.name());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), resolv_conf).unwrap();
        PodResolver { pod, cgroup, dir }
    }

    fn run(&self, argv: &[&str]) -> Output {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", self.pod.name()]).args(argv);
        self.cgroup.adopt(&mut cmd).output().unwrap()
    }

    /// The addresses `getent` resolves `name` to (`ahostsv4`/`ahostsv6`).
    fn getent(&self, db: &str, name: &str) -> Vec<String> {
        let out = self.run(&["getent", db, name]);
        let mut addresses: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    fn dig(&self, args: &[&str]) -> String {
        let mut argv = vec!["dig", "+short", "+time=2", "+tries=1"];
        argv.extend_from_slice(args);
        String::from_utf8_lossy(&self.run(&argv).stdout).trim().to_string()
    }
}

impl Drop for PodResolver<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kubelet_resolv_conf(nameserver: &str, options: &str) -> String {
    format!(
        "nameserver {nameserver}\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 {options}\n"
    )
}

/// Whether the node holds `address` (on netlet-dns, or on lo when the
/// kernel has no dummy driver).
fn node_has(ns: &Netns, address: &str) -> bool {
    let out = ns.exec(&["ip", "-o", "addr", "show"]);
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {address}/"))
}

#[test]
fn pods_resolve_services_endpoints_and_outside_names() {
    if !testbed::require_privileges("pods_resolve_services_endpoints_and_outside_names") {
        return;
    }
    let node = Netns::new("dnn").unwrap();
    let cgroup = Cgroup::new("dns").unwrap();
    let pins = testbed::PinDir::new("dns");
    node.run(|| {
        // The node's own resolver: the upstream for names outside the zone.
        let upstream = dns::fixed::serve_fixed(
            "127.0.0.1:0".parse().unwrap(),
            &[("outside.test.", "192.0.2.80".parse().unwrap())],
        )
        .unwrap();
        let bed = Bed::new(&["10.140.0.0/28", "fd00:140::/124"]);
        let (services, slices) = bed.default_apis();
        let web: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"ipFamilyPolicy": "RequireDualStack", "ports": [{"name": "http", "port": 80}]},
        }))
        .unwrap();
        let db: Service = serde_json::from_value(json!({
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "sql", "port": 5432}]},
        }))
        .unwrap();
        let ext: Service = serde_json::from_value(json!({
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "outside.test"},
        }))
        .unwrap();
        // A kube-dns Service left behind on the cluster DNS address, with no
        // endpoints: Service translation must leave that address to the
        // node's own server, or pods' queries would be refused.
        let kube_dns: Service = serde_json::from_value(json!({
            "metadata": {"name": "kube-dns"},
            "spec": {"clusterIP": DNS_V4, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]},
        }))
        .unwrap();
        let db_slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "sql", "port": 5432}],
            "endpoints": [{"addresses": ["10.140.0.7"], "hostname": "db-0", "conditions": {"ready": true}}],
        }))
        .unwrap();
        let web_ips = bed.rt.block_on(async {
            let pp = PostParams::default();
            let created = services.create(&pp, &web).await.unwrap();
            services.create(&pp, &db).await.unwrap();
            services.create(&pp, &ext).await.unwrap();
            services.create(&pp, &kube_dns).await.unwrap();
            slices.create(&pp, &db_slice).await.unwrap();
            created.spec.unwrap().cluster_ips.unwrap()
        });
        let (web_v4, web_v6) = (web_ips[0].clone(), web_ips[1].clone());

        let settings = json!({
            "clusterDNS": [DNS_V4, DNS_V6],
            "dns": {"enabled": true, "upstreams": [upstream.to_string()]},
            "services": {"enabled": true, "cgroup": cgroup.path(), "pinDir": pins.path(), "mapEntries": 1024},
        });
        let agent = bed.agent_with(settings);
        assert!(
            node_has(&node, DNS_V4) && node_has(&node, DNS_V6),
            "the node holds the cluster DNS addresses"
        );
        let pod = Netns::new("dnp").unwrap();
        assert!(
            bed.plugin
                .exec("ADD", "client", Some(&pod.path()), &bed.plugin.conf("1.0.0", json!({})))
                .ok
        );

        let udp = PodResolver::new(&pod, &cgroup, &kubelet_resolv_conf(DNS_V4, ""));
        // The search list turns a Service's short name into its FQDN.
        assert!(
            eventually(std::time::Duration::from_secs(10), || udp.getent("ahostsv4", "web")
                == vec![web_v4.clone()]),
            "web resolves to its ClusterIP: {:?}",
            udp.getent("ahostsv4", "web")
        );
        assert_eq!(udp.getent("ahostsv6", "web.default"), vec![web_v6.clone()]);
        assert_eq!(
            udp.getent("ahostsv4", "db"),
            vec!["10.140.0.7"],
            "headless: the endpoint"
        );
        assert_eq!(
            udp.getent("ahostsv4", "db-0.db"),
            vec!["10.140.0.7"],
            "an endpoint by hostname"
        );
        assert_eq!(
            udp.getent("ahostsv4", "ext"),
            vec!["192.0.2.80"],
            "ExternalName to a name the upstream answers"
        );
        assert_eq!(udp.getent("ahostsv4", "outside.test"), vec!["192.0.2.80"], "forwarded");
        let missing = udp.run(&["getent", "hosts", "nope"]);
        assert_eq!(
            missing.status.code(),
            Some(2),
            "a name that does not exist is not found"
        );
        assert_eq!(
            udp.dig(&["SRV", "_http._tcp.web.default.svc.cluster.local"]),
            "0 100 80 web.default.svc.cluster.local."
        );
        let reverse: String = web_v4.split('.').rev().collect::<Vec<_>>().join(".");
        assert_eq!(
            udp.dig(&["PTR", &format!("{reverse}.in-addr.arpa")]),
            "web.default.svc.cluster.local."
        );

        // Over TCP: glibc's use-vc, and dig +tcp against the IPv6 address.
        let tcp = PodResolver::new(&pod, &cgroup, &kubelet_resolv_conf(DNS_V4, "use-vc"));
        assert_eq!(tcp.getent("ahostsv4", "web"), vec![web_v4.clone()]);
        drop(tcp);
        let v6 = PodResolver::new(&pod, &cgroup, &kubelet_resolv_conf(DNS_V6, ""));
        assert_eq!(
            v6.getent("ahostsv6", "web"),
            vec![web_v6.clone()],
            "via the IPv6 server address"
        );
        assert_eq!(
            v6.dig(&["+tcp", &format!("@{DNS_V6}"), "AAAA", "web.default.svc.cluster.local"]),
            web_v6
        );

        // The CLI asks the running server; metrics counted the queries.
        let out = std::process::Command::new(NETLET)
            .args(["dns", "query", "db.default.svc.cluster.local", "--socket"])
            .arg(bed.admin_socket())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("10.140.0.7"), "{text}");
        let out = std::process::Command::new(NETLET)
            .args(["dns", "query", "nope.default.svc.cluster.local", "--socket"])
            .arg(bed.admin_socket())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "NXDOMAIN fails the command");
        let out = std::process::Command::new(NETLET)
            .args(["dns", "status", "-o", "json", "--socket"])
            .arg(bed.admin_socket())
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            status["listen"],
            json!([format!("{DNS_V4}:53"), format!("[{DNS_V6}]:53")])
        );
        assert_eq!(status["upstreams"], json!([upstream.to_string()]));
        assert_eq!(
            (status["zoneSynced"].as_bool(), status["zoneServices"].as_u64()),
            (Some(true), Some(4)),
            "web, db, ext, kube-dns"
        );
        let metrics = bed.metrics();
        let srv = metrics
            .lines()
            .find(|l| l.starts_with("netlet_dns_queries_total{type=\"SRV\"}"))
            .unwrap_or_default();
        assert_eq!(srv, "netlet_dns_queries_total{type=\"SRV\"} 1");

        // A restart: the addresses stay while no agent runs (a query meets
        // a closed port on the node rather than leaving it), and the next
        // agent serves on them again.
        bed.rt.block_on(agent.shutdown());
        assert!(node_has(&node, DNS_V4) && node_has(&node, DNS_V6));
        let missing = udp.run(&["dig", "+time=1", "+tries=1", "web.default.svc.cluster.local"]);
        assert!(
            String::from_utf8_lossy(&missing.stdout).contains("connection refused"),
            "no agent: refused at once"
        );
        let agent = bed.agent_with(json!({
            "clusterDNS": [DNS_V4, DNS_V6],
            "dns": {"enabled": true, "upstreams": [upstream.to_string()]},
        }));
        assert!(
            eventually(std::time::Duration::from_secs(10), || udp.getent("ahostsv4", "web")
                == vec![web_v4.clone()]),
            "answered again after the restart"
        );
        bed.rt.block_on(agent.shutdown());
        bed.rt
            .block_on(netstack::dns::release(&[
                DNS_V4.parse().unwrap(),
                DNS_V6.parse().unwrap(),
            ]))
            .unwrap();
        assert!(
            !node_has(&node, DNS_V4) && !node_has(&node, DNS_V6),
            "released: nothing left"
        );
        drop(udp);
        drop(v6);
    });
}
