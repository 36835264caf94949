//! The netlet binary driven as a container runtime drives a CNI plugin
//! (environment, config on stdin, result or error on stdout), against an
//! agent running in this process: every verb, the spec's error cases, and
//! no veth, route or lease left behind by anything that failed.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};
use testbed::Netns;

#[test]
fn every_verb_through_the_exec_path() {
    if !testbed::require_privileges("every_verb_through_the_exec_path") {
        return;
    }
    // A /29 and a /125 hold five and six pod addresses: small enough to
    // run out of.
    let bed = Bed::new(&["10.123.0.0/29", "fd00:123::/125"]);
    let agent = bed.agent();
    let plugin = &bed.plugin;
    let conf = plugin.conf("1.1.0", json!({}));

    // Once ready, the agent has told runtimes about itself: a conflist
    // naming its socket, and the plugin that conflist names, installed.
    let conflist: Value =
        serde_json::from_slice(&std::fs::read(bed.dir.path().join("net.d/10-netlet.conflist")).unwrap()).unwrap();
    assert_eq!(conflist["cniVersion"], "1.0.0");
    assert_eq!(
        conflist["plugins"],
        json!([{"type": "netlet", "agentSocket": plugin.socket}])
    );
    assert_eq!(
        std::fs::read(bed.dir.path().join("bin/netlet")).unwrap(),
        std::fs::read(NETLET).unwrap()
    );
    let pods: Vec<Netns> = (0..6).map(|_| Netns::new("cni").unwrap()).collect();

    // VERSION and STATUS.
    let v = plugin.exec("VERSION", "x", None, &conf);
    assert_eq!(v.doc.unwrap()["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
    assert!(plugin.exec("STATUS", "", None, &conf).ok);

    // ADD: the result has the spec's shape.
    let a = plugin.exec("ADD", "pod-a", Some(&pods[0].path()), &conf);
    assert!(a.ok, "{a:?}");
    let r = a.doc.unwrap();
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["sandbox"], pods[0].path().display().to_string());
    assert_eq!(r["interfaces"][1]["mtu"], 1400);
    assert_eq!(
        r["ips"][0],
        json!({"address":"10.123.0.2/32","gateway":"169.254.1.1","interface":1})
    );
    assert_eq!(r["ips"][1]["address"], "fd00:123::2/128");
    assert_eq!(
        r["routes"],
        json!([{"dst":"0.0.0.0/0","gw":"169.254.1.1"},{"dst":"::/0","gw":"fe80::1"}])
    );
    assert_eq!(r["dns"]["search"][0], "default.svc.cluster.local");
    let pod_addrs = String::from_utf8_lossy(&pods[0].exec(&["ip", "addr", "show", "eth0"]).stdout).into_owned();
    assert!(
        pod_addrs.contains("10.123.0.2/32") && pod_addrs.contains("fd00:123::2/128"),
        "{pod_addrs}"
    );
    assert!(host_link_exists("pod-a"));
    assert!(plugin.exec("CHECK", "pod-a", Some(&pods[0].path()), &conf).ok);

    // A second ADD of the same interface errors and leaves the first alone.
    assert_eq!(
        error_code(&plugin.exec("ADD", "pod-a", Some(&pods[0].path()), &conf)),
        101
    );
    assert!(plugin.exec("CHECK", "pod-a", Some(&pods[0].path()), &conf).ok);

    // A namespace that does not exist: an error, nothing left behind.
    let gone = plugin.exec("ADD", "pod-gone", Some(Path::new("/run/netns/no-such-ns")), &conf);
    assert_eq!(error_code(&gone), 4);
    assert!(!host_link_exists("pod-gone"));

    // Config at 0.4.0 gets the 0.4.0 result shape.
    let b = plugin.exec("ADD", "pod-b", Some(&pods[1].path()), &plugin.conf("0.4.0", json!({})));
    assert!(b.ok, "{b:?}");
    assert_eq!(b.doc.unwrap()["ips"][0]["version"], "4");

    // Three more fill the /29 (five addresses; no lease leaked by the
    // failures above), then the pool is exhausted, cleanly.
    for (i, id) in ["pod-c", "pod-d", "pod-e"].iter().enumerate() {
        assert!(plugin.exec("ADD", id, Some(&pods[2 + i].path()), &conf).ok, "{id}");
    }
    let full = plugin.exec("ADD", "pod-f", Some(&pods[5].path()), &conf);
    assert_eq!(error_code(&full), 100);
    assert!(full.doc.unwrap()["msg"]
        .as_str()
        .unwrap()
        .contains("no free IPv4 address"));
    assert!(!host_link_exists("pod-f"));

    // `netlet ipam` shows the full block and who holds each address.
    let socket = bed.admin_socket().display().to_string();
    let ipam = bed.ipam();
    let v4 = ipam["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["family"] == "IPv4")
        .unwrap()
        .clone();
    assert_eq!(
        (v4["cidr"].as_str(), v4["leased"].as_u64(), v4["free"].as_u64()),
        (Some("10.123.0.0/29"), Some(5), Some(0))
    );
    assert!(
        ipam["leases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["pod"] == "default/pod-c" && l["address"].as_str().unwrap().starts_with("10.123.0.")),
        "{ipam}"
    );
    let table = Command::new(NETLET)
        .args(["ipam", "--socket", &socket])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("default/pod-e"));

    // Requests are counted by verb and result.
    let page = bed.metrics();
    assert!(
        page.contains("netlet_cni_requests_total{verb=\"ADD\",result=\"ok\"} 5"),
        "{page}"
    );
    assert!(
        page.contains("netlet_cni_requests_total{verb=\"ADD\",result=\"error_100\"} 1"),
        "{page}"
    );
    assert!(
        page.contains("netlet_cni_request_duration_seconds_count{verb=\"ADD\"} 8"),
        "{page}"
    );
    assert!(
        page.contains("netlet_ipam_free_addresses{family=\"IPv4\",cidr=\"10.123.0.0/29\"} 0"),
        "{page}"
    );

    // DEL: works, works again, and works when the namespace is gone.
    assert!(plugin.exec("DEL", "pod-a", Some(&pods[0].path()), &conf).ok);
    assert!(host_link_gone("pod-a"));
    assert!(!host_routes().contains("10.123.0.2 "), "{}", host_routes());
    assert!(plugin.exec("DEL", "pod-a", Some(&pods[0].path()), &conf).ok);
    assert_eq!(
        error_code(&plugin.exec("CHECK", "pod-a", Some(&pods[0].path()), &conf)),
        3
    );
    assert!(
        plugin
            .exec("DEL", "pod-b", Some(Path::new("/run/netns/no-such-ns")), &conf)
            .ok
    );
    assert!(host_link_gone("pod-b"));

    // The freed address is usable again.
    assert!(plugin.exec("ADD", "pod-f", Some(&pods[5].path()), &conf).ok);

    // GC keeps what the runtime lists and removes the rest.
    let valid = json!({"cni.dev/valid-attachments": [{"containerID": "pod-c", "ifname": "eth0"}]});
    assert!(plugin.exec("GC", "", None, &plugin.conf("1.1.0", valid)).ok);
    assert!(host_link_exists("pod-c"));
    for id in ["pod-d", "pod-e", "pod-f"] {
        assert!(host_link_gone(id), "{id} survived GC");
    }
    assert!(plugin.exec("DEL", "pod-c", Some(&pods[2].path()), &conf).ok);
    assert!(!host_routes().contains("10.123.0."), "{}", host_routes());

    bed.rt.block_on(agent.shutdown());
}

#[test]
fn a_restarted_agent_keeps_pods_and_removes_leftovers() {
    if !testbed::require_privileges("a_restarted_agent_keeps_pods_and_removes_leftovers") {
        return;
    }
    let bed = Bed::new(&["10.124.0.0/28"]);
    let pod = Netns::new("rst").unwrap();
    let conf = bed.plugin.conf("1.1.0", json!({}));
    let agent = bed.agent();
    assert!(bed.plugin.exec("ADD", "pod-r", Some(&pod.path()), &conf).ok);
    bed.rt.block_on(agent.shutdown());

    // What a crash in the middle of an ADD leaves: a pod interface that
    // no attachment names.
    let leftover = netstack::wire::host_ifname("crashed", "eth0");
    assert!(Command::new("ip")
        .args(["link", "add", &leftover, "type", "veth", "peer", "name", "nltest-peer"])
        .status()
        .unwrap()
        .success());

    let agent = bed.agent();
    assert!(host_link_gone("crashed"), "the leftover interface is removed at start");
    let check = bed.plugin.exec("CHECK", "pod-r", Some(&pod.path()), &conf);
    assert!(check.ok, "the pod survives the restart: {check:?}");
    assert!(
        pod.exec(&["ping", "-c", "1", "-W", "2", "169.254.1.1"])
            .status
            .success(),
        "and still reaches the node"
    );
    let again = bed
        .plugin
        .exec("ADD", "pod-s", Some(&Netns::new("rst").unwrap().path()), &conf);
    assert_eq!(
        again.doc.unwrap()["ips"][0]["address"],
        "10.124.0.3/32",
        "the restored lease is not handed out twice"
    );
    assert!(bed.plugin.exec("DEL", "pod-r", Some(&pod.path()), &conf).ok);
    assert!(host_link_gone("pod-r"));
    bed.rt.block_on(agent.shutdown());
}

#[test]
fn a_hundred_concurrent_adds_get_distinct_addresses() {
    if !testbed::require_privileges("a_hundred_concurrent_adds_get_distinct_addresses") {
        return;
    }
    let bed = Bed::new(&["10.125.0.0/24", "fd00:125::/120"]);
    let agent = bed.agent();
    let conf = bed.plugin.conf("1.1.0", json!({}));
    let pods: Vec<Netns> = (0..100).map(|_| Netns::new("par").unwrap()).collect();
    let results: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let (plugin, conf) = (&bed.plugin, &conf);
                s.spawn(move || plugin.exec("ADD", &format!("par-{i}"), Some(&ns.path()), conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for family in [0, 1] {
        let addrs: std::collections::BTreeSet<String> = results
            .iter()
            .map(|r| {
                assert!(r.ok, "{r:?}");
                r.doc.as_ref().unwrap()["ips"][family]["address"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(addrs.len(), 100, "every pod got its own address");
    }
    std::thread::scope(|s| {
        for (i, ns) in pods.iter().enumerate() {
            let (plugin, conf) = (&bed.plugin, &conf);
            s.spawn(move || assert!(plugin.exec("DEL", &format!("par-{i}"), Some(&ns.path()), conf).ok));
        }
    });
    for i in 0..100 {
        assert!(host_link_gone(&format!("par-{i}")));
    }
    assert!(!host_routes().contains("10.125.0."));
    bed.rt.block_on(agent.shutdown());
}

#[test]
fn sigkill_during_add_storms_leaks_nothing() {
    if !testbed::require_privileges("sigkill_during_add_storms_leaks_nothing") {
        return;
    }
    let bed = Bed::new(&["10.126.0.0/24", "fd00:126::/120"]);
    let conf = bed.plugin.conf("1.1.0", json!({}));
    let pods: Vec<Netns> = (0..45).map(|_| Netns::new("kil").unwrap()).collect();
    let mut succeeded = std::collections::BTreeSet::new();
    for round in 0..3 {
        let agent = AgentProcess::start(&bed);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<(String, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..15)
                .map(|i| {
                    let id = format!("kil-{round}-{i}");
                    let (plugin, conf, done, ns) = (&bed.plugin, &conf, &done, &pods[round * 15 + i]);
                    s.spawn(move || {
                        let ok = plugin.exec("ADD", &id, Some(&ns.path()), conf).ok;
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        (id, ok)
                    })
                })
                .collect();
            // Kill the agent in the middle of the storm: once a few ADDs
            // have been answered and the rest are still in flight.
            while done.load(std::sync::atomic::Ordering::SeqCst) < 3 {
                std::thread::yield_now();
            }
            drop(agent);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        succeeded.extend(results.into_iter().filter(|(_, ok)| *ok).map(|(id, _)| id));
    }
    assert!(!succeeded.is_empty());
    eprintln!("{} of 45 ADDs succeeded across the kills", succeeded.len());

    // The runtime's view: exactly the ADDs that succeeded are valid.
    let _agent = AgentProcess::start(&bed);
    let valid: Vec<Value> = succeeded
        .iter()
        .map(|id| json!({"containerID": id, "ifname": "eth0"}))
        .collect();
    assert!(
        bed.plugin
            .exec(
                "GC",
                "",
                None,
                &bed.plugin.conf("1.1.0", json!({"cni.dev/valid-attachments": valid}))
            )
            .ok
    );

    let ipam = bed.ipam();
    let leases = ipam["leases"].as_array().unwrap();
    let addresses: std::collections::BTreeSet<&str> = leases.iter().map(|l| l["address"].as_str().unwrap()).collect();
    assert_eq!(addresses.len(), leases.len(), "no address is leased twice: {ipam}");
    let holders: std::collections::BTreeSet<String> = leases
        .iter()
        .map(|l| l["containerId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(holders, succeeded, "no orphaned lease, none lost");
    for round in 0..3 {
        for i in 0..15 {
            let id = format!("kil-{round}-{i}");
            match succeeded.contains(&id) {
                true => assert!(host_link_exists(&id), "{id} lost its interface"),
                false => assert!(host_link_gone(&id), "{id} left an interface"),
            }
        }
    }
    let empty = json!({"cni.dev/valid-attachments": []});
    assert!(bed.plugin.exec("GC", "", None, &bed.plugin.conf("1.1.0", empty)).ok);
    assert!(!host_routes().contains("10.126.0."));
}

#[test]
fn pods_gone_from_the_node_lose_their_leases() {
    if !testbed::require_privileges("pods_gone_from_the_node_lose_their_leases") {
        return;
    }
    let bed = Bed::new(&["10.129.0.0/28"]);
    let pods = bed.rt.block_on(async {
        let pods = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(bed.client().await, "default");
        let pod = serde_json::from_value(json!({
            "metadata": {"name": "kept"},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        pods.create(&Default::default(), &pod).await.unwrap();
        pods
    });
    let agent = bed.agent_with(json!({"cni": {"orphanGraceSeconds": 1}}));
    let conf = bed.plugin.conf("1.1.0", json!({}));
    let (kept, ghost) = (Netns::new("orp").unwrap(), Netns::new("orp").unwrap());
    assert!(bed.plugin.exec("ADD", "kept", Some(&kept.path()), &conf).ok);
    // A pod the API never had on this node: its runtime DEL is not coming.
    assert!(bed.plugin.exec("ADD", "ghost", Some(&ghost.path()), &conf).ok);

    let holders = || -> Vec<String> {
        let ipam = bed.ipam();
        let mut ids: Vec<String> = ipam["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["containerId"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(holders(), ["ghost", "kept"]);
    assert!(
        host_link_gone("ghost"),
        "the ghost's interface is released after the grace"
    );
    assert_eq!(holders(), ["kept"], "a pod the node runs keeps its lease");
    assert!(host_link_exists("kept"));

    // Once its pod is deleted, the missed DEL is made up for too.
    bed.rt.block_on(pods.delete("kept", &Default::default())).unwrap();
    assert!(host_link_gone("kept"));
    assert!(holders().is_empty());
    bed.rt.block_on(agent.shutdown());
}

#[test]
fn bad_input_through_the_exec_path_gets_the_specs_codes_and_leaves_nothing() {
    if !testbed::require_privileges("bad_input_through_the_exec_path_gets_the_specs_codes_and_leaves_nothing") {
        return;
    }
    let bed = Bed::new(&["10.131.0.0/29"]);
    let agent = bed.agent();
    let ns = Netns::new("bad").unwrap();
    let netns = ns.path().display().to_string();
    let good = bed.plugin.conf("1.1.0", json!({})).to_string();
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "bad-1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_PATH", "/opt/cni/bin"),
    ];
    let without = |name: &str| -> Vec<(&str, &str)> { env.iter().copied().filter(|(k, _)| *k != name).collect() };
    let with = |name: &str, value: &'static str| -> Vec<(&str, &str)> {
        env.iter()
            .map(|&(k, v)| if k == name { (k, value) } else { (k, v) })
            .collect()
    };
    let unknown_version = good.replace("1.1.0", "9.9.9");
    let no_type = json!({"cniVersion": "1.1.0", "name": "netlet", "agentSocket": bed.plugin.socket}).to_string();
    // (what is wrong, environment, config on stdin, the spec's code)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, u64);
    let cases: Vec<Case> = vec![
        ("no CNI_CONTAINERID", without("CNI_CONTAINERID"), &good, 4),
        ("no CNI_IFNAME", without("CNI_IFNAME"), &good, 4),
        ("no CNI_NETNS", without("CNI_NETNS"), &good, 4),
        ("no CNI_PATH", without("CNI_PATH"), &good, 4),
        (
            "a container ID with a slash",
            with("CNI_CONTAINERID", "bad/1"),
            &good,
            4,
        ),
        (
            "an interface name over 15 bytes",
            with("CNI_IFNAME", "a-much-too-long-name"),
            &good,
            4,
        ),
        ("an unknown cniVersion", env.to_vec(), &unknown_version, 1),
        ("malformed JSON", env.to_vec(), "{not json", 6),
        ("a config without type", env.to_vec(), &no_type, 7),
    ];
    for (what, env, stdin, code) in cases {
        let out = exec_raw(&env, stdin.as_bytes());
        assert_eq!(error_code(&out), code, "{what}: {out:?}");
        assert!(
            out.doc.as_ref().unwrap()["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    // Nothing was leased, wired or routed by any of them.
    let ipam = bed.ipam();
    assert_eq!(ipam["leases"], json!([]), "{ipam}");
    assert!(!host_link_exists("bad-1") && !host_link_exists("bad/1"));
    assert!(!host_routes().contains("10.131.0."));
    bed.rt.block_on(agent.shutdown());
}
