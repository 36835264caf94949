//! The compiler: from a cluster snapshot to per-pod allow rules.
//!
//! Peers are resolved once per policy (they do not depend on which pod the
//! policy selects); only ingress named ports are resolved per selected pod,
//! because they name the selected pod's own container ports.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::cluster::{labels_of_namespace, ClusterState, PodView};
use crate::compiled::{
    AllowRule, Compiled, Direction, DirectionPolicy, LocalPodPolicy, PeerSet, PodEndpoint, RuleOrigin,
};
use crate::identity::{Identity, IdentityTable};
use crate::peers::{PodFacts, PolicyPeer};
use crate::ports::{NamedPort, PortSet, RulePorts};
use crate::selector::Labels;
use crate::validate::{validate, ValidatedPolicy};

/// Compiles every policy for the pods `is_local` accepts (typically those
/// whose `spec.nodeName` is this node). `previous` is the identity table of
/// the last compilation (or the default one), so identities stay stable.
pub fn compile<P: Borrow<Pod>, Q: Borrow<NetworkPolicy>>(
    cluster: &ClusterState<P, Q>,
    is_local: impl Fn(&Pod) -> bool,
    previous: &IdentityTable,
) -> Compiled {
    let namespace_labels = cluster.namespace_labels();
    let views = cluster.pod_views();
    let identities = IdentityTable::allocate(previous, views.iter().map(|v| v.key.clone()).collect());
    let pods: Vec<Candidate> = views
        .into_iter()
        .map(|view| Candidate {
            namespace_labels: labels_of_namespace(&namespace_labels, &view.name.namespace),
            // Every key was just allocated; WORLD only keeps this panic-free.
            identity: identities.get(&view.key).unwrap_or(Identity::WORLD),
            view,
        })
        .collect();

    let mut policies: Vec<ValidatedPolicy> = cluster.policies.iter().map(|p| validate(p.borrow())).collect();
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let named_ports: NamedPortsByIdentity = identities.iter().map(|(key, id)| (id, &key.named_ports)).collect();
    let resolved: Vec<ResolvedPolicy> = policies
        .iter()
        .map(|policy| ResolvedPolicy::new(policy, &pods, &named_ports))
        .collect();

    let local_pods = pods
        .iter()
        .filter(|pod| is_local(pod.view.pod))
        .map(|pod| (pod.view.name.clone(), local_pod_policy(pod, &resolved)))
        .collect();
    let mut policy_errors: Vec<_> = policies.iter().flat_map(|p| p.errors.iter().cloned()).collect();
    policy_errors.sort();
    Compiled {
        pods: pods
            .iter()
            .map(|pod| {
                let endpoint = PodEndpoint {
                    identity: pod.identity,
                    ips: pod.view.ips.clone(),
                };
                (pod.view.name.clone(), endpoint)
            })
            .collect(),
        ipcache: pods
            .iter()
            .flat_map(|pod| pod.view.ips.iter().map(|ip| (*ip, pod.identity)))
            .collect(),
        identities,
        local_pods,
        policy_errors,
    }
}

type NamedPortsByIdentity<'a> = BTreeMap<Identity, &'a BTreeSet<NamedPort>>;

/// A selectable pod with what selectors need to look at.
struct Candidate<'a> {
    view: PodView<'a>,
    namespace_labels: Labels,
    identity: Identity,
}

impl Candidate<'_> {
    fn facts(&self) -> PodFacts<'_> {
        PodFacts {
            namespace: &self.view.name.namespace,
            labels: &self.view.key.labels,
            namespace_labels: &self.namespace_labels,
        }
    }
}

/// One rule peer with its pods resolved; its ports may still be named.
struct ResolvedPeer<'p> {
    origin: RuleOrigin,
    peers: PeerSet,
    ports: &'p RulePorts,
}

/// A policy with its peers resolved against the current pods.
struct ResolvedPolicy<'p> {
    policy: &'p ValidatedPolicy,
    ingress: Vec<ResolvedPeer<'p>>,
    /// Egress ports name the peers' container ports, which are known now,
    /// so egress rules are final and shared by every selected pod.
    egress: Vec<AllowRule>,
}

