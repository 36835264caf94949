//! NetworkPolicy: compiling policies into per-pod enforcement state, the BPF
//! programs that enforce it at each pod's host-side veth, and verdict
//! tracing.
//!
//! The compiler is pure logic:
//! [`compile`] takes a [`ClusterState`] snapshot (pods, namespaces,
//! NetworkPolicies, in k8s-openapi types) and yields [`Compiled`]: for every
//! local pod and direction whether it is isolated and, if so, the union of
//! allow rules (peer set × port set) with their origin. [`verdict`] judges a
//! single flow from that state alone, for `netlet policy trace`.
//!
//! Invalid policies are reported in [`Compiled::policy_errors`] and fail
//! closed: they isolate what they select but allow nothing.
//!
//! Enforcement: [`plan()`] turns `Compiled` and this node's pod veths into
//! the entries of the BPF maps (pure, like the compiler); [`Datapath`]
//! loads the programs of `bpf/pod.c`, attaches them to each pod's
//! host-side veth and writes plans into the maps, whose layouts are
//! mirrored in [`maps`].

mod cluster;
mod compile;
mod compiled;
mod datapath;
mod identity;
pub mod maps;
mod peers;
mod plan;
mod policies;
mod ports;
mod resolve;
mod selector;
mod validate;
mod verdict;

#[cfg(test)]
mod tests;

pub use cluster::{ClusterState, NAMESPACE_NAME_LABEL};
pub use compile::{compile, Compiler};
pub use compiled::{
    AllowRule, Compiled, Direction, DirectionPolicy, LocalPodPolicy, NamespacedName, PeerSet, PodEndpoint, RuleOrigin,
};
pub use datapath::{
    Applied, Datapath, DatapathError, DatapathOptions, DropEvent, DropEvents, DropReason, EndpointCounters, Hook,
    TC_ACT_SHOT, TC_ACT_UNSPEC,
};
pub use identity::{Identity, IdentityKey, IdentityTable};
pub use peers::IpBlockPeer;
pub use plan::{
    plan, port_prefixes, CidrClass, EndpointEntry, EndpointPod, IpcacheEntry, LocalEndpoint, Plan, PolicySlots,
    PortPrefix, Remote, RuleKey, RulePorts,
};
pub use ports::{NamedPort, PortRange, PortSet, Protocol};
pub use validate::PolicyError;
pub use verdict::{verdict, DirectionVerdict, Endpoint, Flow, ResolvedEndpoint, TraceError, Verdict};
