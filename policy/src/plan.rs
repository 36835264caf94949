//! From compiled policy to the entries of the BPF maps, as plain sorted
//! data: which pod is behind each host-side veth (endpoints), what every
//! address is (ipcache: pod identities and ipBlock classes), and the allow
//! rules per local identity. Pure, so the whole mapping is unit-tested
//! without root; the datapath writes the difference to what the maps hold.

use std::collections::{BTreeMap, BTreeSet};

use dualstack::Cidr;

use crate::compiled::{AllowRule, Compiled, Direction, LocalPodPolicy, NamespacedName, PeerSet};
use crate::identity::Identity;
use crate::ports::PortSet;

mod classes;
mod ports;
mod slots;

use classes::Classes;
pub use ports::{port_prefixes, PortPrefix};
pub use slots::{CidrClass, PolicySlots};

/// A host-side veth this node enforces policy on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub ifindex: u32,
    pub pod: EndpointPod,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointPod {
    /// A container without a Kubernetes pod: nothing is enforced.
    Unmanaged,
    /// A pod: enforced as compiled, or, while missing from the compiled
    /// local pods (not yet seen), denied everything.
    Pod(NamespacedName),
}

/// What the datapath knows about the pod behind a veth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointEntry {
    /// `Identity::WORLD` (which no rule names) for pods not yet known
    /// and for unmanaged containers.
    pub identity: Identity,
    pub isolated_ingress: bool,
    pub isolated_egress: bool,
}

impl EndpointEntry {
    /// Neither direction enforced.
    pub const OPEN: EndpointEntry = EndpointEntry {
        identity: Identity::WORLD,
        isolated_ingress: false,
        isolated_egress: false,
    };
    /// Everything denied: no rule exists for identity 0.
    pub const DENY_ALL: EndpointEntry = EndpointEntry {
        identity: Identity::WORLD,
        isolated_ingress: true,
        isolated_egress: true,
    };
}

/// What an address or prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpcacheEntry {
    /// The pod's; `Identity::WORLD` for boundary prefixes.
    pub identity: Identity,
    pub class: CidrClass,
}

/// The far end a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Remote {
    Pod(Identity),
    Class(CidrClass),
    Any,
}

/// The ports a rule entry allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RulePorts {
    /// Every protocol and port, ICMP included (a rule without ports).
    Any,
    /// One prefix of destination ports of one protocol (IANA number).
    Prefix { protocol: u8, prefix: PortPrefix },
}

/// One allow entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleKey {
    pub local: Identity,
    pub direction: Direction,
    pub remote: Remote,
    pub ports: RulePorts,
}

/// Everything the maps should hold, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Host-side veth ifindex -> its pod.
    pub endpoints: BTreeMap<u32, EndpointEntry>,
    /// Pod addresses (host prefixes) and ipBlock boundaries.
    pub ipcache: BTreeMap<Cidr, IpcacheEntry>,
    /// Allow entries -> the lowest slot of the policies allowing them.
    pub rules: BTreeMap<RuleKey, u32>,
    /// Keep for the next plan, and to name the slots of counters.
    pub slots: PolicySlots,
}

/// Plans the maps for `endpoints` under `compiled`. `previous_slots` are
/// those of the last plan (or, after a restart, what the datapath read
/// back from the maps), so numbers stay stable.
pub fn plan(compiled: &Compiled, endpoints: &[LocalEndpoint], previous_slots: &PolicySlots) -> Plan {
    let (endpoints, local) = endpoint_entries(compiled, endpoints);
    let rules_in_force = || local.values().flat_map(|pod| enforced_rules(pod).map(|(_, rule)| rule));
    let policies: BTreeSet<NamespacedName> = rules_in_force().map(|rule| rule.origin.policy.clone()).collect();
    let boundaries = classes::boundaries(rules_in_force());
    let slots = PolicySlots::allocate(previous_slots, &policies, &boundaries);
    let classes = Classes::new(&slots);
    Plan {
        endpoints,
        ipcache: ipcache_entries(compiled, &classes),
        rules: rule_entries(&local, &slots, &classes),
        slots,
    }
}