impl<'p> ResolvedPolicy<'p> {
    fn new(policy: &'p ValidatedPolicy, pods: &[Candidate], named_ports: &NamedPortsByIdentity) -> ResolvedPolicy<'p> {
        let egress = resolve_peers(policy, Direction::Egress, pods)
            .into_iter()
            .flat_map(|peer| egress_allow_rules(peer, named_ports))
            .collect();
        ResolvedPolicy {
            policy,
            ingress: resolve_peers(policy, Direction::Ingress, pods),
            egress,
        }
    }

    /// Whether the policy applies to `pod`. A policy whose podSelector is
    /// invalid applies to its whole namespace (fail closed).
    fn selects(&self, pod: &Candidate) -> bool {
        pod.view.name.namespace == self.policy.name.namespace
            && self
                .policy
                .pod_selector
                .as_ref()
                .is_none_or(|s| s.matches(&pod.view.key.labels))
    }

    fn allow_rules(&self, direction: Direction, pod: &Candidate) -> Vec<AllowRule> {
        match direction {
            Direction::Egress => self.egress.clone(),
            Direction::Ingress => (self.ingress.iter())
                .filter_map(|peer| {
                    Some(AllowRule {
                        origin: peer.origin.clone(),
                        peers: peer.peers.clone(),
                        ports: peer.ports.resolve(&pod.view.key.named_ports)?,
                    })
                })
                .collect(),
        }
    }
}

fn local_pod_policy(pod: &Candidate, policies: &[ResolvedPolicy]) -> LocalPodPolicy {
    let mut ingress = DirectionPolicy::default();
    let mut egress = DirectionPolicy::default();
    for policy in policies.iter().filter(|p| p.selects(pod)) {
        for (direction, state) in [(Direction::Ingress, &mut ingress), (Direction::Egress, &mut egress)] {
            if policy.policy.isolates(direction) {
                state.isolated_by.push(policy.policy.name.clone());
                state.rules.extend(policy.allow_rules(direction, pod));
            }
        }
    }
    for state in [&mut ingress, &mut egress] {
        state.rules.sort();
        state.rules.dedup();
    }
    LocalPodPolicy {
        identity: pod.identity,
        ingress,
        egress,
    }
}

/// Every (rule, peer) of one direction, peers resolved to identities.
fn resolve_peers<'p>(policy: &'p ValidatedPolicy, direction: Direction, pods: &[Candidate]) -> Vec<ResolvedPeer<'p>> {
    let origin = |rule: usize, peer: Option<usize>| RuleOrigin {
        policy: policy.name.clone(),
        direction,
        rule,
        peer,
    };
    let mut resolved = Vec::new();
    for (rule_index, rule) in policy.rules(direction).iter().enumerate() {
        let Some(peers) = &rule.peers else {
            resolved.push(ResolvedPeer {
                origin: origin(rule_index, None),
                peers: PeerSet::Any,
                ports: &rule.ports,
            });
            continue;
        };
        for (peer_index, peer) in peers.iter().enumerate() {
            let peers = match peer {
                PolicyPeer::IpBlock(block) => PeerSet::IpBlock(block.clone()),
                PolicyPeer::Pods { .. } => PeerSet::Pods(
                    (pods.iter())
                        .filter(|pod| peer.selects(&policy.name.namespace, &pod.facts()))
                        .map(|pod| pod.identity)
                        .collect(),
                ),
            };
            resolved.push(ResolvedPeer {
                origin: origin(rule_index, Some(peer_index)),
                peers,
                ports: &rule.ports,
            });
        }
    }
    resolved
}

/// Egress allow rules of one peer. Numeric ports apply to the whole peer.
/// Named ports name the *destination's* container ports, so they are
/// resolved per peer identity (every known pod when the rule lists no
/// peers) and identities are grouped by the ports they resolve to. An
/// ipBlock has no container ports: a named port towards it matches nothing.
fn egress_allow_rules(peer: ResolvedPeer, named_ports: &NamedPortsByIdentity) -> Vec<AllowRule> {
    let mut rules = Vec::new();
    if let Some(ports) = peer.ports.numbered() {
        rules.push(AllowRule {
            origin: peer.origin.clone(),
            peers: peer.peers.clone(),
            ports,
        });
    }
    if !peer.ports.has_named() {
        return rules;
    }
    let candidates: Vec<(Identity, &BTreeSet<NamedPort>)> = match &peer.peers {
        PeerSet::Any => named_ports.iter().map(|(id, ports)| (*id, *ports)).collect(),
        PeerSet::Pods(ids) => ids.iter().filter_map(|id| Some((*id, *named_ports.get(id)?))).collect(),
        PeerSet::IpBlock(_) => vec![],
    };
    let mut by_ports: BTreeMap<PortSet, BTreeSet<Identity>> = BTreeMap::new();
    for (id, pod_ports) in candidates {
        if let Some(ports) = peer.ports.named_only(pod_ports) {
            by_ports.entry(ports).or_default().insert(id);
        }
    }
    rules.extend(by_ports.into_iter().map(|(ports, ids)| AllowRule {
        origin: peer.origin.clone(),
        peers: PeerSet::Pods(ids),
        ports,
    }));
    rules
}
