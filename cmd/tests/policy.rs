//! NetworkPolicy through the agent, checked the way the upstream e2e model
//! checks it: namespaces x, y, z; pods a, b, c in each, labelled
//! `pod=<name>`, each serving its name on ports 80 and 81 over TCP and UDP
//! (and 53/UDP); after every policy step the whole reachability matrix,
//! IPv4 and IPv6, is probed and compared with what the step should allow.
//! The node is a network namespace of the test's own; the pods are real
//! CNI pods wired by the agent.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use testbed::{Netns, Probe, Proto};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 2] = [80, 81];
/// A probe that gets no answer in this long counts as blocked.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a step may take to be enforced before the matrix must match.
const SETTLE: Duration = Duration::from_secs(10);

/// One pod of the model.
struct ModelPod {
    namespace: &'static str,
    name: &'static str,
    netns: Netns,
    ips: Vec<IpAddr>,
    _servers: testbed::Servers,
}

impl ModelPod {
    fn is(&self, namespace: &str, name: &str) -> bool {
        self.namespace == namespace && self.name == name
    }

    fn label(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn ip(&self, v6: bool) -> IpAddr {
        *self.ips.iter().find(|ip| ip.is_ipv6() == v6).expect("dual-stack pod")
    }
}

/// One flow of the matrix.
struct Case<'a> {
    from: &'a ModelPod,
    to: &'a ModelPod,
    port: u16,
    proto: Proto,
}

/// Probes every pod pair, port and protocol in both families until the
/// answers match `expect` (or `SETTLE` passes, then fails with the flows
/// that differ).
fn check(model: &[ModelPod], step: &str, expect: impl Fn(&Case) -> bool) {
    let mut cases = Vec::new();
    for from in model {
        for to in model {
            for port in PORTS {
                for proto in [Proto::Tcp, Proto::Udp] {
                    for v6 in [false, true] {
                        cases.push((Case { from, to, port, proto }, v6));
                    }
                }
            }
        }
    }
    check_cases(step, &cases, |c| expect(c));
}

fn check_cases(step: &str, cases: &[(Case, bool)], expect: impl Fn(&Case) -> bool) {
    let probes: Vec<Probe> = cases
        .iter()
        .map(|(c, v6)| Probe {
            from: c.from.netns.path(),
            to: SocketAddr::new(c.to.ip(*v6), c.port),
            proto: c.proto,
        })
        .collect();
    let deadline = Instant::now() + SETTLE;
    loop {
        let answers = testbed::probe_all(&probes, PROBE_TIMEOUT);
        let wrong: Vec<String> = cases
            .iter()
            .zip(&answers)
            .filter_map(|((c, v6), answer)| {
                let reached = answer.as_deref() == Some(c.to.label().as_str());
                let wanted = expect(c);
                (reached != wanted).then(|| {
                    let family = if *v6 { "IPv6" } else { "IPv4" };
                    let how = if wanted {
                        "blocked, should pass"
                    } else {
                        "passed, should be blocked"
                    };
                    format!(
                        "{} -> {} {}/{} {family}: {how}",
                        c.from.label(),
                        c.to.label(),
                        c.port,
                        c.proto
                    )
                })
            })
            .collect();
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "step {step:?}: {} of {} flows wrong:\n{}",
            wrong.len(),
            cases.len(),
            wrong.join("\n")
        );
    }
}

/// The API objects of the model: namespaces labelled `ns=<name>`, pods
/// labelled `pod=<name>` on this node with named container ports.
fn model_objects(bed: &Bed) {
    bed.rt.block_on(async {
        let client = bed.client().await;
        for ns in NAMESPACES {
            let namespace: Namespace =
                serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"ns": ns}}})).unwrap();
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &namespace)
                .await
                .unwrap();
            for name in PODS {
                let ports: Vec<Value> = [(80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP")]
                    .iter()
                    .map(|(port, proto)| {
                        json!({"name": format!("serve-{port}-{}", proto.to_lowercase()), "containerPort": port, "protocol": proto})
                    })
                    .collect();
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"pod": name}},
                    "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "agnhost", "ports": ports}]},
                }))
                .unwrap();
                Api::<Pod>::namespaced(client.clone(), ns)
                    .create(&PostParams::default(), &pod)
                    .await
                    .unwrap();
            }
        }
    });
}

