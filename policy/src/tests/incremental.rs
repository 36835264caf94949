//! The incremental compiler against compiling from scratch: after every
//! change of a random sequence (pods added, moved, relabelled, finished or
//! deleted; namespaces added, relabelled or deleted; policies added,
//! changed or deleted, with and without resourceVersions), both must
//! produce the same `Compiled`, identity numbers included.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};

use crate::{compile, ClusterState, Compiler, IdentityTable};

/// xorshift64*: a small deterministic generator, so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const NAMESPACES: [&str; 4] = ["x", "y", "z", "w"];
const APPS: [&str; 3] = ["a", "b", "c"];
const TIERS: [&str; 2] = ["web", "db"];
const TEAMS: [&str; 2] = ["t1", "t2"];

/// The cluster as the API would hold it, keyed by namespace/name.
#[derive(Default)]
struct World {
    namespaces: BTreeMap<String, Value>,
    pods: BTreeMap<String, Value>,
    policies: BTreeMap<String, Value>,
    /// The API's resourceVersion counter.
    version: u64,
}

impl World {
    /// One random change; returns what it was, for failure messages.
    fn change(&mut self, rng: &mut Rng) -> String {
        self.version += 1;
        match rng.below(10) {
            0 => {
                let name = rng.pick(&NAMESPACES);
                let team = rng.pick(&TEAMS);
                self.namespaces.insert(
                    name.into(),
                    json!({"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, "team": team}}}),
                );
                format!("namespace {name} team={team}")
            }
            1 => {
                let name = rng.pick(&NAMESPACES);
                self.namespaces.remove(name);
                format!("namespace {name} deleted")
            }
            2..=4 => {
                let pod = pod(rng, self.version);
                let name = format!("{}/{}", pod["metadata"]["namespace"], pod["metadata"]["name"]);
                self.pods.insert(name.clone(), pod.clone());
                format!("pod {pod}")
            }
            5 => match self.pods.keys().nth(rng.below(self.pods.len().max(1))).cloned() {
                Some(name) => {
                    self.pods.remove(&name);
                    format!("pod {name} deleted")
                }
                None => "nothing".into(),
            },
            6..=8 => {
                let policy = policy(rng, self.version);
                let name = format!("{}/{}", policy["metadata"]["namespace"], policy["metadata"]["name"]);
                self.policies.insert(name, policy.clone());
                format!("policy {policy}")
            }
            _ => match self.policies.keys().nth(rng.below(self.policies.len().max(1))).cloned() {
                Some(name) => {
                    self.policies.remove(&name);
                    format!("policy {name} deleted")
                }
                None => "nothing".into(),
            },
        }
    }

    fn objects<T: k8s_openapi::serde::de::DeserializeOwned>(map: &BTreeMap<String, Value>) -> Vec<T> {
        map.values()
            .map(|v| serde_json::from_value(v.clone()).unwrap())
            .collect()
    }
}

fn pod(rng: &mut Rng, version: u64) -> Value {
    let name = format!("p{}", rng.below(8));
    let namespace = rng.pick(&NAMESPACES[..3]);
    let mut labels = json!({"app": rng.pick(&APPS)});
    if rng.chance(50) {
        labels["tier"] = json!(rng.pick(&TIERS));
    }
    let ports = match rng.below(3) {
        0 => json!([]),
        1 => json!([{"name": "http", "containerPort": 80 + rng.below(2)}]),
        _ => json!([{"name": "dns", "containerPort": 53, "protocol": "UDP"}, {"name": "http", "containerPort": 8080}]),
    };
    let n = rng.below(8) + 1;
    let mut status =
        json!({"podIPs": [{"ip": format!("10.0.{n}.{}", rng.below(4) + 1)}, {"ip": format!("fd00::{n}")}]});
    if rng.chance(10) {
        status["phase"] = json!("Succeeded");
    }
    json!({
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "uid": format!("pod-{version}"), "resourceVersion": version.to_string()},
        "spec": {"nodeName": rng.pick(&["n1", "n1", "n2"]), "hostNetwork": rng.chance(5),
                 "containers": [{"name": "c", "ports": ports}]},
        "status": status,
    })
}

fn policy(rng: &mut Rng, version: u64) -> Value {
    let name = format!("q{}", rng.below(6));
    let namespace = rng.pick(&NAMESPACES[..3]);
    let mut spec = json!({"podSelector": selector(rng)});
    match rng.below(4) {
        0 => {}
        1 => spec["policyTypes"] = json!(["Ingress"]),
        2 => spec["policyTypes"] = json!(["Egress"]),
        _ => spec["policyTypes"] = json!(["Ingress", "Egress"]),
    }
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        if rng.chance(70) {
            let rules: Vec<Value> = (0..rng.below(3)).map(|_| rule(rng, peers)).collect();
            spec[direction] = json!(rules);
        }
    }
    let mut meta = json!({"name": name, "namespace": namespace});
    // Some writers (tests, hand-made objects) leave versions out.
    if rng.chance(70) {
        // Sometimes a new uid: deleted and created again.
        meta["uid"] = json!(format!("policy-{name}-{}", rng.below(2)));
        meta["resourceVersion"] = json!(version.to_string());
    }
    json!({"metadata": meta, "spec": spec})
}

fn selector(rng: &mut Rng) -> Value {
    match rng.below(4) {
        0 => json!({}),
        1 => json!({"matchLabels": {"app": rng.pick(&APPS)}}),
        2 => {
            json!({"matchExpressions": [{"key": "tier", "operator": rng.pick(&["In", "NotIn"]), "values": [rng.pick(&TIERS)]}]})
        }
        _ => json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
    }
}

fn rule(rng: &mut Rng, peers_field: &str) -> Value {
    let peers: Vec<Value> = (0..rng.below(3))
        .map(|_| match rng.below(4) {
            0 => json!({"podSelector": selector(rng)}),
            1 => json!({"namespaceSelector": {"matchLabels": {"team": rng.pick(&TEAMS)}}}),
            2 => json!({"podSelector": selector(rng), "namespaceSelector": {}}),
            _ => json!({"ipBlock": {"cidr": "10.0.0.0/16", "except": [format!("10.0.{}.0/24", rng.below(4) + 1)]}}),
        })
        .collect();
    let ports: Vec<Value> = (0..rng.below(3))
        .map(|_| match rng.below(5) {
            0 => json!({"port": 80}),
            1 => json!({"port": "http"}),
            2 => json!({"port": "dns", "protocol": "UDP"}),
            3 => json!({"port": 1000, "endPort": 2000}),
            // Invalid: the API refuses endPort with a named port.
            _ => json!({"port": "http", "endPort": 90}),
        })
        .collect();
    let mut rule = json!({"ports": ports});
    rule[peers_field] = json!(peers);
    rule
}

#[test]
fn incremental_compilation_equals_compiling_from_scratch() {
    let is_local = |pod: &Pod| pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("n1");
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut world = World::default();
        let mut compiler = Compiler::default();
        let mut identities = IdentityTable::default();
        for step in 0..80 {
            let change = world.change(&mut rng);
            let namespaces: Vec<Namespace> = World::objects(&world.namespaces);
            let pods: Vec<Pod> = World::objects(&world.pods);
            let policies: Vec<NetworkPolicy> = World::objects(&world.policies);
            let cluster = ClusterState {
                pods: &pods,
                namespaces: &namespaces,
                policies: &policies,
            };
            let incremental = compiler.compile(&cluster, is_local);
            let scratch = compile(&cluster, is_local, &identities);
            assert_eq!(incremental, scratch, "seed {seed}, step {step}, after {change}");
            identities = scratch.identities;
        }
    }
}