/// The entry of each veth, and the policy of each local identity behind
/// one (pods of one identity are selected alike: one set of rules serves
/// them all).
fn endpoint_entries<'c>(
    compiled: &'c Compiled,
    endpoints: &[LocalEndpoint],
) -> (BTreeMap<u32, EndpointEntry>, BTreeMap<Identity, &'c LocalPodPolicy>) {
    let mut local = BTreeMap::new();
    let mut entries = BTreeMap::new();
    for endpoint in endpoints {
        let entry = match &endpoint.pod {
            EndpointPod::Unmanaged => EndpointEntry::OPEN,
            EndpointPod::Pod(name) => match compiled.local_pods.get(name) {
                Some(policy) => {
                    local.insert(policy.identity, policy);
                    EndpointEntry {
                        identity: policy.identity,
                        isolated_ingress: policy.ingress.is_isolated(),
                        isolated_egress: policy.egress.is_isolated(),
                    }
                }
                None => EndpointEntry::DENY_ALL,
            },
        };
        entries.insert(endpoint.ifindex, entry);
    }
    (entries, local)
}

/// The boundaries as themselves, and every pod address of the cluster
/// with its identity and the class it falls in.
fn ipcache_entries(compiled: &Compiled, classes: &Classes) -> BTreeMap<Cidr, IpcacheEntry> {
    let boundaries = classes.entries().into_iter().map(|(cidr, class)| {
        let entry = IpcacheEntry {
            identity: Identity::WORLD,
            class,
        };
        (cidr, entry)
    });
    let pods = (compiled.ipcache.iter())
        .filter(|(ip, _)| classes::representable(ip))
        .filter_map(|(ip, identity)| {
            // The roots give every address a class.
            let class = classes.of(ip)?;
            let entry = IpcacheEntry {
                identity: *identity,
                class,
            };
            Some((classes::host(*ip), entry))
        });
    boundaries.chain(pods).collect()
}

/// Every allow entry of the local identities, each with the lowest slot
/// of the policies allowing it.
fn rule_entries(
    local: &BTreeMap<Identity, &LocalPodPolicy>,
    slots: &PolicySlots,
    classes: &Classes,
) -> BTreeMap<RuleKey, u32> {
    let mut rules: BTreeMap<RuleKey, u32> = BTreeMap::new();
    for (identity, pod) in local {
        for (direction, rule) in enforced_rules(pod) {
            let Some(slot) = slots.slot_of(&rule.origin.policy) else {
                continue;
            };
            let remotes: Vec<Remote> = match &rule.peers {
                PeerSet::Any => vec![Remote::Any],
                PeerSet::Pods(ids) => ids.iter().map(|id| Remote::Pod(*id)).collect(),
                PeerSet::IpBlock(block) => classes.matching(block).into_iter().map(Remote::Class).collect(),
            };
            let ports = rule_ports(&rule.ports);
            for remote in &remotes {
                for ports in &ports {
                    let key = RuleKey {
                        local: *identity,
                        direction,
                        remote: *remote,
                        ports: *ports,
                    };
                    rules.entry(key).and_modify(|s| *s = (*s).min(slot)).or_insert(slot);
                }
            }
        }
    }
    rules
}

fn rule_ports(ports: &PortSet) -> Vec<RulePorts> {
    match ports {
        PortSet::Any => vec![RulePorts::Any],
        PortSet::Ranges(ranges) => (ranges.iter())
            .flat_map(|range| {
                port_prefixes(range.first, range.last)
                    .into_iter()
                    .map(|prefix| RulePorts::Prefix {
                        protocol: range.protocol.ip_proto(),
                        prefix,
                    })
            })
            .collect(),
    }
}

/// The rules of the directions a pod is isolated in (the others allow
/// everything without rules).
fn enforced_rules(pod: &LocalPodPolicy) -> impl Iterator<Item = (Direction, &AllowRule)> {
    Direction::ALL.into_iter().flat_map(move |direction| {
        let policy = pod.direction(direction);
        let rules = if policy.is_isolated() { &policy.rules[..] } else { &[] };
        rules.iter().map(move |rule| (direction, rule))
    })
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