/// Wires every model pod through the CNI plugin and starts its servers.
fn model_pods(bed: &Bed) -> Vec<ModelPod> {
    let conf = bed.plugin.conf("1.0.0", json!({}));
    let mut model = Vec::new();
    for namespace in NAMESPACES {
        for name in PODS {
            let netns = Netns::new(&format!("np{namespace}{name}")).unwrap();
            let out = bed.plugin.exec_pod(
                "ADD",
                &format!("{namespace}-{name}"),
                (namespace, name),
                Some(&netns.path()),
                &conf,
            );
            assert!(out.ok, "ADD {namespace}/{name}: {:?}", out.doc);
            let ips = out.ips();
            let servers = testbed::serve(&netns, &format!("{namespace}/{name}"), &[80, 81, 53]);
            model.push(ModelPod {
                namespace,
                name,
                netns,
                ips,
                _servers: servers,
            });
        }
    }
    model
}

/// Creates a NetworkPolicy from its JSON, or replaces the whole object
/// (an update, as `kubectl replace` does it).
fn apply(bed: &Bed, policy: Value) {
    let namespace = policy["metadata"]["namespace"].as_str().unwrap().to_string();
    let name = policy["metadata"]["name"].as_str().unwrap().to_string();
    let mut policy: NetworkPolicy = serde_json::from_value(policy).unwrap();
    bed.rt.block_on(async {
        let api: Api<NetworkPolicy> = Api::namespaced(bed.client().await, &namespace);
        match api.get_opt(&name).await.unwrap() {
            Some(current) => {
                policy.metadata.resource_version = current.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &policy).await.unwrap();
            }
            None => drop(api.create(&PostParams::default(), &policy).await.unwrap()),
        }
    });
}

fn delete(bed: &Bed, namespace: &str, name: &str) {
    bed.rt.block_on(async {
        let api: Api<NetworkPolicy> = Api::namespaced(bed.client().await, namespace);
        api.delete(name, &DeleteParams::default()).await.unwrap();
    });
}

/// Merges `labels` into pod `namespace/name` (or, without a pod name, the
/// namespace itself).
fn relabel(bed: &Bed, namespace: &str, pod: Option<&str>, labels: Value) {
    let patch = json!({"metadata": {"labels": labels}});
    let params = PatchParams::default();
    bed.rt.block_on(async {
        let client = bed.client().await;
        match pod {
            Some(name) => drop(
                Api::<Pod>::namespaced(client, namespace)
                    .patch(name, &params, &Patch::Merge(&patch))
                    .await
                    .unwrap(),
            ),
            None => drop(
                Api::<Namespace>::all(client)
                    .patch(namespace, &params, &Patch::Merge(&patch))
                    .await
                    .unwrap(),
            ),
        }
    });
}

