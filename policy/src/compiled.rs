//! The compiled policy state: what the datapath turns into BPF map entries
//! and what `netlet policy trace` explains verdicts from. Everything is
//! sorted, so two compilations can be diffed into map updates.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::identity::{Identity, IdentityTable};
use crate::peers::IpBlockPeer;
use crate::ports::PortSet;
use crate::validate::PolicyError;

/// A namespaced object's `namespace/name`, for pods and policies alike.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: &str, name: &str) -> NamespacedName {
        NamespacedName {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A NetworkPolicy policyType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    pub fn as_k8s(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }

    pub fn from_k8s(s: &str) -> Option<Direction> {
        Direction::ALL.into_iter().find(|d| d.as_k8s() == s)
    }

    /// The spec field holding this direction's rules, and their peers.
    fn fields(self) -> (&'static str, &'static str) {
        match self {
            Direction::Ingress => ("ingress", "from"),
            Direction::Egress => ("egress", "to"),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_k8s())
    }
}

/// Where an allow rule came from: which policy, direction, rule and peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleOrigin {
    pub policy: NamespacedName,
    pub direction: Direction,
    /// Index into `spec.ingress` / `spec.egress`.
    pub rule: usize,
    /// Index into the rule's `from` / `to`; `None` when it lists no peers
    /// (which allows every peer).
    pub peer: Option<usize>,
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (rules, peers) = self.direction.fields();
        write!(f, "{} spec.{rules}[{}]", self.policy, self.rule)?;
        match self.peer {
            Some(peer) => write!(f, ".{peers}[{peer}]"),
            None => write!(f, " (no {peers}: every peer)"),
        }
    }
}

/// The remote side a rule allows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerSet {
    /// Every address, pod or not (the rule had no `from`/`to`).
    Any,
    /// Pods with these identities (possibly none right now).
    Pods(BTreeSet<Identity>),
    /// Addresses in a CIDR minus its excepts, pod IPs included.
    IpBlock(IpBlockPeer),
}

impl fmt::Display for PeerSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerSet::Any => f.write_str("anyone"),
            PeerSet::Pods(ids) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                write!(f, "pods {{{}}}", ids.join(","))
            }
            PeerSet::IpBlock(block) => write!(f, "ipBlock {block}"),
        }
    }
}

/// One allowed (peers × ports) set. A single rule peer can produce several
/// of these when named ports resolve differently for different pods.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AllowRule {
    pub origin: RuleOrigin,
    pub peers: PeerSet,
    /// Destination ports: the local pod's for ingress, the peer's for egress.
    pub ports: PortSet,
}

/// One direction of one local pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionPolicy {
    /// The policies that select the pod with this policyType, sorted. The
    /// pod is isolated (default deny) for this direction iff non-empty.
    pub isolated_by: Vec<NamespacedName>,
    /// The union of everything those policies allow, sorted.
    pub rules: Vec<AllowRule>,
}

impl DirectionPolicy {
    pub fn is_isolated(&self) -> bool {
        !self.isolated_by.is_empty()
    }
}

/// The enforcement state of a pod running on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPodPolicy {
    pub identity: Identity,
    pub ingress: DirectionPolicy,
    pub egress: DirectionPolicy,
}

impl LocalPodPolicy {
    pub fn direction(&self, direction: Direction) -> &DirectionPolicy {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    pub(crate) fn direction_mut(&mut self, direction: Direction) -> &mut DirectionPolicy {
        match direction {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        }
    }
}

/// A pod anywhere in the cluster that policies can select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEndpoint {
    pub identity: Identity,
    /// Sorted; IPv4 before IPv6.
    pub ips: Vec<IpAddr>,
}

/// Everything compiled from one snapshot of pods, namespaces and policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    /// Identity of every distinct (namespace, labels, named ports).
    pub identities: IdentityTable,
    /// Every selectable pod in the cluster.
    pub pods: BTreeMap<NamespacedName, PodEndpoint>,
    /// Pod IP -> identity, for the datapath to classify the remote end of a
    /// packet; an address missing here is identity `WORLD`.
    pub ipcache: BTreeMap<IpAddr, Identity>,
    /// The pods this node enforces policy for.
    pub local_pods: BTreeMap<NamespacedName, LocalPodPolicy>,
    /// Problems with policies, sorted; each such policy fails closed.
    pub policy_errors: Vec<PolicyError>,
}

impl Compiled {
    /// The pod owning `ip`, if any.
    pub fn pod_at(&self, ip: &IpAddr) -> Option<&NamespacedName> {
        self.pods
            .iter()
            .find(|(_, pod)| pod.ips.contains(ip))
            .map(|(name, _)| name)
    }

    pub fn errors_of<'a>(&'a self, policy: &'a NamespacedName) -> impl Iterator<Item = &'a PolicyError> + 'a {
        self.policy_errors.iter().filter(move |e| e.policy == *policy)
    }
}
