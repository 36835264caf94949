//! Resolving a validated policy against the cluster's identities: which
//! identities each pod peer selects, egress named ports per destination
//! identity, and the allow rules of a selected pod.
//!
//! The result depends only on the policy and the [`Universe`] (every
//! identity with its namespace's labels), not on pods as such: pods of one
//! identity are alike to every selector, and pod addresses play no part.
//! That is what lets the compiler keep resolutions between compilations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::compiled::{AllowRule, Direction, DirectionPolicy, LocalPodPolicy, NamespacedName, PeerSet, RuleOrigin};
use crate::identity::{Identity, IdentityKey, IdentityTable};
use crate::peers::{PodFacts, PolicyPeer};
use crate::ports::{NamedPort, PortSet, RulePorts};
use crate::selector::Labels;
use crate::validate::ValidatedPolicy;

/// Everything policy resolution looks at: every identity in use, with the
/// labels of its namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Universe {
    pub identities: IdentityTable,
    pub namespace_labels: BTreeMap<String, Labels>,
}

/// An identity as selectors see it.
pub(crate) struct Member<'u> {
    pub identity: Identity,
    pub key: &'u IdentityKey,
    pub namespace_labels: &'u Labels,
}

impl Member<'_> {
    fn facts(&self) -> PodFacts<'_> {
        PodFacts {
            namespace: &self.key.namespace,
            labels: &self.key.labels,
            namespace_labels: self.namespace_labels,
        }
    }
}

impl Universe {
    pub(crate) fn members(&self) -> impl Iterator<Item = Member<'_>> {
        self.identities.iter().filter_map(|(key, identity)| {
            Some(Member {
                identity,
                key,
                namespace_labels: self.namespace_labels.get(&key.namespace)?,
            })
        })
    }

    pub(crate) fn member(&self, identity: Identity) -> Option<Member<'_>> {
        let key = self.identities.key_of(identity)?;
        Some(Member {
            identity,
            key,
            namespace_labels: self.namespace_labels.get(&key.namespace)?,
        })
    }
}

/// One rule peer with its pods resolved; its ports may still be named.
#[derive(Debug)]
struct ResolvedPeer {
    origin: RuleOrigin,
    peers: PeerSet,
    ports: RulePorts,
}

/// A policy with its peers resolved against a universe.
#[derive(Debug)]
pub(crate) struct ResolvedPolicy {
    pub policy: Arc<ValidatedPolicy>,
    ingress: Vec<ResolvedPeer>,
    /// Egress ports name the peers' container ports, which are known now,
    /// so egress rules are final and shared by every selected pod.
    egress: Vec<AllowRule>,
}

impl ResolvedPolicy {
    pub(crate) fn new(policy: Arc<ValidatedPolicy>, universe: &Universe) -> ResolvedPolicy {
        let named_ports: NamedPortsByIdentity = (universe.identities.iter())
            .map(|(key, id)| (id, &key.named_ports))
            .collect();
        let egress = resolve_peers(&policy, Direction::Egress, universe)
            .into_iter()
            .flat_map(|peer| egress_allow_rules(peer, &named_ports))
            .collect();
        ResolvedPolicy {
            ingress: resolve_peers(&policy, Direction::Ingress, universe),
            egress,
            policy,
        }
    }

    /// Whether the policy applies to `member`. A policy whose podSelector is
    /// invalid applies to its whole namespace (fail closed).
    pub(crate) fn selects(&self, member: &Member) -> bool {
        member.key.namespace == self.policy.name.namespace
            && (self.policy.pod_selector.as_ref()).is_none_or(|s| s.matches(&member.key.labels))
    }

    fn allow_rules(&self, direction: Direction, member: &Member) -> Vec<AllowRule> {
        match direction {
            Direction::Egress => self.egress.clone(),
            Direction::Ingress => (self.ingress.iter())
                .filter_map(|peer| {
                    Some(AllowRule {
                        origin: peer.origin.clone(),
                        peers: peer.peers.clone(),
                        ports: peer.ports.resolve(&member.key.named_ports)?,
                    })
                })
                .collect(),
        }
    }
}

/// The enforcement state of pods of `member`'s identity under `policies`
/// (sorted by name).
pub(crate) fn local_pod_policy<'p>(
    member: &Member,
    policies: impl IntoIterator<Item = &'p ResolvedPolicy>,
) -> LocalPodPolicy {
    let mut state = LocalPodPolicy {
        identity: member.identity,
        ingress: DirectionPolicy::default(),
        egress: DirectionPolicy::default(),
    };
    add_policies(&mut state, member, policies);
    state
}

/// `kept`, the state of `member`'s identity in an unchanged universe,
/// after the policies named `changed` became `now` (those of them that
/// still exist). Every rule carries the name of its policy and the result
/// is a sorted set, so taking out a policy's rules and names and adding
/// its new ones gives what compiling every policy again would.
pub(crate) fn update_local_pod_policy<'p>(
    mut kept: LocalPodPolicy,
    member: &Member,
    changed: &BTreeSet<NamespacedName>,
    now: impl IntoIterator<Item = &'p ResolvedPolicy>,
) -> LocalPodPolicy {
    for state in [&mut kept.ingress, &mut kept.egress] {
        state.isolated_by.retain(|name| !changed.contains(name));
        state.rules.retain(|rule| !changed.contains(&rule.origin.policy));
    }
    add_policies(&mut kept, member, now);
    kept
}

/// Adds what `policies` that select `member` isolate and allow to `state`,
/// and sorts it.
fn add_policies<'p>(
    state: &mut LocalPodPolicy,
    member: &Member,
    policies: impl IntoIterator<Item = &'p ResolvedPolicy>,
) {
    for policy in policies.into_iter().filter(|p| p.selects(member)) {
        for direction in Direction::ALL {
            if policy.policy.isolates(direction) {
                let rules = policy.allow_rules(direction, member);
                let state = state.direction_mut(direction);
                state.isolated_by.push(policy.policy.name.clone());
                state.rules.extend(rules);
            }
        }
    }
    for direction in Direction::ALL {
        // Mostly sorted already (policies come in name order, and the
        // kept part of an update is sorted): the sorts are near linear.
        let state = state.direction_mut(direction);
        state.isolated_by.sort();
        state.rules.sort();
        state.rules.dedup();
    }
}

type NamedPortsByIdentity<'a> = BTreeMap<Identity, &'a BTreeSet<NamedPort>>;

/// Every (rule, peer) of one direction, peers resolved to identities.
fn resolve_peers(policy: &ValidatedPolicy, direction: Direction, universe: &Universe) -> Vec<ResolvedPeer> {
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
                ports: rule.ports.clone(),
            });
            continue;
        };
        for (peer_index, peer) in peers.iter().enumerate() {
            let peers = match peer {
                PolicyPeer::IpBlock(block) => PeerSet::IpBlock(block.clone()),
                PolicyPeer::Pods { .. } => PeerSet::Pods(
                    (universe.members())
                        .filter(|member| peer.selects(&policy.name.namespace, &member.facts()))
                        .map(|member| member.identity)
                        .collect(),
                ),
            };
            resolved.push(ResolvedPeer {
                origin: origin(rule_index, Some(peer_index)),
                peers,
                ports: rule.ports.clone(),
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