fn policy(namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// Runs the netlet CLI against the bed's agent: exit code and stdout.
fn netlet(bed: &Bed, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(NETLET)
        .args(args)
        .arg("--socket")
        .arg(bed.admin_socket())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// With x's default deny and x/a open to x/b: `netlet policy trace` names
/// the policies behind each verdict, `netlet policy status` each pod's
/// isolation, and the drops of the matrix just probed are reported as
/// events and in the metrics.
fn explains_itself(bed: &Bed) {
    let (code, text) = netlet(
        bed,
        &["policy", "trace", "--from", "x/b", "--to", "x/a", "--port", "80/TCP"],
    );
    assert_eq!(code, 0, "allowed: {text}");
    assert!(
        text.contains("ALLOWED") && text.contains("x/allow-a-from-b spec.ingress[0].from[0]"),
        "{text}"
    );
    let (code, text) = netlet(
        bed,
        &[
            "policy", "trace", "--from", "y/b", "--to", "x/a", "--port", "81/UDP", "--family", "IPv6",
        ],
    );
    assert_eq!(code, 1, "denied: {text}");
    assert!(
        text.contains("DENIED") && text.contains("isolated by x/allow-a-from-b, x/deny-ingress"),
        "{text}"
    );

    let (_, status) = netlet(bed, &["policy", "status", "-o", "json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    let pod = |name: &str| {
        status["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pod"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    assert_eq!(
        pod("x/a")["ingress"]["isolatedBy"],
        json!(["x/allow-a-from-b", "x/deny-ingress"])
    );
    assert_eq!(pod("y/a")["ingress"]["isolatedBy"], json!([]));
    assert!(pod("x/a")["ingress"]["dropped"].as_u64().unwrap() > 0, "{status}");

    let (code, drops) = netlet(bed, &["policy", "drops", "-o", "json"]);
    assert_eq!(code, 0);
    let drop_to_x_a = drops
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|d| {
            d["pod"] == "x/a" && d["direction"] == "Ingress" && d["destination"].as_str().unwrap().ends_with(":80")
        });
    assert!(drop_to_x_a, "no drop to x/a reported:\n{drops}");
    let page = bed.metrics();
    let dropped = page
        .lines()
        .find_map(|l| {
            l.strip_prefix("netlet_policy_packets_dropped_total{namespace=\"x\",pod=\"a\",direction=\"Ingress\"} ")
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert!(dropped.is_some_and(|n| n > 0.0), "{page}");
}

/// The same answer for every flow: nothing is isolated.
fn all_open(_: &Case) -> bool {
    true
}

#[test]
fn the_upstream_reachability_model_in_both_families() {
    if !testbed::require_privileges("the_upstream_reachability_model_in_both_families") {
        return;
    }
    let node = Netns::new("npn").unwrap();
    let pins = testbed::PinDir::new("pol");
    node.run(|| {
        let bed = Bed::new(&["10.140.0.0/27", "fd00:140::/123"]);
        let settings = json!({"policy": {"enabled": true, "pinDir": pins.path()}});
        let agent = bed.agent_with(settings.clone());
        model_objects(&bed);
        let model = model_pods(&bed);
        check(&model, "no policies", all_open);

        // Default deny ingress in x: nothing reaches x's pods, except from
        // themselves (a pod's own traffic never meets its veth).
        apply(&bed, policy("x", "deny-ingress", json!({"podSelector": {}, "policyTypes": ["Ingress"]})));
        check(&model, "default deny ingress in x", |c| c.to.namespace != "x" || c.from.is(c.to.namespace, c.to.name));
        // The node itself (kubelet probes) still reaches them.
        let from_node = Probe {
            from: node.path(),
            to: SocketAddr::new(model[0].ip(false), 80),
            proto: Proto::Tcp,
        };
        assert_eq!(testbed::probe(&from_node, PROBE_TIMEOUT).as_deref(), Some("x/a"), "the node reaches x/a");

        // Allow x/a from pods labelled pod=b in x (podSelector: same namespace).
        apply(
            &bed,
            policy("x", "allow-a-from-b", json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
            })),
        );
        let to_x_only_own = |c: &Case| c.to.namespace != "x" || c.from.is(c.to.namespace, c.to.name);
        check(&model, "x/a from x/b", |c| to_x_only_own(c) || (c.to.is("x", "a") && c.from.is("x", "b")));
        explains_itself(&bed);

        // namespaceSelector AND podSelector in one peer: only y/b.
        apply(
            &bed,
            policy("x", "allow-a-from-b", json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}],
            })),
        );
        check(&model, "x/a from y/b (AND)", |c| to_x_only_own(c) || (c.to.is("x", "a") && c.from.is("y", "b")));

        // The same selectors as two peers: all of y, or pod=b in x.
        apply(
            &bed,
            policy("x", "allow-a-from-b", json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"podSelector": {"matchLabels": {"pod": "b"}}}]}],
            })),
        );
        let or_rule = |c: &Case| c.to.is("x", "a") && (c.from.namespace == "y" || c.from.is("x", "b"));
        check(&model, "x/a from y/* or x/b (OR)", |c| to_x_only_own(c) || or_rule(c));

        // A label change on a pod, then on a namespace, re-evaluates.
        relabel(&bed, "x", Some("c"), json!({"pod": "b"}));
        check(&model, "x/c relabelled pod=b", |c| {
            to_x_only_own(c) || or_rule(c) || (c.to.is("x", "a") && c.from.is("x", "c"))
        });
        relabel(&bed, "x", Some("c"), json!({"pod": "c"}));
        relabel(&bed, "z", None, json!({"ns": "y"}));
        check(&model, "z relabelled ns=y", |c| {
            to_x_only_own(c) || or_rule(c) || (c.to.is("x", "a") && c.from.namespace == "z")
        });
        relabel(&bed, "z", None, json!({"ns": "z"}));

        // matchExpressions: from namespaces NotIn [y], to pods In [a, b].
        apply(
            &bed,
            policy("x", "allow-a-from-b", json!({
                "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]},
                "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["y"]}]}}]}],
            })),
        );
        check(&model, "x/{a,b} from namespaces not y", |c| {
            to_x_only_own(c) || (c.to.namespace == "x" && c.to.name != "c" && c.from.namespace != "y")
        });

        // Named port on ingress, and a one-protocol rule isolating the
        // others: only TCP 81 reaches x/a, from anywhere.
        apply(
            &bed,
            policy("x", "allow-a-from-b", json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"ports": [{"port": "serve-81-tcp"}]}],
            })),
        );
        check(&model, "x/a on serve-81-tcp", |c| {
            to_x_only_own(c) || (c.to.is("x", "a") && c.port == 81 && c.proto == Proto::Tcp)
        });

        // endPort: TCP 80-81.
        apply(
            &bed,
            policy("x", "allow-a-from-b", json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}],
            })),
        );
        check(&model, "x/a on TCP 80-81", |c| to_x_only_own(c) || (c.to.is("x", "a") && c.proto == Proto::Tcp));

        // A policy the API server would reject (endPort with a named port)
        // is reported and fails closed: it isolates z/a and allows nothing.
        apply(
            &bed,
            policy("z", "broken", json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"ports": [{"port": "serve-80-tcp", "endPort": 81}]}],
            })),
        );
        check(&model, "an invalid policy on z/a", |c| {
            let x = to_x_only_own(c) || (c.to.is("x", "a") && c.proto == Proto::Tcp);
            let z = !c.to.is("z", "a") || c.from.is("z", "a");
            x && z
        });
        let (_, status) = netlet(&bed, &["policy", "status", "-o", "json"]);
        let status: Value = serde_json::from_str(&status).unwrap();
        let errors = status["errors"].to_string();
        assert!(errors.contains("z/broken") && errors.contains("endPort"), "{errors}");
        assert!(bed.metrics().contains("netlet_policy_invalid_policies 1"));
        delete(&bed, "z", "broken");

        // Deleting the policies restores reachability.
        delete(&bed, "x", "allow-a-from-b");
        delete(&bed, "x", "deny-ingress");
        check(&model, "policies deleted", all_open);

        // Egress: y may only reach UDP 53 anywhere (DNS) and, by named
        // port, serve-80-tcp of pods in z.
        apply(
            &bed,
            policy("y", "egress", json!({
                "podSelector": {}, "policyTypes": ["Egress"],
                "egress": [
                    {"ports": [{"protocol": "UDP", "port": 53}]},
                    {"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}], "ports": [{"port": "serve-80-tcp"}]},
                ],
            })),
        );
        let from_y_own = |c: &Case| c.from.namespace != "y" || c.from.is(c.to.namespace, c.to.name);
        check(&model, "y egress: z on serve-80-tcp", |c| {
            from_y_own(c) || (c.to.namespace == "z" && c.port == 80 && c.proto == Proto::Tcp)
        });
        let dns: Vec<(Case, bool)> = model
            .iter()
            .filter(|p| p.namespace == "y")
            .flat_map(|from| {
                model.iter().flat_map(move |to| {
                    [false, true].map(|v6| {
                        let case = Case { from, to, port: 53, proto: Proto::Udp };
                        (case, v6)
                    })
                })
            })
            .collect();
        check_cases("y egress: UDP 53 anywhere", &dns, |_| true);

        // ipBlock with except, on egress from y/a: the pod network of each
        // family except x/b's addresses.
        let xb = model.iter().find(|p| p.is("x", "b")).unwrap();
        apply(
            &bed,
            policy("y", "egress", json!({
                "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [
                    {"ipBlock": {"cidr": "10.140.0.0/27", "except": [format!("{}/32", xb.ip(false))]}},
                    {"ipBlock": {"cidr": "fd00:140::/123", "except": [format!("{}/128", xb.ip(true))]}},
                ]}],
            })),
        );
        check(&model, "y/a egress to the pod network except x/b", |c| {
            !c.from.is("y", "a") || !c.to.is("x", "b") || c.from.is(c.to.namespace, c.to.name)
        });

        // A flow needs both: y/a's egress (above) and x/c's ingress.
        apply(
            &bed,
            policy("x", "c-from-y-b", json!({
                "podSelector": {"matchLabels": {"pod": "c"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
            })),
        );
        check(&model, "x/c only from y; y/a not to x/b", |c| {
            let egress = !c.from.is("y", "a") || !c.to.is("x", "b");
            let ingress = !c.to.is("x", "c") || c.from.namespace == "y";
            c.from.is(c.to.namespace, c.to.name) || (egress && ingress)
        });
        delete(&bed, "x", "c-from-y-b");
        delete(&bed, "y", "egress");
        check(&model, "all deleted again", all_open);

        // A flow that is open when a policy starts forbidding it is cut: a
        // UDP "connection" from x/b to x/a answers, then stops answering.
        let xa = model.iter().find(|p| p.is("x", "a")).unwrap();
        let socket = xb.netns.run(|| UdpSocket::bind("0.0.0.0:0").unwrap());
        socket.connect(SocketAddr::new(xa.ip(false), 80)).unwrap();
        socket.set_read_timeout(Some(PROBE_TIMEOUT)).unwrap();
        let ask = || {
            let _ = socket.send(b"?");
            let mut buf = [0u8; 64];
            socket.recv(&mut buf).ok().map(|n| String::from_utf8_lossy(&buf[..n]).trim().to_string())
        };
        assert_eq!(ask().as_deref(), Some("x/a"), "the flow is open");
        apply(&bed, policy("x", "deny-ingress", json!({"podSelector": {}, "policyTypes": ["Ingress"]})));
        let deadline = Instant::now() + SETTLE;
        while ask().is_some() {
            assert!(Instant::now() < deadline, "the open flow is still answered after a deny");
        }

        // No agent, then the next one: enforcement stays as it was, with
        // no window in between (the maps and links are pinned, and the
        // next agent writes its entries before it re-attaches).
        bed.rt.block_on(agent.shutdown());
        let denied_x = |c: &Case| c.to.namespace != "x" || c.from.is(c.to.namespace, c.to.name);
        check(&model, "x denied while no agent runs", denied_x);
        let agent = bed.agent_with(settings);
        check(&model, "x denied under the next agent", denied_x);
        delete(&bed, "x", "deny-ingress");
        check(&model, "open again under the next agent", all_open);
        drop(agent);
    });
}
